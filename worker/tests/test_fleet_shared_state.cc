// FleetSharedState against a fake coordinator: the Send hook records every SharedOp and a
// responder (synchronous inside send, or on another thread) answers like the coordinator.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "common/wire/codec.h"
#include "common/wire/registry_parts.h"
#include "nse/registry_delta.h"
#include "worker/fleet/fleet_shared_state.h"

namespace {

namespace wire = common::wire;
using worker::fleet::FleetSharedState;
using Kind = wire::SharedOpKind;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Records what the state sends; optionally answers from a separate "I/O" thread.
struct FakeLink {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<wire::SharedOp> sent;
    std::vector<std::string> logs;
    bool accept = true;

    FleetSharedState::Send sender() {
        return [this](wire::Message m) {
            if (!accept) return false;
            std::lock_guard lk(mu);
            sent.push_back(std::get<wire::SharedOp>(m));
            cv.notify_all();
            return true;
        };
    }
    FleetSharedState::Log logger() {
        return [this](const std::string& s) {
            std::lock_guard lk(mu);
            logs.push_back(s);
        };
    }
    // Waits for the n-th (0-based) op to be sent.
    wire::SharedOp wait_op(std::size_t n) {
        std::unique_lock lk(mu);
        REQUIRE(cv.wait_for(lk, 2s, [&] { return sent.size() > n; }));
        return sent[n];
    }
    std::size_t count() {
        std::lock_guard lk(mu);
        return sent.size();
    }
};

nse::Owner A{7, 1}, B{7, 2};

}  // namespace

wire::SharedReply rep(std::uint64_t id, bool ok, std::optional<wire::Owner> owner,
                      common::Value value) {
    wire::SharedReply r;
    r.request_id = id;
    r.ok = ok;
    r.owner = owner;
    r.value = std::move(value);
    return r;
}

TEST_CASE("mutex_lock: grant runs the wake once; duplicates and mismatches are dropped") {
    FakeLink link;
    FleetSharedState s(link.sender(), link.logger(), 1000ms);
    std::atomic<int> woken{0};
    s.mutex_lock("s:k", A, [&] { ++woken; });
    auto op = link.wait_op(0);
    CHECK(op.op == Kind::MutexLock);
    CHECK(op.key == "s:k");
    CHECK(op.who == wire::Owner{7, 1});
    CHECK(s.pending_wakes() == 1);

    // Wrong event, wrong key, wrong owner: nothing runs.
    CHECK_FALSE(s.on_notify({op.request_id, wire::SharedEvent::Woken, "s:k", {7, 1}}));
    CHECK_FALSE(s.on_notify({op.request_id, wire::SharedEvent::Granted, "s:other", {7, 1}}));
    CHECK_FALSE(s.on_notify({op.request_id, wire::SharedEvent::Granted, "s:k", {7, 2}}));
    CHECK(woken == 0);

    CHECK(s.on_notify({op.request_id, wire::SharedEvent::Granted, "s:k", {7, 1}}));
    CHECK(woken == 1);
    CHECK_FALSE(s.on_notify({op.request_id, wire::SharedEvent::Granted, "s:k", {7, 1}}));
    CHECK(woken == 1);
    CHECK(s.pending_wakes() == 0);
}

TEST_CASE("a grant delivered inside send (before the call returns) still wakes") {
    std::atomic<int> woken{0};
    FleetSharedState* self = nullptr;
    FleetSharedState s(
        [&](wire::Message m) {
            auto op = std::get<wire::SharedOp>(m);
            self->on_notify({op.request_id, wire::SharedEvent::Granted, op.key, op.who});
            return true;
        },
        [](const std::string&) {}, 1000ms);
    self = &s;
    s.mutex_lock("s:k", A, [&] { ++woken; });
    CHECK(woken == 1);
    CHECK(s.pending_wakes() == 0);
}

