#include "worker/fleet/fleet_shared_state.h"

#include <utility>
#include <vector>

#include "common/wire/codec.h"
#include "common/wire/registry_parts.h"

namespace worker::fleet {

namespace wire = common::wire;
using Kind = wire::SharedOpKind;

namespace {

wire::Owner to_wire(nse::Owner o) { return {o.engine, o.id}; }
bool same(const wire::Owner& a, nse::Owner b) { return a.engine == b.engine && a.id == b.id; }

}  // namespace

FleetSharedState::FleetSharedState(Send send, Log log, std::chrono::milliseconds reply_timeout)
    : send_(std::move(send)), log_(std::move(log)), timeout_(reply_timeout) {}

wire::SharedOp FleetSharedState::make(Kind op, const std::string& key, nse::Owner who) {
    wire::SharedOp m;
    m.op = op;
    m.key = key;
    m.who = to_wire(who);
    std::lock_guard lk(mu_);
    if (auto it = leases_.find(who.engine); it != leases_.end()) m.lease = it->second;
    m.who.engine = to_wire_engine(who.engine);
    return m;
}

void FleetSharedState::set_worker_id(std::uint64_t id) {
    std::lock_guard lk(mu_);
    if (first_worker_ == 0) first_worker_ = id;
    worker_ = id;
}

std::uint64_t FleetSharedState::to_wire_engine(std::uint64_t e) const {
    if (first_worker_ == worker_ || wire::worker_of_engine(e) != first_worker_) return e;
    return (worker_ << wire::kEngineBits) | wire::engine_index(e);
}

std::uint64_t FleetSharedState::from_wire_engine(std::uint64_t e) const {
    if (first_worker_ == worker_ || wire::worker_of_engine(e) != worker_) return e;
    return (first_worker_ << wire::kEngineBits) | wire::engine_index(e);
}

void FleetSharedState::set_lease(std::uint64_t engine, std::uint64_t lease) {
    std::lock_guard lk(mu_);
    for (std::uint64_t e : {engine, wire::version_twin(engine)}) {  // the twin runs the group too
        if (lease)
            leases_[e] = lease;
        else
            leases_.erase(e);
    }
}

void FleetSharedState::post(wire::SharedOp op) {
    {
        std::lock_guard lk(mu_);
        if (down_) return;
        op.request_id = ++next_id_;
        // Only RegistryMerge of the fire-and-forget ops is answered; its ack is expected.
        if (op.op == Kind::RegistryMerge) acks_.insert(op.request_id);
    }
    send_(std::move(op));
}

std::optional<wire::SharedReply> FleetSharedState::call(wire::SharedOp op) {
    Call c;
    std::unique_lock lk(mu_);
    if (down_) return std::nullopt;
    op.request_id = ++next_id_;
    const std::uint64_t id = op.request_id;
    const Kind kind = op.op;
    calls_[id] = &c;
    lk.unlock();
    bool queued = send_(std::move(op));
    lk.lock();
    if (queued) cv_.wait_for(lk, timeout_, [&] { return c.done || down_; });
    calls_.erase(id);
    if (c.done) return std::move(c.reply);
    if (queued && !down_) {
        ++timeouts_;
        lk.unlock();
        log_("shared-state request " + std::to_string(id) + " (op " +
             std::to_string(static_cast<int>(kind)) + ") got no reply within " +
             std::to_string(timeout_.count()) + " ms");
    }
    return std::nullopt;
}

void FleetSharedState::queue_wake(wire::SharedOp op, nse::Owner who, Wake wake) {
    {
        std::lock_guard lk(mu_);
        if (down_) return;
        op.request_id = ++next_id_;
        wakes_[op.request_id] = WakeEntry{op.op, op.key, who, std::move(wake)};
    }
    // Stored before sending: the notify may come back before send_ returns.
    send_(std::move(op));
}

void FleetSharedState::forget(Kind op, const std::string& key, nse::Owner who) {
    std::vector<Wake> dropped;  // destroyed outside the lock
    std::lock_guard lk(mu_);
    for (auto it = wakes_.begin(); it != wakes_.end();) {
        if (it->second.op == op && it->second.key == key && it->second.who == who) {
            dropped.push_back(std::move(it->second.wake));
            it = wakes_.erase(it);
        } else {
            ++it;
        }
    }
}

void FleetSharedState::mutex_lock(const std::string& key, nse::Owner who, Wake granted) {
    queue_wake(make(Kind::MutexLock, key, who), who, std::move(granted));
}

bool FleetSharedState::mutex_trylock(const std::string& key, nse::Owner who) {
    auto r = call(make(Kind::MutexTrylock, key, who));
    if (r) return r->ok;
    post(make(Kind::MutexAbandon, key, who));
    return false;
}

bool FleetSharedState::mutex_unlock(const std::string& key, nse::Owner who) {
    auto r = call(make(Kind::MutexUnlock, key, who));
    if (r) return r->ok;
    post(make(Kind::MutexAbandon, key, who));
    return true;
}

std::optional<nse::Owner> FleetSharedState::mutex_owner(const std::string& key) {
    auto r = call(make(Kind::MutexOwner, key, {}));
    if (!r || !r->owner) return std::nullopt;
    std::lock_guard lk(mu_);
    return nse::Owner{from_wire_engine(r->owner->engine), r->owner->id};
}

void FleetSharedState::mutex_abandon(const std::string& key, nse::Owner who) {
    forget(Kind::MutexLock, key, who);
    post(make(Kind::MutexAbandon, key, who));
}

void FleetSharedState::condvar_wait(const std::string& key, nse::Owner who, Wake woken) {
    queue_wake(make(Kind::CondWait, key, who), who, std::move(woken));
}

void FleetSharedState::condvar_signal(const std::string& key) {
    post(make(Kind::CondSignal, key, {}));
}

void FleetSharedState::condvar_broadcast(const std::string& key) {
    post(make(Kind::CondBroadcast, key, {}));
}

void FleetSharedState::condvar_cancel(const std::string& key, nse::Owner who) {
    forget(Kind::CondWait, key, who);
    post(make(Kind::CondCancel, key, who));
}

void FleetSharedState::registry_merge(const common::Value& delta, std::uint64_t engine) {
    auto op = make(Kind::RegistryMerge, "", {engine, 0});
    op.value = delta;
    // A frame over the peer's cap would cost the connection: a large delta goes in parts
    // (each its own merge, in order on this connection).
    if (wire::encode(op).size() <= wire::kDefaultMaxMessageBytes) {
        post(std::move(op));
        return;
    }
    auto parts = wire::split_delta(delta, wire::kRegistryPartBytes);
    if (!parts) {
        log_("registry change not shared with the fleet: " + parts.message());
        return;
    }
    for (auto& p : *parts) {
        auto part = make(Kind::RegistryMerge, "", {engine, 0});
        part.value = std::move(p);
        post(std::move(part));
    }
}

nse::RegistryChanges FleetSharedState::registry_changes(std::uint64_t since, std::uint64_t engine) {
    auto op = make(Kind::RegistryChanges, "", {engine, 0});
    op.since = since;
    nse::RegistryChanges c;
    c.version = since;  // unchanged when the coordinator does not answer
    auto r = call(op);
    if (!r) {
        log_("registry changes unavailable; scripts go on with this engine's registry");
        return c;
    }
    if (!r->ok) {
        c.version = r->version;
        log_("the registry changes since version " + std::to_string(since) +
             " cannot travel (a single value larger than a message); this engine goes on from "
             "version " +
             std::to_string(r->version) + " with its own registry");
        return c;
    }
    // A registry too large for one message: the other parts, one round trip each.
    for (std::uint32_t k = 1; k < r->parts; ++k) {
        op.part = k;
        auto p = call(op);
        if (!p || !p->ok || p->version != r->version) {
            log_("registry part " + std::to_string(k) + " of " + std::to_string(r->parts) +
                 " unavailable; scripts go on with this engine's registry");
            return c;
        }
        wire::join_snapshot_part(r->value, std::move(p->value));
    }
    c.version = r->version;
    c.snapshot = r->snapshot;
    c.full = std::move(r->value);
    c.deltas = std::move(r->deltas);
    return c;
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> FleetSharedState::target_counts() {
    auto r = call(make(Kind::TargetCounts, "", {}));
    if (!r) return std::nullopt;
    return std::make_pair(r->targets_added, r->targets_pending);
}

bool FleetSharedState::on_reply(const wire::SharedReply& r) {
    std::lock_guard lk(mu_);
    if (acks_.erase(r.request_id)) return true;
    auto it = calls_.find(r.request_id);
    if (it == calls_.end()) return false;
    it->second->done = true;
    it->second->reply = r;
    calls_.erase(it);
    cv_.notify_all();
    return true;
}

bool FleetSharedState::on_notify(const wire::SharedNotify& n) {
    Wake wake;
    {
        std::lock_guard lk(mu_);
        auto it = wakes_.find(n.request_id);
        if (it == wakes_.end()) return false;
        Kind want = n.event == wire::SharedEvent::Granted ? Kind::MutexLock : Kind::CondWait;
        wire::Owner who{from_wire_engine(n.who.engine), n.who.id};
        if (it->second.op != want || it->second.key != n.key || !same(who, it->second.who))
            return false;
        wake = std::move(it->second.wake);
        wakes_.erase(it);
    }
    if (wake) wake();
    return true;
}

void FleetSharedState::shut_down() {
    std::map<std::uint64_t, WakeEntry> dropped;
    {
        std::lock_guard lk(mu_);
        down_ = true;
        dropped.swap(wakes_);
        acks_.clear();
        cv_.notify_all();
    }
}

std::size_t FleetSharedState::pending_wakes() const {
    std::lock_guard lk(mu_);
    return wakes_.size();
}

std::uint64_t FleetSharedState::timeouts() const {
    std::lock_guard lk(mu_);
    return timeouts_;
}

}  // namespace worker::fleet
