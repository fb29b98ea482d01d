// LocalSharedState (nse/local_shared_state.h): the in-process registry, mutex and condvar
// store every engine of one process shares. Wakes are plain callbacks here; the engine posts
// from them onto its own loop.
#include <doctest/doctest.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "nse/local_shared_state.h"
#include "nse/registry_delta.h"
#include "test/support/values.h"

using common::Entry;
using common::Table;
using common::Value;
using nse::LocalSharedState;
using nse::Owner;

namespace {

constexpr Owner kA{1, 10};
constexpr Owner kB{1, 11};
constexpr Owner kC{2, 10};  // same coroutine id as kA, other engine: another owner

// A wake callback that records `name` in `log`.
LocalSharedState::Wake note(std::vector<std::string>& log, std::string name) {
    return [&log, name = std::move(name)] { log.push_back(name); };
}

using test_support::at;
using test_support::kv;
using test_support::num;
using test_support::str;
using test_support::table;

// The entry of table `v` with string key `k`, or nullptr.
const Value* field(const Value& v, const std::string& k) {
    if (!v.is_table()) return nullptr;
    for (const auto& e : v.table().entries)
        if (!e.indexed && e.key == k) return &e.value;
    return nullptr;
}

std::string text(const Value* v) {
    return v && std::holds_alternative<std::string>(v->v) ? std::get<std::string>(v->v) : "<none>";
}

}  // namespace

TEST_CASE("mutex: lock grants at once when free; waiters get it in FIFO order on unlock") {
    LocalSharedState s;
    std::vector<std::string> log;
    s.mutex_lock("m", kA, note(log, "A"));
    CHECK(log == std::vector<std::string>{"A"});  // granted inside the call
    CHECK(s.mutex_owner("m") == kA);

    s.mutex_lock("m", kB, note(log, "B"));
    s.mutex_lock("m", kC, note(log, "C"));
    CHECK(log.size() == 1);  // both queued

    CHECK_FALSE(s.mutex_unlock("m", kB));  // not the owner
    CHECK_FALSE(s.mutex_unlock("m", kC));  // same coroutine id, other engine: not the owner
    CHECK(s.mutex_owner("m") == kA);

    CHECK(s.mutex_unlock("m", kA));
    CHECK(log == std::vector<std::string>{"A", "B"});  // first come, first served
    CHECK(s.mutex_owner("m") == kB);
    CHECK(s.mutex_unlock("m", kB));
    CHECK(log == std::vector<std::string>{"A", "B", "C"});
    CHECK(s.mutex_owner("m") == kC);
    CHECK(s.mutex_unlock("m", kC));
    CHECK_FALSE(s.mutex_owner("m").has_value());
    CHECK_FALSE(s.mutex_unlock("m", kC));  // already free
}

TEST_CASE("mutex: keys are independent") {
    LocalSharedState s;
    std::vector<std::string> log;
    s.mutex_lock("one", kA, note(log, "A1"));
    s.mutex_lock("two", kB, note(log, "B2"));
    CHECK(log == std::vector<std::string>{"A1", "B2"});
    CHECK(s.mutex_owner("one") == kA);
    CHECK(s.mutex_owner("two") == kB);
    CHECK_FALSE(s.mutex_owner("three").has_value());
}

TEST_CASE("mutex: trylock takes a free lock and never queues") {
    LocalSharedState s;
    std::vector<std::string> log;
    CHECK(s.mutex_trylock("m", kA));
    CHECK(s.mutex_owner("m") == kA);
    CHECK_FALSE(s.mutex_trylock("m", kB));
    CHECK_FALSE(s.mutex_trylock("m", kA));  // not re-entrant either
    s.mutex_lock("m", kC, note(log, "C"));  // a real waiter behind the trylock owner
    CHECK(s.mutex_unlock("m", kA));
    // The lock went to the queued waiter, not to the thread whose trylock failed.
    CHECK(log == std::vector<std::string>{"C"});
    CHECK(s.mutex_owner("m") == kC);
    CHECK(s.mutex_unlock("m", kC));
    CHECK_FALSE(s.mutex_owner("m").has_value());
    CHECK(s.mutex_trylock("m", kB));
}

TEST_CASE("mutex: abandon by the owner hands the lock on; by a waiter leaves the queue") {
    LocalSharedState s;
    std::vector<std::string> log;
    s.mutex_lock("m", kA, note(log, "A"));
    s.mutex_lock("m", kB, note(log, "B"));
    s.mutex_lock("m", kC, note(log, "C"));

    s.mutex_abandon("m", kB);  // B's thread died while queued
    CHECK(log == std::vector<std::string>{"A"});
    CHECK(s.mutex_owner("m") == kA);

    s.mutex_abandon("m", kA);  // the owner died: as if it unlocked
    CHECK(log == std::vector<std::string>{"A", "C"});
    CHECK(s.mutex_owner("m") == kC);

    CHECK(s.mutex_unlock("m", kC));
    CHECK(log == std::vector<std::string>{"A", "C"});  // B is gone: nobody left to wake
    CHECK_FALSE(s.mutex_owner("m").has_value());

    s.mutex_abandon("m", kA);        // nothing held, nothing queued: no effect
    s.mutex_abandon("unknown", kA);  // unknown key: no effect
    CHECK_FALSE(s.mutex_owner("m").has_value());
}

