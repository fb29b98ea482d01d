#include "coordinator/embedded.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <iostream>
#include <map>
#include <mutex>
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

extern "C" void on_interrupt(int) { g_interrupted = true; }

// Terminal output shared by every engine thread.
class ConsoleEmbedder : public nse::Embedder {
public:
    void write(bool to_stderr, const std::string& text) override {
        std::lock_guard lk(mu_);
        FILE* f = to_stderr ? stderr : stdout;
        std::fwrite(text.data(), 1, text.size(), f);
        std::fflush(f);
    }
    double now() override { return epoch_now(); }
    bool cancelled() override { return g_interrupted.load(); }

private:
    std::mutex mu_;
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

// The in-process channel between coordinator and workers: groups out, finished groups back.
struct Channel {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::size_t> jobs;                    // group numbers
    std::deque<std::pair<std::size_t, std::string>> done;  // group number, error ("" = ok)
    std::deque<common::HostResult> hosts;            // finished hosts, for streaming outputs
};

std::string services_text(const std::vector<common::PortSpec>& ports) {
    std::string out;
    std::size_t i = 0;
    while (i < ports.size()) {
        if (ports[i].proto != 't') {
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j + 1 < ports.size() && ports[j + 1].proto == 't' &&
               ports[j + 1].number == ports[j].number + 1)
            ++j;
        if (!out.empty()) out += ",";
        out += std::to_string(ports[i].number);
        if (j > i) out += "-" + std::to_string(ports[j].number);
        i = j + 1;
    }
    return out;
}

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

    ConsoleEmbedder console;
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
    run.open_only = opts.open_only;
    run.hosts_total = targets->size();
    (*sink)->begin(run);

    if (workers[0]->has_prerule()) {
        auto st = workers[0]->prerule(run.prescripts);
        if (!st) return fail(st.message());
    }
    (*sink)->prescan(run.prescripts);

    // Host groups: by default enough to give every worker work at once, at most 256 hosts.
    std::size_t n = targets->size();
    std::size_t group = (n + n_workers - 1) / std::max(1u, n_workers);
    group = std::min<std::size_t>(std::max<std::size_t>(group, 1), 256);
    if (opts.min_hostgroup > 0) group = std::max<std::size_t>(group, opts.min_hostgroup);
    if (opts.max_hostgroup > 0) group = std::min<std::size_t>(group, opts.max_hostgroup);
    std::vector<std::vector<common::HostResult>> groups;
    for (std::size_t i = 0; i < n; i += group) {
        std::vector<common::HostResult> g;
        for (std::size_t j = i; j < std::min(n, i + group); ++j) {
            common::HostResult h;
            h.index = j;
            h.address = (*targets)[j].address;
            h.ipv6 = (*targets)[j].ipv6;
            h.targetname = (*targets)[j].targetname;
            g.push_back(std::move(h));
        }
        groups.push_back(std::move(g));
    }

    Channel ch;
    for (std::size_t i = 0; i < groups.size(); ++i) ch.jobs.push_back(i);
    std::vector<std::thread> threads;
    for (auto& w : workers) {
        threads.emplace_back([&ch, &groups, wp = w.get()]() {
            for (;;) {
                std::size_t g;
                {
                    std::lock_guard lk(ch.mu);
                    if (ch.jobs.empty() || g_interrupted) return;
                    g = ch.jobs.front();
                    ch.jobs.pop_front();
                }
                auto st = wp->run_group(groups[g], [&ch](const common::HostResult& h) {
                    std::lock_guard lk(ch.mu);
                    ch.hosts.push_back(h);
                    ch.cv.notify_all();
                });
                std::lock_guard lk(ch.mu);
                ch.done.emplace_back(g, st ? "" : st.message());
                ch.cv.notify_all();
            }
        });
    }

    // Collect groups and write hosts in target order as soon as they are contiguous.
    std::vector<bool> finished(groups.size(), false);
    std::size_t next_out = 0, hosts_done = 0;
    std::string error;
    double last_stats = epoch_now();
    while (next_out < groups.size()) {
        std::unique_lock lk(ch.mu);
        ch.cv.wait_for(lk, std::chrono::seconds(1),
                       [&] { return !ch.done.empty() || !ch.hosts.empty(); });
        auto streamed = std::move(ch.hosts);
        ch.hosts.clear();
        while (!ch.done.empty()) {
            auto [g, err] = ch.done.front();
            ch.done.pop_front();
            if (!err.empty() && error.empty()) error = err;
            finished[g] = true;
            hosts_done += groups[g].size();
        }
        lk.unlock();
        for (const auto& h : streamed) (*sink)->host_finished(h);
        while (next_out < groups.size() && finished[next_out]) {
            for (auto& h : groups[next_out]) {
                if (h.status == "up")
                    ++run.hosts_up;
                else
                    ++run.hosts_down;
                (*sink)->host(h);
            }
            groups[next_out].clear();
            groups[next_out].shrink_to_fit();
            ++next_out;
        }
        double now = epoch_now();
        double every = opts.stats_every > 0 ? opts.stats_every : (opts.verbosity > 0 ? 10.0 : 0);
        if (every > 0 && now - last_stats >= every && next_out < groups.size()) {
            last_stats = now;
            double frac = n ? static_cast<double>(hosts_done) / static_cast<double>(n) : 1;
            double elapsed = now - run.start;
            char buf[160];
            if (frac > 0)
                std::snprintf(buf, sizeof buf,
                              "Stats: %.0fs elapsed; %zu/%zu hosts completed (%.1f%%); ETC: %.0fs remaining\n",
                              elapsed, hosts_done, n, frac * 100, elapsed / frac - elapsed);
            else
                std::snprintf(buf, sizeof buf, "Stats: %.0fs elapsed; 0/%zu hosts completed\n",
                              elapsed, n);
            console.write(true, buf);
        }
        if (g_interrupted) break;
    }
    for (auto& t : threads) t.join();
    if (!error.empty()) return fail(error);

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
