#pragma once
// The `zlib` Lua module with the lzlib API nmap bundles (docs/runtime-contract.md "zlib"):
// checksums, one-shot compress/decompress and streaming inflate (read) / deflate (write) objects.
// Not the API of Debian's lua-zlib.
#include <lua.hpp>

namespace nse::lib {

// Opens the module: [-0, +1] pushes the module table. Stream metatables live in the registry
// under "nse.zlib.inflate" and "nse.zlib.deflate".
int luaopen_zlib(lua_State* L);

}  // namespace nse::lib
