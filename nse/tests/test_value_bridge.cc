// Registry snapshots cross engines and the wire as common::Value; array items may arrive
// without their index (the codec sends them keyless) and must land in order.
#include <doctest/doctest.h>

#include <lua.hpp>

#include "nse/value_bridge.h"

namespace {

common::Entry item(const char* key, const char* text, bool indexed) {
    common::Entry e;
    e.indexed = indexed;
    e.key = key;
    e.value.v = std::string(text);
    return e;
}

std::string eval(lua_State* L, const char* expr) {
    std::string code = std::string("return tostring(") + expr + ")";
    REQUIRE(luaL_dostring(L, code.c_str()) == LUA_OK);
    std::string s = lua_tostring(L, -1);
    lua_pop(L, 1);
    return s;
}

}  // namespace

TEST_CASE("keyless array items take their position, numbered ones keep their index") {
    lua_State* L = luaL_newstate();
    luaL_openlibs(L);
    common::Value v;
    common::Table t;
    t.entries.push_back(item("", "a", true));
    t.entries.push_back(item("", "b", true));
    t.entries.push_back(item("name", "x", false));
    t.entries.push_back(item("7", "seven", true));
    v.v = t;
    nse::push_value(L, v);
    lua_setglobal(L, "r");
    CHECK(eval(L, "r[1]") == "a");
    CHECK(eval(L, "r[2]") == "b");
    CHECK(eval(L, "r.name") == "x");
    CHECK(eval(L, "r[7]") == "seven");

    // Merging the same shape into an existing table (registry import).
    REQUIRE(luaL_dostring(L, "g = {keep = 1, sub = {old = true}}") == LUA_OK);
    common::Value m;
    common::Table mt;
    mt.entries.push_back(item("", "first", true));
    common::Entry sub;
    sub.key = "sub";
    common::Table st;
    st.entries.push_back(item("new", "yes", false));
    sub.value.v = st;
    mt.entries.push_back(sub);
    m.v = mt;
    lua_getglobal(L, "g");
    nse::apply_delta(L, -1, m);
    lua_pop(L, 1);
    CHECK(eval(L, "g[1]") == "first");
    CHECK(eval(L, "g.keep") == "1");
    CHECK(eval(L, "g.sub.old") == "true");
    CHECK(eval(L, "g.sub.new") == "yes");
    lua_close(L);
}
