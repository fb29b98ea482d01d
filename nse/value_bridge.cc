#include "nse/value_bridge.h"

#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace nse {

common::Value tree_to_value(lua_State* L, int idx) {
    idx = lua_absindex(L, idx);
    common::Value out;
    luaL_checkstack(L, 4, "tree too deep");
    lua_getfield(L, idx, "kind");
    bool table = lua_isstring(L, -1) && std::string(lua_tostring(L, -1)) == "table";
    lua_pop(L, 1);
    if (!table) {
        lua_getfield(L, idx, "value");
        std::size_t n = 0;
        const char* s = lua_tolstring(L, -1, &n);
        out.v = std::string(s ? s : "", n);
        lua_pop(L, 1);
        return out;
    }
    common::Table t;
    lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, idx));
    for (lua_Integer i = 1; i <= n; ++i) {
        lua_rawgeti(L, idx, i);
        common::Entry e;
        lua_getfield(L, -1, "key");
        if (lua_isstring(L, -1)) {
            e.key = lua_tostring(L, -1);
        } else {
            e.indexed = true;
        }
        lua_pop(L, 1);
        lua_getfield(L, -1, "value");
        if (lua_istable(L, -1)) e.value = tree_to_value(L, -1);
        lua_pop(L, 2);
        t.entries.push_back(std::move(e));
    }
    out.v = std::move(t);
    return out;
}

bool registry_value_travels(int lua_type) {
    return lua_type == LUA_TBOOLEAN || lua_type == LUA_TNUMBER || lua_type == LUA_TSTRING ||
           lua_type == LUA_TTABLE;
}

bool registry_key_travels(lua_State* L, int k, bool top) {
    int kt = lua_type(L, k);
    if (kt == LUA_TNUMBER) return true;
    if (kt != LUA_TSTRING) return false;
    if (!top) return true;
    std::size_t n = 0;
    const char* s = lua_tolstring(L, k, &n);  // a string already: no conversion
    return !(n == 4 && std::memcmp(s, "args", 4) == 0);
}

common::Entry registry_key(lua_State* L, int k) {
    common::Entry e;
    if (lua_type(L, k) == LUA_TSTRING) {
        std::size_t n = 0;
        const char* s = lua_tolstring(L, k, &n);
        e.key.assign(s, n);
        return e;
    }
    e.indexed = true;
    e.key = lua_isinteger(L, k) ? std::to_string(lua_tointeger(L, k))
                                : common::float_key_text(lua_tonumber(L, k));
    return e;
}

namespace {

common::Value to_value(lua_State* L, int idx, std::set<const void*>& seen, bool top) {
    idx = lua_absindex(L, idx);
    common::Value out;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: out.v = static_cast<bool>(lua_toboolean(L, idx)); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            out.v = static_cast<std::int64_t>(lua_tointeger(L, idx));
        else
            out.v = static_cast<double>(lua_tonumber(L, idx));
        break;
    case LUA_TSTRING: {
        std::size_t n;
        const char* s = lua_tolstring(L, idx, &n);
        out.v = std::string(s, n);
        break;
    }
    case LUA_TTABLE: {
        const void* p = lua_topointer(L, idx);
        if (seen.count(p)) break;
        seen.insert(p);
        luaL_checkstack(L, 4, "registry too deep");
        common::Table t;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (!registry_key_travels(L, -2, top) || !registry_value_travels(lua_type(L, -1))) {
                lua_pop(L, 1);
                continue;
            }
            common::Entry e = registry_key(L, -2);
            e.value = to_value(L, -1, seen, false);
            lua_pop(L, 1);
            t.entries.push_back(std::move(e));
        }
        seen.erase(p);
        out.v = std::move(t);
        break;
    }
    default: break;
    }
    return out;
}

// [-0, +1] key of an entry: integer keys for indexed entries. Their number is the decimal
// text in `key` when there is one; entries that crossed the wire carry no number and take
// their position among the indexed entries (`*position`, counted here).
void push_key(lua_State* L, const common::Entry& e, lua_Integer* position) {
    if (!e.indexed) {
        lua_pushlstring(L, e.key.data(), e.key.size());
        return;
    }
    ++*position;
    if (auto f = common::item_float(e)) {
        lua_pushnumber(L, *f);
        return;
    }
    auto k = common::item_index(e);
    lua_pushinteger(L, k ? static_cast<lua_Integer>(*k) : *position);
}

// [-0, +1] With a key on top, pushes the table the table at `idx` holds under it, first
// putting a new empty one there when the value is not a table. The key stays below it.
void push_subtable(lua_State* L, int idx) {
    lua_pushvalue(L, -1);
    if (lua_rawget(L, idx) == LUA_TTABLE) return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -2);  // key
    lua_pushvalue(L, -2);  // new table
    lua_rawset(L, idx);
}

}  // namespace

