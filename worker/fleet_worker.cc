// The fleet worker process's loop: one DEALER to the coordinator, owned by the I/O loop on
// the main thread, and N engine threads (one EngineHost each) that pull host groups. Engine
// threads never touch the socket: they queue encoded messages and poke the transport's
// Waker, which the I/O loop waits on beside the socket (ZeroMQ sockets are not thread-safe).
// The command line is in worker/fleet/args.h, what plugs into the engines in
// worker/fleet/engine_adapters.h.
#include "worker/fleet_worker.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/clock.h"
#include "common/datafiles.h"
#include "common/options.h"
#include "common/services.h"
#include "common/transport/keys.h"
#include "common/transport/transport.h"
#include "common/wire/codec.h"
#include "worker/engine_host.h"
#include "worker/fleet/args.h"
#include "worker/fleet/engine_adapters.h"
#include "worker/fleet/fleet_shared_state.h"
#include "worker/fleet/wire_fit.h"

namespace worker {

namespace {

using namespace fleet;
using common::epoch_now;
namespace transport = common::transport;
using std::chrono::milliseconds;

std::atomic<bool> g_interrupted{false};
// C linkage ignores namespaces: the name must differ from embedded.cc's handler.
extern "C" void fleet_worker_on_signal(int) { g_interrupted = true; }

// An unanswered RequestWork is forgotten after this long, so the engines ask again.
constexpr auto kRequestExpiry = std::chrono::seconds(10);

class FleetWorker {
public:
    FleetWorker(Args args, Console& console) : args_(std::move(args)), console_(console) {}
    int run();

private:
    // Any thread: encodes `m` and queues it for the I/O loop. false once the link is closed.
    bool send(const wire::Message& m);
    void poke();
    // I/O loop pieces.
    bool flush();
    void handle(const std::string& frame);
    void on_welcome(wire::Welcome w);
    void rejoin();
    void heartbeat();
    void sink_request(Clock::time_point now);
    int finish(int code, const std::string& bye_reason);
    // Engine thread.
    void engine_main(unsigned index);
    void run_lease(EngineHost& w, EngineEmbedder& emb, const wire::Lease& lease);
    void run_phase(EngineHost& w, EngineShared& shared, std::uint64_t engine_id,
                   const wire::RunPhase& p);

    Args args_;
    Console& console_;
    std::unique_ptr<transport::Dealer> dealer_;
    std::unique_ptr<transport::Waker> waker_;
    std::atomic<std::uint64_t> seq_{0};
    std::mutex out_mu_;
    std::deque<std::string> out_;
    bool closed_ = false;  // out_mu_

