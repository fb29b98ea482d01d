#include "worker/worker.h"

#include <asio.hpp>

#include "worker/route.h"
#include "worker/scan/connect_scan.h"

namespace worker {

common::Result<std::unique_ptr<Worker>> Worker::create(const common::ScanOptions& opts,
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
    cfg.max_threads = opts.max_parallelism;
    cfg.datadir = opts.datadir;
    cfg.ipv6 = opts.ipv6;
    cfg.memory_limit = static_cast<std::size_t>(opts.engine_memory_mb) << 20;
    std::unique_ptr<Worker> w(new Worker(opts, services, embedder, shared));
    auto engine = nse::Engine::create(cfg, w->embedder_, shared);
    if (!engine) return engine.status();
    w->engine_ = std::move(*engine);
    return w;
}

void Worker::pull_registry() { engine_->registry_import(shared_.registry_snapshot()); }
void Worker::push_registry() { shared_.registry_merge(engine_->registry_export()); }

common::Status Worker::prerule(std::vector<common::ScriptResult>& out) {
    pull_registry();
    auto st = engine_->run_prerule(out);
    push_registry();
    return st;
}

common::Status Worker::postrule(std::vector<common::ScriptResult>& out) {
    pull_registry();
    auto st = engine_->run_postrule(out);
    push_registry();
    return st;
}

common::Status Worker::run_group(std::vector<common::HostResult>& hosts, HostDone on_host) {
    asio::io_context& io = engine_->io();
    {
        ConnectScanner scanner(io, opts_, services_);
        bool done = false;
        scanner.start(hosts, [&done]() { done = true; });
        io.restart();
        while (!done) io.run_one();
    }
    io.restart();
    io.poll();  // let cancelled scanner handlers drain
    // Like nmap: the route (interface, source) is known when discovery ran, not with -Pn.
    if (!opts_.skip_discovery)
        for (auto& h : hosts)
            if (h.status == "up") fill_route(h);
    if (!engine_->has_scripts()) {
        if (on_host)
            for (const auto& h : hosts) on_host(h);
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
