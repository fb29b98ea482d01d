// RegistryShadow: the delta it finds by identity equals what a full conversion and
// registry_diff find, over random scripts' writes, aliases, holes and others' deltas.
#include <doctest/doctest.h>

#include <lua.hpp>
#include <random>
#include <string>
#include <vector>

#include "nse/registry_delta.h"
#include "nse/registry_shadow.h"
#include "nse/value_bridge.h"

namespace {

struct Lua {
    lua_State* L = luaL_newstate();
    Lua() {
        luaL_openlibs(L);
        REQUIRE(luaL_dostring(L, "R = {}") == LUA_OK);
    }
    ~Lua() { lua_close(L); }
    void run(const std::string& code) {
        INFO(code);
        REQUIRE(luaL_dostring(L, code.c_str()) == LUA_OK);
    }
    common::Value value() {
        lua_getglobal(L, "R");
        auto v = nse::registry_to_value(L, -1);
        lua_pop(L, 1);
        return v;
    }
    common::Value diff(nse::RegistryShadow& s) {
        lua_getglobal(L, "R");
        auto d = s.diff(L, -1);
        lua_pop(L, 1);
        return d;
    }
    void take(nse::RegistryShadow& s, const common::Value& d) {
        lua_getglobal(L, "R");
        nse::apply_delta(L, -1, d);
        s.applied(L, -1, d);
        lua_pop(L, 1);
    }
};

std::string dump(const common::Value& v) {
    if (v.is_nil()) return "nil";
    if (!v.is_table()) {
        if (auto* s = std::get_if<std::string>(&v.v)) return "'" + *s + "'";
        if (auto* i = std::get_if<std::int64_t>(&v.v)) return std::to_string(*i);
        if (auto* d = std::get_if<double>(&v.v)) return std::to_string(*d);
        return "?";
    }
    std::string out = "{";
    for (const auto& e : v.table().entries)
        out += (e.indexed ? "[" + e.key + "]" : e.key) + "=" + dump(e.value) + ",";
    return out + "}";
}

// Makes the n-th allocation of a Lua state fail (then every one, until off()).
struct FailingAlloc {
    lua_State* L;
    lua_Alloc real;
    void* real_ud;
    int left;
    FailingAlloc(lua_State* l, int n) : L(l), left(n) {
        real = lua_getallocf(L, &real_ud);
        lua_setallocf(L, &FailingAlloc::alloc, this);
    }
    void off() { lua_setallocf(L, real, real_ud); }
    ~FailingAlloc() { off(); }
    static void* alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
        auto* self = static_cast<FailingAlloc*>(ud);
        if (nsize > (ptr ? osize : 0) && self->left-- <= 0) return nullptr;
        return self->real(self->real_ud, ptr, osize, nsize);
    }
};

bool same(const common::Value& a, const common::Value& b) {
    return nse::registry_diff(a, b).table().entries.empty() &&
           nse::registry_diff(b, a).table().entries.empty();
}

// One random write, as scripts make them.
std::string random_write(std::mt19937& rng) {
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    const char* tables[] = {"R.t", "R.u", "R.t.sub", "R.list", "R.list[1]", "R.n"};
    std::string t = tables[pick(6)];
    // A table that may not exist: written only when it does.
    std::string guard =
        "local ok, x = pcall(load('return " + t + "')); if ok and type(x) == 'table' then ";
    t = "x";
    std::string v = std::to_string(pick(5));
    switch (pick(16)) {
    case 0: return "R.s = 'v" + v + "'";
    case 1: return "R[" + v + "] = " + v;
    case 2: return "R.t = R.t or {}; R.t.sub = R.t.sub or {}";
    case 3: return "R.list = R.list or {}; table.insert(R.list, 'i" + v + "')";
    case 4: return "R.list = R.list or {}; table.insert(R.list, {k = " + v + "})";
    case 5: return guard + t + "[" + v + "] = nil end";
    case 6: return guard + t + ".k" + v + " = 'x" + v + "' end";
    case 7: return "R.u = R.t";          // an alias: one table under two keys
    case 8: return "R.t = {k1 = 'x1'}";  // replaced by another table
    case 9: return "R.n = " + v + ".5";
    case 10: return "R.n = 0/0";
    case 11: return "R.t = nil";
    // (A function at an item position would shift where others' appends land in this
    // engine only: not something scripts do.)
    case 12: return guard + t + ".f" + v + " = function() end end";
    case 13: return "R.args = {a = " + v + "}";  // each engine's own: never travels
    case 14: return guard + t + ".k" + v + " = " + v + " end";
    default: return "R.s = nil";
    }
}

}  // namespace

