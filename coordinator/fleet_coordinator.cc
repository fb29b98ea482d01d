// The fleet coordinator: one thread, one ROUTER socket, the RocksDB store as the source of
// truth. Workers pull host groups (leases), stream host results (committed exactly once per
// host index), and use the coordinator as the fleet's mutex/condvar/registry service.
// docs/protocol.md is the contract; docs/fleet.md says how to run a fleet.
#include "coordinator/fleet_coordinator.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/datafiles.h"
#include "common/options.h"
#include "common/services.h"
#include "common/target_cursor.h"
#include "common/transport/keys.h"
#include "common/transport/transport.h"
#include "common/wire/codec.h"
#include "common/wire/messages.h"
#include "coordinator/output.h"
#include "coordinator/store/store.h"
#include "nse/local_shared_state.h"

namespace coordinator {

namespace {

namespace wire = common::wire;
namespace transport = common::transport;

double epoch_now() {
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::int64_t to_ms(double t) { return static_cast<std::int64_t>(t * 1000.0); }

std::atomic<bool> g_stop{false};
extern "C" void nsefleet_coordinator_on_signal(int) { g_stop = true; }

int fail(const std::string& msg) {
    std::fprintf(stderr, "nsefleet: %s\n", msg.c_str());
    return 1;
}

// Registry keys of the store that hold the coordinator's own records.
constexpr const char* kRegistryKey = "registry";   // merged nmap.registry (RunPhase blob)
constexpr const char* kPhaseKeyPrefix = "phase/";  // phase/1, phase/2: PhaseResult blobs

// Pops the value of a flag that takes one ("--listen X" or "--listen=X"); false at the end.
bool take_value(const std::vector<std::string>& args, std::size_t& i, const std::string& name,
                std::string& out) {
    const std::string& a = args[i];
    if (a == name) {
        if (i + 1 >= args.size()) return false;
        out = args[++i];
        return true;
    }
    out = a.substr(name.size() + 1);
    return true;
}

bool is_flag(const std::string& a, const std::string& name) {
    return a == name || a.rfind(name + "=", 0) == 0;
}

struct ClientArgs {
    std::string connect, key, server_key;
    bool insecure = false;
    double timeout = 5;
};

common::Result<transport::ClientSecurity> client_security(const ClientArgs& a) {
    transport::ClientSecurity sec;
    sec.insecure = a.insecure;
    if (!a.key.empty()) {
        auto kp = transport::load_secret_key(a.key);
        if (!kp) return kp.status();
        sec.key = *kp;
        if (a.server_key.empty())
            return common::Status::error("--key needs --server-key (the coordinator's .pub)");
        auto sk = transport::load_public_key(a.server_key);
        if (!sk) return sk.status();
        sec.server_key = *sk;
    }
    return sec;
}

// ---------------------------------------------------------------- the coordinator

using Config = CoordinatorConfig;

// Hosts added by scripts (nmap.add_targets) get indexes from here on: after every
// command-line target in the output, and never colliding with the cursor's indexes.
constexpr std::uint64_t kAddedBase = std::uint64_t(1) << 48;
constexpr std::uint64_t kMaxAdded = std::uint64_t(1) << 20;  // per scan: bounds the memory
constexpr const char* kAddedPrefix = "added/";  // added/<index hex> -> "address\tipv6\tname"

std::string added_key(std::uint64_t index) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%016llx", kAddedPrefix, static_cast<unsigned long long>(index));
    return buf;
}

struct WorkerRec {
    std::uint64_t id = 0;
    std::string peer;
    std::string name;
    std::uint32_t engines = 1;
    double first_seen = 0, last_seen = 0;
    bool lost = false;
    std::set<std::uint64_t> leases;
    std::uint64_t hosts_done = 0;
    std::string last_error;  // text of its last Error message
    // Shared-state footprints, so a lost worker's locks and waits can be dropped for it.
    std::set<std::tuple<std::string, std::uint64_t, std::uint64_t>> locks, waits;
};

struct GroupMem {
    std::vector<wire::LeaseHost> hosts;
    std::set<std::uint64_t> committed;  // host indexes already in the store
    std::uint64_t worker = 0;           // holder while leased
    double deadline = 0;
    std::uint32_t attempts = 0;
    std::uint32_t failures = 0;  // GroupDone with hosts missing
    bool leased = false;
};

struct PhaseRun {
    wire::Phase phase = wire::Phase::Prerule;
    std::uint64_t id = 0;
    std::uint64_t worker = 0;  // 0: not sent yet (or its worker was lost)
};

std::string owner_str(std::uint64_t worker_id) { return "w" + std::to_string(worker_id); }

class Coordinator {
public:
    explicit Coordinator(Config cfg) : cfg_(std::move(cfg)) {}
    int run();

private:
    common::Status setup();
    common::Status load_or_init_options();
    common::Status restore_groups();
    common::Status plan_more();
    void tick();
    void handle(const transport::Incoming& in);
    void on_hello(const std::string& peer, const wire::Hello& m, std::uint64_t seq);
    void on_heartbeat(WorkerRec& w, const wire::Heartbeat& m);
    void on_request_work(WorkerRec& w, const wire::RequestWork& m);
    void on_host_result(WorkerRec& w, const wire::HostResult& m, std::uint64_t seq);
    void on_group_done(WorkerRec& w, const wire::GroupDone& m);
    void on_phase_result(WorkerRec& w, const wire::PhaseResult& m);
    void on_shared(WorkerRec& w, const wire::SharedOp& m);
    void on_add_targets(WorkerRec& w, const wire::AddTargets& m);
    common::Status restore_added();
    void write_ordered(bool everything);
    void lose_worker(WorkerRec& w, const char* why);
    void requeue_group(std::uint64_t gid);
    void maybe_complete(std::uint64_t gid);
    void start_phase(wire::Phase p);
    bool scanning_done() const { return targets_done_ && groups_.empty() && pending_added_.empty(); }
    wire::StatusReply status() const;
    void progress(double now);
    common::Status finish();
    void report_partial();
    template <class M>
    common::Status read_record(const std::string& key, M& out);
    void send(const std::string& peer, const wire::Message& m);
    void send_error(const std::string& peer, wire::ErrorCode c, const std::string& text,
                    std::uint64_t seq);
    void log(const std::string& text);   // informational: not with Config::quiet
    void warn(const std::string& text);  // always printed
    void fatal(const std::string& text);
    void persist_registry();
    // How long an idle worker waits before asking again: short in-process, where asking
    // costs nothing and every wait shows in a small scan's wall time.
    std::uint32_t retry_ms(std::uint32_t fleet) const { return cfg_.context ? 50 : fleet; }

