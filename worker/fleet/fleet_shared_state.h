#pragma once
// nse::SharedState for a fleet worker: the registry, mutexes and condvars live in the
// coordinator. Each operation becomes a wire::SharedOp handed to `send` (the worker's I/O
// thread puts it on the socket); the coordinator's SharedReply / SharedNotify come back
// through on_reply / on_notify, called by that I/O thread.
//
// Threads: every nse::SharedState method may be called from any engine thread; on_reply,
// on_notify and shut_down from the I/O thread. Stored Wake callbacks run on the I/O thread
// (the engine only posts from them onto its own loop).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "common/wire/messages.h"
#include "nse/embedder.h"

namespace worker::fleet {

class FleetSharedState : public nse::SharedState {
public:
    // Queues one message for the coordinator without blocking. false when it cannot be
    // queued (link closed): the operation then fails like a timeout, at once.
    using Send = std::function<bool(common::wire::Message)>;
    // One line for the worker's log (no trailing newline).
    using Log = std::function<void(const std::string&)>;

    // `reply_timeout` bounds every synchronous operation (trylock, unlock, owner, registry
    // snapshot): an engine thread never waits longer for the coordinator.
    FleetSharedState(Send send, Log log, std::chrono::milliseconds reply_timeout);

    // Queues a MutexLock; `granted` runs when SharedNotify{Granted} for it arrives. Dropped
    // (never run) when the thread abandons the lock first or the link shuts down.
    void mutex_lock(const std::string& key, nse::Owner who, Wake granted) override;
    // Round trip. false on "not acquired", timeout or closed link. After a timeout a
    // MutexAbandon is sent, so a late grant cannot leave the lock held by nobody.
    bool mutex_trylock(const std::string& key, nse::Owner who) override;
    // Round trip. false when `who` was not the owner. On timeout the lock is given up with
    // MutexAbandon and true is returned (the caller's thread no longer holds it either way).
    bool mutex_unlock(const std::string& key, nse::Owner who) override;
    // Round trip. nullopt when free, on timeout or closed link.
    std::optional<nse::Owner> mutex_owner(const std::string& key) override;
    // Fire and forget; also forgets a pending lock request of `who` on `key`.
    void mutex_abandon(const std::string& key, nse::Owner who) override;

    // Queues a CondWait; `woken` runs on SharedNotify{Woken}. Same drop rules as mutex_lock.
    void condvar_wait(const std::string& key, nse::Owner who, Wake woken) override;
    void condvar_signal(const std::string& key) override;
    void condvar_broadcast(const std::string& key) override;
    // Fire and forget; also forgets the pending wait of `who` on `key`.
    void condvar_cancel(const std::string& key, nse::Owner who) override;

    // Fire and forget (the coordinator's SharedReply is not waited for: messages on one
    // connection stay in order, so a later GroupDone cannot overtake it).
    void registry_merge(const common::Value& delta, std::uint64_t engine) override;
    // Round trip. No changes (logged) on timeout or closed link.
    nse::RegistryChanges registry_changes(std::uint64_t since, std::uint64_t engine) override;

    // Round trip: the whole fleet's (targets added by nmap.add_targets, not yet in a host
    // group); nullopt on timeout or closed link.
    std::optional<std::pair<std::uint64_t, std::uint64_t>> target_counts();

    // A SharedReply from the coordinator. true for the answer a call waits for and for a
    // RegistryMerge's ack; false when nothing expects it (late after a timeout, or bogus):
    // the caller may log it.
    bool on_reply(const common::wire::SharedReply& r);
    // A SharedNotify. Runs the stored Wake. false (nothing run) when the request id is not
    // pending or the event/key does not match the request.
    bool on_notify(const common::wire::SharedNotify& n);
    // The coordinator is gone: waiting calls return their failure value now, later calls at
    // once; stored Wakes are dropped unrun.
    void shut_down();

    // The worker id of a Welcome. Engine ids are made from the first one; after a rejoin (a
    // restarted coordinator gives a new id) they are rebased on the current one on the wire,
    // and back in what the coordinator sends, since it takes ops only for the sender's own
    // engines.
    void set_worker_id(std::uint64_t id);

    // The host group (lease) engine `engine` runs now, 0 for none (a phase): stamped on its
    // threads' ops, so the coordinator can release their locks with the lease.
    void set_lease(std::uint64_t engine, std::uint64_t lease);

    std::size_t pending_wakes() const;  // lock/wait requests not yet granted/woken
    std::uint64_t timeouts() const;     // synchronous calls that timed out

private:
    struct WakeEntry {
        common::wire::SharedOpKind op;
        std::string key;
        nse::Owner who;
        Wake wake;
    };
    struct Call {
        bool done = false;
        common::wire::SharedReply reply;
    };

    common::wire::SharedOp make(common::wire::SharedOpKind op, const std::string& key,
                                nse::Owner who);
    // Queues `op` with a fresh request id and waits for its reply (nullopt: timeout/closed).
    std::optional<common::wire::SharedReply> call(common::wire::SharedOp op);
    // Queues `op` with `wake` stored under a fresh request id, for `who` (as the engine
    // knows it).
    void queue_wake(common::wire::SharedOp op, nse::Owner who, Wake wake);
    void forget(common::wire::SharedOpKind op, const std::string& key, nse::Owner who);
    void post(common::wire::SharedOp op);

    Send send_;
    Log log_;
    std::chrono::milliseconds timeout_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::uint64_t next_id_ = 0;
    bool down_ = false;
    std::uint64_t timeouts_ = 0;
    std::map<std::uint64_t, Call*> calls_;
    std::map<std::uint64_t, WakeEntry> wakes_;
    std::set<std::uint64_t> acks_;  // RegistryMerge ids whose SharedReply is still to come
    std::map<std::uint64_t, std::uint64_t> leases_;  // engine -> lease it runs
    std::uint64_t first_worker_ = 0, worker_ = 0;    // first and current worker id
    // Engine id rebasing (under mu_): ours as the engines know them <-> as on the wire.
    std::uint64_t to_wire_engine(std::uint64_t e) const;
    std::uint64_t from_wire_engine(std::uint64_t e) const;
};

}  // namespace worker::fleet
