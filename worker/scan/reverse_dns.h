#pragma once
// Reverse DNS as nmap does it by default: PTR names for the hosts that are up (every host
// with -R, none with -n), all queries at once with c-ares on the scan's Asio loop (no thread
// per query). /etc/hosts and /etc/resolv.conf are honoured; --dns-servers replaces the
// resolv.conf servers; --system-dns asks the system resolver (getnameinfo), one at a time.
#include <functional>
#include <memory>
#include <vector>

#include "common/options.h"
#include "common/result.h"

namespace asio {
class io_context;
}

namespace worker {

class ReverseDns {
public:
    ReverseDns(asio::io_context& io, const common::ScanOptions& opts);
    ~ReverseDns();

    // Fills `hostname` of the hosts that get a look-up; `done` runs on the io_context when
    // every answer (or time-out) is in. `hosts` must stay alive until then. A resolver that
    // cannot start (bad --dns-servers) warns through `warn` once and leaves names empty.
    void start(std::vector<common::HostResult>& hosts, std::function<void()> done,
               std::function<void(const std::string&)> warn);

    // How many of `hosts` get a look-up (up ones, all with -R or -sL; none with -n).
    static std::size_t wanted(const common::ScanOptions& opts,
                              const std::vector<common::HostResult>& hosts);

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

}  // namespace worker
