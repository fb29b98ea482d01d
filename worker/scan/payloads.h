#pragma once
// The UDP probe payloads of nmap-payloads (the data file shipped with nmap-common).
#include <cstdint>
#include <map>
#include <string>

namespace worker {

// UDP payloads of nmap-payloads: port → first payload for it. Empty map when the file is
// missing or unreadable (ports then get an empty datagram, as nmap does). The file's entries
// read `udp <ports> "<C-escaped string>"...` (strings may continue on following lines and are
// joined; other keywords after them, such as `source`, are ignored); `#` starts a comment
// outside strings; malformed port items are skipped.
std::map<std::uint16_t, std::string> load_udp_payloads(const std::string& path);

}  // namespace worker
