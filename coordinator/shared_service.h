#pragma once
// The fleet's shared-state service: nmap.mutex, nmap.condvar and nmap.registry for every
// engine of every worker, answered from one LocalSharedState in the coordinator. It keeps
// each worker's footprint (locks held, waits queued) so a lost worker never leaves a lock
// held or a waiter queued, and journals the merged registry in the store so a resumed scan
// starts from it. Replies and wake-ups leave through `Send`; a wake may come during a later
// call (another worker's unlock), so Send must only queue. Not thread-safe (the
// coordinator's loop owns it).
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/status.h"
#include "common/value.h"
#include "common/wire/messages.h"
#include "coordinator/store/store.h"
#include "nse/local_shared_state.h"

namespace coordinator {

class SharedService {
public:
    // Sends `m` to worker `worker` if it is still there.
    using Send = std::function<void(std::uint64_t worker, const common::wire::Message& m)>;

    SharedService(store::Store& store, Send send) : store_(store), send_(std::move(send)) {}

    // Why `op` from worker `worker` (running `engines` engines) is refused, "" when it is
    // not: a key longer than nse::kMaxSharedKeyBytes, or an owner that is not one of the
    // sender's engines (a worker acts only for itself).
    static std::string refusal(std::uint64_t worker, std::uint32_t engines,
                               const common::wire::SharedOp& op);

    // Loads the journaled registry (resume). Fails on a record that cannot be read.
    common::Status restore();

    // One SharedOp from `worker`; a store failure is returned (the scan cannot go on).
    common::Status handle(std::uint64_t worker, const common::wire::SharedOp& op);

    // The worker is gone: its locks are released and its waits cancelled.
    void drop_worker(std::uint64_t worker);
    // A lease ended (expired, requeued, or its group completed): the locks its threads hold
    // are released and their waits cancelled. Locks are owned by (lease, thread).
    void drop_lease(std::uint64_t lease);

    // A delta published by `engine` (0: a phase's result, which names no engine).
    common::Status merge(const common::Value& delta, std::uint64_t engine = 0);
    common::Value snapshot() { return shared_.registry_snapshot(); }

private:
    common::Status persist(const std::vector<nse::RegistryTree::Change>& changes);
    // RegistryChanges for `engine` (part 0: the answer; k > 0: part k of a registry cut in
    // parts by the last answer).
    void registry_changes(const common::wire::SharedOp& m, common::wire::SharedReply& reply);

    using Footprint = std::tuple<std::string, std::uint64_t, std::uint64_t>;  // key, engine, id
    struct Prints {
        std::set<Footprint> locks, waits;
    };
    // Releases what `p` holds: locks abandoned, waits cancelled.
    void release(const Prints& p);
    store::Store& store_;
    Send send_;
    nse::LocalSharedState shared_;
    std::map<std::uint64_t, Prints> prints_;  // by worker id
    // The same footprints by (lease, worker), for leases > 0: a group re-leased to another
    // worker keeps the two holders apart.
    std::map<std::pair<std::uint64_t, std::uint64_t>, Prints> lease_prints_;
    // Registries too large for one message, cut in parts, by the engine fetching them.
    struct Parts {
        std::uint64_t version = 0;
        std::vector<common::Value> parts;
    };
    std::map<std::uint64_t, Parts> parts_;
};

}  // namespace coordinator
