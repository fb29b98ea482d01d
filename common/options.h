#pragma once
// Everything the command line can say about a scan (nmap's flags and meanings).
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace common {

struct PortSpec {
    std::uint16_t number;
    char proto;  // 't' tcp, 'u' udp
    bool operator==(const PortSpec&) const = default;
};

struct TimingProfile {
    int level = 3;                    // -T0..-T5
    double connect_timeout = 1.0;     // seconds for one connect probe before retrying
    int max_retries = 2;              // retries for a filtered (silent) port
    int max_parallel_connects = 512;  // per engine, connect probes in flight
    double scan_delay = 0.0;          // seconds between probes (T0/T1)
    // nmap's fine-grained timing options (--min-rtt-timeout ... --min-parallelism).
    double min_rtt_timeout = 0.1;   // floor of an adaptive probe time-out (raw scans)
    double max_rtt_timeout = 10.0;  // ceiling of any probe time-out
    double max_scan_delay = 1.0;    // ceiling of --scan-delay
    double min_rate = 0;            // probes per second to keep up (0 = none)
    double max_rate = 0;            // probes per second never to exceed (0 = no limit)
    int min_parallelism = 0;        // probes in flight kept at least (0 = adaptive)
    bool max_retries_set = false;   // --max-retries given: hitting the cap is worth a warning

    // --scan-delay and --max-rate together: the least time between two probes (seconds).
    double probe_interval() const {
        return std::max(scan_delay, max_rate > 0 ? 1.0 / max_rate : 0.0);
    }
};

// Host discovery probes (-PS/-PA/-PU/-PE/-PP/-PM/-PR). Empty: nmap's default set.
struct DiscoveryProbes {
    std::vector<int> syn, ack, udp;  // ports of TCP SYN, TCP ACK and UDP probes
    bool echo = false, timestamp = false, netmask = false, arp = false;
    bool given() const {
        return !syn.empty() || !ack.empty() || !udp.empty() || echo || timestamp || netmask || arp;
    }
};

// Packet options nmap applies to raw probes (-f/--mtu, -D, -g, --ttl, --data-length,
// --badsum, --spoof-mac).
struct PacketOptions {
    int ttl = -1;           // --ttl (-1: the stack's default)
    int source_port = -1;   // -g/--source-port (-1: random)
    int data_length = 0;    // --data-length: random payload bytes appended
    bool badsum = false;    // --badsum: wrong TCP/UDP/ICMP checksums
    int mtu = 0;            // -f (8 per -f) / --mtu: fragment IP payloads (0 = whole)
    std::string decoys;     // -D as given
    std::string spoof_mac;  // --spoof-mac as given
};

struct ScanOptions {
    std::string command_line;  // argv joined, for output headers

    // Targets
    std::vector<std::string> targets;        // as given (addresses, names, CIDR, ranges)
    std::vector<std::string> input_files;    // -iL
    std::vector<std::string> excludes;       // --exclude (comma lists already split)
    std::vector<std::string> exclude_files;  // --excludefile

    // Ports
    std::string port_spec;        // -p as given ("" = default top 1000)
    bool fast = false;            // -F (top 100)
    int top_ports = 0;            // --top-ports N (0 = unset)
    std::vector<PortSpec> ports;  // resolved, sorted, unique (filled by resolve_ports)

    // Scan kinds
    bool connect_scan = true;     // -sT (default unless -sS or -sU alone is given)
    bool syn_scan = false;        // -sS (raw; falls back to -sT without privileges)
    bool default_scan = false;    // no -sT/-sS/-sU given: -sS when raw I/O is allowed, as nmap
    bool udp_scan = false;        // -sU (raw)
    bool skip_discovery = false;  // -Pn (also -PN, -P0)
    DiscoveryProbes discovery;    // -PS/-PA/-PU/-PE/-PP/-PM/-PR
    bool list_scan = false;       // -sL: list the targets, send nothing to them
    int random_targets = -1;      // -iR N (0 = without end; -1 = not given)
    bool resolve_all = false;     // --resolve-all: every address of a name, not the first
    bool packet_trace = false;    // --packet-trace
    bool privileged = false;      // --privileged: assume raw sockets work
    bool unprivileged = false;    // --unprivileged: no raw sockets (connect scan, no pcap)
    PacketOptions packet;
    bool ping_only = false;   // -sn
    bool no_dns = false;      // -n
    bool dns_all = false;     // -R: reverse DNS for every target, also hosts down
    bool system_dns = false;  // --system-dns: getnameinfo instead of c-ares
    std::string dns_servers;  // --dns-servers a,b (replaces resolv.conf's servers)
    bool ipv6 = false;        // -6
    std::string iface;        // -e: interface for raw scans ("" = by route)
    std::string source;       // -S: source address for raw scans ("" = by route)

    // Service and version detection
    bool version_scan = false;       // -sV (also -A)
    int version_intensity = 7;       // --version-intensity 0-9 (--version-light 2, --version-all 9)
    bool version_trace = false;      // --version-trace
    bool version_all_ports = false;  // --allports: also the ports nmap-service-probes excludes
    bool aggressive = false;         // -A: -sV -sC (OS detection and traceroute not supported)

    // Scripts
    std::vector<std::string> scripts;  // --script items in order (split on commas)
    bool default_scripts = false;      // -sC
    std::string script_args;           // --script-args (joined with ',' when repeated)
    std::string script_args_file;      // --script-args-file
    bool script_trace = false;         // --script-trace: every script socket's traffic
    double script_timeout = 0;         // seconds, 0 = none
    double host_timeout = 0;           // seconds, 0 = none
    int max_parallelism =
        0;  // --max-parallelism: NSE socket slots per engine, fixed (0 = adaptive governor)

    TimingProfile timing;
    int verbosity = 0;       // -v count (or -vN)
    int debugging = 0;       // -d count (or -dN)
    double stats_every = 0;  // --stats-every seconds, 0 = off

    // Output
    std::string out_normal, out_xml, out_grepable, out_json;     // "-" = stdout
    bool open_only = false;                                      // --open
    bool reason = false;                                         // --reason
    std::string out_skid;                                        // -oS
    bool append_output = false;                                  // --append-output
    std::string stylesheet = "file:///usr/share/nmap/nmap.xsl";  // "" = --no-stylesheet
    std::vector<std::string> warnings;  // nmap-style one-line warnings for the terminal
    std::vector<std::string> accepted;  // nmap flags taken whose meaning already holds here
    bool iflist = false;                // --iflist: print interfaces and routes, no scan
    std::string exclude_ports;          // --exclude-ports
    std::string servicedb, versiondb;   // --servicedb / --versiondb (files, "" = datadir's)

    int min_hostgroup = 0, max_hostgroup = 0;  // 0 = automatic
    std::string datadir;                       // --datadir
    int workers = 0;                           // --workers: engines (0 = one per core)
    int engine_memory_mb = 1024;               // --engine-memory: Lua memory cap per engine
    bool help = false;                         // --help / -h: caller prints scan_usage()
    bool scripts_requested() const { return default_scripts || !scripts.empty(); }
};

// Parses `nsefleet scan` arguments (argv after the "scan" word). On error the message names
// the bad token, e.g. "invalid port specification: 'x-1'". With --help/-h the result is ok,
// has help set, and is otherwise unchecked (no "no targets specified" error).
Result<ScanOptions> parse_scan_args(const std::vector<std::string>& args);

// nmap's time syntax: "30" (seconds), "30s", "500ms", "5m", "2h". Error on anything else.
Result<double> parse_time_spec(const std::string& s);

// Text printed by `nsefleet scan --help`.
std::string scan_usage();

}  // namespace common
