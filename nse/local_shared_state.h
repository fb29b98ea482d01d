#pragma once
// In-process SharedState: every engine of one process shares it (embedded mode, tests).
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "nse/embedder.h"
#include "nse/registry_tree.h"

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
    void registry_merge(const common::Value& delta, std::uint64_t engine) override {
        registry_merge_tracked(delta, engine);
    }
    // The same, returning the paths the merge changed (what a store writes).
    std::vector<RegistryTree::Change> registry_merge_tracked(const common::Value& delta,
                                                             std::uint64_t engine);
    RegistryChanges registry_changes(std::uint64_t since, std::uint64_t engine) override;

    // The merged registry and its version (each merge adds one).
    common::Value registry_snapshot();
    std::uint64_t registry_version();
    // Starts over from a saved registry (a resumed scan): every engine refetches it whole.
    void registry_restore(RegistryTree registry, std::uint64_t version);

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
    RegistryTree registry_;
    std::uint64_t version_ = 0;
    // The latest merges, oldest first (at most kLogEntries): an engine a few versions behind
    // fetches the deltas it missed instead of the whole registry.
    struct Published {
        std::uint64_t version, engine;
        common::Value delta;
    };
    static constexpr std::size_t kLogEntries = 4096;
    std::deque<Published> log_;
};

}  // namespace nse
