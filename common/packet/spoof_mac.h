#pragma once
// --spoof-mac: the source MAC address of the raw frames a scan sends, chosen once per scan
// from the option's value as nmap reads it.
#include <string>

#include "common/packet/interface.h"
#include "common/status.h"

namespace packet {

struct SpoofMac {
    Mac mac{};
    std::string vendor;  // from nmap-mac-prefixes, "No registered vendor" when not listed
};

// `spec`: "0" (a random address), 2 to 12 hex digits with optional ':' or '-' between the
// pairs (missing bytes random), or a vendor name found (case-insensitively, as a substring)
// in `prefixes_path` (nmap-mac-prefixes: "XXXXXX Vendor name" lines; the remaining three bytes
// random). Random bytes never make a multicast address. Errors say which form was expected.
common::Result<SpoofMac> choose_spoof_mac(const std::string& spec,
                                          const std::string& prefixes_path);

}  // namespace packet
