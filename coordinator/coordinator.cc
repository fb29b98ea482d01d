// The coordinator's message loop: set-up and resume, one handler per message type, the
// periodic duties (silent workers, expired leases, phases, progress) and the end of the scan.
// Planning and leases live in GroupBook, the mutex/condvar/registry service in
// SharedService, script-added hosts in AddedTargets; this file decides when each acts.
#include "coordinator/coordinator.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/datafiles.h"
#include "common/options.h"
#include "common/packet/privilege.h"
#include "common/packet/spoof_mac.h"
#include "common/service_probes.h"
#include "common/services.h"
#include "common/target_cursor.h"
#include "common/targets.h"
#include "common/transport/keys.h"
#include "common/transport/transport.h"
#include "common/wire/codec.h"
#include "common/wire/messages.h"
#include "coordinator/group_book.h"
#include "coordinator/output.h"
#include "coordinator/records.h"
#include "coordinator/shared_service.h"
#include "coordinator/store/store.h"

namespace coordinator {

namespace {

namespace wire = common::wire;
namespace transport = common::transport;
using common::epoch_now;

std::atomic<bool> g_stop{false};
extern "C" void nsefleet_coordinator_on_signal(int) { g_stop = true; }

int fail(const std::string& msg) {
    std::fprintf(stderr, "nsefleet: %s\n", msg.c_str());
    return 1;
}

// Records of the store that hold phase results: phase/1, phase/2 (PhaseResult).
constexpr const char* kPhaseKeyPrefix = "phase/";

using Config = CoordinatorConfig;

struct WorkerRec {
    std::uint64_t id = 0;
    std::string peer;
    std::string name;
    std::uint32_t engines = 1;
    double first_seen = 0, last_seen = 0;
    bool lost = false;
    std::uint64_t hosts_done = 0;
    std::string last_error;  // text of its last Error message
};

struct PhaseRun {
    wire::Phase phase = wire::Phase::Prerule;
    std::uint64_t id = 0;
    std::uint64_t worker = 0;  // 0: not sent yet (or its worker was lost)
};

class Coordinator {
public:
    explicit Coordinator(Config cfg) : cfg_(std::move(cfg)) {}
    int run();

private:
    common::Status setup();
    common::Status load_or_init_options();
    // nmap-services of the scan's data directories (ports, scaninfo).
    common::Status load_services();
    common::Status plan_more();
    void tick();
    void handle(const transport::Incoming& in);
    void on_hello(const std::string& peer, const wire::Hello& m, std::uint64_t seq);
    void on_heartbeat(WorkerRec& w, const wire::Heartbeat& m);
    void on_request_work(WorkerRec& w, const wire::RequestWork& m);
    void on_host_result(WorkerRec& w, const wire::HostResult& m, std::uint64_t seq);
    void on_group_done(WorkerRec& w, const wire::GroupDone& m);
    void on_phase_result(WorkerRec& w, const wire::PhaseResult& m);
    void phase_line(wire::Phase p);
    void timing_report() const;
    void on_add_targets(WorkerRec& w, const wire::AddTargets& m);
    void write_ordered(bool everything);
    void lose_worker(WorkerRec& w, const char* why);
    void start_phase(wire::Phase p);
    bool scanning_done() const { return book_->scanning_done(); }
    wire::StatusReply status() const;
    void progress(double now);
    common::Status finish();
    void report_partial();
    void send(const std::string& peer, const wire::Message& m);
    void send_error(const std::string& peer, wire::ErrorCode c, const std::string& text,
                    std::uint64_t seq);
    void log(const std::string& text);   // informational: not with Config::quiet
    void warn(const std::string& text);  // always printed
    void fatal(const std::string& text);
    // How long an idle worker waits before asking again: short in-process, where asking
    // costs nothing and every wait shows in a small scan's wall time.
    std::uint32_t retry_ms(std::uint32_t fleet) const { return cfg_.context ? 50 : fleet; }

    Config cfg_;
    common::ScanOptions opts_;
    std::optional<common::Services> services_;
    std::string scan_id_;
    std::unique_ptr<store::Store> store_;
    std::optional<GroupBook> book_;
    std::unique_ptr<SharedService> shared_;
    transport::Context ctx_;
    std::unique_ptr<transport::Router> router_;
    std::unique_ptr<OutputSink> sink_;
    common::RunInfo run_;

    std::map<std::uint64_t, WorkerRec> workers_;
    std::map<std::string, std::uint64_t> by_peer_;
    std::uint64_t next_worker_id_ = 0;

    // Normal/XML/grepable outputs are written in index order up to here (exclusive).
    std::uint64_t written_next_ = 0;

    bool prerule_done_ = false, postrule_done_ = false, phases_ = false;
    std::optional<PhaseRun> phase_;
    std::uint64_t next_phase_id_ = 1;

