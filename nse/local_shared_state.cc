#include "nse/local_shared_state.h"

#include <algorithm>

#include "nse/registry_delta.h"

namespace nse {

void LocalSharedState::mutex_lock(const std::string& key, Owner who, Wake granted) {
    bool now = false;
    {
        std::lock_guard lk(mu_);
        auto& m = mutexes_[key];
        if (!m.owner) {
            m.owner = who;
            now = true;
        } else {
            m.queue.emplace_back(who, std::move(granted));
        }
    }
    if (now) granted();
}

bool LocalSharedState::mutex_trylock(const std::string& key, Owner who) {
    std::lock_guard lk(mu_);
    auto& m = mutexes_[key];
    if (m.owner) return false;
    m.owner = who;
    return true;
}

SharedState::Wake LocalSharedState::release_locked(Mutex& m) {
    m.owner.reset();
    if (m.queue.empty()) return nullptr;
    auto [next, wake] = std::move(m.queue.front());
    m.queue.pop_front();
    m.owner = next;
    return std::move(wake);
}

bool LocalSharedState::mutex_unlock(const std::string& key, Owner who) {
    Wake wake;
    {
        std::lock_guard lk(mu_);
        auto it = mutexes_.find(key);
        if (it == mutexes_.end() || !it->second.owner || !(*it->second.owner == who)) return false;
        wake = release_locked(it->second);
        if (!it->second.owner) mutexes_.erase(it);
    }
    if (wake) wake();
    return true;
}

std::optional<Owner> LocalSharedState::mutex_owner(const std::string& key) {
    std::lock_guard lk(mu_);
    auto it = mutexes_.find(key);
    if (it == mutexes_.end()) return std::nullopt;
    return it->second.owner;
}

void LocalSharedState::mutex_abandon(const std::string& key, Owner who) {
    Wake wake;
    {
        std::lock_guard lk(mu_);
        auto it = mutexes_.find(key);
        if (it == mutexes_.end()) return;
        auto& m = it->second;
        if (m.owner && *m.owner == who) {
            wake = release_locked(m);
        } else {
            std::erase_if(m.queue, [&](const auto& e) { return e.first == who; });
        }
        if (!m.owner && m.queue.empty()) mutexes_.erase(it);
    }
    if (wake) wake();
}

void LocalSharedState::condvar_wait(const std::string& key, Owner who, Wake woken) {
    std::lock_guard lk(mu_);
    condvars_[key].emplace_back(who, std::move(woken));
}

void LocalSharedState::condvar_signal(const std::string& key) {
    Wake wake;
    {
        std::lock_guard lk(mu_);
        auto it = condvars_.find(key);
        if (it == condvars_.end() || it->second.empty()) return;
        // The most recent waiter goes first (nmap's order).
        wake = std::move(it->second.back().second);
        it->second.pop_back();
        if (it->second.empty()) condvars_.erase(it);
    }
    wake();
}

void LocalSharedState::condvar_broadcast(const std::string& key) {
    std::vector<std::pair<Owner, Wake>> all;
    {
        std::lock_guard lk(mu_);
        auto it = condvars_.find(key);
        if (it == condvars_.end()) return;
        all = std::move(it->second);
        condvars_.erase(it);
    }
    for (auto& [who, wake] : all)
        wake();
}

void LocalSharedState::condvar_cancel(const std::string& key, Owner who) {
    std::lock_guard lk(mu_);
    auto it = condvars_.find(key);
    if (it == condvars_.end()) return;
    std::erase_if(it->second, [&](const auto& e) { return e.first == who; });
    if (it->second.empty()) condvars_.erase(it);
}

void LocalSharedState::registry_merge(const common::Value& delta) {
    if (!delta.is_table()) return;  // a delta is a table: nothing else may replace the registry
    std::lock_guard lk(mu_);
    registry_apply(registry_, delta);
}

common::Value LocalSharedState::registry_snapshot() {
    std::lock_guard lk(mu_);
    return registry_;
}

}  // namespace nse
