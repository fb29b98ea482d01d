#pragma once
// Helpers every Lua module of the runtime shares:
//  - the soft-failure channel: a call whose outcome is the network's (timeout, reset, a
//    name that does not resolve) returns `nil, reason` or `false, reason`, with the reasons
//    the stock nselib compares against named once here; misuse (wrong argument types, a
//    closed object) raises instead. See docs/runtime-contract.md.
//  - userdata that owns one C/C++ object, the way Lua's io library does it: a named
//    metatable, one checker, the box created closed before the object is attached, and
//    `__gc`/`__close` sharing one idempotent close.
#include <lua.hpp>
#include <new>
#include <string_view>
#include <utility>

namespace nse::lib {

// Reasons of the soft-failure channel that scripts test for by value.
namespace reason {
inline constexpr const char* kTimeout = "TIMEOUT";
inline constexpr const char* kError = "ERROR";
inline constexpr const char* kCancelled = "CANCELLED";
inline constexpr const char* kEof = "EOF";
}  // namespace reason

// [-0, +2] Pushes `nil, reason`; returns 2, the lua_CFunction result count.
inline int fail_nil(lua_State* L, std::string_view why) {
    lua_pushnil(L);
    lua_pushlstring(L, why.data(), why.size());
    return 2;
}

// [-0, +2] Pushes `false, reason` (the calls whose nmap binding answers false); returns 2.
inline int fail_false(lua_State* L, std::string_view why) {
    lua_pushboolean(L, 0);
    lua_pushlstring(L, why.data(), why.size());
    return 2;
}

// [-0, +1] Pushes a userdata holding a T built in place (module state: one per engine),
// destroyed when Lua collects it (metatable `name`, made on first use, has the __gc).
template <class T>
int destroy_in_place(lua_State* L) {
    static_cast<T*>(lua_touserdata(L, 1))->~T();
    return 0;
}
template <class T, class... Args>
T& push_in_place(lua_State* L, const char* name, Args&&... args) {
    void* mem = lua_newuserdatauv(L, sizeof(T), 0);
    T* p = new (mem) T(std::forward<Args>(args)...);
    if (luaL_newmetatable(L, name)) {
        lua_pushcfunction(L, destroy_in_place<T>);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return *p;
}

// The userdata block: the owned object, or nullptr once closed (or not yet opened).
template <class T>
struct Box {
    T* p;
};

// [-0, +1] Pushes the metatable registered as `name`, creating it with `methods` on first use.
// Unless `methods` sets __index, the metatable becomes its own __index (method lookup).
inline void push_metatable(lua_State* L, const char* name, const luaL_Reg* methods) {
    if (luaL_newmetatable(L, name) == 0) return;  // already there
    luaL_setfuncs(L, methods, 0);
    if (lua_getfield(L, -1, "__index") == LUA_TNIL) {  // [meta, nil]
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_setfield(L, -2, "__index");  // meta.__index = meta
    } else {
        lua_pop(L, 1);
    }
}

// [-0, +1] Pushes a new, closed box with `nuv` user values and the metatable `name` (created
// from `methods` if needed). Attach the object only after this returns: it can raise (memory).
template <class T>
Box<T>* new_box(lua_State* L, int nuv, const char* name, const luaL_Reg* methods) {
    auto* box = static_cast<Box<T>*>(lua_newuserdatauv(L, sizeof(Box<T>), nuv));
    box->p = nullptr;                  // [ud]
    push_metatable(L, name, methods);  // [ud, meta]
    lua_setmetatable(L, -2);           // [ud]
    return box;
}

// [-0, +0] The box at `arg`; raises the usual "<name> expected" argument error otherwise.
// The object may be nullptr (closed): callers decide how to report that.
template <class T>
Box<T>* check_box(lua_State* L, int arg, const char* name) {
    return static_cast<Box<T>*>(luaL_checkudata(L, arg, name));
}

// Frees a `new`-allocated object, for boxes of C++ types.
template <class T>
void destroy(T* p) {
    delete p;
}

// lua_CFunction for `__gc` and `__close` (and the body of explicit closes): frees the object
// of the box at index 1 once; later calls do nothing.
template <class T, const char* Name, void (*Free)(T*)>
int close_box(lua_State* L) {
    Box<T>* box = check_box<T>(L, 1, Name);
    T* p = box->p;
    box->p = nullptr;
    if (p != nullptr) Free(p);
    return 0;
}

}  // namespace nse::lib