TEST_CASE("mutex: a grant may call back into the state (wakes run outside its lock)") {
    LocalSharedState s;
    std::optional<Owner> seen;
    s.mutex_lock("m", kA, [] {});
    s.mutex_lock("m", kB, [&] {
        seen = s.mutex_owner("m");
        CHECK(s.mutex_unlock("m", kB));  // unlocking from inside the grant works too
    });
    CHECK(s.mutex_unlock("m", kA));
    CHECK(seen == kB);
    CHECK_FALSE(s.mutex_owner("m").has_value());
}

TEST_CASE("condvar: signal wakes the most recent waiter, broadcast wakes all") {
    LocalSharedState s;
    std::vector<std::string> log;
    s.condvar_signal("cv");  // nobody waits: nothing happens, nothing is remembered
    s.condvar_wait("cv", kA, note(log, "A"));
    s.condvar_wait("cv", kB, note(log, "B"));
    s.condvar_wait("cv", kC, note(log, "C"));
    CHECK(log.empty());  // waiting never wakes by itself

    s.condvar_signal("cv");
    CHECK(log == std::vector<std::string>{"C"});  // LIFO, as nmap does
    s.condvar_signal("cv");
    CHECK(log == std::vector<std::string>{"C", "B"});

    s.condvar_wait("cv", kB, note(log, "B2"));
    s.condvar_broadcast("cv");
    CHECK(log.size() == 4);
    CHECK((log[2] == "A" || log[2] == "B2"));
    CHECK((log[3] == "A" || log[3] == "B2"));
    CHECK(log[2] != log[3]);

    s.condvar_broadcast("cv");  // every waiter was removed when woken
    s.condvar_signal("cv");
    CHECK(log.size() == 4);
}

TEST_CASE("condvar: cancel drops a dead waiter; condvars are independent") {
    LocalSharedState s;
    std::vector<std::string> log;
    s.condvar_wait("cv", kA, note(log, "A"));
    s.condvar_wait("cv", kB, note(log, "B"));
    s.condvar_wait("other", kC, note(log, "C"));

    s.condvar_cancel("cv", kB);
    s.condvar_signal("cv");
    CHECK(log == std::vector<std::string>{"A"});  // B would have been first (LIFO)

    s.condvar_cancel("cv", kA);       // no longer waiting: no effect
    s.condvar_cancel("unknown", kA);  // unknown key: no effect
    s.condvar_broadcast("cv");
    CHECK(log == std::vector<std::string>{"A"});

    s.condvar_broadcast("other");
    CHECK(log == std::vector<std::string>{"A", "C"});
}

TEST_CASE("condvar: a woken waiter may wait again from inside its wake") {
    LocalSharedState s;
    int wakes = 0;
    std::function<void()> again = [&] {
        if (++wakes < 3) s.condvar_wait("cv", kA, again);
    };
    s.condvar_wait("cv", kA, again);
    s.condvar_signal("cv");
    s.condvar_broadcast("cv");
    CHECK(wakes == 2);
    s.condvar_signal("cv");
    CHECK(wakes == 3);
    s.condvar_signal("cv");  // it did not wait a fourth time
    CHECK(wakes == 3);
}

TEST_CASE("registry: empty until merged; a snapshot is a copy") {
    LocalSharedState s;
    Value empty = s.registry_snapshot();
    CHECK((empty.is_table() && empty.table().entries.empty()));
    s.registry_merge(table({kv("a", str("1"))}), 1);
    Value snap = s.registry_snapshot();
    CHECK(text(field(snap, "a")) == "1");
    snap.table().entries.clear();  // changing the copy changes nothing in the state
    CHECK(text(field(s.registry_snapshot(), "a")) == "1");
}

TEST_CASE("registry: a merge that is not a table (nil, a scalar) changes nothing") {
    LocalSharedState s;
    s.registry_merge(table({kv("a", str("1"))}), 1);
    s.registry_merge(Value{}, 1);
    s.registry_merge(str("x"), 1);
    CHECK(text(field(s.registry_snapshot(), "a")) == "1");
}

