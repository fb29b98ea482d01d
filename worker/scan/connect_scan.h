#pragma once
// Asynchronous TCP connect scan and unprivileged host discovery on Asio.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/options.h"
#include "common/result.h"
#include "common/services.h"

namespace asio {
class io_context;
}

namespace worker {

class ConnectScanner {
public:
    // `opts` supplies ports, timing, -Pn/-sn, --host-timeout; `services` names ports.
    // `trace` gets nmap's --packet-trace lines ("CONN (0.0012s) TCP localhost > ...").
    ConnectScanner(asio::io_context& io, const common::ScanOptions& opts,
                   const common::Services& services,
                   std::function<void(const std::string&)> trace = nullptr);
    ~ConnectScanner();

    // Discovers (unless -Pn) and scans (unless -sn) `hosts`, which arrive with index,
    // address, ipv6 and targetname set. Fills status/reason/srtt/ports/start/end times.
    // `done` runs on the io_context when every host is finished. `hosts` must stay alive
    // until then. Must be called from the thread running `io`.
    void start(std::vector<common::HostResult>& hosts, std::function<void()> done);
    // As nmap, the machine's own addresses (loopback included) are up without a discovery
    // probe ("localhost-response"); true sends the probes anyway (discovery tests on lo).
    void set_probe_own_addresses(bool probe);
    // Before start(): as nmap's phases, no port is scanned until every host's discovery is
    // decided; then `settled` runs on the io_context and the port scan waits for
    // resume_ports() (with -sn, `settled` runs before the end). No effect with -Pn.
    void pause_after_discovery(std::function<void()> settled);
    void resume_ports();
    // After start(): whether any host gets a discovery probe (nmap then shows a Ping Scan).
    bool discovery_probes() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace worker
