#pragma once
// The coordinator's book of host groups: planning (the target cursor walked lazily, script-
// added hosts first), leases, requeues, commits and the ordered-output frontier. The store
// is the source of truth: every change is written there before the book changes, so a
// restarted coordinator rebuilds the same book with restore(). Groups that are done leave
// the book; what is in memory is bounded by what is queued or leased. Not thread-safe (the
// coordinator's loop owns it).
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/target_cursor.h"
#include "common/wire/messages.h"
#include "coordinator/added_targets.h"
#include "coordinator/store/store.h"

namespace coordinator {

// One planned group while it is not done.
struct BookGroup {
    std::vector<common::wire::LeaseHost> hosts;
    std::set<std::uint64_t> committed;  // host indexes already in the store
    std::uint64_t worker = 0;           // holder while leased
    double deadline = 0;                // epoch seconds, while leased
    std::uint32_t attempts = 0;
    std::uint32_t failures = 0;  // GroupDone with hosts missing
    bool leased = false;
};

class GroupBook {
public:
    // `sources` are the scan's targets; `group_size` hosts per group.
    static common::Result<GroupBook> open(store::Store& store, const common::TargetSources& sources,
                                          std::size_t group_size);

    // Rebuilds the book from the store: every old lease is void (its worker belonged to a
    // previous coordinator); unfinished groups get their hosts back by replaying the cursor
    // (or from the journaled added targets); groups whose hosts are all committed are
    // completed. A group that does not match the targets any more fails the resume.
    common::Status restore(const store::Journal& journal);

    // Plans groups until `want` are queued or the targets are exhausted.
    common::Status plan(std::size_t want);

    // Leases the oldest queued group to `worker` until `deadline` (epoch seconds).
    // nullopt when nothing is queued.
    common::Result<std::optional<common::wire::Lease>> lease_next(std::uint64_t worker,
                                                                  double deadline);

    enum class Held { yes, done, no };
    // Whether `worker` holds group `gid` (yes), the group is finished (done), or neither.
    Held held_by(std::uint64_t gid, std::uint64_t worker) const;
    // Extends a lease `worker` holds. Fails only when the store does.
    common::Status renew(std::uint64_t gid, std::uint64_t worker, double deadline);

    // Puts a leased group back at the front of the queue (earlier targets first, so the
    // ordered output can advance). Returns false when it was not leased.
    bool requeue(std::uint64_t gid);
    // A lost worker: its leases are void in the store and requeued here. Returns their ids.
    common::Result<std::vector<std::uint64_t>> requeue_worker(std::uint64_t worker);
    // Leases past their deadline, requeued in the store and here (queue kept in id order).
    common::Result<std::vector<std::uint64_t>> requeue_expired(double now);

    enum class Commit { unknown_group, finished_group, not_in_group, duplicate, committed };
    // Commits a host's result (encoded bytes) once, whoever sends it; completes its group
    // when it was the last host.
    common::Result<Commit> commit(std::uint64_t gid, const common::wire::LeaseHost& host,
                                  std::string_view bytes);
    // Counts a group's hosts as done without results (benchmarks with sink workers).
    std::size_t mark_all_committed(std::uint64_t gid);

    enum class Done { unknown, not_holder, complete, requeued, failing };
    // `worker` says it finished `gid`. Hosts missing: requeued for someone else, or
    // `failing` once it failed `max_failures` times (a scan that cannot progress must end).
    common::Result<Done> group_done(std::uint64_t gid, std::uint64_t worker,
                                    std::uint32_t max_failures);

    // Completes `gid` when every host of it is committed. Returns whether it did.
    common::Result<bool> complete_if_done(std::uint64_t gid);

    // Every host below the frontier is committed: the ordered outputs may be written up to it.
    std::uint64_t frontier() const;

    std::vector<std::uint64_t> leases_of(std::uint64_t worker) const;
    const BookGroup* group(std::uint64_t gid) const;
    AddedTargets& added() { return added_; }

    bool scanning_done() const { return targets_done_ && groups_.empty() && !added_.has_pending(); }
    bool targets_done() const { return targets_done_; }
    std::uint64_t hosts_total() const { return hosts_total_; }
    std::uint64_t hosts_done() const { return hosts_done_; }
    std::uint64_t groups_done() const { return groups_done_; }
    std::size_t queued() const { return queue_.size(); }
    std::size_t leased() const { return groups_.size() - queue_.size(); }

    static std::string owner_of(std::uint64_t worker) { return "w" + std::to_string(worker); }

private:
    GroupBook(store::Store& store, common::TargetSources sources, common::TargetCursor cursor,
              std::size_t group_size)
        : store_(&store),
          sources_(std::move(sources)),
          cursor_(std::move(cursor)),
          added_(store),
          group_size_(group_size) {}
    common::Status add_group(const store::Group& g, std::string_view cursor_after, BookGroup m);

    store::Store* store_;
    common::TargetSources sources_;
    common::TargetCursor cursor_;
    AddedTargets added_;
    std::size_t group_size_;
    std::map<std::uint64_t, BookGroup> groups_;  // planned, not done
    std::deque<std::uint64_t> queue_;            // queued group ids, oldest first
    std::uint64_t next_group_id_ = 0;
    bool targets_done_ = false;
    std::uint64_t hosts_total_ = 0, hosts_done_ = 0, groups_done_ = 0;
};

}  // namespace coordinator
