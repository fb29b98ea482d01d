#include "coordinator/store/store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstring>

namespace coordinator::store {

namespace {

// Column families; "default" is RocksDB's own and stays empty.
enum Cf { kDefault, kJournal, kGroups, kResults, kRegistry, kLocks, kRecords, kCfCount };
const char* const kCfNames[kCfCount] = {"default",  "journal", "groups", "results",
                                        "registry", "locks",   "records"};

// Journal keys.
constexpr const char* kOptions = "options";
constexpr const char* kCursor = "cursor";
constexpr const char* kNextGroup = "next_group_id";
const char* flag_key(JournalFlag f) {
    switch (f) {
    case JournalFlag::prerule_done: return "prerule_done";
    case JournalFlag::postrule_done: return "postrule_done";
    case JournalFlag::targets_done: return "targets_done";
    }
    return "?";
}

Status from_rocks(const rocksdb::Status& s, const std::string& what) {
    if (s.ok()) return Status::ok();
    return Status::error("store: " + what + ": " + s.ToString());
}

// Big-endian so that RocksDB's bytewise order is numeric order.
std::string be64(std::uint64_t v) {
    std::string k(8, '\0');
    for (int i = 7; i >= 0; --i, v >>= 8)
        k[i] = static_cast<char>(v & 0xff);
    return k;
}
std::uint64_t from_be64(std::string_view k) {
    std::uint64_t v = 0;
    for (unsigned char c : k.substr(0, 8))
        v = v << 8 | c;
    return v;
}

// Group record: version, state, attempts, deadline, owner, hosts, range.
void put_u64(std::string& out, std::uint64_t v) { out += be64(v); }
void put_str(std::string& out, std::string_view s) {
    put_u64(out, s.size());
    out.append(s);
}

std::string encode_group(const Group& g) {
    std::string out;
    out += char(1);
    out += char(static_cast<std::uint8_t>(g.state));
    put_u64(out, g.attempts);
    put_u64(out, static_cast<std::uint64_t>(g.deadline_ms));
    put_str(out, g.lease_owner);
    put_u64(out, g.hosts.size());
    for (auto h : g.hosts)
        put_u64(out, h);
    put_str(out, g.range_begin);
    put_str(out, g.range_end);
    return out;
}

struct Reader {
    std::string_view in;
    bool ok = true;
    std::uint64_t u64() {
        if (in.size() < 8) return ok = false, 0;
        auto v = from_be64(in);
        in.remove_prefix(8);
        return v;
    }
    std::string str() {
        auto n = u64();
        if (!ok || n > in.size()) return ok = false, std::string();
        std::string s(in.substr(0, n));
        in.remove_prefix(n);
        return s;
    }
};

Result<Group> decode_group(std::uint64_t id, std::string_view bytes) {
    auto corrupt = Status::error("store: corrupt group record " + std::to_string(id));
    if (bytes.size() < 2 || bytes[0] != 1 || static_cast<std::uint8_t>(bytes[1]) > 2)
        return corrupt;
    Group g;
    g.id = id;
    g.state = static_cast<GroupState>(bytes[1]);
    Reader r{bytes.substr(2)};
    g.attempts = static_cast<std::uint32_t>(r.u64());
    g.deadline_ms = static_cast<std::int64_t>(r.u64());
    g.lease_owner = r.str();
    auto n = r.u64();
    if (!r.ok || n > r.in.size() / 8) return corrupt;
    g.hosts.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i)
        g.hosts.push_back(r.u64());
    g.range_begin = r.str();
    g.range_end = r.str();
    if (!r.ok || !r.in.empty()) return corrupt;
    return g;
}

}  // namespace

struct Store::Impl {
    std::string dir;
    rocksdb::DB* db = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;  // all opened families
    rocksdb::ColumnFamilyHandle* cf[kCfCount] = {};

    ~Impl() { (void)shutdown(); }

    Status shutdown() {
        if (!db) return Status::ok();
        rocksdb::Status st = db->FlushWAL(true);
        for (auto* h : handles) {
            auto s2 = db->DestroyColumnFamilyHandle(h);
            if (st.ok()) st = s2;
        }
        handles.clear();
        auto s3 = db->Close();
        if (st.ok()) st = s3;
        delete db;
        db = nullptr;
        return from_rocks(st, "close '" + dir + "'");
    }

