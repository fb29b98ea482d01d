#include "coordinator/shared_service.h"

#include <cstdlib>
#include <optional>

#include "common/wire/codec.h"
#include "common/wire/registry_parts.h"

namespace coordinator {

namespace wire = common::wire;

namespace {

// The registry lives in the store entry by entry: key "p" + the path's segments, value a
// table mark or a scalar; "version" holds the merge count. A segment is self-delimiting
// (an integer key: 'i' + 8 bytes, big-endian with the sign bit flipped, so items sort by
// number; a string key: 's' + the text with 0x00/0x01 escaped + 0x00), so the keys under
// a path are exactly those that start with its key.
constexpr char kPathPrefix = 'p';
constexpr const char* kVersionKey = "version";
constexpr char kTableMark = 't', kScalarMark = 'v';

using Path = nse::RegistryTree::Path;

std::string path_key(const Path& path) {
    std::string out(1, kPathPrefix);
    for (const auto& [indexed, text] : path) {
        if (auto i = common::item_index(common::Entry{indexed, text, {}})) {
            out.push_back('i');
            auto u = static_cast<std::uint64_t>(*i) ^ (std::uint64_t{1} << 63);
            for (int shift = 56; shift >= 0; shift -= 8)
                out.push_back(static_cast<char>((u >> shift) & 0xff));
            continue;
        }
        out.push_back(indexed ? 'n' : 's');  // 'n': an item key that is not a number
        for (char c : text) {
            if (c == '\0' || c == '\1') {
                out.push_back('\1');
                out.push_back(c == '\0' ? '\1' : '\2');
            } else {
                out.push_back(c);
            }
        }
        out.push_back('\0');
    }
    return out;
}

std::optional<Path> parse_path(std::string_view key) {
    if (key.empty() || key[0] != kPathPrefix) return std::nullopt;
    Path path;
    std::size_t i = 1;
    while (i < key.size()) {
        char kind = key[i++];
        if (kind == 'i') {
            if (key.size() - i < 8) return std::nullopt;
            std::uint64_t u = 0;
            for (int b = 0; b < 8; ++b)
                u = (u << 8) | static_cast<unsigned char>(key[i++]);
            path.emplace_back(
                true, std::to_string(static_cast<std::int64_t>(u ^ (std::uint64_t{1} << 63))));
            continue;
        }
        if (kind != 's' && kind != 'n') return std::nullopt;
        std::string text;
        for (;;) {
            if (i >= key.size()) return std::nullopt;
            char c = key[i++];
            if (c == '\0') break;
            if (c == '\1') {
                if (i >= key.size()) return std::nullopt;
                text.push_back(key[i++] == '\1' ? '\0' : '\1');
            } else {
                text.push_back(c);
            }
        }
        path.emplace_back(kind == 'n', std::move(text));
    }
    if (path.empty()) return std::nullopt;
    return path;
}

}  // namespace

std::string SharedService::refusal(std::uint64_t worker, std::uint32_t engines,
                                   const wire::SharedOp& op) {
    using K = wire::SharedOpKind;
    if (op.key.size() > nse::kMaxSharedKeyBytes)
        return "shared-state key of " + std::to_string(op.key.size()) + " bytes (at most " +
               std::to_string(nse::kMaxSharedKeyBytes) + ")";
    bool ownerless = op.op == K::MutexOwner || op.op == K::CondSignal ||
                     op.op == K::CondBroadcast || op.op == K::TargetCounts;
    if (ownerless) return "";
    std::uint64_t n = wire::engine_index(op.who.engine) & ~wire::kVersionTwin;
    if (wire::worker_of_engine(op.who.engine) != worker || n == 0 || n > engines)
        return "engine " + std::to_string(op.who.engine) + " is not one of this worker's";
    return "";
}

common::Status SharedService::restore() {
    nse::RegistryTree tree;
    std::string bad;
    auto st = store_.for_each_registry(
        std::string(1, kPathPrefix), [&](std::string_view key, std::string_view bytes) {
            auto path = parse_path(key);
            if (!path || bytes.empty() || (bytes[0] != kTableMark && bytes[0] != kScalarMark)) {
                bad = "unreadable registry entry";
                return false;
            }
            if (bytes[0] == kTableMark) {
                tree.set(*path, nullptr);
                return true;
            }
            auto v = wire::decode_value(bytes.substr(1));
            if (!v) {
                bad = "registry entry: " + v.message();
                return false;
            }
            tree.set(*path, &*v);
            return true;
        });
    if (!st) return st;
    if (!bad.empty()) return common::Status::error("store: " + bad);
    auto version = store_.registry(kVersionKey);
    if (!version) return version.status();
    std::uint64_t n = *version ? std::strtoull((*version)->c_str(), nullptr, 10) : 0;
    shared_.registry_restore(std::move(tree), n);
    return common::Status::ok();
}

// Writes what one merge changed, and the new version, in one batch: the cost of a delta is
// its own size, whatever the registry's.
common::Status SharedService::persist(const std::vector<nse::RegistryTree::Change>& changes) {
    if (changes.empty()) return common::Status::ok();
    using Change = nse::RegistryTree::Change;
    std::vector<store::Store::KvOp> ops;
    ops.reserve(changes.size() + 1);
    for (const auto& c : changes) {
        std::string key = path_key(c.path);
        if (c.kind == Change::erased || c.cleared) ops.push_back({true, key, {}});
        if (c.kind == Change::table)
            ops.push_back({false, key, std::string(1, kTableMark)});
        else if (c.kind == Change::scalar)
            ops.push_back({false, key, kScalarMark + wire::encode_value(c.value)});
    }
    ops.push_back({false, kVersionKey, std::to_string(shared_.registry_version())});
    return store_.write_registry(ops);
}

common::Status SharedService::merge(const common::Value& delta, std::uint64_t engine) {
    return persist(shared_.registry_merge_tracked(delta, engine));
}

common::Status SharedService::handle(std::uint64_t worker, const wire::SharedOp& m) {
    using K = wire::SharedOpKind;
    nse::Owner who{m.who.engine, m.who.id};
    Footprint foot{m.key, who.engine, who.id};
    std::uint64_t rid = m.request_id;
    wire::SharedReply reply;
    reply.request_id = rid;
    // Records (or forgets) a lock or wait of `who` for its worker and its lease.
    auto track = [&](std::set<Footprint> Prints::*which, bool add) {
        auto note = [&](Prints& p) {
            if (add)
                (p.*which).insert(foot);
            else
                (p.*which).erase(foot);
        };
        note(prints_[worker]);
        if (m.lease) note(lease_prints_[{m.lease, worker}]);
    };
    // Wakes run inside this LocalSharedState call or a later one; they only queue a message.
    auto notify = [this, worker, rid, lease = m.lease, foot, o = m.who](wire::SharedEvent ev) {
        auto it = prints_.find(worker);
        if (it == prints_.end()) return;  // the worker is gone
        if (ev == wire::SharedEvent::Woken) {
            it->second.waits.erase(foot);
            if (auto l = lease_prints_.find({lease, worker}); l != lease_prints_.end())
                l->second.waits.erase(foot);
        }
        send_(worker, wire::SharedNotify{rid, ev, std::get<0>(foot), o});
    };
    switch (m.op) {
    case K::MutexLock:
        track(&Prints::locks, true);
        shared_.mutex_lock(m.key, who, [notify] { notify(wire::SharedEvent::Granted); });
        return common::Status::ok();
    case K::MutexTrylock:
        reply.ok = shared_.mutex_trylock(m.key, who);
        if (reply.ok) track(&Prints::locks, true);
        break;
    case K::MutexUnlock:
        reply.ok = shared_.mutex_unlock(m.key, who);
        if (reply.ok) track(&Prints::locks, false);
        break;
    case K::MutexAbandon:
        shared_.mutex_abandon(m.key, who);
        track(&Prints::locks, false);
        return common::Status::ok();
    case K::MutexOwner:
        if (auto o = shared_.mutex_owner(m.key)) reply.owner = wire::Owner{o->engine, o->id};
        reply.ok = true;
        break;
    case K::CondWait:
        track(&Prints::waits, true);
        shared_.condvar_wait(m.key, who, [notify] { notify(wire::SharedEvent::Woken); });
        return common::Status::ok();
    case K::CondSignal: shared_.condvar_signal(m.key); return common::Status::ok();
    case K::CondBroadcast: shared_.condvar_broadcast(m.key); return common::Status::ok();
    case K::CondCancel:
        shared_.condvar_cancel(m.key, who);
        track(&Prints::waits, false);
        return common::Status::ok();
    case K::RegistryMerge:
        if (auto s = merge(m.value, who.engine); !s) return s;
        reply.ok = true;
        break;
    case K::TargetCounts:  // answered by the coordinator, which holds the added targets
        reply.ok = false;
        break;
    case K::RegistryChanges: registry_changes(m, reply); break;
    }
    send_(worker, reply);
    return common::Status::ok();
}

void SharedService::registry_changes(const wire::SharedOp& m, wire::SharedReply& reply) {
    const std::uint64_t engine = m.who.engine;
    if (m.part > 0) {
        auto it = parts_.find(engine);
        if (it == parts_.end() || m.part >= it->second.parts.size()) return;  // not ok
        reply.ok = true;
        reply.snapshot = true;
        reply.version = it->second.version;
        reply.part = m.part;
        reply.parts = static_cast<std::uint32_t>(it->second.parts.size());
        reply.value = std::move(it->second.parts[m.part]);
        if (m.part + 1 == reply.parts) parts_.erase(it);
        return;
    }
    parts_.erase(engine);
    auto c = shared_.registry_changes(m.since, engine);
    reply.version = c.version;
    reply.snapshot = c.snapshot;
    reply.value = std::move(c.full);
    reply.deltas = std::move(c.deltas);
    reply.ok = true;
    // Most answers (every lock acquisition asks) carry nothing and are not encoded twice.
    bool carries = reply.snapshot || !reply.deltas.empty();
    if (!carries || wire::encode(reply).size() <= wire::kDefaultMaxMessageBytes) return;
    // Too large for one message (a frame over the worker's cap would cost the connection):
    // the whole registry at this version, in parts the engine fetches one by one.
    auto parts = wire::split_delta(reply.snapshot ? reply.value : shared_.registry_snapshot(),
                                   wire::kRegistryPartBytes);
    reply.value = {};
    reply.deltas.clear();
    if (!parts) {  // a single value larger than a message: refused, with the version
        reply.ok = false;
        return;
    }
    reply.snapshot = true;
    reply.parts = static_cast<std::uint32_t>(parts->size());
    reply.value = std::move(parts->front());
    if (parts->size() > 1) parts_[engine] = Parts{reply.version, std::move(*parts)};
}

void SharedService::release(const Prints& p) {
    for (const auto& [key, eng, id] : p.locks)
        shared_.mutex_abandon(key, nse::Owner{eng, id});
    for (const auto& [key, eng, id] : p.waits)
        shared_.condvar_cancel(key, nse::Owner{eng, id});
}

void SharedService::drop_worker(std::uint64_t worker) {
    std::erase_if(parts_,
                  [&](const auto& kv) { return wire::worker_of_engine(kv.first) == worker; });
    std::erase_if(lease_prints_, [&](const auto& kv) { return kv.first.second == worker; });
    auto it = prints_.find(worker);
    if (it == prints_.end()) return;
    Prints p = std::move(it->second);
    prints_.erase(it);  // before the releases: wakes for this worker are dropped
    release(p);
}

void SharedService::drop_lease(std::uint64_t lease) {
    if (lease == 0) return;
    for (auto it = lease_prints_.lower_bound({lease, 0});
         it != lease_prints_.end() && it->first.first == lease;) {
        Prints p = std::move(it->second);
        if (auto w = prints_.find(it->first.second); w != prints_.end()) {
            for (const auto& f : p.locks)
                w->second.locks.erase(f);
            for (const auto& f : p.waits)
                w->second.waits.erase(f);
        }
        it = lease_prints_.erase(it);
        release(p);
    }
}

}  // namespace coordinator
