#include "worker/scan/connect_scan.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <asio.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>

#include "common/clock.h"

namespace worker {

namespace {

using Clock = std::chrono::steady_clock;
using common::epoch_now;

Clock::duration seconds(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// The TCP ports unprivileged nmap probes for host discovery.
constexpr std::uint16_t kDiscoveryPorts[] = {80, 443};
// Pause after running out of descriptors or local ports before trying again.
constexpr auto kResourceBackoff = std::chrono::milliseconds(50);
// Congestion control (as nmap's port scanner has): a probe that times out while others are
// answered means a queue on the way dropped it, so the window halves (once per congestion
// event), slow-starts back, and silent ports get more tries (up to one more than the most
// any answered probe needed), each waiting twice as long. Without congestion a silent port
// is tried 1 + max_retries times.
constexpr int kCongestionRetries = 6;
constexpr double kMaxProbeTimeout = 8.0;
constexpr int kMinWindow = 8;

// How one connect attempt ended.
enum class Outcome {
    open,       // handshake completed
    closed,     // refused (RST) or reset
    unreach,    // ICMP unreachable / prohibited: final, filtered
    timeout,    // no answer: retry while attempts remain
    resource,   // local shortage (fds, ports, buffers): retry later, never a port state
    cancelled,  // we closed it ourselves
};

struct Verdict {
    Outcome outcome;
    const char* state;
    const char* reason;
};

Verdict classify(const std::error_code& ec) {
    if (!ec) return {Outcome::open, "open", "syn-ack"};
    if (ec == asio::error::operation_aborted) return {Outcome::cancelled, "", ""};
    if (ec.category() == asio::system_category() || ec.category() == std::system_category()) {
        switch (ec.value()) {
        case ECONNREFUSED: return {Outcome::closed, "closed", "conn-refused"};
        case ECONNRESET: return {Outcome::closed, "closed", "reset"};
        case EHOSTUNREACH: return {Outcome::unreach, "filtered", "host-unreach"};
        case ENETUNREACH: return {Outcome::unreach, "filtered", "net-unreach"};
        case EACCES:
        case EPERM: return {Outcome::unreach, "filtered", "admin-prohibited"};
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
        case EAGAIN:
        case EADDRNOTAVAIL: return {Outcome::resource, "", ""};
        default: break;
        }
    }
    // ETIMEDOUT from the kernel and anything unexpected: treat as silence.
    return {Outcome::timeout, "filtered", "no-response"};
}

// A loopback connect whose destination port is the kernel's pick for its own source port
// joins the socket to itself (TCP simultaneous open): nothing listens there, so the port is
// closed, as nmap reports it.
bool connected_to_itself(const asio::ip::tcp::socket& s) {
    std::error_code a, b;
    auto local = s.local_endpoint(a);
    auto remote = s.remote_endpoint(b);
    return !a && !b && local == remote;
}

// Loopback, or an address of one of this machine's interfaces (read once).
bool is_own_address(const asio::ip::address& a) {
    if (a.is_loopback()) return true;
    static const std::vector<asio::ip::address> own = [] {
        std::vector<asio::ip::address> v;
        ifaddrs* ifs = nullptr;
        if (getifaddrs(&ifs) != 0) return v;
        for (ifaddrs* i = ifs; i; i = i->ifa_next) {
            if (!i->ifa_addr) continue;
            if (i->ifa_addr->sa_family == AF_INET) {
                asio::ip::address_v4::bytes_type b;
                std::memcpy(b.data(), &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
                v.push_back(asio::ip::address_v4(b));
            } else if (i->ifa_addr->sa_family == AF_INET6) {
                asio::ip::address_v6::bytes_type b;
                std::memcpy(b.data(), &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, 16);
                v.push_back(asio::ip::address_v6(b));
            }
        }
        freeifaddrs(ifs);
        return v;
    }();
    return std::find(own.begin(), own.end(), a) != own.end();
}

struct HostState;

// One unit of queued work: a connect attempt to (host, port).
struct Task {
    HostState* host;
    std::uint16_t port;
    int slot;  // index into the host's port results; -1 for a discovery probe
    int attempt;
};

// A connect attempt in flight. Handlers hold it by shared_ptr so it outlives cancellation.
struct Probe {
    Probe(asio::io_context& io, Task t) : task(t), socket(io), timer(io) {}
    Task task;
    asio::ip::tcp::socket socket;
    asio::steady_timer timer;
    Clock::time_point sent;
    bool finished = false;  // first of {connect, timer, cancel} to fire wins
};

struct Batch {
    std::function<void()> done;
    std::size_t remaining = 0;
};

struct HostState : std::enable_shared_from_this<HostState> {
    common::HostResult* result;
    std::shared_ptr<Batch> batch;
    asio::ip::address addr;
    bool finished = false;
    bool started = false;  // first probe launched (host-timeout clock runs)
    // Discovery
    int discovery_pending = 0;
    bool unsettled = false;  // counted in State::unsettled until its discovery is decided
    bool cap_warned = false;
    const char* down_reason = "no-response";
    // Port scan
    std::vector<common::PortResult> ports;
    std::size_t ports_pending = 0;
    // RTT accounting for srtt
    double rtt_sum = 0;
    int rtt_count = 0;
    std::unordered_set<std::shared_ptr<Probe>> live;
    std::unique_ptr<asio::steady_timer> host_timer;
};

// All mutable scanner state. Every handler holds a shared_ptr to it, so destroying the
// ConnectScanner only flips `stopped` and cancels; late handlers then see `stopped` and
// return without touching hosts, services or callbacks.
struct State : std::enable_shared_from_this<State> {
    State(asio::io_context& io_, const common::ScanOptions& opts_, const common::Services& svc)
        : io(io_), opts(opts_), services(svc), pace_timer(io_), backoff_timer(io_) {
        cap = std::max(1, opts.timing.max_parallel_connects);
        ssthresh = cap;
        for (const auto& p : opts.ports)
            if (p.proto == 't') tcp_ports.push_back(p.number);
        std::sort(tcp_ports.begin(), tcp_ports.end());
        tcp_ports.erase(std::unique(tcp_ports.begin(), tcp_ports.end()), tcp_ports.end());
    }

    asio::io_context& io;
    common::ScanOptions opts;
    const common::Services& services;
    std::vector<std::uint16_t> tcp_ports;

    std::deque<std::shared_ptr<HostState>> hosts;  // stable addresses for Task::host
    std::deque<Task> queue;
    int inflight = 0;
    int cap = 1;
    bool stopped = false;
    // Pacing (--scan-delay) and resource back-off share one "not before" rule each.
    asio::steady_timer pace_timer;
    bool pace_armed = false;
    Clock::time_point next_launch{};
    asio::steady_timer backoff_timer;
    bool backing_off = false;
    int grow_credit = 0;
    // Congestion: slow-start threshold, when the window was last cut, whether any cut
    // happened (then silent ports get kCongestionRetries).
    int ssthresh = 0;
    Clock::time_point last_cut{};
    bool congested = false;
    int answered = 0;  // probes answered (open or closed): a time-out among answers is a drop
    std::function<void(const std::string&)> trace;  // --packet-trace
    std::function<void(const std::string&)> say;    // nmap's warnings on the terminal
    bool probe_own = false;                         // discovery probes to our own addresses too
    // pause_after_discovery(): port scans wait in `parked` until every host's discovery is
    // decided; then `on_settled` runs and resume_ports() releases them.
    std::function<void()> on_settled;
    bool hold = false;
    int unsettled = 0;
    bool probed = false;  // a discovery probe was queued (discovery_probes())
    std::vector<std::shared_ptr<HostState>> parked;  // owned: prune() may drop them meanwhile
    void settle(HostState& h) {
        if (!h.unsettled) return;
        h.unsettled = false;
        if (--unsettled == 0) settled();
    }
    void settled() {
        asio::post(io, [self = shared_from_this()] {
            if (!self->stopped && self->on_settled) self->on_settled();
        });
    }
    // After discovery: the port scan now, or parked until resume_ports().
    void after_discovery(HostState& h) {
        if (opts.ping_only) {
            finish_host(h);
        } else if (hold) {
            parked.push_back(h.shared_from_this());
        } else {
            begin_port_scan(h);
        }
        settle(h);
    }
    void resume_ports() {
        hold = false;
        for (const auto& h : std::exchange(parked, {}))
            if (!h->finished) begin_port_scan(*h);
        pump();
    }
    // nmap's "giving up on port" warning, once per host, when --max-retries set the cap.
    void cap_warning(HostState& h) {
        if (!opts.timing.max_retries_set || h.cap_warned || !say) return;
        h.cap_warned = true;
        say("Warning: " + h.result->address +
            " giving up on port because retransmission cap hit (" +
            std::to_string(opts.timing.max_retries) + ").");
    }
    Clock::time_point born = Clock::now();
    int best_retry = 0;  // highest attempt number that was answered

    // --min-parallelism and --min-rate keep this many probes in flight whatever congestion
    // says (a probe lasts at most the connect time-out, so N/s needs N * timeout in flight).
    int floor_cap() const {
        double by_rate = opts.timing.min_rate * std::max(0.001, opts.timing.connect_timeout);
        int f = std::max(opts.timing.min_parallelism, static_cast<int>(std::ceil(by_rate)));
        return std::min(f, std::max(1, opts.timing.max_parallel_connects));
    }
    // The TCP ports connect() discovery tries (-PS/-PA ports; else nmap's 80 and 443).
    std::vector<std::uint16_t> discovery_ports() const {
        std::vector<std::uint16_t> out;
        for (const auto* v : {&opts.discovery.syn, &opts.discovery.ack})
            for (int p : *v)
                if (std::find(out.begin(), out.end(), p) == out.end())
                    out.push_back(static_cast<std::uint16_t>(p));
        if (out.empty()) out.assign(std::begin(kDiscoveryPorts), std::end(kDiscoveryPorts));
        return out;
    }

    void congestion(Clock::time_point sent) {
        if (answered == 0 || sent < last_cut) return;  // nothing answers yet, or same event
        last_cut = Clock::now();
        congested = true;
        cap = std::max(
            {std::min(kMinWindow, opts.timing.max_parallel_connects), floor_cap(), cap / 2});
        ssthresh = cap;
        grow_credit = 0;
    }

    void back_off() {
        if (backing_off) return;
        backing_off = true;
        backoff_timer.expires_after(kResourceBackoff);
        backoff_timer.async_wait([self = shared_from_this()](const std::error_code&) {
            self->backing_off = false;
            self->pump();
        });
    }

    void add_hosts(std::vector<common::HostResult>& results, std::function<void()> done);
    void pump();
    void launch(Task t);
    void on_result(const std::shared_ptr<Probe>& p, const std::error_code& ec);
    void trace_conn(const Probe& p, const std::string& what);
    void retire(const std::shared_ptr<Probe>& p);
    void record(HostState& h, const Task& t, const Verdict& v);
    void discovery_answer(HostState& h, const Verdict& v);
    void discovery_failed(HostState& h, const Verdict& v);
    void begin_port_scan(HostState& h);
    void cancel_probes(HostState& h, bool discovery_only);
    void finish_host(HostState& h);
    void host_timed_out(HostState& h);
    void prune();
    void shutdown();
};

void State::add_hosts(std::vector<common::HostResult>& results, std::function<void()> done) {
    auto batch = std::make_shared<Batch>();
    batch->done = std::move(done);
    batch->remaining = results.size();
    std::vector<HostState*> fresh;
    for (auto& r : results) {
        auto h = std::make_shared<HostState>();
        h->result = &r;
        h->batch = batch;
        r.ports.clear();
        r.timed_out = false;
        r.srtt = 0;
        r.reason_ttl = 0;
        r.start_time = epoch_now();
        if (on_settled) {
            h->unsettled = true;
            ++unsettled;
        }
        fresh.push_back(h.get());
        hosts.push_back(std::move(h));
    }
    if (results.empty()) {
        // Never call back synchronously: the caller may not expect reentrancy.
        asio::post(io, [self = shared_from_this(), batch] {
            if (!self->stopped && batch->done) batch->done();
        });
        return;
    }
    for (HostState* h : fresh) {
        std::error_code ec;
        h->addr = asio::ip::make_address(h->result->address, ec);
        if (ec) {
            // Unusable address: nothing can answer, so it is reported down.
            h->result->status = "down";
            h->result->reason = "no-response";
            finish_host(*h);
            continue;
        }
        bool self = !probe_own && is_own_address(h->addr);
        if (opts.skip_discovery || self) {
            // As nmap: the machine's own addresses need no discovery probe.
            h->result->status = "up";
            h->result->reason = opts.skip_discovery ? "user-set" : "localhost-response";
            after_discovery(*h);
            continue;
        }
        probed = true;
        auto ports = discovery_ports();
        h->discovery_pending = static_cast<int>(ports.size());
        for (std::uint16_t port : ports)
            queue.push_back(Task{h, port, -1, 0});
    }
    // From the loop, not from start(): the caller prints its phase lines first (nmap's
    // "Initiating Ping Scan" comes before the probes' --packet-trace lines).
    asio::post(io, [self = shared_from_this()] { self->pump(); });
}

void State::pump() {
    if (stopped || backing_off) return;
    while (!queue.empty() && inflight < cap) {
        Task t = queue.front();
        // Drop stale work: the host is finished, or discovery was already decided by
        // the other discovery probe.
        if (t.host->finished || (t.slot < 0 && t.host->discovery_pending == 0)) {
            queue.pop_front();
            continue;
        }
        if (opts.timing.probe_interval() > 0) {
            auto now = Clock::now();
            if (now < next_launch) {
                if (!pace_armed) {
                    pace_armed = true;
                    pace_timer.expires_at(next_launch);
                    pace_timer.async_wait([self = shared_from_this()](const std::error_code&) {
                        self->pace_armed = false;
                        self->pump();
                    });
                }
                return;
            }
            next_launch = now + seconds(opts.timing.probe_interval());
        }
        queue.pop_front();
        launch(t);
        if (backing_off) return;
    }
}

void State::launch(Task t) {
    HostState& h = *t.host;
    if (!h.started) {
        h.started = true;
        if (opts.host_timeout > 0) {
            h.host_timer = std::make_unique<asio::steady_timer>(io);
            h.host_timer->expires_after(seconds(opts.host_timeout));
            h.host_timer->async_wait(
                // Holds the host: the handler may run after prune() dropped it.
                [self = shared_from_this(), hp = h.shared_from_this()](const std::error_code& ec) {
                    if (ec || self->stopped || hp->finished) return;
                    self->host_timed_out(*hp);
                });
        }
    }
    auto p = std::make_shared<Probe>(io, t);
    asio::ip::tcp::endpoint ep(h.addr, t.port);
    std::error_code ec;
    p->socket.open(ep.protocol(), ec);
    if (ec) {
        Verdict v = classify(ec);
        if (v.outcome == Outcome::resource) {
            // Out of descriptors: this is our limit, not the target's answer. Put the work
            // back and run fewer at once; completions of probes in flight restart the
            // queue, or a short timer when none are in flight.
            queue.push_front(t);
            cap = std::max(1, std::min(cap, inflight) * 3 / 4);
            grow_credit = 0;
            if (inflight == 0) back_off();  // else cap < inflight stops pump() for now
            return;
        }
        // Cannot even open a socket of this family (e.g. no IPv6): nothing will answer.
        record(h, t, {Outcome::unreach, "filtered", "net-unreach"});
        return;
    }
    ++inflight;
    h.live.insert(p);
    p->sent = Clock::now();
    auto self = shared_from_this();
    // Each retry waits twice as long (the kernel's own SYN retransmission then fits in).
    double wait = std::max(0.001, opts.timing.connect_timeout);
    for (int i = 0; congested && i < t.attempt && wait < kMaxProbeTimeout; ++i)
        wait *= 2;
    p->timer.expires_after(
        seconds(std::min(wait, std::max(kMaxProbeTimeout, opts.timing.connect_timeout))));
    p->timer.async_wait([self, p](const std::error_code& e) {
        if (e == asio::error::operation_aborted) return;
        self->on_result(p, asio::error::timed_out);
    });
    // The connect is non-blocking: nmap traces it as started, then its outcome.
    if (trace) trace_conn(*p, "Operation now in progress");
    p->socket.async_connect(ep, [self, p](const std::error_code& e) { self->on_result(p, e); });
}

void State::retire(const std::shared_ptr<Probe>& p) {
    p->finished = true;
    std::error_code ignored;
    p->socket.close(ignored);
    p->timer.cancel();
    p->task.host->live.erase(p);
    --inflight;
}

// --packet-trace: nmap's "CONN (0.0370s) TCP localhost > 127.0.0.1:80 => what" line.
void State::trace_conn(const Probe& p, const std::string& what) {
    char head[48];
    std::snprintf(head, sizeof head, "CONN (%.4fs) TCP localhost > ",
                  std::chrono::duration<double>(Clock::now() - born).count());
    trace(head + p.task.host->result->address + ":" + std::to_string(p.task.port) + " => " + what);
}

void State::on_result(const std::shared_ptr<Probe>& p, const std::error_code& ec) {
    if (stopped || p->finished) return;
    Verdict v = classify(ec);
    if (v.outcome == Outcome::open && connected_to_itself(p->socket))
        v = {Outcome::closed, "closed", "conn-refused"};
    if (trace && v.outcome != Outcome::timeout)
        trace_conn(*p, v.outcome == Outcome::open     ? std::string("Connected")
                       : v.outcome == Outcome::closed ? std::string("Connection refused")
                                                      : ec.message());
    if (v.outcome == Outcome::cancelled) return;
    HostState& h = *p->task.host;
    Task t = p->task;
    double rtt = std::chrono::duration<double>(Clock::now() - p->sent).count();
    retire(p);
    if (v.outcome == Outcome::open || v.outcome == Outcome::closed) {
        ++answered;
        best_retry = std::max(best_retry, t.attempt);
    }
    if (v.outcome == Outcome::timeout) congestion(p->sent);
    // Regrow the window after a shortage or congestion shrank it: slow start below the
    // threshold, then one slot per window's worth of completions.
    if (v.outcome != Outcome::resource && v.outcome != Outcome::timeout &&
        cap < opts.timing.max_parallel_connects && (cap < ssthresh || ++grow_credit >= cap)) {
        ++cap;
        grow_credit = 0;
    }
    if (h.finished) {
        pump();
        return;
    }
    switch (v.outcome) {
    case Outcome::open:
    case Outcome::closed:
        h.rtt_sum += rtt;
        ++h.rtt_count;
        record(h, t, v);
        break;
    case Outcome::unreach: record(h, t, v); break;
    case Outcome::timeout:
        // Like nmap: more tries only while retries are what gets answers.
        if (t.attempt < std::max(opts.timing.max_retries,
                                 congested ? std::min(kCongestionRetries, best_retry + 1) : 0)) {
            ++t.attempt;
            queue.push_back(t);
        } else {
            cap_warning(h);
            record(h, t, v);
        }
        break;
    case Outcome::resource:
        queue.push_front(t);
        back_off();
        break;
    case Outcome::cancelled: break;
    }
    pump();
}

void State::record(HostState& h, const Task& t, const Verdict& v) {
    if (h.finished) return;
    if (t.slot < 0) {
        if (h.discovery_pending == 0) return;  // already decided
        if (v.outcome == Outcome::open || v.outcome == Outcome::closed)
            discovery_answer(h, v);
        else
            discovery_failed(h, v);
        return;
    }
    auto& port = h.ports[static_cast<std::size_t>(t.slot)];
    port.state = v.state;
    port.reason = v.reason;
    if (--h.ports_pending == 0) finish_host(h);
}

void State::discovery_answer(HostState& h, const Verdict& v) {
    h.result->status = "up";
    h.result->reason = v.reason;
    h.discovery_pending = 0;
    cancel_probes(h, true);  // the other discovery probe is moot now
    after_discovery(h);
}

void State::discovery_failed(HostState& h, const Verdict& v) {
    if (v.outcome == Outcome::unreach) h.down_reason = v.reason;
    if (--h.discovery_pending > 0) return;
    h.result->status = "down";
    h.result->reason = h.down_reason;
    finish_host(h);
}

void State::begin_port_scan(HostState& h) {
    h.ports.resize(tcp_ports.size());
    for (std::size_t i = 0; i < tcp_ports.size(); ++i) {
        auto& pr = h.ports[i];
        pr.number = tcp_ports[i];
        pr.protocol = "tcp";
        pr.reason_ttl = 0;
        pr.service.name = services.name(tcp_ports[i], "tcp");
        pr.service.method = "table";
        pr.service.conf = 3;
    }
    h.ports_pending = tcp_ports.size();
    if (h.ports_pending == 0) {
        finish_host(h);
        return;
    }
    for (std::size_t i = 0; i < tcp_ports.size(); ++i)
        queue.push_back(Task{&h, tcp_ports[i], static_cast<int>(i), 0});
}

void State::cancel_probes(HostState& h, bool discovery_only) {
    std::vector<std::shared_ptr<Probe>> victims;
    for (const auto& p : h.live)
        if (!discovery_only || p->task.slot < 0) victims.push_back(p);
    for (const auto& p : victims)
        retire(p);
}

void State::finish_host(HostState& h) {
    if (h.finished) return;
    h.finished = true;
    settle(h);
    cancel_probes(h, false);
    if (h.host_timer) h.host_timer->cancel();
    auto& r = *h.result;
    if (h.rtt_count > 0) r.srtt = h.rtt_sum / h.rtt_count;
    if (!r.timed_out) r.ports = std::move(h.ports);
    h.ports.clear();
    r.end_time = epoch_now();
    auto batch = h.batch;
    if (--batch->remaining == 0) {
        asio::post(io, [self = shared_from_this(), batch] {
            if (self->stopped) return;
            self->prune();
            if (batch->done) batch->done();
        });
    }
}

void State::prune() {
    // A scanner reused for many batches must not keep every finished host. Queued tasks
    // still point at their hosts (they are skipped as stale), so those stay for now.
    std::unordered_set<const HostState*> queued;
    for (const Task& t : queue)
        queued.insert(t.host);
    std::erase_if(hosts, [&](const std::shared_ptr<HostState>& h) {
        return h->finished && h->live.empty() && !queued.count(h.get());
    });
}

void State::host_timed_out(HostState& h) {
    // nmap reports an abandoned host as up without ports; output writers skip it.
    h.result->timed_out = true;
    h.result->status = "up";
    if (h.result->reason.empty())
        h.result->reason = opts.skip_discovery ? "user-set" : "no-response";
    h.ports.clear();
    finish_host(h);
    pump();
}

void State::shutdown() {
    stopped = true;
    queue.clear();
    for (auto& h : hosts) {
        std::vector<std::shared_ptr<Probe>> victims(h->live.begin(), h->live.end());
        for (const auto& p : victims)
            retire(p);
        if (h->host_timer) h->host_timer->cancel();
    }
    pace_timer.cancel();
    backoff_timer.cancel();
}

}  // namespace

struct ConnectScanner::Impl {
    std::shared_ptr<State> state;
};

ConnectScanner::ConnectScanner(asio::io_context& io, const common::ScanOptions& opts,
                               const common::Services& services,
                               std::function<void(const std::string&)> trace)
    : impl_(std::make_unique<Impl>(Impl{std::make_shared<State>(io, opts, services)})) {
    impl_->state->say = trace;
    if (opts.packet_trace) impl_->state->trace = std::move(trace);
}

void ConnectScanner::set_probe_own_addresses(bool probe) { impl_->state->probe_own = probe; }

void ConnectScanner::pause_after_discovery(std::function<void()> settled) {
    if (impl_->state->opts.skip_discovery) return;
    impl_->state->hold = !impl_->state->opts.ping_only;
    impl_->state->on_settled = std::move(settled);
}

void ConnectScanner::resume_ports() { impl_->state->resume_ports(); }

bool ConnectScanner::discovery_probes() const { return impl_->state->probed; }

ConnectScanner::~ConnectScanner() {
    if (impl_) impl_->state->shutdown();
}

void ConnectScanner::start(std::vector<common::HostResult>& hosts, std::function<void()> done) {
    impl_->state->add_hosts(hosts, std::move(done));
}

}  // namespace worker