    Config cfg_;
    common::ScanOptions opts_;
    std::string scan_id_;
    std::unique_ptr<store::Store> store_;
    std::optional<common::TargetCursor> cursor_;
    transport::Context ctx_;
    std::unique_ptr<transport::Router> router_;
    std::unique_ptr<OutputSink> sink_;
    nse::LocalSharedState shared_;
    common::RunInfo run_;

    std::map<std::uint64_t, WorkerRec> workers_;
    std::map<std::string, std::uint64_t> by_peer_;
    std::uint64_t next_worker_id_ = 0;

    std::map<std::uint64_t, GroupMem> groups_;  // planned, not done
    std::deque<std::uint64_t> queue_;           // queued group ids, oldest first
    std::size_t group_size_ = 16;
    std::uint64_t next_group_id_ = 0;
    bool targets_done_ = false;
    std::uint64_t hosts_total_ = 0, hosts_done_ = 0, groups_done_ = 0;
    // Script-added hosts: journaled on arrival, planned before the cursor's next groups.
    std::deque<wire::LeaseHost> pending_added_;
    std::set<std::string> added_seen_;
    std::uint64_t added_count_ = 0;
    // Normal/XML/grepable outputs are written in index order up to here (exclusive).
    std::uint64_t written_next_ = 0;

    bool prerule_done_ = false, postrule_done_ = false, phases_ = false;
    std::optional<PhaseRun> phase_;
    std::uint64_t next_phase_id_ = 1;