common::Value registry_to_value(lua_State* L, int idx) {
    std::set<const void*> seen;
    return to_value(L, idx, seen, true);
}

common::Value plain_to_value(lua_State* L, int idx) {
    std::set<const void*> seen;
    return to_value(L, idx, seen, false);
}

void push_entry_key(lua_State* L, const common::Entry& e) {
    lua_Integer position = 0;
    push_key(L, e, &position);
}

void push_value(lua_State* L, const common::Value& v) {
    luaL_checkstack(L, 4, "value too deep");
    std::visit(
        [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>)
                lua_pushnil(L);
            else if constexpr (std::is_same_v<T, bool>)
                lua_pushboolean(L, x);
            else if constexpr (std::is_same_v<T, std::int64_t>)
                lua_pushinteger(L, static_cast<lua_Integer>(x));
            else if constexpr (std::is_same_v<T, double>)
                lua_pushnumber(L, x);
            else if constexpr (std::is_same_v<T, std::string>)
                lua_pushlstring(L, x.data(), x.size());
            else {
                lua_createtable(L, 0, static_cast<int>(x.entries.size()));
                lua_Integer position = 0;
                for (const auto& e : x.entries) {
                    push_key(L, e, &position);
                    push_value(L, e.value);
                    lua_rawset(L, -3);
                }
            }
        },
        v.v);
}

void apply_delta(lua_State* L, int idx, const common::Value& delta) {
    if (!delta.is_table()) return;
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 4, "registry too deep");
    // Appends go after the first border from 1, as registry_apply puts them (lua_rawlen may
    // find another border in a table with holes, and the engine's copy would drift).
    lua_Integer next = 0;
    for (const auto& e : delta.table().entries) {
        if (e.indexed && e.key.empty()) {  // an append
            if (next == 0) {
                next = 1;
                while (lua_rawgeti(L, idx, next) != LUA_TNIL) {
                    lua_pop(L, 1);
                    ++next;
                }
                lua_pop(L, 1);
            }
            lua_Integer at = next++;
            if (e.value.is_table()) {
                lua_newtable(L);
                apply_delta(L, -1, e.value);
            } else {
                push_value(L, e.value);
            }
            lua_rawseti(L, idx, at);
            continue;
        }
        next = 0;  // a keyed change may move the border
        lua_Integer unused = 0;
        push_key(L, e, &unused);
        if (e.value.is_table()) {
            push_subtable(L, idx);
            apply_delta(L, -1, e.value);
            lua_pop(L, 2);  // table, key
            continue;
        }
        push_value(L, e.value);  // nil removes
        lua_rawset(L, idx);
    }
}

void sync_table(lua_State* L, int idx, const common::Value& snapshot, bool top) {
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 6, "registry too deep");
    // Set every key of the snapshot; nested tables are synced in place (kept references
    // see the new contents).
    std::set<std::pair<bool, std::string>> keep;
    if (snapshot.is_table()) {
        lua_Integer position = 0;
        for (const auto& e : snapshot.table().entries) {
            keep.insert({e.indexed, e.key});
            push_key(L, e, &position);
            if (e.value.is_table()) {
                push_subtable(L, idx);
                sync_table(L, -1, e.value, false);
                lua_pop(L, 2);
                continue;
            }
            push_value(L, e.value);
            lua_rawset(L, idx);
        }
    }
    // Remove the plain-data keys the snapshot does not have (functions, userdata and the
    // top-level "args" never travel, so they stay).
    std::vector<std::pair<bool, std::string>> drop;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2), vt = lua_type(L, -1);
        lua_pop(L, 1);
        if (vt == LUA_TFUNCTION || vt == LUA_TUSERDATA || vt == LUA_TTHREAD ||
            vt == LUA_TLIGHTUSERDATA)
            continue;
        std::pair<bool, std::string> k;
        if (kt == LUA_TSTRING) {
            k = {false, lua_tostring(L, -1)};
            if (top && k.second == "args") continue;
        } else if (kt == LUA_TNUMBER && lua_isinteger(L, -1)) {
            k = {true, std::to_string(lua_tointeger(L, -1))};
        } else if (kt == LUA_TNUMBER) {
            k = {true, common::float_key_text(lua_tonumber(L, -1))};
        } else {
            continue;
        }
        if (!keep.count(k)) drop.push_back(std::move(k));
    }
    for (const auto& [indexed, key] : drop) {
        lua_Integer unused = 0;
        push_key(L, common::Entry{indexed, key, {}}, &unused);
        lua_pushnil(L);
        lua_rawset(L, idx);
    }
}

}  // namespace nse
