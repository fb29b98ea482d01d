#pragma once
// nmap.new_dnet(): raw Ethernet and IP sends (docs/runtime-contract.md "dnet"). Ethernet frames go
// through libdumbnet's eth_t; IP packets through raw sockets with the header included.
#include <lua.hpp>

namespace nse::lib {

// The Lua function nmap.new_dnet: [-0, +1] pushes a new, closed dnet object. Needs no
// upvalues. Per-engine state (Ethernet handles shared per interface name) lives in the
// registry of L, so several engines may coexist in one process.
//
// Methods:
//   ethernet_open(ifname) -> true; raises on a name of 32 bytes or more ("device name too
//       long"), on a non-Ethernet device ("device is not valid ethernet interface") and when
//       the handle cannot be opened ("unable to open dnet on ethernet interface <if>").
//   ethernet_send(frame)  -> true | false, "eth_send error: <n>"; raises
//       "dnet ethernet interface is not open".
//   ethernet_close()      -> true.
//   ip_open()             -> true; raises "failed to open raw socket: <err> (errno <n>)".
//   ip_send(packet[, dst]) -> true | false, <strerror>; dst is a host table or an address
//       string (omitted: the packet's destination). Raises "raw socket not open to send",
//       "can't parse ip packet". Always sends through the raw socket (there is no
//       Ethernet-send mode yet).
//   ip_close()            -> true | false, "raw socket already closed".
// __gc and __close close both handles.
int new_dnet(lua_State* L);

}  // namespace nse::lib
