#pragma once
// Target specifications as nmap reads them: addresses, names, CIDR, octet ranges.
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace common {

struct Target {
    std::string address;     // numeric address ("127.0.1.5", "::1")
    bool ipv6 = false;
    std::string targetname;  // the name the user typed when it was a hostname, else empty
};

// Expands target specs (plus -iL files, minus --exclude/--excludefile) into the ordered,
// de-duplicated host list. Host names are resolved with getaddrinfo (first address of the
// wanted family). Errors name the bad token: "invalid target specification: '10.0.0.0/33'",
// "failed to resolve 'nosuch.invalid'", "cannot read target file 'x': No such file...".
// An expansion of more than `limit` hosts is an error.
Result<std::vector<Target>> expand_targets(const std::vector<std::string>& specs,
                                           const std::vector<std::string>& input_files,
                                           const std::vector<std::string>& excludes,
                                           const std::vector<std::string>& exclude_files,
                                           bool ipv6, std::size_t limit = 1u << 24);

}  // namespace common
