#pragma once
// Hosts added by scripts (nmap.add_targets), as the coordinator journals them: each one a
// typed record in the store ("added/<index hex>" -> wire::AddTargets holding that one host)
// the moment it arrives, so a resumed scan scans it too. Added hosts get indexes from
// kBase on: after every command-line target in the output, never colliding with the
// cursor's indexes. Not thread-safe (the coordinator's loop owns it).
#include <cstdint>
#include <deque>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/wire/messages.h"
#include "coordinator/store/store.h"

namespace coordinator {

class AddedTargets {
public:
    static constexpr std::uint64_t kBase = std::uint64_t(1) << 48;
    static constexpr std::uint64_t kMax = std::uint64_t(1) << 20;  // per scan: bounds memory

    explicit AddedTargets(store::Store& store) : store_(store) {}

    static bool is_added(std::uint64_t index) { return index >= kBase; }

    // Loads every journaled addition as pending (in index order). A record that cannot be
    // read fails the resume with its key.
    common::Status restore();

    struct AddOutcome {
        std::size_t fresh = 0;  // new hosts journaled and pending
        bool capped = false;    // kMax reached: the rest were ignored
    };
    // Journals the addresses not seen before in this scan (empty or over-long addresses are
    // ignored; names are cut to 256 bytes). Fails only when the store does.
    common::Result<AddOutcome> add(const std::vector<common::wire::LeaseHost>& targets);

    bool has_pending() const { return !pending_.empty(); }
    std::uint64_t count() const { return count_; }  // hosts added over the scan
    std::size_t pending() const { return pending_.size(); }
    std::uint64_t first_pending() const { return pending_.front().index; }
    // Takes up to `n` pending hosts, oldest first, for a new group.
    std::vector<common::wire::LeaseHost> take(std::size_t n);
    // Finds a pending host by index (restore: groups planned before the restart get their
    // hosts from here). nullptr when it is not pending.
    const common::wire::LeaseHost* find(std::uint64_t index) const;
    // Drops the pending hosts below `index` (restore: they are in groups already).
    void drop_below(std::uint64_t index);

private:
    store::Store& store_;
    std::deque<common::wire::LeaseHost> pending_;  // index order
    std::set<std::string> seen_;
    std::uint64_t count_ = 0;
};

}  // namespace coordinator