TEST_CASE("synchronous ops: replies from another thread are matched by request id") {
    FakeLink link;
    FleetSharedState s(link.sender(), link.logger(), 2000ms);
    std::thread coord([&] {
        // trylock -> granted; unlock by the wrong owner -> false; owner -> A; snapshot -> value.
        auto t = link.wait_op(0);
        // A stray reply with another id must not satisfy the waiting call.
        CHECK_FALSE(s.on_reply(rep(t.request_id + 100, true, std::nullopt, {})));
        CHECK(s.on_reply(rep(t.request_id, true, std::nullopt, {})));
        auto u = link.wait_op(1);
        CHECK(u.op == Kind::MutexUnlock);
        CHECK(u.who == wire::Owner{7, 2});
        CHECK(s.on_reply(rep(u.request_id, false, std::nullopt, {})));
        auto o = link.wait_op(2);
        CHECK(o.op == Kind::MutexOwner);
        CHECK(s.on_reply(rep(o.request_id, true, wire::Owner{7, 1}, {})));
        auto r = link.wait_op(3);
        CHECK(r.op == Kind::RegistryChanges);
        CHECK(r.since == 5);
        CHECK(r.who.engine == 7);
        auto answer = rep(r.request_id, true, std::nullopt, {});
        answer.version = 9;
        answer.deltas.resize(2);
        answer.deltas[1].v = std::string("hello");
        CHECK(s.on_reply(answer));
    });
    CHECK(s.mutex_trylock("s:k", A));
    CHECK_FALSE(s.mutex_unlock("s:k", B));
    auto owner = s.mutex_owner("s:k");
    REQUIRE(owner.has_value());
    CHECK(*owner == A);
    auto changes = s.registry_changes(5, 7);
    CHECK(changes.version == 9);
    CHECK_FALSE(changes.snapshot);
    REQUIRE(changes.deltas.size() == 2);
    CHECK(std::get<std::string>(changes.deltas[1].v) == "hello");
    coord.join();
    CHECK(s.timeouts() == 0);
    CHECK(link.count() == 4);
}

TEST_CASE("timeouts are bounded and leave no lock behind") {
    FakeLink link;
    FleetSharedState s(link.sender(), link.logger(), 150ms);
    auto t0 = Clock::now();
    CHECK_FALSE(s.mutex_trylock("s:k", A));
    auto took = Clock::now() - t0;
    CHECK(took >= 140ms);
    CHECK(took < 1500ms);
    // The trylock is followed by an abandon: a late grant is released by the coordinator.
    REQUIRE(link.count() == 2);
    auto try_op = link.wait_op(0);
    auto abandon = link.wait_op(1);
    CHECK(abandon.op == Kind::MutexAbandon);
    CHECK(abandon.key == "s:k");
    CHECK(abandon.who == wire::Owner{7, 1});
    // The late reply is reported as unmatched.
    CHECK_FALSE(s.on_reply(rep(try_op.request_id, true, std::nullopt, {})));

    // unlock on timeout: gives the lock up and reports success.
    CHECK(s.mutex_unlock("s:k", A));
    CHECK(link.wait_op(3).op == Kind::MutexAbandon);
    CHECK_FALSE(s.mutex_owner("s:k").has_value());
    // No answer: the engine keeps its version and gets nothing to apply.
    auto none = s.registry_changes(3, 7);
    CHECK(none.version == 3);
    CHECK(none.deltas.empty());
    CHECK_FALSE(none.snapshot);
    CHECK(s.timeouts() == 4);
    std::lock_guard lk(link.mu);
    CHECK(link.logs.size() >= 4);
}