TEST_CASE("registry: merge keeps old keys, adds new ones, and later scalars win") {
    LocalSharedState s;
    s.registry_merge(table({kv("a", str("first")), kv("b", num(1))}), 1);
    s.registry_merge(table({kv("b", num(2)), kv("c", str("new"))}), 1);
    Value r = s.registry_snapshot();
    REQUIRE(r.is_table());
    CHECK(r.table().entries.size() == 3);
    CHECK(text(field(r, "a")) == "first");
    REQUIRE(field(r, "b") != nullptr);
    CHECK(std::get<std::int64_t>(field(r, "b")->v) == 2);
    CHECK(text(field(r, "c")) == "new");
    // Entry order is first appearance: a, b, c.
    CHECK(r.table().entries[0].key == "a");
    CHECK(r.table().entries[1].key == "b");
    CHECK(r.table().entries[2].key == "c");
}

TEST_CASE("registry: nested tables merge key by key; a table and a scalar replace each other") {
    LocalSharedState s;
    s.registry_merge(table({
                         kv("hosts", table({kv("127.0.0.1", table({kv("ssh", str("22"))}))})),
                         kv("flag", str("on")),
                         kv("list", table({at(1, str("x")), at(2, str("y"))})),
                     }),
                     1);
    s.registry_merge(table({
                         kv("hosts", table({kv("127.0.0.1", table({kv("http", str("80"))})),
                                            kv("127.0.0.2", table({kv("ssh", str("2222"))}))})),
                         kv("flag", table({kv("now", str("a table"))})),  // scalar → table
                         kv("list", table({at(2, str("Y")), at(3, str("z"))})),
                     }),
                     2);
    Value r = s.registry_snapshot();

    const Value* hosts = field(r, "hosts");
    REQUIRE(hosts != nullptr);
    const Value* one = field(*hosts, "127.0.0.1");
    REQUIRE(one != nullptr);
    CHECK(text(field(*one, "ssh")) == "22");   // kept from the first merge
    CHECK(text(field(*one, "http")) == "80");  // added by the second
    const Value* two = field(*hosts, "127.0.0.2");
    REQUIRE(two != nullptr);
    CHECK(text(field(*two, "ssh")) == "2222");

    const Value* flag = field(r, "flag");
    REQUIRE(flag != nullptr);
    CHECK(text(field(*flag, "now")) == "a table");

    // Array items merge by index: 2 is replaced, 3 is added, 1 stays.
    const Value* list = field(r, "list");
    REQUIRE(list != nullptr);
    REQUIRE(list->is_table());
    const auto& items = list->table().entries;
    REQUIRE(items.size() == 3);
    CHECK(items[0].indexed);
    CHECK(items[0].key == "1");
    CHECK(text(&items[0].value) == "x");
    CHECK(items[1].key == "2");
    CHECK(text(&items[1].value) == "Y");
    CHECK(items[2].key == "3");
    CHECK(text(&items[2].value) == "z");

    s.registry_merge(table({kv("flag", str("off"))}), 1);  // table → scalar
    CHECK(text(field(s.registry_snapshot(), "flag")) == "off");
}

TEST_CASE("registry: an indexed item and a string key with the same text are different keys") {
    LocalSharedState s;
    s.registry_merge(table({at(1, str("item")), kv("1", str("string key"))}), 1);
    s.registry_merge(table({kv("1", str("string key 2"))}), 1);
    Value r = s.registry_snapshot();
    REQUIRE(r.table().entries.size() == 2);
    CHECK(r.table().entries[0].indexed);
    CHECK(text(&r.table().entries[0].value) == "item");
    CHECK_FALSE(r.table().entries[1].indexed);
    CHECK(text(&r.table().entries[1].value) == "string key 2");
}

TEST_CASE("registry changes: what others published since a version, the whole when too old") {
    LocalSharedState s;
    auto first = s.registry_changes(0, 1);  // a new engine takes the whole registry
    CHECK(first.snapshot);
    CHECK(first.version == 0);
    s.registry_merge(table({kv("a", str("from 1"))}), 1);
    s.registry_merge(table({kv("b", str("from 2"))}), 2);
    s.registry_merge(table({}), 2);  // empty: no new version
    CHECK(s.registry_version() == 2);
    auto c = s.registry_changes(0, 1);
    CHECK(c.snapshot);
    CHECK(text(field(c.full, "b")) == "from 2");
    // Engine 1 at version 1: only engine 2's delta.
    c = s.registry_changes(1, 1);
    CHECK_FALSE(c.snapshot);
    CHECK(c.version == 2);
    REQUIRE(c.deltas.size() == 1);
    CHECK(text(field(c.deltas[0], "b")) == "from 2");
    // Its own deltas never come back to it.
    c = s.registry_changes(0 + 1, 2);
    CHECK(c.deltas.empty());
    CHECK(c.version == 2);
    // Up to date: nothing.
    c = s.registry_changes(2, 1);
    CHECK_FALSE(c.snapshot);
    CHECK(c.deltas.empty());
    // A version this state never had (another run): the whole registry.
    CHECK(s.registry_changes(99, 1).snapshot);
}

