// `nsefleet scan`: the fleet's coordinator and one in-process worker (one engine per core)
// talking over inproc://, with the scan state in a temporary directory (or --state DIR).
// The same code paths as a real fleet, so what the tests prove for one holds for the other.
#include "coordinator/embedded.h"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "common/target_cursor.h"
#include "common/transport/transport.h"
#include "coordinator/coordinator.h"
#include "worker/fleet_worker.h"

namespace coordinator {

namespace {

int fail(const std::string& msg) {
    std::fprintf(stderr, "nsefleet: %s\n", msg.c_str());
    return 1;
}

// Host groups big enough to give every engine work at once, at most 256 hosts (the
// coordinator then applies --min/--max-hostgroup). Counting walks at most 256 groups' worth.
std::size_t group_size(const common::ScanOptions& opts, unsigned engines) {
    constexpr std::size_t kMax = 256;
    if (std::find(opts.input_files.begin(), opts.input_files.end(), "-") != opts.input_files.end())
        return kMax;  // stdin can be read only once: by the coordinator
    auto cur = common::TargetCursor::open(target_sources(opts));
    if (!cur) return kMax;  // the coordinator reports the error
    std::size_t limit = kMax * engines;
    auto hosts = cur->next(limit + 1);
    std::size_t n = hosts ? hosts->size() : limit + 1;
    return std::clamp<std::size_t>((n + engines - 1) / engines, 1, kMax);
}

}  // namespace

int run_embedded(common::ScanOptions opts, const EmbeddedState& state) {
    worker::raise_fd_limit();
    std::string dir = state.dir;
    bool temporary = dir.empty();
    if (temporary) {
        std::error_code ec;
        auto base = std::filesystem::temp_directory_path(ec);
        std::string tmpl = (ec ? std::string("/tmp") : base.string()) + "/nsefleet-scan-" +
                           std::to_string(::getpid()) + "-XXXXXX";
        if (!::mkdtemp(tmpl.data())) return fail("cannot create a state directory in " + tmpl);
        dir = tmpl;
    }
    auto ctx = common::transport::Context::create();
    if (!ctx) return fail(ctx.message());
    unsigned engines = opts.workers > 0 ? static_cast<unsigned>(opts.workers)
                                        : std::max(1u, std::thread::hardware_concurrency());
    const std::string endpoint = "inproc://nsefleet-scan";

    CoordinatorConfig cfg;
    cfg.listen = endpoint;
    cfg.state = dir;
    cfg.resume = state.resume;
    cfg.insecure = true;
    cfg.context = *ctx;
    cfg.group_size = group_size(opts, engines);
    cfg.quiet = true;
    cfg.fleet_debug = state.fleet_debug;
    cfg.finish_on_interrupt = temporary;

    // One single-engine worker per engine, as a fleet of one-core machines would be.
    std::atomic<bool> stop{false};
    std::vector<std::atomic<bool>> exited(engines);  // each set after its error is written
    std::vector<std::string> errors(engines);
    std::vector<worker::LocalWorker> locals;
    for (unsigned i = 0; i < engines; ++i)
        locals.push_back({*ctx, endpoint, "local" + std::to_string(i + 1), 1,
                          state.fleet_debug ? 1 : 0, &stop, &errors[i]});
    if (!state.journal_options) cfg.options = std::move(opts);
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < engines; ++i)
        threads.emplace_back([&, i] {
            worker::run_local_worker(locals[i]);
            exited[i] = true;
        });
    // A worker leaving before the coordinator is done failed to start (they only leave when
    // told to); its error is the scan's.
    cfg.halted = [&]() -> std::string {
        std::string why;
        for (unsigned i = 0; i < engines && why.empty(); ++i)
            if (exited[i])
                why = errors[i].empty() ? "the scan engines stopped unexpectedly" : errors[i];
        return why;
    };
    int rc = run_coordinator(std::move(cfg));
    stop = true;
    for (auto& t : threads)
        t.join();
    if (temporary) {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    return rc;
}

}  // namespace coordinator