    std::uint64_t seq_ = 0;
    std::uint64_t bad_frames_ = 0;
    double start_ = 0, last_tick_ = 0, last_stats_ = 0;
    std::string fatal_;
    bool done_ = false;
};

void Coordinator::log(const std::string& text) {
    if (cfg_.quiet && opts_.debugging == 0) return;
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
common::Status Coordinator::load_or_init_options() {
    auto j = store_->journal();
    if (!j) return j.status();
    if (!j->options.empty()) {
        if (!cfg_.resume)
            return common::Status::error("state directory '" + cfg_.state +
                                         "' holds a scan: pass --resume, or use a new directory");
        auto d = wire::decode(j->options);
        if (!d || !std::holds_alternative<wire::Welcome>(d->message))
            return common::Status::error("state directory '" + cfg_.state +
                                         "': journaled options are unreadable");
        const auto& w = std::get<wire::Welcome>(d->message);
        opts_ = w.options;
        scan_id_ = w.scan_id;
        return common::Status::ok();
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
    common::DataFiles files(opts_.datadir);
    auto svc_path = files.find_file("nmap-services");
    if (!svc_path) return common::Status::error("cannot find nmap-services in the data directories");
    auto services = common::Services::load(*svc_path);
    if (!services) return services.status();
    if (!opts_.ping_only || !opts_.port_spec.empty()) {
        auto st = common::resolve_ports(opts_, *services);
        if (!st) return st;
        if (opts_.ping_only) opts_.ports.clear();
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

    group_size_ = cfg_.group_size ? cfg_.group_size : 16;
    if (opts_.min_hostgroup > 0) group_size_ = std::max<std::size_t>(group_size_, opts_.min_hostgroup);
    if (opts_.max_hostgroup > 0) group_size_ = std::min<std::size_t>(group_size_, opts_.max_hostgroup);
    phases_ = opts_.scripts_requested();

    auto cur = common::TargetCursor::open(target_sources(opts_));
    if (!cur) return cur.status();
    cursor_.emplace(std::move(*cur));
    if (auto s = restore_added(); !s) return s;
    if (auto s = restore_groups(); !s) return s;

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
    run_.services = services_text(opts_.ports);
    run_.open_only = opts_.open_only;
    sink_->begin(run_);

    // A resumed scan: the registry, the prerule's output and the hosts already streamed. A
    // record that cannot be read ends the resume with the reason, never a silent gap.
    wire::RunPhase saved;
    if (auto s = read_record(kRegistryKey, saved); !s) return s;
    shared_.registry_merge(saved.registry);
    if (prerule_done_ || !phases_) {
        prerule_done_ = true;
        wire::PhaseResult phase1;
        if (auto s = read_record(std::string(kPhaseKeyPrefix) + "1", phase1); !s) return s;
        std::vector<common::ScriptResult> pre = std::move(phase1.scripts);
        run_.prescripts = pre;
        sink_->prescan(pre);
    }
    if (!phases_) postrule_done_ = true;
    auto replay = store_->for_each_result([&](std::uint64_t, std::string_view bytes) {
        auto d = wire::decode(bytes);
        if (d && std::holds_alternative<wire::HostResult>(d->message))
            sink_->host_finished(std::get<wire::HostResult>(d->message).host);
        return true;
    });
    if (!replay) return replay;
    log("listening on " + router_->endpoint() + (cfg_.resume ? " (resumed scan " : " (scan ") +
        scan_id_ + ", " + std::to_string(hosts_done_) + " hosts already done)");
    return common::Status::ok();
}

// Rebuilds the in-memory plan from the store: every old lease is void (its worker belongs to
// a previous coordinator), unfinished groups get their hosts back by replaying the cursor.
common::Status Coordinator::restore_groups() {
    auto j = store_->journal();
    if (!j) return j.status();
    prerule_done_ = j->prerule_done;
    postrule_done_ = j->postrule_done;
    targets_done_ = j->targets_done;
    next_group_id_ = j->next_group_id;
    if (auto r = store_->requeue_expired(INT64_MAX); !r) return r.status();
    auto gs = store_->groups();
    if (!gs) return gs.status();
    auto cnt = store_->count_results();
    if (!cnt) return cnt.status();
    hosts_done_ = *cnt;
    std::optional<common::TargetCursor> replay;
    std::uint64_t added_planned = kAddedBase;  // first script-added index in no group
    for (const auto& g : *gs) {
        hosts_total_ += g.hosts.size();
        bool added = !g.hosts.empty() && g.hosts.front() >= kAddedBase;
        if (added) added_planned = std::max(added_planned, g.hosts.back() + 1);
        if (g.state == store::GroupState::done) {
            ++groups_done_;
            continue;
        }
        auto mismatch = [&] {
            return common::Status::error("group " + std::to_string(g.id) + " does not match the targets");
        };
        GroupMem m;
        m.attempts = g.attempts;
        if (added) {
            for (auto index : g.hosts) {
                // pending_added_ is in index order (restore_added reads the keys in order).
                auto it = std::lower_bound(pending_added_.begin(), pending_added_.end(), index,
                                           [](const wire::LeaseHost& h, std::uint64_t i) { return h.index < i; });
                if (it == pending_added_.end() || it->index != index) return mismatch();
                m.hosts.push_back(*it);
            }
        } else {
            if (!replay) {
                auto c = common::TargetCursor::open(target_sources(opts_));
                if (!c) return c.status();
                replay.emplace(std::move(*c));
            }
            auto pos = common::CursorPosition::decode(g.range_begin);
            if (!pos) return pos.status();
            if (auto s = replay->restore(*pos); !s) return s;
            auto hs = replay->next(g.hosts.size());
            if (!hs) return hs.status();
            if (hs->size() != g.hosts.size()) return mismatch();
            for (std::size_t i = 0; i < hs->size(); ++i) {
                const auto& t = (*hs)[i];
                if (t.index != g.hosts[i]) return mismatch();
                m.hosts.push_back({t.index, t.target.address, t.target.ipv6, t.target.targetname});
            }
        }
        for (const auto& h : m.hosts) {
            auto have = store_->result(h.index);
            if (!have) return have.status();
            if (*have) m.committed.insert(h.index);
        }
        std::uint64_t id = g.id;
        bool all = m.committed.size() == m.hosts.size();
        groups_.emplace(id, std::move(m));
        if (all)
            maybe_complete(id);  // crashed between the last commit and complete_group
        else
            queue_.push_back(id);
    }
    // restore_added() loaded every journaled addition; the planned ones are in groups now.
    std::erase_if(pending_added_, [&](const wire::LeaseHost& h) { return h.index < added_planned; });
    if (!j->cursor.empty()) {
        auto pos = common::CursorPosition::decode(j->cursor);
        if (!pos) return pos.status();
        if (auto s = cursor_->restore(*pos); !s) return s;
    }
    return common::Status::ok();
}

// Keeps enough groups queued to feed every engine twice over; the cursor is walked lazily.
common::Status Coordinator::plan_more() {
    std::size_t engines = 0;
    for (const auto& [id, w] : workers_)
        if (!w.lost) engines += w.engines;
    std::size_t want = std::max<std::size_t>(4, 2 * engines);
    // Script-added hosts first: they are known already, and a /8 should not hide them.
    while (!pending_added_.empty() && queue_.size() < want) {
        store::Group g;
        g.id = next_group_id_++;
        GroupMem m;
        while (!pending_added_.empty() && m.hosts.size() < group_size_) {
            g.hosts.push_back(pending_added_.front().index);
            m.hosts.push_back(std::move(pending_added_.front()));
            pending_added_.pop_front();
        }
        if (auto s = store_->plan_group(g, cursor_->position().encode()); !s) return s;
        hosts_total_ += m.hosts.size();
        groups_.emplace(g.id, std::move(m));
        queue_.push_back(g.id);
    }
    while (!targets_done_ && queue_.size() < want) {
        auto before = cursor_->position();
        auto hs = cursor_->next(group_size_);
        if (!hs) return hs.status();
        if (hs->empty()) {
            if (auto s = store_->set_flag(store::JournalFlag::targets_done, true); !s) return s;
            targets_done_ = true;
            break;
        }
        store::Group g;
        g.id = next_group_id_++;
        GroupMem m;
        for (const auto& t : *hs) {
            g.hosts.push_back(t.index);
            m.hosts.push_back({t.index, t.target.address, t.target.ipv6, t.target.targetname});
        }
        g.range_begin = before.encode();
        g.range_end = cursor_->position().encode();
        if (auto s = store_->plan_group(g, g.range_end); !s) return s;
        hosts_total_ += m.hosts.size();
        groups_.emplace(g.id, std::move(m));
        queue_.push_back(g.id);
    }
    return common::Status::ok();
}

// Loads the journaled script-added hosts into pending_added_ (restore_groups then drops the
// ones already planned into groups).
common::Status Coordinator::restore_added() {
    std::string bad;
    auto st = store_->for_each_registry(kAddedPrefix, [&](std::string_view key, std::string_view v) {
        auto hex = key.substr(std::string_view(kAddedPrefix).size());
        auto t1 = v.find('\t');
        auto t2 = t1 == std::string_view::npos ? t1 : v.find('\t', t1 + 1);
        if (t2 == std::string_view::npos) {
            bad = "journaled added target '" + std::string(key) + "' is unreadable";
            return false;
        }
        wire::LeaseHost h;
        h.index = std::strtoull(std::string(hex).c_str(), nullptr, 16);
        h.address = std::string(v.substr(0, t1));
        h.ipv6 = v.substr(t1 + 1, t2 - t1 - 1) == "1";
        h.targetname = std::string(v.substr(t2 + 1));
        added_seen_.insert(h.address);
        added_count_ = std::max(added_count_, h.index - kAddedBase + 1);
        pending_added_.push_back(std::move(h));
        return true;
    });
    if (!st) return st;
    if (!bad.empty()) return common::Status::error(bad);
    return common::Status::ok();
}

void Coordinator::on_add_targets(WorkerRec& w, const wire::AddTargets& m) {
    if (prerule_done_ && scanning_done() && phase_) return;  // postrule: too late, as in nmap
    std::size_t fresh = 0;
    for (const auto& t : m.targets) {
        if (t.address.empty() || t.address.size() > 64) continue;
        if (added_count_ >= kMaxAdded) {
            log("worker " + std::to_string(w.id) + " added more than " + std::to_string(kMaxAdded) +
                " targets; the rest are ignored");
            break;
        }
        if (!added_seen_.insert(t.address).second) continue;
        wire::LeaseHost h{kAddedBase + added_count_++, t.address, t.ipv6, t.targetname.substr(0, 256)};
        std::string rec = h.address + "\t" + (h.ipv6 ? "1" : "0") + "\t" + h.targetname;
        if (auto s = store_->put_registry(added_key(h.index), rec); !s) return fatal(s.message());
        pending_added_.push_back(std::move(h));
        ++fresh;
    }
    if (fresh && opts_.debugging > 0)
        log("worker " + std::to_string(w.id) + " added " + std::to_string(fresh) + " target(s)");
}

// Writes the ordered outputs (normal, XML, grepable) up to the first host that is not
// committed yet: hosts are read back from the store, so memory does not grow with the
// scan. `everything` writes every committed host (end of scan or an interrupted one).
void Coordinator::write_ordered(bool everything) {
    if (cfg_.plan_only) return;
    std::uint64_t frontier = UINT64_MAX;
    if (!everything) {
        for (const auto& [gid, g] : groups_)
            for (const auto& h : g.hosts)
                if (h.index < frontier && !g.committed.count(h.index)) frontier = h.index;
        if (!targets_done_) frontier = std::min(frontier, cursor_->position().index);
        if (!pending_added_.empty()) frontier = std::min(frontier, pending_added_.front().index);
    }
    if (frontier <= written_next_) return;
    std::string bad;
    auto st = store_->for_each_result(
        [&](std::uint64_t index, std::string_view bytes) {
            if (index >= frontier) return false;
            auto d = wire::decode(bytes);
            if (!d || !std::holds_alternative<wire::HostResult>(d->message)) {
                bad = "stored result " + std::to_string(index) + " is unreadable";
                return false;
            }
            const auto& h = std::get<wire::HostResult>(d->message).host;
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
    if (!bad.empty()) fatal(bad);
}

void Coordinator::persist_registry() {
    wire::RunPhase holder;
    holder.registry = shared_.registry_snapshot();
    if (auto s = store_->put_registry(kRegistryKey, wire::encode(holder)); !s) fatal(s.message());
}

void Coordinator::start_phase(wire::Phase p) {
    if (!phase_ || phase_->phase != p) phase_ = PhaseRun{p, next_phase_id_++, 0};
    if (phase_->worker != 0) return;
    // The least busy live worker runs it.
    WorkerRec* best = nullptr;
    for (auto& [id, w] : workers_)
        if (!w.lost && (!best || w.leases.size() < best->leases.size())) best = &w;
    if (!best) return;
    phase_->worker = best->id;
    wire::RunPhase rp;
    rp.phase_id = phase_->id;
    rp.phase = p;
    rp.registry = shared_.registry_snapshot();
    send(best->peer, rp);
    log(std::string(p == wire::Phase::Prerule ? "prerule" : "postrule") + " sent to worker " +
        std::to_string(best->id) + " (" + best->name + ")");
}

void Coordinator::requeue_group(std::uint64_t gid) {
    auto it = groups_.find(gid);
    if (it == groups_.end() || !it->second.leased) return;
    auto wit = workers_.find(it->second.worker);
    if (wit != workers_.end()) wit->second.leases.erase(gid);
    it->second.leased = false;
    it->second.worker = 0;
    it->second.deadline = 0;
    queue_.push_front(gid);  // earlier targets first, so ordered output can advance
}

// Completes a group once every host of it is committed (whoever delivered them).
void Coordinator::maybe_complete(std::uint64_t gid) {
    auto it = groups_.find(gid);
    if (it == groups_.end() || it->second.committed.size() != it->second.hosts.size()) return;
    auto r = store_->complete_group(gid);
    if (!r) {
        fatal(r.message());
        return;
    }
    auto wit = workers_.find(it->second.worker);
    if (wit != workers_.end()) wit->second.leases.erase(gid);
    queue_.erase(std::remove(queue_.begin(), queue_.end(), gid), queue_.end());
    groups_.erase(it);
    ++groups_done_;
}

void Coordinator::lose_worker(WorkerRec& w, const char* why) {
    if (w.lost) return;
    w.lost = true;
    log("worker " + std::to_string(w.id) + " (" + w.name + ") lost: " + why + "; " +
        std::to_string(w.leases.size()) + " group(s) requeued");
    if (auto r = store_->requeue_owner(owner_str(w.id)); !r) fatal(r.message());
    auto leases = w.leases;
    for (auto gid : leases) requeue_group(gid);
    // A dead worker never leaves a lock held or a waiter queued.
    for (const auto& [key, eng, id] : w.locks) shared_.mutex_abandon(key, nse::Owner{eng, id});
    for (const auto& [key, eng, id] : w.waits) shared_.condvar_cancel(key, nse::Owner{eng, id});
    w.locks.clear();
    w.waits.clear();
    if (phase_ && phase_->worker == w.id) phase_->worker = 0;  // resent to another worker
}

wire::StatusReply Coordinator::status() const {
    wire::StatusReply r;
    r.scan_id = scan_id_;
    r.state = !fatal_.empty()        ? "failed"
              : done_                ? "done"
              : !prerule_done_       ? "prerule"
              : scanning_done()      ? "postrule"
                                     : "scanning";
    r.hosts_total = hosts_total_;
    r.hosts_done = hosts_done_;
    r.groups_pending = queue_.size();
    r.groups_leased = groups_.size() - queue_.size();
    r.groups_done = groups_done_;
    r.targets_exhausted = targets_done_;
    for (const auto& [id, w] : workers_) {
        if (w.lost) continue;
        r.workers.push_back({w.id, w.name, w.engines,
                             std::vector<std::uint64_t>(w.leases.begin(), w.leases.end()), w.last_seen});
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
        auto it = groups_.find(gid);
        if (it != groups_.end() && it->second.leased && it->second.worker == w.id) {
            auto r = store_->renew_lease(gid, owner_str(w.id), to_ms(deadline));
            if (!r) {
                fatal(r.message());
                return;
            }
            it->second.deadline = deadline;
            renewed.group_ids.push_back(gid);
        } else if (it == groups_.end() && gid < next_group_id_) {
            // Finished (by anyone): nothing more to do on it.
            send(w.peer, wire::LeaseLost{gid, "group already done"});
        } else {
            send(w.peer, wire::LeaseLost{gid, "lease expired or held by another worker"});
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
    if (auto s = plan_more(); !s) {
        fatal(s.message());
        return;
    }
    std::uint32_t slots = std::min<std::uint32_t>(std::max<std::uint32_t>(m.slots, 1), w.engines);
    std::uint32_t given = 0;
    double deadline = epoch_now() + cfg_.lease_timeout;
    while (given < slots && !queue_.empty()) {
        std::uint64_t gid = queue_.front();
        queue_.pop_front();
        auto& g = groups_.at(gid);
        auto r = store_->lease_group(gid, owner_str(w.id), to_ms(deadline));
        if (!r) {
            fatal(r.message());
            return;
        }
        if (!*r) continue;  // should not happen: the queue mirrors the store
        g.leased = true;
        g.worker = w.id;
        g.deadline = deadline;
        ++g.attempts;
        w.leases.insert(gid);
        wire::Lease lease;
        lease.group_id = gid;
        lease.attempt = g.attempts;
        lease.deadline = deadline;
        lease.hosts = g.hosts;
        send(w.peer, lease);
        ++given;
        if (opts_.debugging > 0)
            log("group " + std::to_string(gid) + " (" + std::to_string(g.hosts.size()) +
                " hosts, attempt " + std::to_string(g.attempts) + ") -> worker " + std::to_string(w.id));
    }
    if (given == 0) {
        if (scanning_done()) start_phase(wire::Phase::Postrule);
        send(w.peer, wire::NoWork{retry_ms(500), false});
    }
}

void Coordinator::on_host_result(WorkerRec& w, const wire::HostResult& m, std::uint64_t seq) {
    auto it = groups_.find(m.group_id);
    if (it == groups_.end()) {
        if (m.group_id >= next_group_id_)
            send_error(w.peer, wire::ErrorCode::UnknownLease, "no such group", seq);
        return;  // a group already done: every host is committed, this copy is dropped
    }
    auto& g = it->second;
    auto h = std::find_if(g.hosts.begin(), g.hosts.end(),
                          [&](const wire::LeaseHost& x) { return x.index == m.host.index; });
    if (h == g.hosts.end() || h->address != m.host.address) {
        send_error(w.peer, wire::ErrorCode::UnknownLease, "host not in that group", seq);
        return;
    }
    if (g.committed.count(m.host.index)) return;  // second copy: acknowledged and dropped
    // Late results from an old holder still count when the host was never committed.
    auto r = store_->commit_host(m.host.index, wire::encode(m));
    if (!r) {
        fatal(r.message());
        return;
    }
    g.committed.insert(m.host.index);
    if (r->already_committed) return;
    ++hosts_done_;
    ++w.hosts_done;
    sink_->host_finished(m.host);
    maybe_complete(m.group_id);
}

void Coordinator::on_group_done(WorkerRec& w, const wire::GroupDone& m) {
    auto it = groups_.find(m.group_id);
    if (it == groups_.end()) return;  // already complete
    if (!it->second.leased || it->second.worker != w.id) {
        send(w.peer, wire::LeaseLost{m.group_id, "not your lease"});
        return;
    }
    if (cfg_.plan_only) {
        // Planning benchmark: the group counts as scanned; nothing is stored per host.
        auto& g = it->second;
        for (const auto& h : g.hosts)
            if (g.committed.insert(h.index).second) {
                ++hosts_done_;
                ++w.hosts_done;
            }
    }
    if (it->second.committed.size() == it->second.hosts.size()) {
        maybe_complete(m.group_id);
        return;
    }
    // The worker says it is done but hosts are missing: someone else finishes them, unless
    // the group keeps failing (a scan that cannot progress must end, not loop).
    constexpr std::uint32_t kMaxFailures = 3;
    if (++it->second.failures >= kMaxFailures) {
        fatal("group " + std::to_string(m.group_id) + " failed " + std::to_string(kMaxFailures) +
              " times" + (w.last_error.empty() ? "" : ", last: " + w.last_error) +
              (cfg_.context ? "" : " (state kept: fix the cause, then --resume)"));
        return;
    }
    log("group " + std::to_string(m.group_id) + " finished by worker " + std::to_string(w.id) +
        " with " + std::to_string(it->second.hosts.size() - it->second.committed.size()) +
        " host(s) missing; requeued");
    if (auto r = store_->renew_lease(m.group_id, owner_str(w.id), 0); !r) fatal(r.message());
    if (auto r = store_->requeue_expired(0); !r) fatal(r.message());
    requeue_group(m.group_id);
}

void Coordinator::on_phase_result(WorkerRec& w, const wire::PhaseResult& m) {
    if (!phase_ || phase_->id != m.phase_id || phase_->phase != m.phase) return;  // stale
    if (!m.error.empty()) warn("phase failed on worker " + std::to_string(w.id) + ": " + m.error);
    shared_.registry_merge(m.registry);
    persist_registry();
    auto key = std::string(kPhaseKeyPrefix) + std::to_string(static_cast<int>(m.phase));
    if (auto s = store_->put_registry(key, wire::encode(m)); !s) fatal(s.message());
    if (m.phase == wire::Phase::Prerule) {
        if (auto s = store_->set_flag(store::JournalFlag::prerule_done, true); !s) fatal(s.message());
        prerule_done_ = true;
        run_.prescripts = m.scripts;
        sink_->prescan(m.scripts);
    } else {
        if (auto s = store_->set_flag(store::JournalFlag::postrule_done, true); !s) fatal(s.message());
        postrule_done_ = true;
    }
    phase_.reset();
}

void Coordinator::on_shared(WorkerRec& w, const wire::SharedOp& m) {
    using K = wire::SharedOpKind;
    nse::Owner who{m.who.engine, m.who.id};
    auto foot = std::make_tuple(m.key, who.engine, who.id);
    std::uint64_t wid = w.id;
    std::uint64_t rid = m.request_id;
    wire::SharedReply reply;
    reply.request_id = rid;
    // Wakes run inside the LocalSharedState call or a later one; they only queue a message.
    auto notify = [this, wid, rid, key = m.key, o = m.who](wire::SharedEvent ev) {
        auto it = workers_.find(wid);
        if (it == workers_.end() || it->second.lost) return;
        if (ev == wire::SharedEvent::Woken) it->second.waits.erase({key, o.engine, o.id});
        send(it->second.peer, wire::SharedNotify{rid, ev, key, o});
    };
    switch (m.op) {
    case K::MutexLock:
        w.locks.insert(foot);
        shared_.mutex_lock(m.key, who, [notify] { notify(wire::SharedEvent::Granted); });
        return;
    case K::MutexTrylock:
        reply.ok = shared_.mutex_trylock(m.key, who);
        if (reply.ok) w.locks.insert(foot);
        break;
    case K::MutexUnlock:
        reply.ok = shared_.mutex_unlock(m.key, who);
        if (reply.ok) w.locks.erase(foot);
        break;
    case K::MutexAbandon:
        shared_.mutex_abandon(m.key, who);
        w.locks.erase(foot);
        return;
    case K::MutexOwner:
        if (auto o = shared_.mutex_owner(m.key)) reply.owner = wire::Owner{o->engine, o->id};
        reply.ok = true;
        break;
    case K::CondWait:
        w.waits.insert(foot);
        shared_.condvar_wait(m.key, who, [notify] { notify(wire::SharedEvent::Woken); });
        return;
    case K::CondSignal:
        shared_.condvar_signal(m.key);
        return;
    case K::CondBroadcast:
        shared_.condvar_broadcast(m.key);
        return;
    case K::CondCancel:
        shared_.condvar_cancel(m.key, who);
        w.waits.erase(foot);
        return;
    case K::RegistryMerge:
        shared_.registry_merge(m.value);
        persist_registry();
        reply.ok = true;
        break;
    case K::RegistrySnapshot:
        reply.value = shared_.registry_snapshot();
        reply.ok = true;
        break;
    }
    send(w.peer, reply);
}

void Coordinator::handle(const transport::Incoming& in) {
    wire::ErrorCode why = wire::ErrorCode::None;
    auto d = wire::decode(in.payload, wire::kDefaultMaxMessageBytes, &why);
    auto known = by_peer_.find(in.peer);
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
    if (auto* m = std::get_if<wire::SharedOp>(&msg)) return on_shared(w, *m);
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
    double frac = hosts_total_ ? static_cast<double>(hosts_done_) / static_cast<double>(hosts_total_) : 0;
    char buf[256];
    std::string line;
    std::snprintf(buf, sizeof buf, "Stats: %.0fs elapsed; %llu/%llu%s hosts completed (%.1f%%)",
                  elapsed, static_cast<unsigned long long>(hosts_done_),
                  static_cast<unsigned long long>(hosts_total_), targets_done_ ? "" : "+",
                  frac * 100);
    line = buf;
    if (frac > 0 && targets_done_) {
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
    bool expired = false;
    for (auto& [gid, g] : groups_)
        if (g.leased && g.deadline < now) expired = true;
    if (expired) {
        if (auto r = store_->requeue_expired(to_ms(now)); !r) fatal(r.message());
        std::vector<std::uint64_t> ids;
        for (auto& [gid, g] : groups_)
            if (g.leased && g.deadline < now) ids.push_back(gid);
        for (auto gid : ids) {
            log("lease of group " + std::to_string(gid) + " expired; requeued");
            requeue_group(gid);
        }
        std::sort(queue_.begin(), queue_.end());
    }
    if (!prerule_done_) start_phase(wire::Phase::Prerule);
    else if (scanning_done() && !postrule_done_) start_phase(wire::Phase::Postrule);
    write_ordered(false);
    double every = opts_.stats_every > 0 ? opts_.stats_every : (opts_.verbosity > 0 ? 5.0 : 0);
    if (every > 0 && now - last_stats_ >= every) {
        last_stats_ = now;
        progress(now);
    }
}

// Reads the coordinator's own record `key` into `out` (left as is when there is none). A
// store failure or a record that does not decode as M is an error naming the key.
template <class M>
common::Status Coordinator::read_record(const std::string& key, M& out) {
    auto b = store_->registry(key);
    if (!b) return common::Status::error("state: cannot read '" + key + "': " + b.status().message());
    if (!*b) return common::Status::ok();
    auto d = wire::decode(**b);
    if (!d || !std::holds_alternative<M>(d->message))
        return common::Status::error("state: record '" + key + "' is unreadable" +
                                     (d ? std::string(" (wrong type)") : ": " + d.status().message()));
    out = std::move(std::get<M>(d->message));
    return common::Status::ok();
}

// A scan stopped by an error still reports every host it has: the outputs are completed
// with them (no post-scan results), and the user is told how many are missing.
void Coordinator::report_partial() {
    // Nothing scanned (bad input, a worker that cannot start): the error line says it all.
    if (!sink_ || cfg_.plan_only || hosts_done_ == 0) return;
    write_ordered(true);
    run_.hosts_total = std::max<std::size_t>(hosts_total_, run_.hosts_up + run_.hosts_down);
    run_.end = epoch_now();
    std::size_t have = run_.hosts_up + run_.hosts_down;
    if (auto s = sink_->finish(run_); !s) {
        warn("could not complete the reports: " + s.message());
        return;
    }
    std::string missing = targets_done_ ? std::to_string(run_.hosts_total - have) : "the rest";
    warn("the reports hold the " + std::to_string(have) + " host(s) scanned before the error; " + missing +
         " not scanned" + (cfg_.context ? "" : " (--resume continues the scan)"));
}

// Writes the hosts not written yet and the post-scan results, and completes the files.
common::Status Coordinator::finish() {
    if (phases_) {
        wire::PhaseResult phase2;
        if (auto s = read_record(std::string(kPhaseKeyPrefix) + "2", phase2); !s) fatal(s.message());
        run_.postscripts = std::move(phase2.scripts);
    }
    write_ordered(true);
    if (!fatal_.empty()) return common::Status::error(fatal_);
    run_.hosts_total = hosts_total_;
    run_.end = epoch_now();
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
        if (opts_.verbosity > 0 || opts_.stats_every > 0) progress(epoch_now());
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
            if (d && std::holds_alternative<wire::StatusQuery>(d->message)) send((*in)->peer, status());
            else if (d && std::holds_alternative<wire::RequestWork>(d->message))
                send((*in)->peer, wire::NoWork{500, rc == 0});
        }
    }
    if (auto s = store_->close(); !s && rc == 0) rc = fail(s.message());
    return rc;
}

}  // namespace

// ---------------------------------------------------------------- commands

common::TargetSources target_sources(const common::ScanOptions& o) {
    common::TargetSources src;
    src.specs = o.targets;
    src.input_files = o.input_files;
    src.excludes = o.excludes;
    src.exclude_files = o.exclude_files;
    src.ipv6 = o.ipv6;
    return src;
}

int run_coordinator(CoordinatorConfig cfg) { return Coordinator(std::move(cfg)).run(); }

int run_coordinator(const std::vector<std::string>& args) {
    Config cfg;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        std::string v;
        auto need = [&](const char* name) {
            if (!take_value(args, i, name, v)) {
                std::fprintf(stderr, "nsefleet: %s needs a value\n", name);
                return false;
            }
            return true;
        };
        if (is_flag(a, "--listen")) {
            if (!need("--listen")) return 2;
            cfg.listen = v;
        } else if (is_flag(a, "--state")) {
            if (!need("--state")) return 2;
            cfg.state = v;
        } else if (is_flag(a, "--key")) {
            if (!need("--key")) return 2;
            cfg.key_file = v;
        } else if (is_flag(a, "--allow")) {
            if (!need("--allow")) return 2;
            cfg.allow_dir = v;
        } else if (is_flag(a, "--lease-timeout")) {
            if (!need("--lease-timeout")) return 2;
            auto t = common::parse_time_spec(v);
            if (!t || *t < 0.5 || *t > 86400) {
                std::fprintf(stderr, "nsefleet: bad --lease-timeout '%s' (0.5s .. 24h)\n", v.c_str());
                return 2;
            }
            cfg.lease_timeout = *t;
        } else if (a == "--resume") {
            cfg.resume = true;
        } else if (a == "--insecure") {
            cfg.insecure = true;
        } else if (a == "--plan-only") {
            cfg.plan_only = true;
        } else {
            cfg.scan_args.push_back(a);
        }
    }
    if (cfg.listen.empty() || cfg.state.empty()) {
        std::fprintf(stderr, "nsefleet: coordinator needs --listen ENDPOINT and --state DIR\n");
        return 2;
    }
    if (cfg.key_file.empty() != cfg.allow_dir.empty()) {
        std::fprintf(stderr, "nsefleet: --key and --allow go together\n");
        return 2;
    }
    if (!cfg.key_file.empty() && cfg.insecure) {
        std::fprintf(stderr, "nsefleet: --key and --insecure exclude each other\n");
        return 2;
    }
    return Coordinator(std::move(cfg)).run();
}

int run_status(const std::vector<std::string>& args) {
    ClientArgs c;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        std::string v;
        bool ok = true;
        if (is_flag(a, "--connect")) ok = take_value(args, i, "--connect", c.connect);
        else if (is_flag(a, "--key")) ok = take_value(args, i, "--key", c.key);
        else if (is_flag(a, "--server-key")) ok = take_value(args, i, "--server-key", c.server_key);
        else if (is_flag(a, "--timeout")) {
            ok = take_value(args, i, "--timeout", v);
            auto t = ok ? common::parse_time_spec(v) : common::Result<double>(0.0);
            if (!t || *t <= 0 || *t > 3600) ok = false;
            else c.timeout = *t;
        } else if (a == "--insecure") c.insecure = true;
        else {
            std::fprintf(stderr, "nsefleet: status: unknown argument '%s'\n", a.c_str());
            return 2;
        }
        if (!ok) {
            std::fprintf(stderr, "nsefleet: status: bad or missing value for %s\n", a.c_str());
            return 2;
        }
    }
    if (c.connect.empty()) {
        std::fprintf(stderr, "nsefleet: status needs --connect ENDPOINT\n");
        return 2;
    }
    auto sec = client_security(c);
    if (!sec) return fail(sec.message());
    auto ctx = transport::Context::create();
    if (!ctx) return fail(ctx.message());
    auto dealer = transport::Dealer::connect(*ctx, c.connect, *sec);
    if (!dealer) return fail(dealer.message());
    if (auto s = (*dealer)->send(wire::encode(wire::StatusQuery{true}, 1)); !s) return fail(s.message());
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<long>(c.timeout * 1000));
    while (std::chrono::steady_clock::now() < deadline) {
        auto in = (*dealer)->recv(std::chrono::milliseconds(100));
        if (!in) return fail(in.message());
        if (!*in) continue;
        auto d = wire::decode(**in);
        if (!d) continue;
        if (auto* e = std::get_if<wire::Error>(&d->message)) return fail("coordinator: " + e->text);
        auto* r = std::get_if<wire::StatusReply>(&d->message);
        if (!r) continue;
        std::printf("scan %s: %s\n", r->scan_id.c_str(), r->state.c_str());
        std::printf("hosts: %llu/%llu%s done\n", static_cast<unsigned long long>(r->hosts_done),
                    static_cast<unsigned long long>(r->hosts_total), r->targets_exhausted ? "" : "+");
        std::printf("groups: %llu pending, %llu leased, %llu done\n",
                    static_cast<unsigned long long>(r->groups_pending),
                    static_cast<unsigned long long>(r->groups_leased),
                    static_cast<unsigned long long>(r->groups_done));
        double now = epoch_now();
        for (const auto& w : r->workers) {
            std::string leases;
            for (auto g : w.leases) leases += (leases.empty() ? "" : ",") + std::to_string(g);
            std::printf("worker %llu %s: %u engine(s), leases [%s], seen %.1fs ago\n",
                        static_cast<unsigned long long>(w.worker_id), w.name.c_str(), w.engines,
                        leases.c_str(), std::max(0.0, now - w.last_seen));
        }
        return 0;
    }
    return fail("no answer from " + c.connect + " within " + std::to_string(static_cast<int>(c.timeout)) +
                "s (not running, wrong key, or not admitted)");
}

int run_keygen(const std::vector<std::string>& args) {
    if (args.size() != 1 || args[0].empty() || args[0][0] == '-') {
        std::fprintf(stderr, "Usage: nsefleet keygen PREFIX   (writes PREFIX.key and PREFIX.pub)\n");
        return 2;
    }
    auto kp = transport::generate_keypair();
    if (!kp) return fail(kp.message());
    if (auto s = transport::write_keypair(args[0], *kp); !s) return fail(s.message());
    std::printf("wrote %s.key (secret, mode 0600) and %s.pub\n", args[0].c_str(), args[0].c_str());
    return 0;
}

}  // namespace coordinator