TEST_CASE("registry changes: an engine further behind than the log gets the whole registry") {
    LocalSharedState s;
    for (int i = 0; i < 5000; ++i)
        s.registry_merge(table({kv("k" + std::to_string(i % 10), str(std::to_string(i)))}), 2);
    auto c = s.registry_changes(1, 1);
    CHECK(c.snapshot);
    CHECK(c.version == 5000);
    CHECK(text(field(c.full, "k9")) == "4999");
    c = s.registry_changes(4990, 1);
    CHECK_FALSE(c.snapshot);
    CHECK(c.deltas.size() == 10);
}

namespace {

// An engine as the runtime drives one: writes go to its live registry and are published as
// deltas; a fetch applies what others published since its version.
struct SimEngine {
    LocalSharedState& s;
    std::uint64_t id;
    Value live = table({});
    std::uint64_t version = 0;
    void write(const Value& delta) {
        nse::registry_apply(live, delta);
        s.registry_merge(delta, id);
    }
    void fetch() {
        auto c = s.registry_changes(version, id);
        if (c.snapshot) live = c.full;
        for (const auto& d : c.deltas)
            nse::registry_apply(live, d);
        version = c.version;
    }
};

}  // namespace

TEST_CASE("registry changes: concurrent writes converge on the merged registry's values") {
    LocalSharedState s;
    s.registry_merge(table({kv("gone", str("seed")), kv("t", table({kv("a", num(0))}))}), 3);
    SimEngine e1{s, 1}, e2{s, 2};
    e1.fetch();
    e2.fetch();
    // e2 writes first, e1 later (the later arrival wins, in e1 too: e2's older value must
    // not come back to it); a removal undone later by e1; a nested write under a table e1
    // then replaced with a scalar; appends from both.
    e2.write(table({kv("k", str("two")), kv("gone", Value{}), kv("t", table({kv("b", num(2))})),
                    kv("list", table({test_support::item(str("e2"))}))}));
    e1.write(table({kv("k", str("one")), kv("gone", str("back")), kv("t", str("flat")),
                    kv("list", table({test_support::item(str("e1"))}))}));
    e2.write(table({kv("k2", num(7))}));
    e1.fetch();
    e2.fetch();
    Value merged = s.registry_snapshot();
    CHECK(text(field(merged, "k")) == "one");
    CHECK(text(field(merged, "gone")) == "back");
    CHECK(text(field(merged, "t")) == "flat");
    for (auto* e : {&e1, &e2}) {
        CAPTURE(e->id);
        CHECK(text(field(e->live, "k")) == "one");
        CHECK(text(field(e->live, "gone")) == "back");
        CHECK(text(field(e->live, "t")) == "flat");
        CHECK(field(e->live, "k2") != nullptr);
        const Value* list = field(e->live, "list");
        REQUIRE(list != nullptr);
        CHECK(list->table().entries.size() == 2);  // both appends, each once
    }
    // A later fetch after the fact changes nothing more.
    e1.fetch();
    CHECK(text(field(e1.live, "k")) == "one");
}

TEST_CASE("registry changes: a table erased and made again replaces what engines held") {
    LocalSharedState s;
    s.registry_merge(table({kv("k", table({kv("x", num(1))})), kv("j", table({kv("a", num(1))}))}),
                     3);
    SimEngine b{s, 2}, c{s, 1};
    b.fetch();
    c.fetch();
    // c erases k, then makes it again from nothing (what its publishes say); j becomes a
    // scalar, then a table again.
    c.write(table({kv("k", Value{}), kv("j", str("flat"))}));
    c.write(table({kv("k", table({kv("y", num(2))})), kv("j", table({kv("b", num(2))}))}));
    b.fetch();
    const Value snap = s.registry_snapshot();
    for (const char* key : {"k", "j"}) {
        CAPTURE(key);
        const Value* in_b = field(b.live, key);
        const Value* merged = field(snap, key);
        REQUIRE(in_b != nullptr);
        REQUIRE(merged != nullptr);
        CHECK(nse::registry_diff(*merged, *in_b).table().entries.empty());
        CHECK(nse::registry_diff(*in_b, *merged).table().entries.empty());
    }
    CHECK(field(*field(b.live, "k"), "x") == nullptr);  // the old entry is gone
    // An engine that had seen the erase gets deltas again, not the whole registry.
    SimEngine d{s, 4};
    d.fetch();
    c.write(table({kv("k", table({kv("z", num(3))}))}));
    auto changes = s.registry_changes(d.version, d.id);
    CHECK_FALSE(changes.snapshot);
    CHECK(changes.deltas.size() == 1);
}
