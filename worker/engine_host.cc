#include "worker/engine_host.h"

#include <asio.hpp>
#include <atomic>

#include "common/packet/privilege.h"
#include "worker/route.h"
#include "worker/scan/connect_scan.h"
#include "worker/scan/raw_scan.h"

namespace worker {

common::Result<std::unique_ptr<EngineHost>> EngineHost::create(const common::ScanOptions& opts,
                                                               const common::Services& services,
                                                               nse::Embedder& embedder,
                                                               nse::SharedState& shared,
                                                               std::uint64_t engine_id) {
    nse::EngineConfig cfg;
    cfg.engine_id = engine_id;
    cfg.scripts = opts.scripts;
    cfg.default_scripts = opts.default_scripts;
    cfg.script_args = opts.script_args;
    cfg.script_args_file = opts.script_args_file;
    cfg.script_timeout = opts.script_timeout;
    cfg.host_timeout = opts.host_timeout;
    cfg.verbosity = opts.verbosity;
    cfg.debugging = opts.debugging;
    cfg.timing_level = opts.timing.level;
    cfg.socket_slots = opts.max_parallelism;  // nmap's meaning: NSE's socket slots
    cfg.datadir = opts.datadir;
    cfg.ipv6 = opts.ipv6;
    cfg.iface = opts.iface;
    cfg.memory_limit = static_cast<std::size_t>(opts.engine_memory_mb) << 20;
    std::unique_ptr<EngineHost> w(new EngineHost(opts, services, embedder, shared));
    auto engine = nse::Engine::create(cfg, w->embedder_, shared);
    if (!engine) return engine.status();
    w->engine_ = std::move(*engine);
    return w;
}

bool EngineHost::use_raw_scan() {
    if (!opts_.syn_scan && !opts_.udp_scan) return false;
    // Decided once per process: every engine sees the same privileges and warns only once.
    static const bool privileged = packet::raw_privileged();
    static std::atomic<bool> warned{false};
    std::string why;
    if (!privileged)
        why = "raw packet scans (-sS/-sU) need root privileges (raw sockets)";
    else if (opts_.ipv6)
        why = "raw packet scans (-sS/-sU) are not implemented for IPv6";
    else if (opts_.connect_scan)
        why = "-sT cannot be combined with -sU here";
    if (why.empty()) return true;
    if (!warned.exchange(true))
        embedder_.write(true, "WARNING: " + why + "; falling back to a TCP connect scan (-sT)" +
                                  (opts_.udp_scan ? ", UDP ports are not scanned" : "") + ".\n");
    return false;
}

void EngineHost::pull_registry() { engine_->registry_refresh(); }
void EngineHost::push_registry() { engine_->registry_publish(); }

common::Status EngineHost::prerule(std::vector<common::ScriptResult>& out) {
    pull_registry();
    auto st = engine_->run_prerule(out);
    push_registry();
    return st;
}

common::Status EngineHost::postrule(std::vector<common::ScriptResult>& out) {
    pull_registry();
    auto st = engine_->run_postrule(out);
    push_registry();
    return st;
}

common::Status EngineHost::run_group(std::vector<common::HostResult>& hosts, HostDone on_host) {
    asio::io_context& io = engine_->io();
    bool raw = use_raw_scan();
    common::Status scan_status = common::Status::ok();
    if (raw) {
        RawScanner scanner(io, opts_, services_, make_raw_plan(opts_, services_));
        bool done = false;
        scan_status = scanner.start(hosts, [&done]() { done = true; });
        io.restart();
        while (scan_status && !done)
            io.run_one();
        for (auto& h : hosts) {
            h.mac_address = scanner.mac_of(h.index);  // the scan's index, not the position
            if (!h.mac_address.empty() && !h.interface.empty())
                h.source_mac = interface_mac(h.interface);
        }
    } else {
        ConnectScanner scanner(io, opts_, services_);
        bool done = false;
        scanner.start(hosts, [&done]() { done = true; });
        io.restart();
        while (!done)
            io.run_one();
    }
    io.restart();
    io.poll();  // let cancelled scanner handlers drain
    if (!scan_status) return scan_status;
    // Like nmap: the route (interface, source) is known when discovery ran, not with -Pn.
    // The raw scanner fills it itself (it needs it to send).
    if (!raw && !opts_.skip_discovery)
        for (auto& h : hosts)
            if (h.status == "up") fill_route(h);
    if (!engine_->has_scripts()) {
        if (on_host)
            for (const auto& h : hosts)
                on_host(h);
        return common::Status::ok();
    }
    pull_registry();
    io.restart();
    embedder_.on_host = std::move(on_host);
    embedder_.hosts = &hosts;
    auto st = engine_->run_scan(hosts);
    embedder_.on_host = nullptr;
    embedder_.hosts = nullptr;
    push_registry();
    return st;
}

}  // namespace worker
