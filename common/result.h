#pragma once
// The scan result model: what workers produce and output writers consume.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/value.h"

namespace common {

struct ScriptResult {
    std::string id;      // script id (file name without .nse)
    std::string output;  // text as the script produced it (not yet escaped)
    // Structured value, when the script returned a table (or a (value, string) pair).
    std::optional<Value> structured;
};

struct ServiceInfo {
    std::string name;              // nmap-services name or set by a script; empty if unknown
    std::string method = "table";  // "table" or "probed"
    int conf = 3;
    std::string product, version, extrainfo, hostname, ostype, devicetype, tunnel, servicefp;
    std::vector<std::string> cpe;
};

struct PortResult {
    std::uint16_t number = 0;
    std::string protocol = "tcp";  // tcp, udp, sctp
    std::string state;             // open, closed, filtered, ...
    std::string reason;            // syn-ack, conn-refused, no-response, ...
    int reason_ttl = 0;
    ServiceInfo service;
    std::vector<ScriptResult> scripts;
};

struct HostResult {
    std::size_t index = 0;  // position in target order: output is sorted by it
    std::string address;    // numeric address
    bool ipv6 = false;
    std::string targetname;                    // name given by the user, if any
    std::vector<std::string> other_addresses;  // the name's other addresses, not scanned
    std::string hostname;                      // reverse DNS name, if known
    std::string status = "up";                 // up, down
    std::string reason;                        // user-set, conn-refused, syn-ack, no-response, ...
    int reason_ttl = 0;
    double srtt = 0;  // seconds
    // Route facts, known only when the scan found the route (not with -sT -Pn, as in nmap):
    // interface empty = unknown; then directly_connected and source_address mean nothing.
    std::string interface;
    int interface_mtu = 0;
    bool directly_connected = false;
    std::string source_address;
    // MAC addresses ("AA:BB:CC:DD:EE:FF") when a raw scan learnt them on a directly connected
    // network: the target's, and our interface's.
    std::string mac_address;
    std::string source_mac;
    bool timed_out = false;               // --host-timeout expired
    double start_time = 0, end_time = 0;  // epoch seconds
    // Script results this host may lack because an engine limit (memory) was reached, not
    // because a script decided so: counted for the end-of-scan warning.
    std::uint32_t lost_results = 0;
    // Every scanned port, ascending (protocol, number). Writers collapse large same-state
    // runs into nmap's "Not shown: N closed tcp ports (conn-refused)".
    std::vector<PortResult> ports;
    std::vector<ScriptResult> hostscripts;
};

// Everything the writers need about the run as a whole.
struct RunInfo {
    std::string args;  // command line as typed
    double start = 0, end = 0;
    // nmap's <scaninfo>: one per protocol scanned (tcp first), with its scan type and its
    // port list in the "services" form ("21-23,80").
    struct ScanInfo {
        std::string type = "connect", protocol = "tcp", services;
    };
    std::vector<ScanInfo> scaninfo;
    int verbose = 0, debugging = 0;
    std::size_t hosts_up = 0, hosts_down = 0, hosts_total = 0;
    std::size_t lost_results = 0;  // sum of HostResult::lost_results (and the phases')
    bool open_only = false;        // --open
    std::vector<ScriptResult> prescripts, postscripts;
    std::string version = "0.1.0";
};

}  // namespace common
