#pragma once
// In-process SharedState: every engine of one process shares it (embedded mode, tests).
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "nse/embedder.h"

namespace nse {

class LocalSharedState : public SharedState {
public:
    void mutex_lock(const std::string& key, Owner who, Wake granted) override;
    bool mutex_trylock(const std::string& key, Owner who) override;
    bool mutex_unlock(const std::string& key, Owner who) override;
    std::optional<Owner> mutex_owner(const std::string& key) override;
    void mutex_abandon(const std::string& key, Owner who) override;
    void condvar_wait(const std::string& key, Owner who, Wake woken) override;
    void condvar_signal(const std::string& key) override;
    void condvar_broadcast(const std::string& key) override;
    void condvar_cancel(const std::string& key, Owner who) override;
    void registry_merge(const common::Value& delta) override;
    common::Value registry_snapshot() override;

private:
    struct Mutex {
        std::optional<Owner> owner;
        std::deque<std::pair<Owner, Wake>> queue;
    };
    // Hands the lock to the next waiter; returns its wake to call outside the lock.
    Wake release_locked(Mutex& m);

    std::mutex mu_;
    std::map<std::string, Mutex> mutexes_;
    std::map<std::string, std::vector<std::pair<Owner, Wake>>> condvars_;
    common::Value registry_;
};

}  // namespace nse
