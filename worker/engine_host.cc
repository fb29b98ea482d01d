#include "worker/engine_host.h"

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <set>

#include "common/clock.h"
#include "common/datafiles.h"
#include "common/packet/privilege.h"
#include "common/wire/messages.h"
#include "worker/route.h"
#include "worker/scan/connect_scan.h"
#include "worker/scan/raw_scan.h"
#include "worker/scan/reverse_dns.h"
#include "worker/scan/service_scan.h"

namespace worker {

namespace {

// Runs `io` until the operation that `start(done)` begins calls `done`.
template <class Start>
void run_to_end(asio::io_context& io, Start start) {
    bool done = false;
    start(std::function<void()>([&done] { done = true; }));
    io.restart();
    while (!done)
        io.run_one();
}

}  // namespace

// nmap's -v phase lines: "Initiating Connect Scan at 10:02" ... "Completed Connect Scan at
// 10:02, 0.05s elapsed (3 total ports)".
class PhaseLog {
public:
    PhaseLog(bool on, std::function<void(const std::string&)> out)
        : on_(on), out_(std::move(out)) {}
    void begin(const std::string& what) {
        what_ = what;
        t0_ = std::chrono::steady_clock::now();
        say("Initiating " + what + " at " + common::local_time_text(common::epoch_now(), "%H:%M"));
    }
    void end(const std::string& tail = "") {
        char b[32];
        std::snprintf(
            b, sizeof b, "%.2fs",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
        say("Completed " + what_ + " at " + common::local_time_text(common::epoch_now(), "%H:%M") +
            ", " + b + " elapsed" + tail);
    }
    void say(const std::string& line) const {
        if (on_) out_(line + "\n");
    }
    bool on() const { return on_; }

private:
    bool on_;
    std::function<void(const std::string&)> out_;
    std::string what_;
    std::chrono::steady_clock::time_point t0_;
};

namespace {

// Raw sockets allowed, decided once per process: every engine sees the same privileges.
bool raw_privileged_once() {
    static const bool privileged = packet::raw_privileged();
    return privileged;
}

// The discovery probes sent to each host: nmap's "[4 ports/host]" of a ping scan.
std::size_t discovery_probe_count(const common::ScanOptions& o, bool raw) {
    const auto& d = o.discovery;
    if (!raw) {  // connect(): the -PS/-PA ports, else 80 and 443
        std::set<int> ports(d.syn.begin(), d.syn.end());
        ports.insert(d.ack.begin(), d.ack.end());
        return ports.empty() ? 2 : ports.size();
    }
    if (!d.given()) return 4;  // echo, SYN to 443, ACK to 80, timestamp
    return d.syn.size() + d.ack.size() + d.udp.size() + d.echo + d.timestamp + d.netmask + d.arp;
}

// "127.0.0.1", "localhost (127.0.0.1)" or "3 hosts": the targets of a phase line.
std::string targets_text(const std::vector<common::HostResult>& hosts, bool only_up) {
    std::vector<const common::HostResult*> in;
    for (const auto& h : hosts)
        if (!only_up || h.status == "up") in.push_back(&h);
    if (in.size() != 1) return std::to_string(in.size()) + " hosts";
    const auto& h = *in[0];
    std::string name = !h.hostname.empty() ? h.hostname : h.targetname;
    return name.empty() ? h.address : name + " (" + h.address + ")";
}

}  // namespace

common::Result<std::unique_ptr<EngineHost>> EngineHost::create(const common::ScanOptions& opts,
                                                               const common::Services& services,
                                                               nse::Embedder& embedder,
                                                               nse::SharedState& shared,
                                                               std::uint64_t engine_id) {
    nse::EngineConfig cfg;
    cfg.engine_id = engine_id;
    cfg.scripts = opts.scripts;
    cfg.version_intensity = opts.version_intensity;
    // As nmap: --packet-trace traces the scripts' traffic too.
    cfg.script_trace = opts.script_trace || opts.packet_trace;
    cfg.packet_trace = opts.packet_trace;
    cfg.default_scripts = opts.default_scripts;
    cfg.script_args = opts.script_args;
    cfg.script_args_file = opts.script_args_file;
    cfg.script_timeout = opts.script_timeout;
    cfg.host_timeout = opts.host_timeout;
    cfg.verbosity = opts.verbosity;
    cfg.debugging = opts.debugging;
    cfg.timing_level = opts.timing.level;
    cfg.socket_slots = opts.max_parallelism;  // nmap's meaning: NSE's socket slots
    cfg.socket_min = opts.timing.min_parallelism;
    cfg.datadir = opts.datadir;
    cfg.ipv6 = opts.ipv6;
    cfg.iface = opts.iface;
    cfg.memory_limit = static_cast<std::size_t>(opts.engine_memory_mb) << 20;
    std::unique_ptr<EngineHost> w(new EngineHost(opts, services, embedder, shared));
    if (opts.version_scan) {
        auto path = common::DataFiles(opts.datadir).find_db("nmap-service-probes", opts.versiondb);
        if (!path)
            return common::Status::error(
                "-sV needs nmap-service-probes (nmap-common), not found in the data directories");
        auto probes = common::ServiceProbes::load(*path);
        if (!probes) return probes.status();
        w->probes_ = std::move(*probes);
    }
    static std::atomic<bool> announced{false};  // one "NSE: Loaded" line per process
    cfg.announce = opts.scripts_requested() && !announced.exchange(true);
    auto engine = nse::Engine::create(cfg, w->embedder_, shared);
    if (!engine) return engine.status();
    w->engine_ = std::move(*engine);
    if (opts.version_scan) {
        // nmap's version phase: the version category refines port.version (through
        // nmap.set_port_version) before the script scan; its output is not reported. Its own
        // engine (the selection differs) with its own Lua state, so its own engine id for
        // the shared state: the script engine then fetches the registry changes it made.
        nse::EngineConfig vcfg = cfg;
        vcfg.engine_id = common::wire::version_twin(engine_id);
        vcfg.scripts = {"version"};
        vcfg.default_scripts = false;
        vcfg.announce = false;
        auto version_engine = nse::Engine::create(vcfg, w->embedder_, shared);
        if (!version_engine) return version_engine.status();
        w->version_engine_ = std::move(*version_engine);
    }
    return w;
}

bool EngineHost::use_raw_scan() {
    if (!opts_.syn_scan && !opts_.udp_scan) return false;
    static std::atomic<bool> warned{false};  // once per process, like the privilege check
    const bool privileged = raw_privileged_once();
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

void EngineHost::version_phase(std::vector<common::HostResult>& hosts) {
    // As nmap: the version phase's script output is reported only when a script scan was
    // asked for too, and not twice for a script the script scan runs again.
    std::set<std::string> again;
    if (opts_.scripts_requested())
        for (const auto& id : engine_->script_ids())
            again.insert(id);
    auto scratch = hosts;
    version_engine_->registry_refresh();
    version_engine_->io().restart();
    if (auto st = version_engine_->run_scan(scratch); !st)
        embedder_.write(true, "WARNING: version scripts: " + st.message() + "\n");
    version_engine_->registry_publish();
    for (std::size_t i = 0; i < hosts.size() && i < scratch.size(); ++i) {
        for (auto& p : hosts[i].ports)
            for (const auto& q : scratch[i].ports)
                if (q.number == p.number && q.protocol == p.protocol) {
                    p.service = q.service;
                    if (opts_.scripts_requested())
                        for (const auto& r : q.scripts)
                            if (!again.count(r.id)) p.scripts.push_back(r);
                    break;
                }
        if (opts_.scripts_requested())
            for (const auto& r : scratch[i].hostscripts)
                if (!again.count(r.id)) hosts[i].hostscripts.push_back(r);
    }
}

// Reverse DNS of the group's hosts, with nmap's -v lines ("System DNS" with --system-dns).
void EngineHost::resolve_names(asio::io_context& io, std::vector<common::HostResult>& hosts,
                               PhaseLog& phase) {
    std::size_t n = ReverseDns::wanted(opts_, hosts);
    if (n == 0) return;
    phase.begin(std::string(opts_.system_dns ? "System" : "Parallel") + " DNS resolution of " +
                std::to_string(n) + (n == 1 ? " host." : " hosts."));
    ReverseDns names(io, opts_);
    run_to_end(io, [&](auto done) {
        names.start(hosts, done, [this](const std::string& w) { embedder_.write(true, w + "\n"); });
    });
    phase.end();
}

common::Status EngineHost::run_group(std::vector<common::HostResult>& hosts, HostDone on_host) {
    asio::io_context& io = engine_->io();
    if (opts_.list_scan) {  // -sL: names only; nothing is sent to the targets
        for (auto& h : hosts) {
            h.status = "unknown";
            h.reason = "user-set";
        }
        PhaseLog phase(opts_.verbosity > 0,
                       [this](const std::string& line) { embedder_.write(false, line); });
        resolve_names(io, hosts, phase);
        if (on_host)
            for (const auto& h : hosts)
                on_host(h);
        return common::Status::ok();
    }
    bool raw = use_raw_scan();
    common::Status scan_status = common::Status::ok();
    PhaseLog phase(opts_.verbosity > 0,
                   [this](const std::string& line) { embedder_.write(false, line); });
    std::size_t nports = opts_.ports.size();
    std::string scan_name = opts_.ping_only  ? "Ping Scan"
                            : !raw           ? "Connect Scan"
                            : opts_.syn_scan ? "SYN Stealth Scan"
                                             : "UDP Scan";
    bool port_phase = !(opts_.ping_only && opts_.skip_discovery);
    // "Scanning 3 hosts [2 ports/host]": the phase's targets and probes per target.
    auto scanning = [&](bool only_up, std::size_t probes) {
        std::size_t n = 0;
        for (const auto& h : hosts)
            n += !only_up || h.status == "up";
        phase.say("Scanning " + targets_text(hosts, only_up) + " [" + std::to_string(probes) +
                  (probes == 1 ? " port" : " ports") + (n > 1 ? "/host" : "") + "]");
    };
    // nmap's phases at -v: discovery ("Ping Scan", when a probe is sent), then names, then
    // the port scan of the hosts that are up. The scanners pause between the first and the
    // last; without -v nothing is shown, and discovery runs straight into the port scan.
    bool phased = phase.on() && !opts_.skip_discovery;
    // As nmap: names are looked up once the hosts that are up are known, so before the port
    // scan with -Pn (all are), after discovery otherwise.
    if (opts_.skip_discovery) resolve_names(io, hosts, phase);
    bool port_lines = port_phase && !phased;  // the port scan's "Initiating" line is out
    if (port_lines) {
        phase.begin(scan_name);
        scanning(false, opts_.ping_only ? discovery_probe_count(opts_, raw) : nports);
    }
    bool settled = false, pinging = false;
    auto ping_end = [&] { phase.end(" (" + std::to_string(hosts.size()) + " total hosts)"); };
    // Discovery is decided: its last line, the names, then the port scan's first lines.
    auto after_discovery = [&] {
        if (pinging) ping_end();
        if (!raw)
            for (auto& h : hosts)
                if (h.status == "up") fill_route(h);
        resolve_names(io, hosts, phase);
        for (const auto& h : hosts)
            port_lines = port_lines || (h.status == "up" && !opts_.ping_only);
        if (!port_lines) return;
        phase.begin(scan_name);
        scanning(true, nports);
    };
    // Runs either scanner to its end (`start(done)` starts it). With the phases, its Ping Scan
    // lines come once it has started (when a discovery probe goes out), and after_discovery()
    // runs between discovery and the port scan, which waits for it.
    auto run_scanner = [&](auto& scanner, auto start) {
        bool done = false;
        if (phased) scanner.pause_after_discovery([&] { settled = true; });
        common::Status st = start([&done] { done = true; });
        if (!st) return st;
        if (phased && scanner.discovery_probes()) {
            pinging = true;
            phase.begin("Ping Scan");
            scanning(false, discovery_probe_count(opts_, raw));
        }
        io.restart();
        while (!done && !settled)
            io.run_one();
        if (settled && !done) {
            after_discovery();
            scanner.resume_ports();  // (nothing to resume with -sn)
            io.restart();
            while (!done)
                io.run_one();
        }
        return st;
    };
    if (raw) {
        RawScanner scanner(
            io, opts_, services_, make_raw_plan(opts_, services_),
            [this](const std::string& line) { embedder_.write(false, line + "\n"); });
        scanner.set_warnings(
            [this](const std::string& line) { embedder_.write(true, line + "\n"); });
        scan_status = run_scanner(scanner, [&](std::function<void()> done) {
            return scanner.start(hosts, std::move(done));
        });
        for (auto& h : hosts) {
            h.mac_address = scanner.mac_of(h.index);  // the scan's index, not the position
            if (!h.mac_address.empty() && !h.interface.empty())
                h.source_mac = interface_mac(h.interface);
        }
    } else {
        ConnectScanner scanner(io, opts_, services_, [this](const std::string& line) {
            embedder_.write(false, line + "\n");
        });
        // As nmap: the machine's own addresses skip discovery only where discovery would be
        // raw (root); connect() discovery probes them like any host ("syn-ack").
        scanner.set_probe_own_addresses(opts_.unprivileged ||
                                        !(opts_.privileged || raw_privileged_once()));
        scan_status = run_scanner(scanner, [&](std::function<void()> done) {
            scanner.start(hosts, std::move(done));
            return common::Status::ok();
        });
    }
    io.restart();
    io.poll();  // let cancelled scanner handlers drain
    if (!scan_status) return scan_status;
    if (pinging && !settled)  // (discovery always settles first; a safety net for the lines)
        ping_end();
    if (port_lines && phase.on()) {
        std::size_t up = 0;
        for (const auto& h : hosts) {
            up += h.status == "up";
            for (const auto& p : h.ports)
                if (p.state == "open")
                    phase.say("Discovered open port " + std::to_string(p.number) + "/" +
                              p.protocol + " on " + h.address);
        }
        if (opts_.ping_only)
            ping_end();
        else
            phase.end(" (" + std::to_string(nports * up) + " total ports)");
    }
    // Like nmap: the route (interface, source) is known when discovery ran, not with -Pn.
    // The raw scanner fills it itself (it needs it to send).
    if (!raw && !opts_.skip_discovery && !settled)
        for (auto& h : hosts)
            if (h.status == "up") fill_route(h);
    if (!opts_.skip_discovery && !settled) resolve_names(io, hosts, phase);
    if (probes_) {
        std::size_t services = 0;
        for (const auto& h : hosts)
            for (const auto& p : h.ports)
                services += p.state == "open" || p.state == "open|filtered";
        phase.begin("Service scan");
        phase.say("Scanning " + std::to_string(services) + " service" + (services == 1 ? "" : "s") +
                  " on " + targets_text(hosts, true));
        ServiceScanner versions(io, opts_, probes_,
                                [this](const std::string& line) { embedder_.write(false, line); });
        run_to_end(io, [&](auto done) { versions.start(hosts, done); });
        io.restart();
        io.poll();
        phase.end(" (" + std::to_string(services) + " service" + (services == 1 ? "" : "s") +
                  " on " + targets_text(hosts, true) + ")");
        if (version_engine_ && version_engine_->has_scripts()) version_phase(hosts);
    }
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
    std::size_t up = 0;
    for (const auto& h : hosts)
        up += h.status == "up";
    std::string who = up == 1 ? targets_text(hosts, true) : std::to_string(up) + " IP addresses";
    phase.say("NSE: Script scanning " + who +
              (up == 1 ? "." : " (" + std::to_string(up) + " hosts up)."));
    phase.begin("NSE");
    auto st = engine_->run_scan(hosts);
    phase.end();
    embedder_.on_host = nullptr;
    embedder_.hosts = nullptr;
    push_registry();
    return st;
}

}  // namespace worker
