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

std::vector<RegistryTree::Change> LocalSharedState::registry_merge_tracked(
    const common::Value& delta, std::uint64_t engine) {
    // A delta is a table: nothing else may replace the registry. An empty one changes nothing.
    if (!delta.is_table() || delta.table().entries.empty()) return {};
    std::lock_guard lk(mu_);
    auto changes = registry_.apply(delta, ++version_);
    log_.push_back({version_, engine, delta});
    if (log_.size() > kLogEntries) log_.pop_front();
    return changes;
}

RegistryChanges LocalSharedState::registry_changes(std::uint64_t since, std::uint64_t engine) {
    std::lock_guard lk(mu_);
    RegistryChanges c;
    c.version = version_;
    // A first fetch, a gap the log no longer covers, or a version from another run.
    bool whole = since == 0 || since > version_ ||
                 (since < version_ && (log_.empty() || log_.front().version > since + 1));
    if (whole) {
        c.snapshot = true;
        c.full = registry_.snapshot();
        return c;
    }
    auto it = std::partition_point(log_.begin(), log_.end(),
                                   [&](const Published& p) { return p.version <= since; });
    // Each as far as it is still current: a key written again later (by this engine too)
    // keeps the later value, so every engine converges on the merged registry (the
    // coordinator's arrival order decides between concurrent writes).
    for (; it != log_.end(); ++it) {
        if (it->engine == engine) continue;
        auto part = registry_.current_part(it->delta, it->version, since);
        if (!part) {  // a table re-created over what this engine may still hold
            c.deltas.clear();
            c.snapshot = true;
            c.full = registry_.snapshot();
            return c;
        }
        if (!part->table().entries.empty()) c.deltas.push_back(std::move(*part));
    }
    return c;
}

common::Value LocalSharedState::registry_snapshot() {
    std::lock_guard lk(mu_);
    return registry_.snapshot();
}

std::uint64_t LocalSharedState::registry_version() {
    std::lock_guard lk(mu_);
    return version_;
}

void LocalSharedState::registry_restore(RegistryTree registry, std::uint64_t version) {
    std::lock_guard lk(mu_);
    registry_ = std::move(registry);
    version_ = version;
    log_.clear();
}

}  // namespace nse
