#pragma once
// NSE socket objects (docs/runtime-contract.md "nmap.new_socket"): TCP, UDP and TLS sockets on the
// engine's Asio loop, plus nmap.socket.sleep ("nmap.socket.sleep and the rest of nmap.socket").
// Every blocking-looking method starts an asynchronous operation, yields through nse::yield and is
// resumed by the operation's Waker; completions are never delivered inside the call that started
// them.
#include <lua.hpp>

namespace nse::lib {

// [-0, +1] Pushes the nmap.socket table {new, sleep, parse_ssl_certificate, get_stats, loop}.
// Registers the socket metatable ("nsefleet.socket") in the registry of L. Module state (the
// TLS client context, string.find) lives in upvalues, so several engines may coexist in one
// process. Must be called after the string library is loaded (it is opened if missing).
//
// Socket methods (the full contract: "Socket methods"):
//   connect(host, port[, how]) -> true | nil, "ERROR"|"TIMEOUT"|... | false, <gai text>
//   bind(addr|nil, port)       -> true | false, "getaddrinfo: <msg>"
//   send(data), sendto(host, port, data), receive(), receive_bytes(n), receive_lines(n),
//   receive_buf(delim, keep), get_info(), set_timeout(ms), close(), reconnect_ssl(),
//   get_ssl_certificate().
// Deviation from 7.93 ("Socket status strings and misuse"): I/O on an unconnected socket returns
// false, "socket must be connected" instead of raising.
//
// The engine must run thread cleanups and close the lua_State before destroying its
// io_context (socket finalizers close Asio objects).
int open_socket(lua_State* L);

}  // namespace nse::lib
