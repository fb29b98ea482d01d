#pragma once
// The one interface between the NSE runtime and whoever embeds it (worker, tests).
// nse/ knows nothing of transports, encodings or stores: everything it needs from outside
// comes through these two classes.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/value.h"

namespace nse {

// Identifies a coroutine that owns a mutex or waits on a condvar, fleet-wide.
struct Owner {
    std::uint64_t engine = 0;  // engine id, unique in the fleet
    std::uint64_t id = 0;      // coroutine id, unique in the engine
    bool operator==(const Owner&) const = default;
};

// Longest mutex/condvar key the shared state takes (nmap.mutex raises beyond it).
inline constexpr std::size_t kMaxSharedKeyBytes = 4096;

// What an engine fetches to bring its nmap.registry up to date.
struct RegistryChanges {
    std::uint64_t version = 0;  // the merged registry's version these bring the engine to
    // true: `full` is the whole merged registry (the engine's version was 0 or too old for
    // the change log), to replace the engine's own; false: apply `deltas` in order.
    bool snapshot = false;
    common::Value full;
    std::vector<common::Value> deltas;  // published by other engines after `since`
};

// Registry, mutex and condvar storage shared by every engine of a scan.
// Callbacks (`Wake`) run exactly once, on any thread, possibly inside the call that
// registered them; the engine only ever posts from them onto its own loop.
class SharedState {
public:
    using Wake = std::function<void()>;
    virtual ~SharedState() = default;

    // FIFO mutex. lock: grants at once through `granted` when free, else queues.
    virtual void mutex_lock(const std::string& key, Owner who, Wake granted) = 0;
    // true and owned when free; false otherwise (no queueing).
    virtual bool mutex_trylock(const std::string& key, Owner who) = 0;
    // false when `who` does not own it. Hands the lock to the next waiter.
    virtual bool mutex_unlock(const std::string& key, Owner who) = 0;
    virtual std::optional<Owner> mutex_owner(const std::string& key) = 0;
    // `who` died: releases the lock if it holds it (handing it on), else leaves the queue.
    // One atomic step, so a grant racing with the death cannot leave the lock orphaned.
    virtual void mutex_abandon(const std::string& key, Owner who) = 0;

    // Condition variables: waiters are woken LIFO by signal, all by broadcast.
    virtual void condvar_wait(const std::string& key, Owner who, Wake woken) = 0;
    virtual void condvar_signal(const std::string& key) = 0;
    virtual void condvar_broadcast(const std::string& key) = 0;
    // Drops `who` from the waiters (its thread died while waiting).
    virtual void condvar_cancel(const std::string& key, Owner who) = 0;

    // nmap.registry (docs/fleet.md "The shared registry"): engines publish what they changed
    // (a delta, nse/registry_delta.h, applied in arrival order; `engine` is the publisher)
    // and fetch what others published since the version they last saw.
    virtual void registry_merge(const common::Value& delta, std::uint64_t engine) = 0;
    virtual RegistryChanges registry_changes(std::uint64_t since, std::uint64_t engine) = 0;
};

// Logging, clock and cancellation.
class Embedder {
public:
    virtual ~Embedder() = default;
    // Text for the user's terminal (stdout/stderr), verbatim.
    virtual void write(bool to_stderr, const std::string& text) = 0;
    // Wall-clock seconds since the epoch.
    virtual double now() = 0;
    // True when the embedder wants the current work abandoned (scan aborted, lease lost).
    virtual bool cancelled() { return false; }
    // Called as soon as a host of the running scan phase has no script thread left.
    virtual void host_done(std::size_t /*host_position*/) {}

    // nmap.add_targets: queues target specs (addresses, names, CIDR) for the scan. Returns
    // how many were accepted (stops at the first invalid one); 0 when the embedder does not
    // take new targets.
    virtual std::size_t add_targets(const std::vector<std::string>& /*specs*/) { return 0; }
    // Targets accepted but not yet handed to a host group.
    virtual std::size_t targets_pending() { return 0; }
    // Targets accepted over the whole scan.
    virtual std::size_t targets_added() { return 0; }
};

}  // namespace nse