    Status live() const { return db ? Status::ok() : Status::error("store: closed"); }

    Result<std::optional<std::string>> get(Cf c, std::string_view key) const {
        if (auto st = live(); !st) return st;
        std::string v;
        auto s = db->Get(rocksdb::ReadOptions(), cf[c], rocksdb::Slice(key.data(), key.size()), &v);
        if (s.IsNotFound()) return std::optional<std::string>();
        if (!s.ok()) return from_rocks(s, std::string("read ") + kCfNames[c]);
        return std::optional<std::string>(std::move(v));
    }

    Status write(rocksdb::WriteBatch& b, bool sync, const std::string& what) {
        if (auto st = live(); !st) return st;
        rocksdb::WriteOptions wo;
        wo.sync = sync;
        return from_rocks(db->Write(wo, &b), what);
    }

    Result<std::optional<Group>> get_group(std::uint64_t id) const {
        auto v = get(kGroups, be64(id));
        if (!v) return v.status();
        if (!*v) return std::optional<Group>();
        auto g = decode_group(id, **v);
        if (!g) return g.status();
        return std::optional<Group>(std::move(*g));
    }

    Status put_group(const Group& g, bool sync) {
        rocksdb::WriteBatch b;
        b.Put(cf[kGroups], be64(g.id), encode_group(g));
        return write(b, sync, "write group");
    }

    // Calls fn(key, value) over a column family from `start` while keys begin with
    // `prefix`, until fn returns false.
    template <typename F>
    Status scan(Cf c, std::string_view start, std::string_view prefix, F&& fn) const {
        if (auto st = live(); !st) return st;
        std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), cf[c]));
        for (it->Seek(rocksdb::Slice(start.data(), start.size())); it->Valid(); it->Next()) {
            auto k = it->key();
            std::string_view key(k.data(), k.size());
            if (key.substr(0, prefix.size()) != prefix) break;
            auto v = it->value();
            if (!fn(key, std::string_view(v.data(), v.size()))) break;
        }
        return from_rocks(it->status(), std::string("scan ") + kCfNames[c]);
    }

    // Every group matching `pred`, in id order.
    template <typename P>
    Result<std::vector<Group>> select_groups(P&& pred) const {
        std::vector<Group> out;
        Status bad = Status::ok();
        auto st = scan(kGroups, {}, {}, [&](std::string_view k, std::string_view v) {
            auto g = decode_group(from_be64(k), v);
            if (!g) {
                bad = g.status();
                return false;
            }
            if (pred(*g)) out.push_back(std::move(*g));
            return true;
        });
        if (!st) return st;
        if (!bad) return bad;
        return out;
    }
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Store::~Store() {
    std::lock_guard lk(mu_);
    (void)impl_->shutdown();  // destructors never throw nor report
}