TEST_CASE("registry shadow: deltas by identity equal full conversion and diff") {
    for (unsigned seed = 1; seed <= 60; ++seed) {
        CAPTURE(seed);
        std::mt19937 rng(seed);
        Lua e;
        nse::RegistryShadow shadow;
        common::Value base{common::Table{}};    // the registry as a Value at the last exchange
        common::Value mirror{common::Table{}};  // what the coordinator holds
        std::string history;
        for (int step = 0; step < 60; ++step) {
            std::string w = random_write(rng);
            history += w + "\n";
            e.run(w);
            if (rng() % 3) continue;
            common::Value now = e.value();
            auto d = e.diff(shadow);
            auto want = nse::registry_diff(base, now);
            base = now;
            common::Value by_shadow = mirror, by_values = mirror;
            nse::registry_apply(by_shadow, d);
            nse::registry_apply(by_values, want);
            CAPTURE(step);
            INFO(history);
            INFO("shadow's delta " << dump(d));
            INFO("registry_diff  " << dump(want));
            REQUIRE(same(by_shadow, by_values));
            mirror = by_shadow;
            // Nothing changed since: nothing to publish.
            CHECK(e.diff(shadow).table().entries.empty());
            if (rng() % 2) continue;
            // Another engine's delta arrives: taken in place, never published back.
            std::string v = std::to_string(rng() % 5);
            common::Table inc;
            inc.entries.push_back(common::Entry{false, "from_other", common::Value{"o" + v}});
            common::Table list;
            list.entries.push_back(common::Entry{true, "", common::Value{"other" + v}});
            inc.entries.push_back(common::Entry{false, "list", common::Value{std::move(list)}});
            if (rng() % 2) inc.entries.push_back(common::Entry{false, "s", common::Value{}});
            common::Value incoming{std::move(inc)};
            history += "-- incoming " + dump(incoming) + "\n";
            e.take(shadow, incoming);
            nse::registry_apply(mirror, incoming);
            base = e.value();
            CHECK(e.diff(shadow).table().entries.empty());
        }
    }
}

TEST_CASE("registry shadow: the coordinator's copy equals the engine's when lists have no holes") {
    Lua e;
    nse::RegistryShadow shadow;
    common::Value mirror{common::Table{}};
    const char* steps[] = {
        "R.keys = {}; R.list = {}",
        "R.keys['10.0.0.1'] = {{key = 'aaa', bits = 2048}, {key = 'bbb'}}; table.insert(R.list, 1)",
        "R.keys['10.0.0.2'] = R.keys['10.0.0.1']; table.insert(R.list, {ip = '10.0.0.2'})",
        "R.keys['10.0.0.1'][1].bits = 4096; R.list[2].ip = 'changed'; R.s = 1.5",
        "R.keys['10.0.0.1'] = nil; R.s = nil; R.f = function() end",
        "R.keys['10.0.0.2'] = 'flat'; table.insert(R.list, 'x')",
    };
    for (const char* code : steps) {
        e.run(code);
        nse::registry_apply(mirror, e.diff(shadow));
        INFO(code);
        INFO("mirror " << dump(mirror));
        INFO("live " << dump(e.value()));
        CHECK(same(mirror, e.value()));
    }
    common::Table list;
    list.entries.push_back(common::Entry{true, "", common::Value{"theirs"}});
    common::Table inc;
    inc.entries.push_back(common::Entry{false, "list", common::Value{std::move(list)}});
    inc.entries.push_back(common::Entry{false, "keys", common::Value{common::Table{}}});
    common::Value incoming{std::move(inc)};
    e.take(shadow, incoming);
    nse::registry_apply(mirror, incoming);
    CHECK(same(mirror, e.value()));
    CHECK(e.diff(shadow).table().entries.empty());
    e.run("table.insert(R.list, 'mine')");
    nse::registry_apply(mirror, e.diff(shadow));
    CHECK(same(mirror, e.value()));
}

