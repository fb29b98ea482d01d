#include "coordinator/shared_service.h"

#include "common/wire/codec.h"
#include "coordinator/records.h"

namespace coordinator {

namespace wire = common::wire;

namespace {
// The merged nmap.registry, as a RunPhase record (its registry field).
constexpr const char* kRegistryRecord = "registry";
}  // namespace

std::string SharedService::refusal(std::uint64_t worker, std::uint32_t engines,
                                   const wire::SharedOp& op) {
    using K = wire::SharedOpKind;
    if (op.key.size() > nse::kMaxSharedKeyBytes)
        return "shared-state key of " + std::to_string(op.key.size()) + " bytes (at most " +
               std::to_string(nse::kMaxSharedKeyBytes) + ")";
    bool ownerless = op.op == K::MutexOwner || op.op == K::CondSignal || op.op == K::CondBroadcast;
    if (ownerless) return "";
    std::uint64_t n = wire::engine_index(op.who.engine);
    if (wire::worker_of_engine(op.who.engine) != worker || n == 0 || n > engines)
        return "engine " + std::to_string(op.who.engine) + " is not one of this worker's";
    return "";
}

common::Status SharedService::restore() {
    wire::RunPhase saved;
    if (auto s = read_record(store_, kRegistryRecord, saved); !s) return s;
    shared_.registry_restore(saved.registry, 0);
    return common::Status::ok();
}

common::Status SharedService::persist() {
    wire::RunPhase holder;
    holder.registry = shared_.registry_snapshot();
    return store_.put_record(kRegistryRecord, wire::encode(holder));
}

common::Status SharedService::merge(const common::Value& delta, std::uint64_t engine) {
    shared_.registry_merge(delta, engine);
    return persist();
}

common::Status SharedService::handle(std::uint64_t worker, const wire::SharedOp& m) {
    using K = wire::SharedOpKind;
    nse::Owner who{m.who.engine, m.who.id};
    Footprint foot{m.key, who.engine, who.id};
    auto& prints = prints_[worker];
    std::uint64_t rid = m.request_id;
    wire::SharedReply reply;
    reply.request_id = rid;
    // Wakes run inside this LocalSharedState call or a later one; they only queue a message.
    auto notify = [this, worker, rid, key = m.key, o = m.who](wire::SharedEvent ev) {
        auto it = prints_.find(worker);
        if (it == prints_.end()) return;  // the worker is gone
        if (ev == wire::SharedEvent::Woken) it->second.waits.erase({key, o.engine, o.id});
        send_(worker, wire::SharedNotify{rid, ev, key, o});
    };
    switch (m.op) {
    case K::MutexLock:
        prints.locks.insert(foot);
        shared_.mutex_lock(m.key, who, [notify] { notify(wire::SharedEvent::Granted); });
        return common::Status::ok();
    case K::MutexTrylock:
        reply.ok = shared_.mutex_trylock(m.key, who);
        if (reply.ok) prints.locks.insert(foot);
        break;
    case K::MutexUnlock:
        reply.ok = shared_.mutex_unlock(m.key, who);
        if (reply.ok) prints.locks.erase(foot);
        break;
    case K::MutexAbandon:
        shared_.mutex_abandon(m.key, who);
        prints.locks.erase(foot);
        return common::Status::ok();
    case K::MutexOwner:
        if (auto o = shared_.mutex_owner(m.key)) reply.owner = wire::Owner{o->engine, o->id};
        reply.ok = true;
        break;
    case K::CondWait:
        prints.waits.insert(foot);
        shared_.condvar_wait(m.key, who, [notify] { notify(wire::SharedEvent::Woken); });
        return common::Status::ok();
    case K::CondSignal: shared_.condvar_signal(m.key); return common::Status::ok();
    case K::CondBroadcast: shared_.condvar_broadcast(m.key); return common::Status::ok();
    case K::CondCancel:
        shared_.condvar_cancel(m.key, who);
        prints.waits.erase(foot);
        return common::Status::ok();
    case K::RegistryMerge:
        if (auto s = merge(m.value, who.engine); !s) return s;
        reply.ok = true;
        break;
    case K::RegistryChanges: {
        auto c = shared_.registry_changes(m.since, who.engine);
        reply.version = c.version;
        reply.snapshot = c.snapshot;
        reply.value = std::move(c.full);
        reply.deltas = std::move(c.deltas);
        reply.ok = true;
        break;
    }
    }
    send_(worker, reply);
    return common::Status::ok();
}

void SharedService::drop_worker(std::uint64_t worker) {
    auto it = prints_.find(worker);
    if (it == prints_.end()) return;
    Prints p = std::move(it->second);
    prints_.erase(it);  // before the releases: wakes for this worker are dropped
    for (const auto& [key, eng, id] : p.locks)
        shared_.mutex_abandon(key, nse::Owner{eng, id});
    for (const auto& [key, eng, id] : p.waits)
        shared_.condvar_cancel(key, nse::Owner{eng, id});
}

}  // namespace coordinator