TEST_CASE("abandon and cancel forget pending requests") {
    FakeLink link;
    FleetSharedState s(link.sender(), link.logger(), 1000ms);
    int lock_woken = 0, cv_woken = 0, other = 0;
    s.mutex_lock("s:m", A, [&] { ++lock_woken; });
    s.condvar_wait("s:c", A, [&] { ++cv_woken; });
    s.condvar_wait("s:c", B, [&] { ++other; });
    auto lock_op = link.wait_op(0);
    auto wait_a = link.wait_op(1);
    auto wait_b = link.wait_op(2);
    CHECK(wait_a.op == Kind::CondWait);
    CHECK(s.pending_wakes() == 3);

    s.mutex_abandon("s:m", A);
    s.condvar_cancel("s:c", A);
    CHECK(link.wait_op(3).op == Kind::MutexAbandon);
    CHECK(link.wait_op(4).op == Kind::CondCancel);
    CHECK(s.pending_wakes() == 1);
    CHECK_FALSE(s.on_notify({lock_op.request_id, wire::SharedEvent::Granted, "s:m", {7, 1}}));
    CHECK_FALSE(s.on_notify({wait_a.request_id, wire::SharedEvent::Woken, "s:c", {7, 1}}));
    CHECK(s.on_notify({wait_b.request_id, wire::SharedEvent::Woken, "s:c", {7, 2}}));
    CHECK(lock_woken == 0);
    CHECK(cv_woken == 0);
    CHECK(other == 1);

    s.condvar_signal("s:c");
    s.condvar_broadcast("s:c");
    CHECK(link.wait_op(5).op == Kind::CondSignal);
    CHECK(link.wait_op(6).op == Kind::CondBroadcast);
    common::Value reg;
    reg.v = std::int64_t{42};
    s.registry_merge(reg, 7);
    auto merge = link.wait_op(7);
    CHECK(merge.op == Kind::RegistryMerge);
    CHECK(std::get<std::int64_t>(merge.value.v) == 42);
    CHECK(merge.who.engine == 7);
    // Its ack is expected exactly once.
    CHECK(s.on_reply(rep(merge.request_id, true, std::nullopt, {})));
    CHECK_FALSE(s.on_reply(rep(merge.request_id, true, std::nullopt, {})));
    // Request ids are unique.
    std::lock_guard lk(link.mu);
    for (std::size_t i = 1; i < link.sent.size(); ++i)
        CHECK(link.sent[i].request_id > link.sent[i - 1].request_id);
}

TEST_CASE("shut_down releases a waiting call at once and drops stored wakes") {
    FakeLink link;
    FleetSharedState s(link.sender(), link.logger(), 10000ms);
    int woken = 0;
    s.mutex_lock("s:m", A, [&] { ++woken; });
    auto lock_op = link.wait_op(0);
    std::thread io([&] {
        link.wait_op(1);  // the trylock below is on the wire
        s.shut_down();
    });
    auto t0 = Clock::now();
    CHECK_FALSE(s.mutex_trylock("s:k", B));
    CHECK(Clock::now() - t0 < 2s);
    io.join();
    CHECK(s.pending_wakes() == 0);
    CHECK_FALSE(s.on_notify({lock_op.request_id, wire::SharedEvent::Granted, "s:m", {7, 1}}));
    CHECK(woken == 0);
    // After shut-down nothing more is sent and calls fail at once.
    auto before = link.count();
    t0 = Clock::now();
    CHECK_FALSE(s.mutex_trylock("s:k", B));
    s.mutex_lock("s:m", A, [&] { ++woken; });
    CHECK(Clock::now() - t0 < 100ms);
    CHECK(link.count() == before);
    CHECK(s.timeouts() == 0);
}

TEST_CASE("a send that cannot be queued fails the call at once") {
    FakeLink link;
    link.accept = false;
    FleetSharedState s(link.sender(), link.logger(), 10000ms);
    auto t0 = Clock::now();
    CHECK_FALSE(s.mutex_trylock("s:k", A));
    CHECK(Clock::now() - t0 < 100ms);
}

