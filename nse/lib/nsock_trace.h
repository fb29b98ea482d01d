#pragma once
// --packet-trace for script sockets: nmap's "NSOCK INFO [0.4740s] fn(): ..." lines, which
// name each socket by an I/O descriptor number (IOD) and each operation by an event id
// (EID). Both count per process here, as nmap's nsock pool counts them per scan; an event
// id is the event's sequence number times 8 plus its type, as nsock numbers them.
#include <string>
#include <string_view>
#include <system_error>

namespace nse::lib::nsock {

enum class Event { connect = 0, ssl_connect = 1, read = 2, write = 3 };

long next_iod();
long next_eid(Event type);

// "NSOCK INFO [<seconds since the process started>s] <fn>(): <text>\n".
std::string line(std::string_view fn, std::string_view text);

// The completion line: "Callback: READ SUCCESS for EID 18 [127.0.0.1:22] (41 bytes): SSH-..."
// `status` is SUCCESS, ERROR, TIMEOUT, EOF or CANCELLED; an ERROR with `ec` set names the
// system error ("[Connection refused (111)]"); a short read shows its data, unprintable
// bytes as '.'.
std::string callback(Event type, std::string_view status, long eid, std::string_view peer,
                     const std::error_code& ec = {}, const std::string* data = nullptr);

}  // namespace nse::lib::nsock