Result<std::unique_ptr<Store>> Store::open(const std::string& dir, bool create_if_missing) {
    rocksdb::Options opts;
    opts.create_if_missing = create_if_missing;
    opts.create_missing_column_families = true;
    // Bounds the coordinator's memory: the default 64 MB write buffer per column family
    // dominated planning huge ranges.
    opts.db_write_buffer_size = 32 << 20;
    opts.keep_log_file_num = 3;  // RocksDB's own info logs in the state directory
    // The WAL stays on (RocksDB's default); commits sync where the contract says so.

    // Open every family the directory already has (a newer version may have added some).
    std::vector<std::string> names(kCfNames, kCfNames + kCfCount);
    std::vector<std::string> existing;
    if (rocksdb::DB::ListColumnFamilies(opts, dir, &existing).ok())
        for (auto& n : existing)
            if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    std::vector<rocksdb::ColumnFamilyDescriptor> descs;
    for (auto& n : names)
        descs.emplace_back(n, rocksdb::ColumnFamilyOptions(opts));

    auto impl = std::make_unique<Impl>();
    impl->dir = dir;
    auto s = rocksdb::DB::Open(rocksdb::DBOptions(opts), dir, descs, &impl->handles, &impl->db);
    if (!s.ok()) {
        impl->db = nullptr;
        return from_rocks(s, "cannot open '" + dir + "'");
    }
    for (int i = 0; i < kCfCount; ++i)
        impl->cf[i] = impl->handles[i];
    return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Status Store::close() {
    std::lock_guard lk(mu_);
    return impl_->shutdown();
}

Status Store::sync() {
    std::lock_guard lk(mu_);
    if (auto st = impl_->live(); !st) return st;
    return from_rocks(impl_->db->FlushWAL(true), "sync");
}

// ---- journal

Result<Journal> Store::journal() const {
    std::lock_guard lk(mu_);
    Journal j;
    auto st = impl_->scan(kJournal, {}, {}, [&](std::string_view k, std::string_view v) {
        if (k == kOptions)
            j.options = v;
        else if (k == kCursor)
            j.cursor = v;
        else if (k == kNextGroup)
            j.next_group_id = from_be64(v);
        else if (k == flag_key(JournalFlag::prerule_done))
            j.prerule_done = v == "1";
        else if (k == flag_key(JournalFlag::postrule_done))
            j.postrule_done = v == "1";
        else if (k == flag_key(JournalFlag::targets_done))
            j.targets_done = v == "1";
        return true;
    });
    if (!st) return st;
    return j;
}

Status Store::set_options(std::string_view blob) {
    std::lock_guard lk(mu_);
    rocksdb::WriteBatch b;
    b.Put(impl_->cf[kJournal], kOptions, rocksdb::Slice(blob.data(), blob.size()));
    return impl_->write(b, true, "write journal");
}

Status Store::set_flag(JournalFlag flag, bool value) {
    std::lock_guard lk(mu_);
    rocksdb::WriteBatch b;
    b.Put(impl_->cf[kJournal], flag_key(flag), value ? "1" : "0");
    return impl_->write(b, true, "write journal");
}

Status Store::plan_group(const Group& g, std::string_view cursor_after) {
    std::lock_guard lk(mu_);
    auto old = impl_->get_group(g.id);
    if (!old) return old.status();
    if (*old) return Status::error("store: group " + std::to_string(g.id) + " already exists");
    auto next = impl_->get(kJournal, kNextGroup);
    if (!next) return next.status();
    std::uint64_t next_id = std::max(*next ? from_be64(**next) : 0, g.id + 1);
    Group q = g;
    q.state = GroupState::queued;
    q.lease_owner.clear();
    q.deadline_ms = 0;
    rocksdb::WriteBatch b;
    b.Put(impl_->cf[kGroups], be64(q.id), encode_group(q));
    b.Put(impl_->cf[kJournal], kCursor, rocksdb::Slice(cursor_after.data(), cursor_after.size()));
    b.Put(impl_->cf[kJournal], kNextGroup, be64(next_id));
    return impl_->write(b, false, "plan group");
}

// ---- groups

Result<std::optional<Group>> Store::group(std::uint64_t id) const {
    std::lock_guard lk(mu_);
    return impl_->get_group(id);
}

Result<std::vector<Group>> Store::groups(std::optional<GroupState> only) const {
    std::lock_guard lk(mu_);
    return impl_->select_groups([&](const Group& g) { return !only || g.state == *only; });
}

Result<bool> Store::lease_group(std::uint64_t id, std::string_view owner,
                                std::int64_t deadline_ms) {
    std::lock_guard lk(mu_);
    auto g = impl_->get_group(id);
    if (!g) return g.status();
    if (!*g) return Status::error("store: no group " + std::to_string(id));
    if ((*g)->state != GroupState::queued) return false;
    Group& x = **g;
    x.state = GroupState::leased;
    x.lease_owner = owner;
    x.deadline_ms = deadline_ms;
    ++x.attempts;
    if (auto st = impl_->put_group(x, false); !st) return st;
    return true;
}

Result<bool> Store::renew_lease(std::uint64_t id, std::string_view owner,
                                std::int64_t deadline_ms) {
    std::lock_guard lk(mu_);
    auto g = impl_->get_group(id);
    if (!g) return g.status();
    if (!*g) return Status::error("store: no group " + std::to_string(id));
    Group& x = **g;
    if (x.state != GroupState::leased || x.lease_owner != owner) return false;
    x.deadline_ms = deadline_ms;
    if (auto st = impl_->put_group(x, false); !st) return st;
    return true;
}

Result<bool> Store::complete_group(std::uint64_t id) {
    std::lock_guard lk(mu_);
    auto g = impl_->get_group(id);
    if (!g) return g.status();
    if (!*g) return Status::error("store: no group " + std::to_string(id));
    Group& x = **g;
    if (x.state == GroupState::done) return false;
    x.state = GroupState::done;
    x.lease_owner.clear();
    x.deadline_ms = 0;
    // Synced: syncing the WAL also makes every earlier (unsynced) host commit durable.
    if (auto st = impl_->put_group(x, true); !st) return st;
    return true;
}

namespace {

template <typename P>
Result<std::size_t> requeue_if(Store::Impl& impl, P&& pred) {
    auto gs = impl.select_groups(
        [&](const Group& g) { return g.state == GroupState::leased && pred(g); });
    if (!gs) return gs.status();
    if (gs->empty()) return std::size_t(0);
    rocksdb::WriteBatch b;
    for (auto& g : *gs) {
        g.state = GroupState::queued;
        g.lease_owner.clear();
        g.deadline_ms = 0;
        b.Put(impl.cf[kGroups], be64(g.id), encode_group(g));
    }
    if (auto st = impl.write(b, false, "requeue groups"); !st) return st;
    return gs->size();
}

}  // namespace

Result<std::size_t> Store::requeue_expired(std::int64_t now_ms) {
    std::lock_guard lk(mu_);
    return requeue_if(*impl_, [&](const Group& g) { return g.deadline_ms <= now_ms; });
}

Result<std::size_t> Store::requeue_owner(std::string_view owner) {
    std::lock_guard lk(mu_);
    return requeue_if(*impl_, [&](const Group& g) { return g.lease_owner == owner; });
}

// ---- results

Result<CommitOutcome> Store::commit_host(std::uint64_t index, std::string_view bytes) {
    // The mutex makes check-then-put atomic: the store is the only writer (RocksDB's LOCK
    // file keeps other processes out).
    std::lock_guard lk(mu_);
    auto key = be64(index);
    auto old = impl_->get(kResults, key);
    if (!old) return old.status();
    if (*old) return CommitOutcome{true};
    rocksdb::WriteBatch b;
    b.Put(impl_->cf[kResults], key, rocksdb::Slice(bytes.data(), bytes.size()));
    if (auto st = impl_->write(b, false, "commit host"); !st) return st;
    return CommitOutcome{false};
}

Result<std::optional<std::string>> Store::result(std::uint64_t index) const {
    std::lock_guard lk(mu_);
    return impl_->get(kResults, be64(index));
}

Result<std::uint64_t> Store::count_results() const {
    std::lock_guard lk(mu_);
    std::uint64_t n = 0;
    auto st = impl_->scan(kResults, {}, {}, [&](std::string_view, std::string_view) {
        ++n;
        return true;
    });
    if (!st) return st;
    return n;
}

Status Store::for_each_result(const std::function<bool(std::uint64_t, std::string_view)>& fn,
                              std::uint64_t from) const {
    std::lock_guard lk(mu_);
    return impl_->scan(kResults, be64(from), {},
                       [&](std::string_view k, std::string_view v) { return fn(from_be64(k), v); });
}

// ---- key-value column families: the NSE registry and the coordinator's records

Status Store::put_kv(int cf, std::string_view key, std::string_view bytes) {
    rocksdb::WriteBatch b;
    b.Put(impl_->cf[cf], rocksdb::Slice(key.data(), key.size()),
          rocksdb::Slice(bytes.data(), bytes.size()));
    std::lock_guard lk(mu_);
    return impl_->write(b, false, std::string("write ") + kCfNames[cf]);
}

Result<std::optional<std::string>> Store::get_kv(int cf, std::string_view key) const {
    std::lock_guard lk(mu_);
    return impl_->get(static_cast<Cf>(cf), key);
}

Status Store::erase_kv(int cf, std::string_view key) {
    rocksdb::WriteBatch b;
    b.Delete(impl_->cf[cf], rocksdb::Slice(key.data(), key.size()));
    std::lock_guard lk(mu_);
    return impl_->write(b, false, std::string("erase ") + kCfNames[cf]);
}

Status Store::scan_kv(int cf, std::string_view prefix,
                      const std::function<bool(std::string_view, std::string_view)>& fn) const {
    std::lock_guard lk(mu_);
    return impl_->scan(static_cast<Cf>(cf), prefix, prefix, fn);
}

namespace {

// The first key after every key that starts with `prefix` ("" when there is none).
std::string prefix_end(std::string prefix) {
    while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xff)
        prefix.pop_back();
    if (!prefix.empty()) prefix.back() = static_cast<char>(prefix.back() + 1);
    return prefix;
}

}  // namespace

