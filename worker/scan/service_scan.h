#pragma once
// Service and version detection (-sV) on Asio: nmap-service-probes probes sent to every open
// TCP port (and open or open|filtered UDP port) of a group, many ports at once under a
// concurrency governor, each port walking its own probe plan (NULL probe, probes registered
// for the port, then the rest by rarity; again inside TLS when a probe finds ssl).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/options.h"
#include "common/result.h"
#include "common/service_probes.h"

namespace asio {
class io_context;
}

namespace worker {

class ServiceScanner {
public:
    // `log` receives --version-trace lines (each ends with '\n').
    ServiceScanner(asio::io_context& io, const common::ScanOptions& opts,
                   std::shared_ptr<const common::ServiceProbes> probes,
                   std::function<void(const std::string&)> log);
    ~ServiceScanner();

    // Probes the open ports of the `hosts` that are up and fills their `service`; a UDP port
    // that answers a probe becomes open (reason udp-response). `done` runs on the io_context
    // when every port is finished; `hosts` must stay alive until then. Call from the thread
    // running `io`.
    void start(std::vector<common::HostResult>& hosts, std::function<void()> done);

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace worker