    std::optional<wire::Welcome> welcome_;
    bool rejoining_ = false;  // Hello re-sent after NotAuthorized, Welcome awaited
    wire::Hello hello_;
    common::ScanOptions opts_;
    std::optional<common::Services> services_;
    std::unique_ptr<FleetSharedState> shared_;
    Board board_;
    std::vector<std::thread> threads_;
    unsigned engines_ = 1;
    Clock::time_point last_rx_, next_heartbeat_;
    std::uint64_t malformed_ = 0;
    // --sink: the I/O loop keeps `engines_` RequestWork in flight and acknowledges each Lease
    // itself (no engine threads, no thread hand-offs: the coordinator is what is measured).
    unsigned sink_inflight_ = 0;
    Clock::time_point sink_requested_at_{}, sink_retry_at_{};
    std::atomic<std::size_t> targets_added_{0};
};

bool FleetWorker::send(const wire::Message& m) {
    std::string bytes = wire::encode(m, ++seq_);
    {
        std::lock_guard lk(out_mu_);
        if (closed_) return false;
        out_.push_back(std::move(bytes));
    }
    poke();
    return true;
}

void FleetWorker::poke() { waker_->poke(); }

// Sends what is queued. false when the socket refuses (queue full): the rest waits.
bool FleetWorker::flush() {
    for (;;) {
        std::string next;
        {
            std::lock_guard lk(out_mu_);
            if (out_.empty()) return true;
            next = std::move(out_.front());
            out_.pop_front();
        }
        if (auto st = dealer_->send(next); !st) {
            std::lock_guard lk(out_mu_);
            out_.push_front(std::move(next));
            return false;
        }
    }
}

void FleetWorker::on_welcome(wire::Welcome w) {
    if (welcome_) {
        // A restarted coordinator took us back. The engines keep their ids (derived from the
        // first, fleet-unique worker id) and the options they were built with; their shared-
        // state ops cross the wire under the new worker id.
        if (!rejoining_) return;
        rejoining_ = false;
        console_.log("rejoined scan " + w.scan_id + " as worker " + std::to_string(w.worker_id));
        shared_->set_worker_id(w.worker_id);
        if (w.scan_id != welcome_->scan_id) {
            std::lock_guard lk(board_.mu);
            board_.fatal =
                "the coordinator now runs another scan (" + w.scan_id + "); start the worker again";
            return;
        }
        welcome_->heartbeat_ms = w.heartbeat_ms;
        welcome_->lease_ms = w.lease_ms;
        std::lock_guard lk(board_.mu);
        board_.paused = false;
        board_.cv.notify_all();
        return;
    }
    console_.log("joined scan " + w.scan_id + " as worker " + std::to_string(w.worker_id) +
                 " with " + std::to_string(engines_) + " engine(s)");
    opts_ = w.options;
    shared_->set_worker_id(w.worker_id);
    welcome_ = std::move(w);
    if (args_.sink) return;  // no engines: handle() acknowledges the leases
    if (!args_.datadir.empty()) opts_.datadir = args_.datadir;
    common::DataFiles files(opts_.datadir);
    auto svc_path = files.find_db("nmap-services", opts_.servicedb);
    if (!svc_path) {
        std::lock_guard lk(board_.mu);
        board_.fatal = "cannot find nmap-services in the data directories";
        return;
    }
    auto svc = common::Services::load(*svc_path);
    if (!svc) {
        std::lock_guard lk(board_.mu);
        board_.fatal = svc.message();
        return;
    }
    services_ = std::move(*svc);
    if (opts_.ports.empty() && !opts_.ping_only) {
        if (auto st = common::resolve_ports(opts_, *services_); !st) {
            std::lock_guard lk(board_.mu);
            board_.fatal = st.message();
            return;
        }
    }
    for (unsigned i = 0; i < engines_; ++i)
        threads_.emplace_back([this, i] { engine_main(i); });
}

// The coordinator no longer knows us (it restarted): every lease we hold is void. Running
// groups are cancelled, queued ones dropped, and Hello goes out again.
void FleetWorker::rejoin() {
    if (rejoining_) return;
    rejoining_ = true;
    console_.log(
        "the coordinator does not know this worker any more (restarted?): saying Hello again");
    {
        std::lock_guard lk(board_.mu);
        board_.paused = true;
        board_.leases.clear();
        board_.outstanding = 0;
        for (auto g : board_.running)
            board_.lost.emplace(g, "coordinator restarted");
    }
    sink_inflight_ = 0;
    send(hello_);
}

void FleetWorker::handle(const std::string& frame) {
    wire::ErrorCode why = wire::ErrorCode::None;
    auto d = wire::decode(frame, transport::kDefaultMaxMessageBytes, &why);
    if (!d) {
        // Logged, never answered: an Error back could answer an Error.
        if (++malformed_ <= 10 || malformed_ % 1000 == 0)
            console_.log("dropped a malformed frame from the coordinator (" + d.message() + "; " +
                         std::to_string(malformed_) + " so far)");
        return;
    }
    last_rx_ = Clock::now();
    wire::Message& m = d->message;
    if (!welcome_) {
        if (auto* w = std::get_if<wire::Welcome>(&m)) {
            on_welcome(std::move(*w));
        } else if (!std::holds_alternative<wire::Error>(m) &&
                   !std::holds_alternative<wire::Bye>(m)) {
            console_.debug(std::string("ignored ") + wire::type_name(wire::type_of(m)) +
                           " before Welcome");
            return;
        }
    }
    std::visit(
        [&](auto& msg) {
            using T = std::decay_t<decltype(msg)>;
            if constexpr (std::is_same_v<T, wire::Lease>) {
                if (args_.sink) {
                    // Nothing scanned, no HostResult: only a --plan-only coordinator completes it.
                    if (sink_inflight_) --sink_inflight_;
                    wire::GroupDone done;
                    done.group_id = msg.group_id;
                    send(done);
                    return;
                }
                console_.debug("lease: group " + std::to_string(msg.group_id) + " (" +
                               std::to_string(msg.hosts.size()) + " hosts, attempt " +
                               std::to_string(msg.attempt) + ")");
                std::lock_guard lk(board_.mu);
                if (board_.outstanding) --board_.outstanding;
                board_.leases.push_back(std::move(msg));
                board_.cv.notify_all();
            } else if constexpr (std::is_same_v<T, wire::NoWork>) {
                if (args_.sink) {
                    if (sink_inflight_) --sink_inflight_;
                    sink_retry_at_ = Clock::now() + milliseconds(std::clamp<std::uint32_t>(
                                                        msg.retry_ms, 10, 60000));
                }
                std::lock_guard lk(board_.mu);
                if (board_.outstanding) --board_.outstanding;
                board_.retry_at =
                    Clock::now() + milliseconds(std::clamp<std::uint32_t>(msg.retry_ms, 10, 60000));
                if (msg.scan_done) board_.scan_done = true;
                board_.cv.notify_all();
            } else if constexpr (std::is_same_v<T, wire::LeaseLost>) {
                console_.log("lease of group " + std::to_string(msg.group_id) + " lost (" +
                             msg.reason + "): abandoning it");
                std::lock_guard lk(board_.mu);
                std::erase_if(board_.leases,
                              [&](const wire::Lease& l) { return l.group_id == msg.group_id; });
                if (board_.running.count(msg.group_id)) board_.lost[msg.group_id] = msg.reason;
            } else if constexpr (std::is_same_v<T, wire::RunPhase>) {
                std::lock_guard lk(board_.mu);
                board_.phases.push_back(std::move(msg));
                board_.cv.notify_all();
            } else if constexpr (std::is_same_v<T, wire::SharedReply>) {
                if (!shared_->on_reply(msg))
                    console_.debug("unmatched SharedReply " + std::to_string(msg.request_id));
            } else if constexpr (std::is_same_v<T, wire::SharedNotify>) {
                if (!shared_->on_notify(msg))
                    console_.log("dropped a SharedNotify for unknown request " +
                                 std::to_string(msg.request_id));
            } else if constexpr (std::is_same_v<T, wire::Error>) {
                console_.log("coordinator error " +
                             std::to_string(static_cast<unsigned>(msg.code)) + ": " + msg.text);
                if (!welcome_ && (msg.code == wire::ErrorCode::BadVersion ||
                                  msg.code == wire::ErrorCode::NotAuthorized)) {
                    std::lock_guard lk(board_.mu);
                    board_.fatal = "the coordinator refused this worker: " + msg.text;
                } else if (welcome_ && msg.code == wire::ErrorCode::NotAuthorized) {
                    rejoin();
                }
            } else if constexpr (std::is_same_v<T, wire::Bye>) {
                console_.log("coordinator said goodbye" +
                             (msg.reason.empty() ? "" : " (" + msg.reason + ")"));
                std::lock_guard lk(board_.mu);
                board_.stop = true;
                board_.cv.notify_all();
            } else if constexpr (std::is_same_v<T, wire::Welcome>) {
                if (rejoining_) on_welcome(std::move(msg));
            } else if constexpr (std::is_same_v<T, wire::Heartbeat> ||
                                 std::is_same_v<T, wire::LeaseRenewed>) {
                // Traffic (last_rx_ is updated); renewals need no action.
            } else {
                console_.log(std::string("dropped unexpected ") +
                             wire::type_name(wire::type_of(m)) + " from the coordinator");
            }
        },
        m);
}

void FleetWorker::sink_request(Clock::time_point now) {
    if (sink_inflight_ && now - sink_requested_at_ > kRequestExpiry) sink_inflight_ = 0;  // lost
    if (sink_inflight_ >= engines_ || now < sink_retry_at_) return;
    send(wire::RequestWork{engines_ - sink_inflight_});
    sink_inflight_ = engines_;
    sink_requested_at_ = now;
}

void FleetWorker::heartbeat() {
    wire::Heartbeat hb;
    hb.now = epoch_now();
    {
        std::lock_guard lk(board_.mu);
        for (auto g : board_.running)
            if (!board_.lost.count(g)) hb.leases.push_back(g);
        for (const auto& l : board_.leases)
            hb.leases.push_back(l.group_id);  // not started yet
        hb.engines_busy = board_.ready - std::min(board_.ready, board_.idle);
    }
    send(hb);
}

int FleetWorker::run() {
    transport::ClientSecurity sec;
    sec.insecure = args_.insecure;
    if (!args_.key.empty()) {
        auto kp = transport::load_secret_key(args_.key);
        if (!kp) return console_.log(kp.message()), kExitFailure;
        auto pub = transport::load_public_key(args_.server_key);
        if (!pub) return console_.log(pub.message()), kExitFailure;
        sec.key = std::move(*kp);
        sec.server_key = std::move(*pub);
    }
    std::optional<transport::Context> ctx = args_.context;
    if (!ctx) {
        auto made = transport::Context::create();
        if (!made) return console_.log(made.message()), kExitFailure;
        ctx = *made;
    }
    auto dealer = transport::Dealer::connect(*ctx, args_.connect, sec);
    if (!dealer) return console_.log(dealer.message()), kExitUsage;
    dealer_ = std::move(*dealer);
    auto waker = transport::Waker::create();
    if (!waker) return console_.log(waker.message()), kExitFailure;
    waker_ = std::move(*waker);

    engines_ = args_.engines ? args_.engines : std::max(1u, std::thread::hardware_concurrency());
    const auto reply_timeout = milliseconds(static_cast<long>(args_.reply_timeout * 1000));
    shared_ = std::make_unique<FleetSharedState>([this](wire::Message m) { return send(m); },
                                                 [this](const std::string& s) { console_.log(s); },
                                                 reply_timeout);

    if (!args_.name.empty()) {
        hello_.name = args_.name;
    } else {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        hello_.name = host;
    }
    hello_.engines = engines_;
    hello_.pid = static_cast<std::uint32_t>(::getpid());
    hello_.capabilities = {"connect-scan", "ipv6"};
    send(hello_);

    const auto silence = milliseconds(static_cast<long>(args_.coordinator_timeout * 1000));
    last_rx_ = Clock::now();
    next_heartbeat_ = last_rx_;
    for (;;) {
        bool all_sent = flush();
        auto now = Clock::now();
        auto wait = std::min<Clock::duration>(next_heartbeat_ - now, milliseconds(100));
        if (!all_sent) wait = std::min<Clock::duration>(wait, milliseconds(5));
        long wait_ms = std::max<long>(0, std::chrono::duration_cast<milliseconds>(wait).count());
        if (auto st = dealer_->wait(milliseconds(wait_ms), waker_.get()); !st)
            return console_.log(st.message()), finish(kExitFailure, "");
        for (int i = 0; i < 1000; ++i) {  // bounded so heartbeats still go out under a flood
            auto r = dealer_->recv(milliseconds(0));
            if (!r) return console_.log(r.message()), finish(kExitFailure, "");
            if (!*r) break;
            handle(**r);
        }

        now = Clock::now();
        if (g_interrupted) return finish(kExitInterrupted, "interrupted");
        if (args_.stop && *args_.stop) return finish(0, "");
        std::string fatal;
        bool stop, done;
        {
            std::lock_guard lk(board_.mu);
            // The coordinator sends nothing while our only work is a phase: not silence.
            if (board_.in_phase) last_rx_ = now;
            fatal = board_.fatal;
            stop = board_.stop;
            done = board_.scan_done &&
                   (args_.sink || (board_.ready == engines_ && board_.idle == engines_)) &&
                   board_.leases.empty() && board_.phases.empty();
        }
        if (!fatal.empty()) {
            if (args_.fatal_out) *args_.fatal_out = fatal;
            return console_.log(fatal), finish(welcome_ ? kExitFailure : kExitCoordinator, fatal);
        }
        if (stop) return finish(0, "");
        if (done) {
            console_.log("scan done");
            return finish(0, "scan done");
        }
        if (now - last_rx_ > silence) {
            double secs = std::chrono::duration<double>(now - last_rx_).count();
            console_.log(std::string(welcome_
                                         ? "no message from the coordinator"
                                         : "no Welcome from the coordinator at " + args_.connect) +
                         " for " + std::to_string(static_cast<long>(secs)) +
                         " s; giving up (is it running, and are the keys right?)");
            return finish(kExitCoordinator, "");
        }
        if (welcome_ && !rejoining_ && now >= next_heartbeat_) {
            heartbeat();
            next_heartbeat_ =
                now + milliseconds(std::clamp<std::uint32_t>(welcome_->heartbeat_ms, 50, 60000));
        } else if (!welcome_ || rejoining_) {
            next_heartbeat_ = now + milliseconds(100);
        }
        if (args_.sink && welcome_ && !rejoining_) sink_request(now);
    }
}

// Stops the engines, says Bye when `bye_reason` is set (the coordinator frees our leases at
// once), and gives the socket a moment to deliver what is queued.
int FleetWorker::finish(int code, const std::string& bye_reason) {
    {
        std::lock_guard lk(board_.mu);
        board_.stop = true;
        board_.cv.notify_all();
    }
    shared_->shut_down();
    for (auto& t : threads_)
        t.join();
    if (!bye_reason.empty()) send(wire::Bye{bye_reason});
    {
        std::lock_guard lk(out_mu_);
        closed_ = true;
    }
    (void)flush();
    // Bounded: a dead coordinator must not hang the exit.
    dealer_->set_linger(milliseconds(args_.context ? 0 : 1000));
    dealer_.reset();
    return code;
}

void FleetWorker::engine_main(unsigned index) {
    EngineEmbedder emb(
        console_, board_, opts_, targets_added_, g_interrupted,
        [this](wire::Message m) { return send(m); }, *shared_);
    EngineShared shared(*shared_);
    const std::uint64_t engine_id = (welcome_->worker_id << kEngineBits) | (index + 1);
    auto created = EngineHost::create(opts_, *services_, emb, shared, engine_id);
    std::unique_lock lk(board_.mu);
    if (!created) {
        if (board_.fatal.empty()) board_.fatal = created.message();
        return;
    }
    EngineHost& w = **created;
    ++board_.ready;
    board_.cv.notify_all();  // the engines wait for each other before asking for work
    ++board_.idle;
    while (!board_.stop) {
        if ((!board_.phases.empty() || !board_.leases.empty()) && board_.ready == engines_) {
            bool phase = !board_.phases.empty();
            std::optional<wire::RunPhase> p;
            std::optional<wire::Lease> l;
            if (phase) {
                p = std::move(board_.phases.front());
                board_.phases.pop_front();
                ++board_.in_phase;
            } else {
                l = std::move(board_.leases.front());
                board_.leases.pop_front();
                board_.running.insert(l->group_id);
            }
            --board_.idle;
            lk.unlock();
            if (phase) {
                run_phase(w, shared, engine_id, *p);
            } else {
                // The group's script threads own their locks under its lease.
                shared_->set_lease(engine_id, l->group_id);
                run_lease(w, emb, *l);
                shared_->set_lease(engine_id, 0);
            }
            lk.lock();
            if (l) {
                board_.running.erase(l->group_id);
                board_.lost.erase(l->group_id);
            } else {
                --board_.in_phase;
            }
            ++board_.idle;
            board_.cv.notify_all();  // the I/O loop's "done" check reads idle
            continue;
        }
        auto now = Clock::now();
        if (board_.outstanding && now - board_.requested_at > kRequestExpiry) {
            // A coordinator that lost our request must not leave every engine idle forever.
            board_.outstanding = 0;
        }
        // Work is asked for once every engine is built: one of them prints "NSE: Loaded N
        // scripts" as it is, and that line comes before any scan's output, as in nmap.
        if (!board_.scan_done && !board_.paused && board_.outstanding < board_.idle &&
            board_.ready == engines_ && now >= board_.retry_at) {
            ++board_.outstanding;
            board_.requested_at = now;
            lk.unlock();
            send(wire::RequestWork{1});
            lk.lock();
            continue;
        }
        auto until = board_.retry_at > now ? board_.retry_at : now + milliseconds(500);
        board_.cv.wait_until(lk, until);
    }
    --board_.idle;
    lk.unlock();
    created->reset();  // the engine dies on its own thread
}

void FleetWorker::run_lease(EngineHost& w, EngineEmbedder& emb, const wire::Lease& lease) {
    const auto started = Clock::now();
    const std::uint64_t gid = lease.group_id;
    std::vector<common::HostResult> hosts;
    for (const auto& lh : lease.hosts) {
        common::HostResult h;
        h.index = static_cast<std::size_t>(lh.index);
        h.address = lh.address;
        h.ipv6 = lh.ipv6;
        h.targetname = lh.targetname;
        h.other_addresses = lh.other_addresses;
        hosts.push_back(std::move(h));
    }
    auto lost = [&] {
        std::lock_guard lk(board_.mu);
        return board_.stop || board_.lost.count(gid) > 0;
    };
    std::set<std::size_t> sent;
    // The group's last host goes out only after run_group has pushed the group's registry
    // changes: its commit completes the group, and the postrule may start right then.
    std::optional<common::HostResult> held;
    bool group_over = false;
    auto deliver = [&](const common::HostResult& h) {
        if (lost() || sent.count(h.index)) return;
        if (!group_over && sent.size() + 1 == hosts.size()) {
            held = h;
            return;
        }
        sent.insert(h.index);
        wire::HostResult m{gid, h};
        for (const auto& note : fit_host(m.host, gid, wire::kDefaultMaxMessageBytes))
            console_.log("WARNING: " + note);
        send(m);
    };
    emb.group_ = gid;
    auto st = w.run_group(hosts, deliver);
    group_over = true;
    if (held) deliver(*held);
    emb.group_.reset();
    if (lost()) {
        console_.debug("group " + std::to_string(gid) + " abandoned");
        return;
    }
    if (!st) {
        // The coordinator learns why, then a GroupDone short of hosts gives the group back
        // (it gives up on a group that keeps failing).
        console_.log("group " + std::to_string(gid) + " failed: " + st.message());
        send(wire::Error{wire::ErrorCode::Internal,
                         "group " + std::to_string(gid) + " failed: " + st.message(), 0});
    } else {
        for (const auto& h : hosts)
            deliver(h);  // hosts the engine finished without a host_done
    }
    wire::GroupDone done;
    done.group_id = gid;
    done.hosts = static_cast<std::uint32_t>(sent.size());
    done.elapsed = std::chrono::duration<double>(Clock::now() - started).count();
    send(done);
    console_.debug("group " + std::to_string(gid) + " done (" + std::to_string(sent.size()) +
                   " hosts)");
}

void FleetWorker::run_phase(EngineHost& w, EngineShared& shared, std::uint64_t engine_id,
                            const wire::RunPhase& p) {
    wire::PhaseResult r;
    r.phase_id = p.phase_id;
    r.phase = p.phase;
    shared.begin_phase();
    auto st = p.phase == wire::Phase::Prerule ? w.prerule(r.scripts) : w.postrule(r.scripts);
    r.registry = shared.end_phase();
    if (!st) r.error = st.message();
    // Half the message for the results; a registry delta that does not fit with them goes
    // ahead in parts (merges on the same connection arrive before the PhaseResult).
    for (const auto& note : fit_scripts(r.scripts, wire::kDefaultMaxMessageBytes / 2))
        console_.log("WARNING: " + note);
    if (wire::encode(r).size() > wire::kDefaultMaxMessageBytes) {
        shared.publish(r.registry, engine_id);
        r.registry = {};
    }
    console_.debug(std::string(p.phase == wire::Phase::Prerule ? "prerule" : "postrule") +
                   " phase " + std::to_string(p.phase_id) + ": " +
                   std::to_string(r.scripts.size()) + " result(s)");
    send(r);
}

}  // namespace

void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int run_worker(const std::vector<std::string>& args) {
    for (const auto& a : args)
        if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            return 0;
        }
    auto parsed = parse_args(args);
    if (!parsed) {
        std::fprintf(stderr, "nsefleet worker: %s\n%s", parsed.message().c_str(), kUsage);
        return kExitUsage;
    }
    raise_fd_limit();
    std::signal(SIGPIPE, SIG_IGN);
    std::signal(SIGINT, fleet_worker_on_signal);
    std::signal(SIGTERM, fleet_worker_on_signal);
    Console console(parsed->verbose, false);
    FleetWorker fw(std::move(*parsed), console);
    return fw.run();
}

int run_local_worker(const LocalWorker& lw) {
    Args a;
    a.connect = lw.endpoint;
    a.engines = lw.engines;
    a.insecure = true;  // inproc:// never leaves the process
    a.name = lw.name;
    a.context = lw.context;
    a.stop = lw.stop;
    a.fatal_out = lw.fatal_out;
    a.quiet = true;
    a.verbose = lw.verbose;
    Console console(a.verbose, a.quiet);
    FleetWorker fw(std::move(a), console);
    return fw.run();
}

}  // namespace worker
