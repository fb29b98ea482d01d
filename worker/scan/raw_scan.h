#pragma once
// Privileged scans on raw packets: host discovery (ARP on directly connected networks, ICMP
// echo/timestamp + TCP SYN 443 + ACK 80 otherwise), -sS SYN scan and -sU UDP scan. Probes
// (worker/scan/packet_builder.h) go out on a raw IPv4 socket (ARP through the capture);
// replies come in through common/packet's capture, whose descriptor the Asio io_context
// watches: no thread ever blocks. Whether raw scans are possible at all is
// packet::raw_privileged() (common/packet/privilege.h).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/options.h"
#include "common/result.h"
#include "common/services.h"
#include "common/status.h"

namespace asio {
class io_context;
}

namespace worker {

// Which ports the raw scanner probes, per protocol, ascending.
struct RawPlan {
    std::vector<std::uint16_t> tcp;  // SYN scan (empty: no -sS)
    std::vector<std::uint16_t> udp;  // UDP scan (empty: no -sU)
};

// Derives the plan from the options: -sS takes opts.ports' TCP entries; -sU takes UDP
// entries, or plain items of -p when the spec has no T:/U: prefix, or the top 1000 (-F: 100,
// --top-ports N) UDP ports of nmap-services when -p is absent.
RawPlan make_raw_plan(const common::ScanOptions& opts, const common::Services& services);

class RawScanner {
public:
    // `opts` supplies timing, -Pn/-sn, -e/-S, --host-timeout and the data directory.
    // `trace` gets nmap's --packet-trace SENT/RCVD lines.
    RawScanner(asio::io_context& io, const common::ScanOptions& opts,
               const common::Services& services, RawPlan plan,
               std::function<void(const std::string&)> trace = nullptr);
    ~RawScanner();

    // Discovers (unless -Pn) and scans (unless -sn) `hosts`, IPv4 only. Fills status, reason,
    // reason_ttl, srtt, ports, start/end times and the route facts (interface, mtu,
    // directly_connected, source_address). `done` runs on the io_context when all hosts are
    // finished; `hosts` must outlive that. Errors (no raw socket, pcap cannot open an
    // interface) come back at once and `done` is then never called. Call from the thread
    // running `io`.
    [[nodiscard]] common::Status start(std::vector<common::HostResult>& hosts,
                                       std::function<void()> done);
    // Before start(): no port probe leaves until every host's discovery is decided; then
    // `settled` runs on the io_context and the port scan waits for resume_ports() (nmap's
    // phases; with -sn, `settled` runs before the end). No effect with -Pn.
    void pause_after_discovery(std::function<void()> settled);
    void resume_ports();
    // After start(): whether any host gets a discovery probe (nmap then shows a Ping Scan).
    bool discovery_probes() const;
    // Where nsefleet's own warnings go (a line each, without newline), e.g. stderr.
    void set_warnings(std::function<void(const std::string&)> warn);

    // MAC address ("AA:BB:CC:DD:EE:FF") learnt by ARP for host `index`, "" when none.
    // The MAC address learnt for the host whose HostResult::index (the scan-wide index) is
    // `index`, or "".
    std::string mac_of(std::size_t index) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace worker
