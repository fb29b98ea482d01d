#pragma once
// The `nmap` Lua module (with nmap.socket and nmap.dnet), and the host/port tables scripts see.
#include <lua.hpp>

#include "common/result.h"

namespace nse::lib {

// require "nmap": [-0, +1] pushes the module table.
int luaopen_nmap(lua_State* L);

// [-0, +1] A fresh host table for `h` (docs/runtime-contract.md "Host table"); its `registry` field
// is the table at stack index `registry` (shared by every script of the host).
void push_host(lua_State* L, const common::HostResult& h, int registry);

// [-0, +1] A fresh port table for `p` (docs/runtime-contract.md "Port table").
void push_port(lua_State* L, const common::PortResult& p);

}  // namespace nse::lib
