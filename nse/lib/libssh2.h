#pragma once
// The `libssh2` Lua module (docs/runtime-contract.md "libssh2") on Debian's libssh2.
#include <lua.hpp>

namespace nse::lib {

// require "libssh2": [-0, +1] pushes the module table.
int luaopen_libssh2(lua_State* L);

}  // namespace nse::lib