Status Store::write_registry(const std::vector<KvOp>& ops) {
    std::lock_guard lk(mu_);
    if (auto st = impl_->live(); !st) return st;
    rocksdb::WriteBatch b;
    auto* cf = impl_->cf[kRegistry];
    for (const auto& op : ops) {
        if (!op.erase) {
            b.Put(cf, op.key, op.bytes);
            continue;
        }
        b.Delete(cf, op.key);
        std::string end = prefix_end(op.key);
        if (!end.empty()) b.DeleteRange(cf, op.key, end);
    }
    return impl_->write(b, false, "write registry");
}

Status Store::put_registry(std::string_view key, std::string_view bytes) {
    return put_kv(kRegistry, key, bytes);
}
Result<std::optional<std::string>> Store::registry(std::string_view key) const {
    return get_kv(kRegistry, key);
}
Status Store::erase_registry(std::string_view key) { return erase_kv(kRegistry, key); }
Status Store::for_each_registry(
    std::string_view prefix,
    const std::function<bool(std::string_view, std::string_view)>& fn) const {
    return scan_kv(kRegistry, prefix, fn);
}

Status Store::put_record(std::string_view key, std::string_view bytes) {
    return put_kv(kRecords, key, bytes);
}
Result<std::optional<std::string>> Store::record(std::string_view key) const {
    return get_kv(kRecords, key);
}
Status Store::erase_record(std::string_view key) { return erase_kv(kRecords, key); }
Status Store::for_each_record(
    std::string_view prefix,
    const std::function<bool(std::string_view, std::string_view)>& fn) const {
    return scan_kv(kRecords, prefix, fn);
}

