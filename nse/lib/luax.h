#pragma once
// Userdata that owns one C/C++ object, the way Lua's io library does it: a named metatable,
// one checker, the box created closed before the object is attached, and `__gc`/`__close`
// sharing one idempotent close. Shared by the openssl, zlib and certificate modules.
#include <lua.hpp>

namespace nse::lib {

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