    std::uint64_t seq_ = 0;
    std::uint64_t bad_frames_ = 0;
    double start_ = 0, last_tick_ = 0, last_stats_ = 0, phase_started_ = 0;
    std::string fatal_;
    bool done_ = false;
};

void Coordinator::log(const std::string& text) {
    // `nsefleet scan` keeps nmap's terminal: fleet internals only with --fleet-debug.
    if (cfg_.quiet && !cfg_.fleet_debug) return;
    warn(text);
}

void Coordinator::warn(const std::string& text) {
    std::fprintf(stderr, "nsefleet coordinator: %s\n", text.c_str());
}

void Coordinator::fatal(const std::string& text) {
    if (fatal_.empty()) fatal_ = text;
}

void Coordinator::send(const std::string& peer, const wire::Message& m) {
    auto bytes = wire::encode(m, ++seq_);
    auto st = router_->send(peer, bytes);
    if (!st && opts_.debugging > 0)
        log(std::string("send ") + wire::type_name(wire::type_of(m)) + " failed: " + st.message());
}

void Coordinator::send_error(const std::string& peer, wire::ErrorCode c, const std::string& text,
                             std::uint64_t seq) {
    send(peer, wire::Error{c, text, seq});
}

// Options: fresh scans parse them and journal them (with the scan id) in the store; --resume
// takes them back from the journal so a restart cannot change what is being scanned.
common::Status Coordinator::load_services() {
    auto path = common::DataFiles(opts_.datadir).find_db("nmap-services", opts_.servicedb);
    if (!path)
        return common::Status::error(opts_.servicedb.empty()
                                         ? "cannot find nmap-services in the data directories"
                                         : "cannot read --servicedb '" + opts_.servicedb + "'");
    auto services = common::Services::load(*path);
    if (!services) return services.status();
    services_ = std::move(*services);
    return common::Status::ok();
}

common::Status Coordinator::load_or_init_options() {
    auto j = store_->journal();
    if (!j) return j.status();
    if (!j->options.empty()) {
        if (!cfg_.resume)
            return common::Status::error("state directory '" + cfg_.state +
                                         "' holds a scan: pass --resume, or use a new directory");
        auto w = wire::decode_as<wire::Welcome>(
            j->options, "state directory '" + cfg_.state + "': journaled options");
        if (!w) return w.status();
        opts_ = std::move(w->options);
        scan_id_ = std::move(w->scan_id);
        return load_services();
    }
    if (cfg_.options) {
        opts_ = *cfg_.options;
    } else {
        if (cfg_.scan_args.empty())
            return common::Status::error(cfg_.resume ? "nothing to resume in '" + cfg_.state +
                                                           "' and no targets given"
                                                     : "no targets specified");
        auto o = common::parse_scan_args(cfg_.scan_args);
        if (!o) return o.status();
        opts_ = std::move(*o);
    }
    if (auto st = load_services(); !st) return st;
    common::DataFiles files(opts_.datadir);
    if (opts_.version_scan) {  // a bad probe file stops the scan before it starts
        auto probes_path = files.find_db("nmap-service-probes", opts_.versiondb);
        if (!probes_path)
            return common::Status::error(
                "-sV needs nmap-service-probes (nmap-common), not found in the data directories");
        if (auto probes = common::ServiceProbes::load(*probes_path); !probes)
            return probes.status();
    }
    // As nmap: with raw I/O allowed and no scan type given, the scan is -sS (a worker without
    // the privilege falls back to -sT and says so). Decided once, where the scan starts.
    if (opts_.unprivileged && (opts_.syn_scan || opts_.udp_scan))
        return common::Status::error("You requested a scan type which requires root privileges.");
    if (opts_.random_targets > 0) {  // -iR N: drawn once; a resumed scan reads them back
        auto picked = common::random_public_ipv4(opts_.random_targets);
        opts_.targets.insert(opts_.targets.end(), picked.begin(), picked.end());
    }
    if (!opts_.packet.spoof_mac.empty()) {  // chosen once: every worker sends the same one
        auto path = files.find_file("nmap-mac-prefixes");
        auto m = packet::choose_spoof_mac(opts_.packet.spoof_mac, path.value_or(""));
        if (!m) return m.status();
        opts_.packet.spoof_mac = packet::mac_text(m->mac.data());
    }
    for (const auto& w : opts_.warnings)
        std::fprintf(stderr, "%s\n", w.c_str());
    // -sn too, unless -Pn leaves it nothing to send: nmap's root discovery is raw.
    if (opts_.default_scan && !opts_.ipv6 && !(opts_.ping_only && opts_.skip_discovery) &&
        !opts_.list_scan && !opts_.unprivileged && (opts_.privileged || packet::raw_privileged())) {
        opts_.syn_scan = true;
        opts_.connect_scan = false;
    }
    if (opts_.aggressive)
        std::fprintf(stderr,
                     "NOTE: -A runs -sV -sC here; OS detection (-O) and traceroute are "
                     "not supported yet.\n");
    if (!opts_.ping_only && !opts_.list_scan) {
        auto st = common::resolve_ports(opts_, *services_);
        if (!st) return st;
    }
    std::random_device rd;
    char id[40];
    std::snprintf(id, sizeof id, "%08x%08x", rd(), rd());
    scan_id_ = id;
    wire::Welcome w;
    w.scan_id = scan_id_;
    w.options = opts_;
    return store_->set_options(wire::encode(w));
}

common::Status Coordinator::setup() {
    auto st = store::Store::open(cfg_.state, true);
    if (!st) return st.status();
    store_ = std::move(*st);
    if (auto s = load_or_init_options(); !s) return s;

    std::size_t group_size = cfg_.group_size ? cfg_.group_size : 16;
    if (opts_.min_hostgroup > 0)
        group_size = std::max<std::size_t>(group_size, opts_.min_hostgroup);
    if (opts_.max_hostgroup > 0)
        group_size = std::min<std::size_t>(group_size, opts_.max_hostgroup);
    phases_ = opts_.scripts_requested();

    auto j = store_->journal();
    if (!j) return j.status();
    prerule_done_ = j->prerule_done;
    postrule_done_ = j->postrule_done;
    // -iR 0 draws from the scan id, which is journaled with the options.
    auto book = GroupBook::open(
        *store_, target_sources(opts_, std::strtoull(scan_id_.c_str(), nullptr, 16)), group_size);
    if (!book) return book.status();
    book_.emplace(std::move(*book));
    if (auto s = book_->restore(*j); !s) return s;
    shared_ =
        std::make_unique<SharedService>(*store_, [this](std::uint64_t id, const wire::Message& m) {
            auto it = workers_.find(id);
            if (it != workers_.end() && !it->second.lost) send(it->second.peer, m);
        });

    // Transport.
    if (cfg_.context) {
        ctx_ = *cfg_.context;
    } else {
        auto ctx = transport::Context::create();
        if (!ctx) return ctx.status();
        ctx_ = *ctx;
    }
    transport::ServerSecurity sec;
    sec.insecure = cfg_.insecure;
    if (!cfg_.key_file.empty()) {
        auto kp = transport::load_secret_key(cfg_.key_file);
        if (!kp) return kp.status();
        sec.key = *kp;
        auto allowed = transport::load_allowed_keys(cfg_.allow_dir);
        if (!allowed) return allowed.status();
        sec.allowed = *allowed;
    }
    auto r = transport::Router::bind(ctx_, cfg_.listen, sec);
    if (!r) return r.status();
    router_ = std::move(*r);

    // Outputs: opened now so a bad path fails before any work is handed out.
    auto sink = OutputSink::open(opts_);
    if (!sink) return sink.status();
    sink_ = std::move(*sink);
    run_.args = opts_.command_line;
    run_.start = epoch_now();
    run_.verbose = opts_.verbosity;
    run_.debugging = opts_.debugging;
    auto pp = common::protocol_ports(opts_, *services_);
    if (!pp.tcp.empty())
        run_.scaninfo.push_back({opts_.syn_scan ? "syn" : "connect", "tcp", services_text(pp.tcp)});
    if (!pp.udp.empty()) run_.scaninfo.push_back({"udp", "udp", services_text(pp.udp)});
    run_.open_only = opts_.open_only;
    sink_->begin(run_);
    const bool report_on_stdout = reports_on_stdout(opts_) > 0;  // stdout holds it alone
    if (!opts_.packet.spoof_mac.empty() && !report_on_stdout) {
        auto path = common::DataFiles(opts_.datadir).find_file("nmap-mac-prefixes");
        if (auto m = packet::choose_spoof_mac(opts_.packet.spoof_mac, path.value_or("")))
            std::printf("Spoofing MAC address %s (%s)\n", opts_.packet.spoof_mac.c_str(),
                        m->vendor.c_str());
        std::fflush(stdout);
    }
    if (opts_.debugging > 0 && !report_on_stdout) timing_report();

    // A resumed scan: the registry, the prerule's output and the hosts already streamed. A
    // record that cannot be read ends the resume with the reason, never a silent gap.
    if (auto s = shared_->restore(); !s) return s;
    if (prerule_done_ || !phases_) {
        prerule_done_ = true;
        wire::PhaseResult phase1;
        if (auto s = read_record(*store_, std::string(kPhaseKeyPrefix) + "1", phase1); !s) return s;
        std::vector<common::ScriptResult> pre = std::move(phase1.scripts);
        run_.prescripts = pre;
        sink_->prescan(pre);
    }
    if (!phases_) postrule_done_ = true;
    common::Status bad = common::Status::ok();
    auto replay = store_->for_each_result([&](std::uint64_t index, std::string_view bytes) {
        auto h = wire::decode_as<wire::HostResult>(bytes,
                                                   "state: stored result " + std::to_string(index));
        if (!h)
            bad = h.status();
        else
            sink_->host_finished(h->host);
        return bad.is_ok();
    });
    if (!replay) return replay;
    if (!bad) return bad;
    log("listening on " + router_->endpoint() + (cfg_.resume ? " (resumed scan " : " (scan ") +
        scan_id_ + ", " + std::to_string(book_->hosts_done()) + " hosts already done)");
    return common::Status::ok();
}

// Keeps enough groups queued to feed every engine twice over.
common::Status Coordinator::plan_more() {
    std::size_t engines = 0;
    for (const auto& [id, w] : workers_)
        if (!w.lost) engines += w.engines;
    return book_->plan(std::max<std::size_t>(4, 2 * engines));
}

void Coordinator::on_add_targets(WorkerRec& w, const wire::AddTargets& m) {
    if (prerule_done_ && scanning_done() && phase_) return;  // postrule: too late, as in nmap
    auto r = book_->added().add(m.targets);
    if (!r) return fatal(r.message());
    if (r->capped)
        log("worker " + std::to_string(w.id) + " added more than " +
            std::to_string(AddedTargets::kMax) + " targets; the rest are ignored");
    if (r->fresh && opts_.debugging > 0)
        log("worker " + std::to_string(w.id) + " added " + std::to_string(r->fresh) + " target(s)");
}

// Writes the ordered outputs (normal, XML, grepable) up to the first host that is not
// committed yet: hosts are read back from the store, so memory does not grow with the
// scan. `everything` writes every committed host (end of scan or an interrupted one).
void Coordinator::write_ordered(bool everything) {
    if (cfg_.plan_only) return;
    std::uint64_t frontier = UINT64_MAX;
    if (!everything) frontier = book_->frontier();
    if (frontier <= written_next_) return;
    common::Status bad = common::Status::ok();
    auto st = store_->for_each_result(
        [&](std::uint64_t index, std::string_view bytes) {
            if (index >= frontier) return false;
            auto r =
                wire::decode_as<wire::HostResult>(bytes, "stored result " + std::to_string(index));
            if (!r) {
                bad = r.status();
                return false;
            }
            const auto& h = r->host;
            if (h.status == "up")
                ++run_.hosts_up;
            else
                ++run_.hosts_down;
            run_.lost_results += h.lost_results;
            sink_->host(h);
            written_next_ = index + 1;
            return true;
        },
        written_next_);
    if (!st) fatal(st.message());
    if (!bad) fatal(bad.message());
}

// -d: nmap's timing report, with the values this scan runs with (milliseconds).
void Coordinator::timing_report() const {
    const auto& t = opts_.timing;
    auto ms = [](double seconds) { return static_cast<long long>(std::llround(seconds * 1000)); };
    std::printf(
        "--------------- Timing report ---------------\n"
        "  hostgroups: min %d, max %d\n"
        "  rtt-timeouts: init %lld, min %lld, max %lld\n"
        "  max-scan-delay: TCP %lld, UDP %lld, SCTP %lld\n"
        "  parallelism: min %d, max %d\n"
        "  max-retries: %d, host-timeout: %lld\n"
        "  min-rate: %g, max-rate: %g\n"
        "---------------------------------------------\n",
        opts_.min_hostgroup > 0 ? opts_.min_hostgroup : 1,
        opts_.max_hostgroup > 0 ? opts_.max_hostgroup : 100000, ms(t.connect_timeout),
        ms(t.min_rtt_timeout), ms(t.max_rtt_timeout), ms(t.max_scan_delay), ms(t.max_scan_delay),
        ms(t.max_scan_delay), t.min_parallelism, opts_.max_parallelism, t.max_retries,
        ms(opts_.host_timeout), t.min_rate, t.max_rate);
    std::fflush(stdout);
}

// nmap's -v lines around the pre- and post-scan script phases.
void Coordinator::phase_line(wire::Phase p) {
    if (!cfg_.quiet || (opts_.verbosity == 0 && opts_.debugging == 0)) return;
    std::string hm = common::local_time_text(epoch_now(), "%H:%M");
    // Both lines once the phase is done: the worker's "NSE: Loaded" line comes first.
    std::printf(
        "NSE: Script %s-scanning.\nInitiating NSE at %s\nCompleted NSE at %s, %.2fs "
        "elapsed\n",
        p == wire::Phase::Prerule ? "Pre" : "Post", hm.c_str(), hm.c_str(),
        epoch_now() - phase_started_);
    std::fflush(stdout);
}

void Coordinator::start_phase(wire::Phase p) {
    if (!phase_ || phase_->phase != p) {
        phase_ = PhaseRun{p, next_phase_id_++, 0};
        phase_started_ = epoch_now();
    }
    if (phase_->worker != 0) return;
    // The least busy live worker runs it.
    WorkerRec* best = nullptr;
    std::size_t best_leases = 0;
    for (auto& [id, w] : workers_) {
        if (w.lost) continue;
        std::size_t n = book_->leases_of(w.id).size();
        if (!best || n < best_leases) best = &w, best_leases = n;
    }
    if (!best) return;
    phase_->worker = best->id;
    wire::RunPhase rp;
    rp.phase_id = phase_->id;
    rp.phase = p;
    send(best->peer, rp);
    log(std::string(p == wire::Phase::Prerule ? "prerule" : "postrule") + " sent to worker " +
        std::to_string(best->id) + " (" + best->name + ")");
}

void Coordinator::lose_worker(WorkerRec& w, const char* why) {
    if (w.lost) return;
    w.lost = true;
    auto ids = book_->requeue_worker(w.id);
    if (!ids) fatal(ids.message());
    log("worker " + std::to_string(w.id) + " (" + w.name + ") lost: " + why + "; " +
        std::to_string(ids ? ids->size() : 0) + " group(s) requeued");
    // A dead worker never leaves a lock held or a waiter queued.
    shared_->drop_worker(w.id);
    if (phase_ && phase_->worker == w.id) phase_->worker = 0;  // resent to another worker
}

wire::StatusReply Coordinator::status() const {
    wire::StatusReply r;
    r.scan_id = scan_id_;
    r.state = !fatal_.empty()   ? "failed"
              : done_           ? "done"
              : !prerule_done_  ? "prerule"
              : scanning_done() ? "postrule"
                                : "scanning";
    r.hosts_total = book_->hosts_total();
    r.hosts_done = book_->hosts_done();
    r.groups_pending = book_->queued();
    r.groups_leased = book_->leased();
    r.groups_done = book_->groups_done();
    r.targets_exhausted = book_->targets_done();
    for (const auto& [id, w] : workers_) {
        if (w.lost) continue;
        r.workers.push_back({w.id, w.name, w.engines, book_->leases_of(w.id), w.last_seen});
    }
    return r;
}

void Coordinator::on_hello(const std::string& peer, const wire::Hello& m, std::uint64_t seq) {
    if (m.protocol != wire::kProtocolVersion) {
        send_error(peer, wire::ErrorCode::BadVersion,
                   "protocol " + std::to_string(m.protocol) + " not spoken", seq);
        return;
    }
    auto it = by_peer_.find(peer);
    WorkerRec* w;
    if (it != by_peer_.end()) {
        w = &workers_[it->second];  // a repeated Hello: same worker, fresh start
        lose_worker(*w, "said Hello again");
        w->lost = false;
    } else {
        // Unique across coordinator restarts too (engine ids derive from it).
        std::uint64_t id = (static_cast<std::uint64_t>(epoch_now()) << 20) + (++next_worker_id_);
        w = &workers_[id];
        w->id = id;
        w->peer = peer;
        w->first_seen = epoch_now();
        by_peer_[peer] = id;
    }
    w->name = m.name.substr(0, 256);
    w->engines = std::clamp<std::uint32_t>(m.engines, 1, 1024);
    w->last_seen = epoch_now();
    wire::Welcome wel;
    wel.worker_id = w->id;
    wel.scan_id = scan_id_;
    wel.lease_ms = static_cast<std::uint32_t>(cfg_.lease_timeout * 1000);
    wel.heartbeat_ms = std::max<std::uint32_t>(100, wel.lease_ms / 4);
    wel.options = opts_;
    send(peer, wel);
    log("worker " + std::to_string(w->id) + " joined: " + w->name + ", " +
        std::to_string(w->engines) + " engine(s), pid " + std::to_string(m.pid));
}

void Coordinator::on_heartbeat(WorkerRec& w, const wire::Heartbeat& m) {
    double deadline = epoch_now() + cfg_.lease_timeout;
    wire::LeaseRenewed renewed;
    renewed.deadline = deadline;
    for (auto gid : m.leases) {
        switch (book_->held_by(gid, w.id)) {
        case GroupBook::Held::yes:
            if (auto s = book_->renew(gid, w.id, deadline); !s) return fatal(s.message());
            renewed.group_ids.push_back(gid);
            break;
        case GroupBook::Held::done:  // finished (by anyone): nothing more to do on it
            send(w.peer, wire::LeaseLost{gid, "group already done"});
            break;
        case GroupBook::Held::no:
            send(w.peer, wire::LeaseLost{gid, "lease expired or held by another worker"});
            break;
        }
    }
    if (!renewed.group_ids.empty()) send(w.peer, renewed);
}

void Coordinator::on_request_work(WorkerRec& w, const wire::RequestWork& m) {
    if (postrule_done_ && scanning_done()) {
        send(w.peer, wire::NoWork{500, true});
        return;
    }
    if (!prerule_done_) {
        start_phase(wire::Phase::Prerule);
        send(w.peer, wire::NoWork{retry_ms(300), false});
        return;
    }
    if (auto s = plan_more(); !s) return fatal(s.message());
    // Never more leases than engines, however often it asks.
    std::size_t held = book_->leases_of(w.id).size();
    std::uint32_t free = held >= w.engines ? 0 : w.engines - static_cast<std::uint32_t>(held);
    std::uint32_t slots = std::min<std::uint32_t>(std::max<std::uint32_t>(m.slots, 1), free);
    std::uint32_t given = 0;
    double deadline = epoch_now() + cfg_.lease_timeout;
    while (given < slots) {
        auto lease = book_->lease_next(w.id, deadline);
        if (!lease) return fatal(lease.message());
        if (!*lease) break;
        const auto& l = **lease;
        if (opts_.debugging > 0)
            log("group " + std::to_string(l.group_id) + " (" + std::to_string(l.hosts.size()) +
                " hosts, attempt " + std::to_string(l.attempt) + ") -> worker " +
                std::to_string(w.id));
        send(w.peer, l);
        ++given;
    }
    if (given == 0) {
        if (scanning_done()) {
            write_ordered(false);  // the last reports before the post-scan phase's lines
            start_phase(wire::Phase::Postrule);
        }
        send(w.peer, wire::NoWork{retry_ms(500), false});
    }
}

void Coordinator::on_host_result(WorkerRec& w, const wire::HostResult& m, std::uint64_t seq) {
    // Only the lease holder speaks for a group's hosts (a lapsed worker's late copy is
    // dropped: the group's new holder scans those hosts again).
    if (book_->held_by(m.group_id, w.id) != GroupBook::Held::yes)
        return send_error(w.peer, wire::ErrorCode::UnknownLease, "not your lease", seq);
    auto r =
        book_->commit(m.group_id, {m.host.index, m.host.address, false, "", {}}, wire::encode(m));
    if (!r) return fatal(r.message());
    switch (*r) {
    case GroupBook::Commit::unknown_group:
        return send_error(w.peer, wire::ErrorCode::UnknownLease, "no such group", seq);
    case GroupBook::Commit::not_in_group:
        return send_error(w.peer, wire::ErrorCode::UnknownLease, "host not in that group", seq);
    case GroupBook::Commit::finished_group:  // every host is committed: this copy is dropped
    case GroupBook::Commit::duplicate:       // second copy: acknowledged and dropped
        return;
    case GroupBook::Commit::committed:
        ++w.hosts_done;
        sink_->host_finished(m.host);
        return;
    }
}

void Coordinator::on_group_done(WorkerRec& w, const wire::GroupDone& m) {
    // Planning benchmark: the group counts as scanned; nothing is stored per host.
    if (cfg_.plan_only && book_->held_by(m.group_id, w.id) == GroupBook::Held::yes)
        w.hosts_done += book_->mark_all_committed(m.group_id);
    std::size_t missing = 0;
    if (const BookGroup* g = book_->group(m.group_id))
        missing = g->hosts.size() - g->committed.size();
    // Hosts missing: someone else finishes them, unless the group keeps failing (a scan that
    // cannot progress must end, not loop).
    constexpr std::uint32_t kMaxFailures = 3;
    auto r = book_->group_done(m.group_id, w.id, kMaxFailures);
    if (!r) return fatal(r.message());
    // The holder is through with the group: no thread of it holds a lock any more.
    if (*r != GroupBook::Done::not_holder) shared_->drop_lease(m.group_id);
    switch (*r) {
    case GroupBook::Done::unknown:
    case GroupBook::Done::complete: return;
    case GroupBook::Done::not_holder:
        return send(w.peer, wire::LeaseLost{m.group_id, "not your lease"});
    case GroupBook::Done::failing:
        return fatal("group " + std::to_string(m.group_id) + " failed " +
                     std::to_string(kMaxFailures) + " times" +
                     (w.last_error.empty() ? "" : ", last: " + w.last_error) +
                     (cfg_.context ? "" : " (state kept: fix the cause, then --resume)"));
    case GroupBook::Done::requeued:
        log("group " + std::to_string(m.group_id) + " finished by worker " + std::to_string(w.id) +
            " with " + std::to_string(missing) + " host(s) missing; requeued");
        return;
    }
}

void Coordinator::on_phase_result(WorkerRec& w, const wire::PhaseResult& m) {
    // Stale, or from a worker the phase was not given to.
    if (!phase_ || phase_->id != m.phase_id || phase_->phase != m.phase || phase_->worker != w.id)
        return;
    if (!m.error.empty()) warn("phase failed on worker " + std::to_string(w.id) + ": " + m.error);
    if (auto s = shared_->merge(m.registry); !s) fatal(s.message());
    auto key = std::string(kPhaseKeyPrefix) + std::to_string(static_cast<int>(m.phase));
    if (auto s = store_->put_record(key, wire::encode(m)); !s) fatal(s.message());
    phase_line(m.phase);
    if (m.phase == wire::Phase::Prerule) {
        if (auto s = store_->set_flag(store::JournalFlag::prerule_done, true); !s)
            fatal(s.message());
        prerule_done_ = true;
        run_.prescripts = m.scripts;
        sink_->prescan(m.scripts);
    } else {
        if (auto s = store_->set_flag(store::JournalFlag::postrule_done, true); !s)
            fatal(s.message());
        postrule_done_ = true;
    }
    phase_.reset();
}

void Coordinator::handle(const transport::Incoming& in) {
    auto known = by_peer_.find(in.peer);
    // A stranger's frame is parsed no further than its envelope unless it says Hello (or
    // asks for the status, which any client may).
    if (known == by_peer_.end()) {
        auto env = wire::peek(in.payload);
        if (env && env->type != wire::MsgType::Hello && env->type != wire::MsgType::StatusQuery) {
            if (env->type != wire::MsgType::Error)
                send_error(in.peer, wire::ErrorCode::NotAuthorized, "say Hello first", env->seq);
            return;
        }
    }
    wire::ErrorCode why = wire::ErrorCode::None;
    auto d = wire::decode(in.payload, wire::kDefaultMaxMessageBytes, &why);
    if (!d) {
        ++bad_frames_;
        if (bad_frames_ <= 10 || bad_frames_ % 1000 == 0)
            log("dropped a bad frame (" + std::to_string(in.payload.size()) + " bytes, " +
                std::to_string(bad_frames_) + " so far): " + d.message());
        if (known != by_peer_.end()) send_error(in.peer, why, "undecodable frame", 0);
        return;
    }
    std::uint64_t seq = d->envelope.seq;
    auto& msg = d->message;
    if (auto* h = std::get_if<wire::Hello>(&msg)) return on_hello(in.peer, *h, seq);
    if (auto* q = std::get_if<wire::StatusQuery>(&msg)) {
        auto r = status();
        if (!q->workers) r.workers.clear();
        return send(in.peer, r);
    }
    if (std::holds_alternative<wire::Error>(msg)) {
        const auto& e = std::get<wire::Error>(msg);
        warn("peer reports error " + std::to_string(static_cast<unsigned>(e.code)) + ": " +
             e.text.substr(0, 200));
        if (known != by_peer_.end()) workers_[known->second].last_error = e.text.substr(0, 500);
        return;
    }
    if (known == by_peer_.end()) {
        send_error(in.peer, wire::ErrorCode::NotAuthorized, "say Hello first", seq);
        return;
    }
    WorkerRec& w = workers_[known->second];
    w.last_seen = epoch_now();
    if (w.lost) {
        // Back from the dead: its old leases are gone (LeaseLost answers its heartbeats).
        log("worker " + std::to_string(w.id) + " (" + w.name + ") is back");
        w.lost = false;
    }
    if (auto* m = std::get_if<wire::Heartbeat>(&msg)) return on_heartbeat(w, *m);
    if (auto* m = std::get_if<wire::RequestWork>(&msg)) return on_request_work(w, *m);
    if (auto* m = std::get_if<wire::HostResult>(&msg)) return on_host_result(w, *m, seq);
    if (auto* m = std::get_if<wire::GroupDone>(&msg)) return on_group_done(w, *m);
    if (auto* m = std::get_if<wire::PhaseResult>(&msg)) return on_phase_result(w, *m);
    if (auto* m = std::get_if<wire::SharedOp>(&msg)) {
        if (auto why = SharedService::refusal(w.id, w.engines, *m); !why.empty())
            return send_error(w.peer, wire::ErrorCode::NotAuthorized, why, seq);
        if (m->op == wire::SharedOpKind::TargetCounts) {  // the added targets are the book's
            wire::SharedReply r;
            r.request_id = m->request_id;
            r.ok = true;
            r.targets_added = book_->added().count();
            r.targets_pending = book_->added().pending();
            return send(w.peer, r);
        }
        if (auto s = shared_->handle(w.id, *m); !s) fatal(s.message());
        return;
    }
    if (auto* m = std::get_if<wire::AddTargets>(&msg)) return on_add_targets(w, *m);
    if (std::holds_alternative<wire::Bye>(msg)) {
        lose_worker(w, "said Bye");
        by_peer_.erase(w.peer);
        workers_.erase(w.id);
        return;
    }
    send_error(in.peer, wire::ErrorCode::BadState,
               std::string("unexpected ") + wire::type_name(d->envelope.type), seq);
}

void Coordinator::progress(double now) {
    double elapsed = now - start_;
    const std::uint64_t total = book_->hosts_total(), done = book_->hosts_done();
    const bool targets_done = book_->targets_done();
    double frac = total ? static_cast<double>(done) / static_cast<double>(total) : 0;
    char buf[256];
    std::string line;
    if (cfg_.quiet && !cfg_.fleet_debug) {
        // nmap's --stats-every lines, on stdout.
        long s = std::lround(elapsed);
        std::snprintf(buf, sizeof buf,
                      "Stats: %ld:%02ld:%02ld elapsed; %llu hosts completed (%zu up), %llu "
                      "undergoing Script Scan\n",
                      s / 3600, s / 60 % 60, s % 60, static_cast<unsigned long long>(done),
                      run_.hosts_up, static_cast<unsigned long long>(total - done));
        line = buf;
        if (frac > 0 && targets_done) {
            std::string when = common::local_time_text(start_ + elapsed / frac, "%H:%M");
            std::snprintf(buf, sizeof buf,
                          "NSE Timing: About %.2f%% done; ETC: %s (%ld:%02ld:%02ld remaining)\n",
                          frac * 100, when.c_str(), std::lround(elapsed / frac - elapsed) / 3600,
                          std::lround(elapsed / frac - elapsed) / 60 % 60,
                          std::lround(elapsed / frac - elapsed) % 60);
            line += buf;
        }
        std::fputs(line.c_str(), stdout);
        std::fflush(stdout);
        return;
    }
    std::snprintf(buf, sizeof buf, "Stats: %.0fs elapsed; %llu/%llu%s hosts completed (%.1f%%)",
                  elapsed, static_cast<unsigned long long>(done),
                  static_cast<unsigned long long>(total), targets_done ? "" : "+", frac * 100);
    line = buf;
    if (frac > 0 && targets_done) {
        std::snprintf(buf, sizeof buf, "; ETC: %.0fs remaining", elapsed / frac - elapsed);
        line += buf;
    }
    std::size_t live = 0;
    for (const auto& [id, w] : workers_) {
        if (w.lost) continue;
        ++live;
        double span = std::max(1.0, now - w.first_seen);
        std::snprintf(buf, sizeof buf, "; %s %.2f hosts/s", w.name.c_str(),
                      static_cast<double>(w.hosts_done) / span);
        line += buf;
    }
    line += "; " + std::to_string(live) + " worker(s)";
    std::fprintf(stderr, "%s\n", line.c_str());
}

// Periodic duties: silent workers, expired leases, phases, progress.
void Coordinator::tick() {
    double now = epoch_now();
    for (auto& [id, w] : workers_)
        if (!w.lost && now - w.last_seen > cfg_.lease_timeout) lose_worker(w, "silent too long");
    // Leases whose worker is alive but stopped listing them.
    auto expired = book_->requeue_expired(now);
    if (!expired)
        fatal(expired.message());
    else
        for (auto gid : *expired) {
            log("lease of group " + std::to_string(gid) + " expired; requeued");
            shared_->drop_lease(gid);  // its threads' locks go to the next waiters
        }
    write_ordered(false);  // reports of finished hosts before the post-scan phase's lines
    if (!prerule_done_)
        start_phase(wire::Phase::Prerule);
    else if (scanning_done() && !postrule_done_)
        start_phase(wire::Phase::Postrule);
    // As nmap, -v alone prints no periodic lines in a scan; `nsefleet coordinator` does.
    double every = opts_.stats_every > 0                ? opts_.stats_every
                   : opts_.verbosity > 0 && !cfg_.quiet ? 5.0
                                                        : 0;
    if (every > 0 && now - last_stats_ >= every) {
        last_stats_ = now;
        progress(now);
    }
}

// A scan stopped by an error still reports every host it has: the outputs are completed
// with them (no post-scan results), and the user is told how many are missing.
void Coordinator::report_partial() {
    // Nothing scanned (bad input, a worker that cannot start): the error line says it all.
    if (!sink_ || cfg_.plan_only || !book_ || book_->hosts_done() == 0) return;
    write_ordered(true);
    run_.hosts_total = std::max<std::size_t>(book_->hosts_total(), run_.hosts_up + run_.hosts_down);
    run_.end = epoch_now();
    std::size_t have = run_.hosts_up + run_.hosts_down;
    if (auto s = sink_->finish(run_); !s) {
        warn("could not complete the reports: " + s.message());
        return;
    }
    std::string missing =
        book_->targets_done() ? std::to_string(run_.hosts_total - have) : "the rest";
    warn("the reports hold the " + std::to_string(have) + " host(s) scanned before the error; " +
         missing + " not scanned" + (cfg_.context ? "" : " (--resume continues the scan)"));
}

// Writes the hosts not written yet and the post-scan results, and completes the files.
common::Status Coordinator::finish() {
    if (phases_) {
        wire::PhaseResult phase2;
        if (auto s = read_record(*store_, std::string(kPhaseKeyPrefix) + "2", phase2); !s)
            fatal(s.message());
        run_.postscripts = std::move(phase2.scripts);
    }
    write_ordered(true);
    if (!fatal_.empty()) return common::Status::error(fatal_);
    // Interrupted: the hosts planned but not scanned are not in the report, nor in its count.
    run_.hosts_total = g_stop ? run_.hosts_up + run_.hosts_down : book_->hosts_total();
    run_.end = epoch_now();
    if (run_.hosts_total == 0 && !g_stop)  // every target failed to resolve or was excluded
        std::fprintf(stderr, "WARNING: No targets were specified, so 0 hosts scanned.\n");
    return sink_->finish(run_);
}

int Coordinator::run() {
    std::signal(SIGPIPE, SIG_IGN);
    std::signal(SIGINT, nsefleet_coordinator_on_signal);
    std::signal(SIGTERM, nsefleet_coordinator_on_signal);
    start_ = epoch_now();
    last_stats_ = start_;
    if (auto s = setup(); !s) return fail(s.message());
    if (prerule_done_) {
        if (auto s = plan_more(); !s) return fail(s.message());
    }
    while (!g_stop && fatal_.empty()) {
        if (scanning_done() && postrule_done_) break;
        auto in = router_->recv(std::chrono::milliseconds(100));
        if (!in) {
            if (g_stop) break;  // the signal interrupted the wait (EINTR)
            fatal(in.message());
            break;
        }
        if (*in) handle(**in);
        double now = epoch_now();
        if (now - last_tick_ >= 0.1) {
            last_tick_ = now;
            tick();
            if (cfg_.halted && !(scanning_done() && postrule_done_)) {
                if (auto why = cfg_.halted(); !why.empty()) fatal(why);
            }
        }
    }
    int rc = 0;
    if (!fatal_.empty()) {
        rc = fail(fatal_);
        report_partial();
    } else if (g_stop && cfg_.finish_on_interrupt) {
        // `nsefleet scan` without --state: nothing to resume, so report what is done.
        if (auto s = finish(); !s) fail(s.message());
        rc = 130;
    } else if (g_stop) {
        log("interrupted: state saved in " + cfg_.state + " (resume with --resume)");
        rc = 130;
    } else {
        done_ = true;
        if (auto s = finish(); !s) rc = fail(s.message());
        if (!cfg_.quiet && (opts_.verbosity > 0 || opts_.stats_every > 0)) progress(epoch_now());
    }
    for (auto& [id, w] : workers_)
        if (!w.lost) send(w.peer, wire::Bye{rc == 0 ? "scan done" : "coordinator stopping"});
    // Let the Byes leave and answer late questions (status, stragglers) briefly. In-process
    // workers are stopped by their owner instead.
    double until = epoch_now() + (cfg_.context ? 0.0 : 0.3);
    while (epoch_now() < until) {
        auto in = router_->recv(std::chrono::milliseconds(50));
        if (!in) break;
        if (*in) {
            auto d = wire::decode((*in)->payload);
            if (d && std::holds_alternative<wire::StatusQuery>(d->message))
                send((*in)->peer, status());
            else if (d && std::holds_alternative<wire::RequestWork>(d->message))
                send((*in)->peer, wire::NoWork{500, rc == 0});
        }
    }
    if (auto s = store_->close(); !s && rc == 0) rc = fail(s.message());
    return rc;
}

}  // namespace

common::TargetSources target_sources(const common::ScanOptions& o, std::uint64_t random_seed) {
    common::TargetSources src;
    src.random_endless = o.random_targets == 0;
    src.random_seed = random_seed;
    src.specs = o.targets;
    src.input_files = o.input_files;
    src.excludes = o.excludes;
    src.exclude_files = o.exclude_files;
    src.ipv6 = o.ipv6;
    src.resolve_all = o.resolve_all;
    src.on_unresolved = [](const std::string& warning) {
        static std::set<std::string> said;  // the cursor is reopened on restore: say it once
        if (said.insert(warning).second) std::fprintf(stderr, "%s\n", warning.c_str());
    };
    return src;
}

int run_coordinator(CoordinatorConfig cfg) { return Coordinator(std::move(cfg)).run(); }

}  // namespace coordinator
