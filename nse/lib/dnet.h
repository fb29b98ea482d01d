#pragma once
// nmap.new_dnet(): raw Ethernet and IP sends on libdumbnet (contract §10).
#include <lua.hpp>

namespace nse::lib {

// The Lua function nmap.new_dnet: [-0, +1] pushes a new dnet object.
int new_dnet(lua_State* L);

}  // namespace nse::lib