TEST_CASE("registry shadow: a whole registry taken, then written") {
    Lua e;
    e.run("R.keep = {1, 2, 3}; R.x = 'a'");
    nse::RegistryShadow shadow;
    lua_getglobal(e.L, "R");
    shadow.reset(e.L, -1);
    lua_pop(e.L, 1);
    CHECK(e.diff(shadow).table().entries.empty());
    e.run("table.insert(R.keep, 4); R.x = nil; R.keep[1] = 'one'");
    auto d = e.diff(shadow);
    CHECK(d.table().entries.size() == 2);  // keep (a nested delta), x removed
}

TEST_CASE("registry shadow: a table under two keys, a key back to its table, a failed walk") {
    Lua e;
    nse::RegistryShadow shadow;
    common::Value mirror{common::Table{}};
    auto publish = [&] { nse::registry_apply(mirror, e.diff(shadow)); };
    // One table under two keys; its entry removed and one of the keys given a new table.
    e.run("R.X = {z = 1}; R.j = R.X; R.k = R.X");
    publish();
    e.run("R.X.z = nil; R.k = {}");
    publish();
    CHECK(same(mirror, e.value()));
    // A nested change and, in the same walk, a key pointing back at an enclosing table.
    e.run("R.a = {x = {n = 1}}");
    publish();
    e.run("R.a.x.n = 2; R.a.self = R.a");
    publish();
    const common::Value* a = nullptr;
    for (const auto& en : mirror.table().entries)
        if (en.key == "a") a = &en.value;
    REQUIRE(a != nullptr);
    const common::Value* x = nullptr;
    for (const auto& en : a->table().entries)
        if (en.key == "x") x = &en.value;
    REQUIRE(x != nullptr);
    REQUIRE(x->table().entries.size() == 1);
    CHECK(std::get<std::int64_t>(x->table().entries[0].value.v) == 2);
    e.run("R.a.self = nil");  // (a cycle has no Value form to compare with)
    publish();
    CHECK(same(mirror, e.value()));
    // A walk that fails half-way (out of memory at its n-th allocation) changes no shadow:
    // the next one still sends everything.
    for (int n = 0; n < 40; ++n) {
        CAPTURE(n);
        e.run("R.m = R.m or {}; table.insert(R.m, 'i'); R.s = 's' .. #R.m; R.t = {u = #R.m}");
        FailingAlloc fail(e.L, n);
        struct Call {
            nse::RegistryShadow* shadow;
            common::Value delta;
        } call{&shadow, {}};
        lua_pushcfunction(e.L, [](lua_State* L) -> int {
            auto* c = static_cast<Call*>(lua_touserdata(L, 1));
            lua_getglobal(L, "R");
            c->delta = c->shadow->diff(L, -1);
            return 0;
        });
        lua_pushlightuserdata(e.L, &call);
        int rc = lua_pcall(e.L, 1, 0, 0);
        if (rc != LUA_OK) lua_pop(e.L, 1);
        fail.off();
        // A walk that got through published its delta (its shadow updates may still be
        // pending); one that failed published nothing. Either way the next publish completes it.
        if (rc == LUA_OK) nse::registry_apply(mirror, call.delta);
        publish();
        CHECK(same(mirror, e.value()));
    }
}
