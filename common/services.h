#pragma once
// nmap-services: port → service name, and open-frequency ranking for -F / --top-ports.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/options.h"
#include "common/status.h"

namespace common {

class Services {
public:
    // Loads an nmap-services file. Error if it cannot be read.
    static Result<Services> load(const std::string& path);
    // Service name for a port, or "" when unknown. proto is "tcp"/"udp"/"sctp".
    std::string name(std::uint16_t port, const std::string& proto) const;
    // The n most frequently open ports of a protocol ('t' or 'u'), by descending frequency.
    std::vector<PortSpec> top(int n, char proto) const;
    // Ports of protocol `proto` ('t'/'u') whose service name matches `pattern`
    // (case-insensitive, '*' and '?' wildcards), ascending. Empty when none match.
    std::vector<std::uint16_t> ports_matching(const std::string& pattern, char proto) const;

private:
    std::map<std::pair<std::string, std::uint16_t>, std::pair<std::string, double>> entries_;
};

// Parses an nmap -p list: "22", "1-1024", "-", "T:80,U:53", "80,443,8000-8100",
// "[1-1024]" (bounded by services not supported: plain ranges only), service names ("http",
// "ssh" resolved through `services`). `default_proto` applies to items before any T:/U:.
// Result is sorted (tcp before udp) and unique. Errors name the token:
// "invalid port specification: '70000'".
Result<std::vector<PortSpec>> parse_port_list(const std::string& spec, const Services* services);

// Fills opts.ports from -p / -F / --top-ports (default: top 1000 tcp).
Status resolve_ports(ScanOptions& opts, const Services& services);

// The port numbers each protocol's scan covers, ascending: TCP (-sS/-sT, or no -sU) the
// resolved 't' ports; UDP (-sU) the 'u' ports, plus the 't' ones of a -p list without T:/U:
// prefixes, or the top UDP ports when there is no -p. Empty for -sn.
struct ProtocolPorts {
    std::vector<std::uint16_t> tcp, udp;
};
ProtocolPorts protocol_ports(const ScanOptions& opts, const Services& services);

}  // namespace common