// ---- locks: name -> owner

Result<bool> Store::try_lock(std::string_view name, std::string_view owner) {
    std::lock_guard lk(mu_);
    auto cur = impl_->get(kLocks, name);
    if (!cur) return cur.status();
    if (*cur) return **cur == owner;
    rocksdb::WriteBatch b;
    b.Put(impl_->cf[kLocks], rocksdb::Slice(name.data(), name.size()),
          rocksdb::Slice(owner.data(), owner.size()));
    if (auto st = impl_->write(b, false, "take lock"); !st) return st;
    return true;
}

Result<bool> Store::unlock(std::string_view name, std::string_view owner) {
    std::lock_guard lk(mu_);
    auto cur = impl_->get(kLocks, name);
    if (!cur) return cur.status();
    if (!*cur || **cur != owner) return false;
    rocksdb::WriteBatch b;
    b.Delete(impl_->cf[kLocks], rocksdb::Slice(name.data(), name.size()));
    if (auto st = impl_->write(b, false, "release lock"); !st) return st;
    return true;
}

Result<std::size_t> Store::release_locks(std::string_view owner) {
    std::lock_guard lk(mu_);
    rocksdb::WriteBatch b;
    std::size_t n = 0;
    auto st = impl_->scan(kLocks, {}, {}, [&](std::string_view k, std::string_view v) {
        if (v == owner) {
            b.Delete(impl_->cf[kLocks], rocksdb::Slice(k.data(), k.size()));
            ++n;
        }
        return true;
    });
    if (!st) return st;
    if (n == 0) return n;
    if (auto w = impl_->write(b, false, "release locks"); !w) return w;
    return n;
}

}  // namespace coordinator::store
