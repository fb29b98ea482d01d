#include "coordinator/embedded.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "common/datafiles.h"
#include "common/services.h"
#include "common/targets.h"
#include "coordinator/output.h"
#include "nse/local_shared_state.h"
#include "worker/worker.h"

namespace coordinator {

namespace {

double epoch_now() {
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::atomic<bool> g_interrupted{false};

// Internal linkage: other entry points (the fleet processes) have their own handlers.
void on_interrupt(int) { g_interrupted = true; }

// Terminal output shared by every engine thread, and the queue of targets scripts add
// (nmap.add_targets), drained by the coordinator loop.
class ConsoleEmbedder : public nse::Embedder {
public:
    explicit ConsoleEmbedder(const common::ScanOptions& opts) : opts_(opts) {}

    void write(bool to_stderr, const std::string& text) override {
        std::lock_guard lk(mu_);
        FILE* f = to_stderr ? stderr : stdout;
        std::fwrite(text.data(), 1, text.size(), f);
        std::fflush(f);
    }
    double now() override { return epoch_now(); }
    bool cancelled() override { return g_interrupted.load(); }

    std::size_t add_targets(const std::vector<std::string>& specs) override {
        std::size_t n = 0;
        for (const auto& s : specs) {
            // Checked here so the script learns at once which ones were taken.
            auto t = common::expand_targets({s}, {}, opts_.excludes, opts_.exclude_files,
                                            opts_.ipv6, 1u << 16);
            if (!t) break;
            std::lock_guard lk(targets_mu_);
            for (auto& x : *t) pending_.push_back(std::move(x));
            ++added_;
            ++n;
        }
        return n;
    }
    std::size_t targets_pending() override {
        std::lock_guard lk(targets_mu_);
        return pending_.size();
    }
    std::size_t targets_added() override {
        std::lock_guard lk(targets_mu_);
        return added_;
    }
    std::vector<common::Target> take_targets() {
        std::lock_guard lk(targets_mu_);
        return std::exchange(pending_, {});
    }

private:
    const common::ScanOptions& opts_;
    std::mutex mu_;
    std::mutex targets_mu_;
    std::vector<common::Target> pending_;
    std::size_t added_ = 0;
};

void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int fail(const std::string& msg) {
    std::fprintf(stderr, "nsefleet: %s\n", msg.c_str());
    return 1;
}

using Group = std::vector<common::HostResult>;

// The in-process channel between coordinator and workers: groups out, finished hosts and
// groups back. Groups are owned here; workers take a pointer under the lock.
struct Channel {
    std::mutex mu;
    std::condition_variable work_cv;  // workers wait for jobs
    std::condition_variable done_cv;  // the coordinator waits for results
    std::vector<std::unique_ptr<Group>> groups;
    std::deque<std::size_t> jobs;
    std::deque<std::pair<std::size_t, std::string>> done;  // group number, error ("" = ok)
    std::deque<common::HostResult> hosts;                   // finished hosts (streaming)
    bool closing = false;
};

// Cuts targets into host groups and queues them. Caller holds no lock.
class Planner {
public:
    Planner(Channel& ch, std::size_t group_size) : ch_(ch), size_(group_size) {}

    // Adds hosts not seen before; returns how many.
    std::size_t add(const std::vector<common::Target>& targets) {
        std::vector<std::unique_ptr<Group>> fresh;
        std::size_t n = 0;
        for (const auto& t : targets) {
            if (!seen_.insert(t.address).second) continue;
            if (fresh.empty() || fresh.back()->size() >= size_) fresh.push_back(std::make_unique<Group>());
            common::HostResult h;
            h.index = next_index_++;
            h.address = t.address;
            h.ipv6 = t.ipv6;
            h.targetname = t.targetname;
            fresh.back()->push_back(std::move(h));
            ++n;
        }
        std::lock_guard lk(ch_.mu);
        for (auto& g : fresh) {
            ch_.jobs.push_back(ch_.groups.size());
            ch_.groups.push_back(std::move(g));
        }
        ch_.work_cv.notify_all();
        return n;
    }
    std::size_t hosts() const { return next_index_; }

private:
    Channel& ch_;
    std::size_t size_;
    std::set<std::string> seen_;
    std::size_t next_index_ = 0;
};

}  // namespace

int run_embedded(common::ScanOptions opts) {
    raise_fd_limit();
    std::signal(SIGPIPE, SIG_IGN);
    std::signal(SIGINT, on_interrupt);
    std::signal(SIGTERM, on_interrupt);
    common::DataFiles files(opts.datadir);
    auto svc_path = files.find_file("nmap-services");
    if (!svc_path) return fail("cannot find nmap-services in the data directories");
    auto services = common::Services::load(*svc_path);
    if (!services) return fail(services.message());
    if (!opts.ping_only || !opts.port_spec.empty()) {
        auto st = common::resolve_ports(opts, *services);
        if (!st) return fail(st.message());
        if (opts.ping_only) opts.ports.clear();
    }
    auto targets = common::expand_targets(opts.targets, opts.input_files, opts.excludes,
                                          opts.exclude_files, opts.ipv6);
    if (!targets) return fail(targets.message());

    ConsoleEmbedder console(opts);
    nse::LocalSharedState shared;
    unsigned n_workers = opts.workers > 0 ? static_cast<unsigned>(opts.workers)
                                          : std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::unique_ptr<worker::Worker>> workers;
    for (unsigned i = 0; i < n_workers; ++i) {
        auto w = worker::Worker::create(opts, *services, console, shared, i + 1);
        if (!w) return fail(w.message());
        workers.push_back(std::move(*w));
    }
    auto sink = OutputSink::open(opts);
    if (!sink) return fail(sink.message());

    common::RunInfo run;
    run.args = opts.command_line;
    run.start = epoch_now();
    run.verbose = opts.verbosity;
    run.debugging = opts.debugging;
    run.services = services_text(opts.ports);
    if (opts.syn_scan) run.scan_type = "syn";
    run.open_only = opts.open_only;
    (*sink)->begin(run);

    if (workers[0]->has_prerule()) {
        auto st = workers[0]->prerule(run.prescripts);
        if (!st) return fail(st.message());
    }
    (*sink)->prescan(run.prescripts);
    // Targets that prerule scripts added join the command line's.
    for (auto& t : console.take_targets()) targets->push_back(std::move(t));

    // Host groups: by default enough to give every worker work at once, at most 256 hosts.
    std::size_t n = targets->size();
    std::size_t group = (n + n_workers - 1) / std::max(1u, n_workers);
    group = std::min<std::size_t>(std::max<std::size_t>(group, 1), 256);
    if (opts.min_hostgroup > 0) group = std::max<std::size_t>(group, opts.min_hostgroup);
    if (opts.max_hostgroup > 0) group = std::min<std::size_t>(group, opts.max_hostgroup);

    Channel ch;
    Planner planner(ch, group);
    planner.add(*targets);

    std::vector<std::thread> threads;
    for (auto& w : workers) {
        threads.emplace_back([&ch, wp = w.get()]() {
            for (;;) {
                std::size_t g;
                Group* hosts;
                {
                    std::unique_lock lk(ch.mu);
                    ch.work_cv.wait(lk, [&] { return !ch.jobs.empty() || ch.closing; });
                    if (ch.jobs.empty() || g_interrupted) return;
                    g = ch.jobs.front();
                    ch.jobs.pop_front();
                    hosts = ch.groups[g].get();
                }
                auto st = wp->run_group(*hosts, [&ch](const common::HostResult& h) {
                    std::lock_guard lk(ch.mu);
                    ch.hosts.push_back(h);
                    ch.done_cv.notify_all();
                });
                std::lock_guard lk(ch.mu);
                ch.done.emplace_back(g, st ? "" : st.message());
                ch.done_cv.notify_all();
            }
        });
    }

    // Collect groups and write hosts in target order as soon as they are contiguous.
    std::vector<bool> finished;
    std::size_t next_out = 0, hosts_done = 0;
    std::string error;
    double last_stats = epoch_now();
    for (;;) {
        std::size_t total_groups;
        std::deque<common::HostResult> streamed;
        {
            std::unique_lock lk(ch.mu);
            ch.done_cv.wait_for(lk, std::chrono::milliseconds(500),
                                [&] { return !ch.done.empty() || !ch.hosts.empty(); });
            streamed = std::exchange(ch.hosts, {});
            finished.resize(ch.groups.size(), false);
            while (!ch.done.empty()) {
                auto [g, err] = ch.done.front();
                ch.done.pop_front();
                if (!err.empty() && error.empty()) error = err;
                finished[g] = true;
                hosts_done += ch.groups[g]->size();
            }
            total_groups = ch.groups.size();
        }
        for (const auto& h : streamed) (*sink)->host_finished(h);
        while (next_out < total_groups && finished[next_out]) {
            Group done_group;
            {
                std::lock_guard lk(ch.mu);
                done_group = std::move(*ch.groups[next_out]);
            }
            for (auto& h : done_group) {
                if (h.status == "up")
                    ++run.hosts_up;
                else
                    ++run.hosts_down;
                (*sink)->host(h);
            }
            ++next_out;
        }
        // Targets added by host scripts become new groups.
        auto added = console.take_targets();
        if (!added.empty()) planner.add(added);
        if (g_interrupted) break;
        if (next_out == total_groups && added.empty() && console.targets_pending() == 0) {
            std::lock_guard lk(ch.mu);
            if (ch.groups.size() == total_groups && ch.done.empty()) break;
        }
        double now = epoch_now();
        double every = opts.stats_every > 0 ? opts.stats_every : (opts.verbosity > 0 ? 10.0 : 0);
        if (every > 0 && now - last_stats >= every) {
            last_stats = now;
            std::size_t total = planner.hosts();
            double frac = total ? static_cast<double>(hosts_done) / static_cast<double>(total) : 1;
            double elapsed = now - run.start;
            char buf[160];
            if (frac > 0)
                std::snprintf(buf, sizeof buf,
                              "Stats: %.0fs elapsed; %zu/%zu hosts completed (%.1f%%); ETC: %.0fs remaining\n",
                              elapsed, hosts_done, total, frac * 100, elapsed / frac - elapsed);
            else
                std::snprintf(buf, sizeof buf, "Stats: %.0fs elapsed; 0/%zu hosts completed\n",
                              elapsed, total);
            console.write(true, buf);
        }
    }
    {
        std::lock_guard lk(ch.mu);
        ch.closing = true;
        ch.work_cv.notify_all();
    }
    for (auto& t : threads) t.join();
    if (!error.empty()) return fail(error);
    run.hosts_total = planner.hosts();

    if (workers[0]->has_postrule()) {
        auto st = workers[0]->postrule(run.postscripts);
        if (!st) return fail(st.message());
    }
    run.end = epoch_now();
    auto st = (*sink)->finish(run);
    if (!st) return fail(st.message());
    return g_interrupted ? 130 : 0;
}

}  // namespace coordinator