TEST_CASE("after a rejoin, engine ids cross the wire rebased on the new worker id") {
    FakeLink link;
    FleetSharedState s(link.sender(), link.logger(), 2000ms);
    const std::uint64_t first = 5, now = 9;
    const nse::Owner me{(first << wire::kEngineBits) | 2, 11};
    s.set_worker_id(first);
    s.set_lease(me.engine, 42);
    int granted = 0;
    s.mutex_lock("s:k", me, [&] { ++granted; });
    auto before = link.wait_op(0);
    CHECK(before.who.engine == me.engine);
    CHECK(before.lease == 42);
    s.set_worker_id(now);  // a restarted coordinator took the worker back as worker 9
    s.mutex_lock("s:j", me, [&] { ++granted; });
    auto after = link.wait_op(1);
    const std::uint64_t rebased = (now << wire::kEngineBits) | 2;
    CHECK(after.who.engine == rebased);
    CHECK(after.lease == 42);
    // The grant names the wire id; the waiter is found under the engine's own.
    CHECK(s.on_notify({after.request_id, wire::SharedEvent::Granted, "s:j", {rebased, 11}}));
    CHECK(granted == 1);
    // Another worker's engine ids are left alone, both ways.
    std::thread coord([&] {
        auto o = link.wait_op(2);
        CHECK(s.on_reply(rep(o.request_id, true, wire::Owner{rebased, 11}, {})));
        auto o2 = link.wait_op(3);
        CHECK(s.on_reply(
            rep(o2.request_id, true, wire::Owner{(77u << wire::kEngineBits) | 1, 3}, {})));
    });
    auto owner = s.mutex_owner("s:j");
    REQUIRE(owner.has_value());
    CHECK(*owner == me);
    auto other = s.mutex_owner("s:x");
    REQUIRE(other.has_value());
    CHECK(other->engine == ((77u << wire::kEngineBits) | 1));
    coord.join();
    // Abandoning with the engine's own id forgets the pending wake of the first request.
    s.mutex_abandon("s:k", me);
    CHECK(s.pending_wakes() == 0);
}

TEST_CASE("a registry larger than a message: fetched part by part, published in parts") {
    FakeLink link;
    FleetSharedState s(link.sender(), link.logger(), 2000ms);
    // A 20 MiB registry, as the coordinator cuts it.
    common::Table t;
    for (int i = 0; i < 20; ++i)
        t.entries.push_back(common::Entry{false, "k" + std::to_string(i),
                                          common::Value{std::string(1 << 20, 'a' + i)}});
    common::Value whole{std::move(t)};
    auto parts = wire::split_delta(whole, wire::kRegistryPartBytes);
    REQUIRE(parts);
    REQUIRE(parts->size() >= 3);
    std::thread coord([&] {
        for (std::uint32_t k = 0; k < parts->size(); ++k) {
            auto op = link.wait_op(k);
            CHECK(op.op == Kind::RegistryChanges);
            CHECK(op.part == k);
            auto answer = rep(op.request_id, true, std::nullopt, {});
            answer.version = 12;
            answer.snapshot = true;
            answer.part = k;
            answer.parts = static_cast<std::uint32_t>(parts->size());
            answer.value = (*parts)[k];
            CHECK(s.on_reply(answer));
        }
    });
    auto c = s.registry_changes(0, 7);
    coord.join();
    CHECK(c.version == 12);
    CHECK(c.snapshot);
    CHECK(nse::registry_diff(whole, c.full).table().entries.empty());
    CHECK(nse::registry_diff(c.full, whole).table().entries.empty());
    // Publishing it: merges in order, each within a message.
    const std::size_t before = link.count();
    s.registry_merge(whole, 7);
    REQUIRE(link.count() - before == parts->size());
    common::Value rebuilt{common::Table{}};
    for (std::size_t k = before; k < link.count(); ++k) {
        auto op = link.wait_op(k);
        CHECK(op.op == Kind::RegistryMerge);
        CHECK(wire::encode(op).size() <= wire::kDefaultMaxMessageBytes);
        nse::registry_apply(rebuilt, op.value);
    }
    CHECK(nse::registry_diff(whole, rebuilt).table().entries.empty());
}
