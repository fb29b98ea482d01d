#pragma once
// The coordinator's durable state (RocksDB, one column family per kind of record): the scan
// journal, host groups and their leases, committed host results, the NSE registry and locks.
// A coordinator restarted on the same directory resumes from here. RocksDB types stay inside
// store.cc; callers see common::Status / common::Result.
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace coordinator::store {

using common::Result;
using common::Status;

// Scan-wide progress, one record per scan directory.
struct Journal {
    std::string options;  // scan options blob, opaque to the store (empty until set)
    std::string cursor;   // encoded TargetCursor position of the next host to plan
    std::uint64_t next_group_id = 0;
    bool prerule_done = false;
    bool postrule_done = false;
    bool targets_done = false;  // the cursor is exhausted: every host is in some group
};

enum class JournalFlag { prerule_done, postrule_done, targets_done };

enum class GroupState : std::uint8_t { queued = 0, leased = 1, done = 2 };

// A host group and its lease.
struct Group {
    std::uint64_t id = 0;
    GroupState state = GroupState::queued;
    std::string lease_owner;           // worker id while leased, else empty
    std::int64_t deadline_ms = 0;      // lease deadline (epoch ms) while leased, else 0
    std::uint32_t attempts = 0;        // how many times it was leased
    std::vector<std::uint64_t> hosts;  // host indexes (explicit form)
    // Range form, opaque to the store: encoded cursor positions [begin, end).
    std::string range_begin, range_end;
};

struct CommitOutcome {
    bool already_committed = false;  // the host had a result; the new bytes were dropped
};

class Store {
public:
    // Opens (or with create_if_missing creates) the store in `dir`, creating missing column
    // families. Only one process may hold a store open (RocksDB's LOCK file).
    // Errors: "store: cannot open 'DIR': <RocksDB reason>" (missing without
    // create_if_missing, locked by another process, corruption, I/O).
    [[nodiscard]] static Result<std::unique_ptr<Store>> open(const std::string& dir,
                                                             bool create_if_missing);

    // Flushes the WAL to disk and closes. Idempotent; every other call fails afterwards
    // ("store: closed"). The destructor closes too, ignoring errors.
    [[nodiscard]] Status close();
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // ---- journal
    // The journal as stored; defaults (empty, zero, false) for what was never written.
    [[nodiscard]] Result<Journal> journal() const;
    // Stores the scan options blob (synced: a restarted coordinator must see it).
    [[nodiscard]] Status set_options(std::string_view blob);
    // Sets one phase flag (synced).
    [[nodiscard]] Status set_flag(JournalFlag flag, bool value);
    // Atomically records a newly planned group (stored as queued, whatever g.state says),
    // the cursor position after its hosts, and next_group_id = max(current, g.id + 1).
    // So a crash never leaves hosts planned twice or lost. Errors: g.id already exists.
    [[nodiscard]] Status plan_group(const Group& g, std::string_view cursor_after);

    // ---- groups
    [[nodiscard]] Result<std::optional<Group>> group(std::uint64_t id) const;
    // All groups in id order, or only those in `only` state.
    [[nodiscard]] Result<std::vector<Group>> groups(
        std::optional<GroupState> only = std::nullopt) const;
    // Leases a queued group to `owner` until `deadline_ms`, counting the attempt.
    // Returns false (and changes nothing) when the group is leased or done.
    // Errors: unknown group, I/O.
    [[nodiscard]] Result<bool> lease_group(std::uint64_t id, std::string_view owner,
                                           std::int64_t deadline_ms);
    // Extends a lease; false when the group is no longer leased to `owner`.
    [[nodiscard]] Result<bool> renew_lease(std::uint64_t id, std::string_view owner,
                                           std::int64_t deadline_ms);
    // Marks a group done, whoever holds it (its hosts are committed exactly once anyway),
    // with a synced write: once this returns, the group and every host committed before it
    // survive a crash of the machine. Returns false when it was already done.
    [[nodiscard]] Result<bool> complete_group(std::uint64_t id);
    // Puts leased groups whose deadline is <= now_ms back in the queue (a restarted
    // coordinator passes INT64_MAX: every old lease is void). Returns how many.
    [[nodiscard]] Result<std::size_t> requeue_expired(std::int64_t now_ms);
    // Puts every group leased to `owner` (a lost worker) back in the queue.
    [[nodiscard]] Result<std::size_t> requeue_owner(std::string_view owner);

    // ---- results
    // Stores a host's encoded result once. A second commit of the same index reports
    // already_committed and leaves the first bytes in place (a re-dispatched group never
    // duplicates a host). Atomic against concurrent commits in this process; the WAL write
    // survives a crash of the process (not of the machine until the next synced write).
    [[nodiscard]] Result<CommitOutcome> commit_host(std::uint64_t index, std::string_view bytes);
    [[nodiscard]] Result<std::optional<std::string>> result(std::uint64_t index) const;
    [[nodiscard]] Result<std::uint64_t> count_results() const;
    // Calls fn(index, bytes) for every result with index >= from in ascending index order
    // until fn returns false. The bytes are valid only during the call; fn must not call back
    // into the store (the store is locked meanwhile). Errors: I/O or corruption.
    [[nodiscard]] Status for_each_result(
        const std::function<bool(std::uint64_t, std::string_view)>& fn,
        std::uint64_t from = 0) const;

    // ---- NSE registry (fleet-wide nmap.registry entries)
    // One atomic change: each op puts `bytes` at `key`, or (erase) removes `key` and every
    // key that starts with it. Ops apply in order.
    struct KvOp {
        bool erase = false;
        std::string key, bytes;
    };
    [[nodiscard]] Status write_registry(const std::vector<KvOp>& ops);
    [[nodiscard]] Status put_registry(std::string_view key, std::string_view bytes);
    [[nodiscard]] Result<std::optional<std::string>> registry(std::string_view key) const;
    [[nodiscard]] Status erase_registry(std::string_view key);
    // Entries whose key starts with `prefix`, in key order, until fn returns false; fn must
    // not call back into the store.
    [[nodiscard]] Status for_each_registry(
        std::string_view prefix,
        const std::function<bool(std::string_view, std::string_view)>& fn) const;

    // ---- the coordinator's own records (merged registry blob, phase results, script-added
    // targets): opaque bytes by key, same calls as the registry's.
    [[nodiscard]] Status put_record(std::string_view key, std::string_view bytes);
    [[nodiscard]] Result<std::optional<std::string>> record(std::string_view key) const;
    [[nodiscard]] Status erase_record(std::string_view key);
    [[nodiscard]] Status for_each_record(
        std::string_view prefix,
        const std::function<bool(std::string_view, std::string_view)>& fn) const;

    // ---- locks (nmap.mutex across the fleet; non-blocking, the lock service queues waiters)
    // Takes `name` for `owner`; true when taken or already held by `owner`.
    [[nodiscard]] Result<bool> try_lock(std::string_view name, std::string_view owner);
    // Releases `name`; false when `owner` does not hold it.
    [[nodiscard]] Result<bool> unlock(std::string_view name, std::string_view owner);
    // Releases every lock `owner` holds (a lost worker); returns how many.
    [[nodiscard]] Result<std::size_t> release_locks(std::string_view owner);

    // Syncs the WAL: everything written so far survives a machine crash.
    [[nodiscard]] Status sync();

    struct Impl;  // RocksDB handles; defined in store.cc

private:
    explicit Store(std::unique_ptr<Impl> impl);
    // The shared calls of the key-value column families (cf: store.cc's column family).
    Status put_kv(int cf, std::string_view key, std::string_view bytes);
    Result<std::optional<std::string>> get_kv(int cf, std::string_view key) const;
    Status erase_kv(int cf, std::string_view key);
    Status scan_kv(int cf, std::string_view prefix,
                   const std::function<bool(std::string_view, std::string_view)>& fn) const;
    std::unique_ptr<Impl> impl_;
    // Serialises read-modify-write sequences, and every call against close().
    mutable std::mutex mu_;
};

}  // namespace coordinator::store
