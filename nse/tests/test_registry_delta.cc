// Registry deltas: what engines publish instead of snapshots, so that concurrent writes to
// the same tables all arrive. Values are built from Lua (as engines do) and the merged
// registry is read back into Lua (as the next phase sees it).
#include <doctest/doctest.h>

#include <lua.hpp>
#include <string>

#include "nse/registry_delta.h"
#include "nse/value_bridge.h"

namespace {

// One Lua state standing in for an engine.
struct Lua {
    lua_State* L = luaL_newstate();
    Lua() { luaL_openlibs(L); }
    ~Lua() { lua_close(L); }
    void run(const std::string& code) {
        INFO(code);
        REQUIRE(luaL_dostring(L, code.c_str()) == LUA_OK);
    }
    std::string eval(const std::string& expr) {
        run("return tostring(" + expr + ")");
        std::string s = lua_tostring(L, -1);
        lua_pop(L, 1);
        return s;
    }
    common::Value registry() {
        lua_getglobal(L, "registry");
        common::Value v = nse::registry_to_value(L, -1);
        lua_pop(L, 1);
        return v;
    }
    void import(const common::Value& snapshot) {
        lua_getglobal(L, "registry");
        nse::sync_table(L, -1, snapshot, true);
        lua_pop(L, 1);
    }
};

// An engine's cycle: import the fleet's registry, run `code`, export its delta.
common::Value cycle(Lua& e, const common::Value& fleet, const std::string& code) {
    e.import(fleet);
    common::Value base = e.registry();
    e.run(code);
    return nse::registry_diff(base, e.registry());
}

}  // namespace

TEST_CASE("registry delta: appends from two engines on the same base all arrive, each once") {
    Lua a, b, post;
    for (Lua* e : {&a, &b, &post})
        e->run("registry = {}");
    common::Value fleet;
    fleet.v = common::Table{};
    // Both start from the same registry and insert into a list neither has seen created.
    const char* code =
        "registry.list = registry.list or {}; for _, v in ipairs(items) do "
        "table.insert(registry.list, v) end";
    a.run("items = {'a1', 'a2'}");
    b.run("items = {'b1', 'b2', 'b3'}");
    common::Value da = cycle(a, fleet, code);
    common::Value db = cycle(b, fleet, code);
    nse::registry_apply(fleet, da);
    nse::registry_apply(fleet, db);
    post.import(fleet);
    CHECK(post.eval("#registry.list") == "5");
    CHECK(post.eval("table.concat(registry.list, ',')") == "a1,a2,b1,b2,b3");

    // A second round on the merged registry: appends go after every earlier item.
    b.run("items = {'b4'}");
    nse::registry_apply(fleet, cycle(b, fleet, code));
    a.run("items = {'a3'}");
    nse::registry_apply(fleet, cycle(a, fleet, code));
    post.import(fleet);
    CHECK(post.eval("table.concat(registry.list, ',')") == "a1,a2,b1,b2,b3,b4,a3");
}

TEST_CASE("registry delta: keyed writes, removals, nested tables and sparse integer keys") {
    Lua a, b, post;
    for (Lua* e : {&a, &b, &post})
        e->run("registry = {}");
    common::Value fleet;
    fleet.v = common::Table{};
    nse::registry_apply(fleet,
                        cycle(a, fleet,
                              "registry.ports = {[21] = 'ftp', [22] = 'ssh', [6379] = 'redis'}; "
                              "registry.keys = {host1 = {'k1'}}; registry.gone = true; "
                              "registry.edge = {[0] = 'zero', [-3] = 'neg', [2^40] = 'big'}"));
    nse::registry_apply(
        fleet, cycle(b, fleet,
                     "registry.ports[80] = 'http'; registry.gone = nil; "
                     "table.insert(registry.keys.host1, 'k2'); registry.keys.host2 = {'x'}"));
    post.import(fleet);
    CHECK(post.eval("registry.ports[21]") == "ftp");
    CHECK(post.eval("registry.ports[80]") == "http");
    CHECK(post.eval("registry.ports[6379]") == "redis");
    CHECK(post.eval("registry.ports[1]") == "nil");  // sparse keys are not positions
    CHECK(post.eval("registry.gone") == "nil");
    CHECK(post.eval("table.concat(registry.keys.host1, ',')") == "k1,k2");
    CHECK(post.eval("registry.keys.host2[1]") == "x");
    CHECK(post.eval("registry.edge[0]") == "zero");
    CHECK(post.eval("registry.edge[-3]") == "neg");
    CHECK(post.eval("registry.edge[2^40 // 1]") == "big");

    // Nothing changed: an empty delta.
    common::Value base = post.registry();
    CHECK(nse::registry_diff(base, post.registry()).table().entries.empty());
}

TEST_CASE("registry import: in place, so references scripts hold see the new contents") {
    Lua e;
    e.run(
        "registry = {args = {x = 1}, fn = print}; held = {}; registry.shared = held; "
        "registry.stale = 'old'");
    Lua other;
    other.run("registry = {shared = {n = 42, list = {'p', 'q'}}}");
    e.import(other.registry());
    CHECK(e.eval("held.n") == "42");
    CHECK(e.eval("held.list[2]") == "q");
    CHECK(e.eval("registry.shared == held") == "true");
    CHECK(e.eval("registry.stale") == "nil");         // not in the fleet's registry any more
    CHECK(e.eval("registry.args.x") == "1");          // the engine's own script args stay
    CHECK(e.eval("registry.fn == print") == "true");  // values that never travel stay
}

TEST_CASE("registry keys round-trip exactly through a delta and a snapshot import") {
    // Integer (0, negative, sparse, large), float (non-integral, huge) and string keys, and
    // a string that looks like a number: each comes back as the same Lua key.
    Lua a, b;
    a.run("registry = {}");
    b.run("registry = {}");
    common::Value empty;
    empty.v = common::Table{};
    common::Value d = cycle(a, empty,
                            "registry.k = {[0]='zero', [-7]='neg', [21]='ftp', [1.5]='half', "
                            "[-0.25]='quarter', [1e300]='huge', [2^53]='big', ['21']='text', "
                            "[1]='one', [2]='two'}");
    common::Value fleet = empty;
    nse::registry_apply(fleet, d);
    b.import(fleet);
    CHECK(b.eval("registry.k[0]") == "zero");
    CHECK(b.eval("registry.k[-7]") == "neg");
    CHECK(b.eval("registry.k[21]") == "ftp");
    CHECK(b.eval("registry.k[1.5]") == "half");
    CHECK(b.eval("registry.k[-0.25]") == "quarter");
    CHECK(b.eval("registry.k[1e300]") == "huge");
    CHECK(b.eval("registry.k[2^53]") == "big");  // an integral float key is an integer key
    CHECK(b.eval("registry.k['21']") == "text");
    CHECK(b.eval("#registry.k") == "2");
    b.run("local n = 0; for _ in pairs(registry.k) do n = n + 1 end; return n");
    int n = static_cast<int>(lua_tointeger(b.L, -1));
    lua_pop(b.L, 1);
    CHECK(n == 10);
    // Removing a float key removes it on the other side too.
    d = cycle(a, fleet, "registry.k[1.5] = nil");
    nse::registry_apply(fleet, d);
    b.import(fleet);
    CHECK(b.eval("registry.k[1.5]") == "nil");
    CHECK(b.eval("registry.k[-0.25]") == "quarter");
}
