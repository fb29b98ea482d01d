#pragma once
// An engine host: port scan plus the NSE runtime for the host groups it is given.
// One EngineHost per engine (a core); each is driven by one thread at a time. (A "worker"
// is the process that runs them: worker/fleet_worker.h.)
#include <functional>
#include <memory>
#include <vector>

#include "common/options.h"
#include "common/result.h"
#include "common/service_probes.h"
#include "common/services.h"
#include "common/status.h"
#include "nse/embedder.h"
#include "nse/engine.h"

namespace worker {

class PhaseLog;  // engine_host.cc: nmap's -v phase lines

class EngineHost {
public:
    // Builds the engine (script selection happens here: its errors come back as the status).
    static common::Result<std::unique_ptr<EngineHost>> create(const common::ScanOptions& opts,
                                                              const common::Services& services,
                                                              nse::Embedder& embedder,
                                                              nse::SharedState& shared,
                                                              std::uint64_t engine_id);

    bool has_scripts() const { return engine_->has_scripts(); }
    bool has_prerule() const { return engine_->has_prerule(); }
    bool has_postrule() const { return engine_->has_postrule(); }

    // Pre/post-scan phases with the shared registry loaded before and published after.
    common::Status prerule(std::vector<common::ScriptResult>& out);
    common::Status postrule(std::vector<common::ScriptResult>& out);

    // Called on the worker's thread as soon as one host of the group is complete.
    using HostDone = std::function<void(const common::HostResult&)>;

    // Discovers, port-scans and runs host/port scripts on one group. Blocking.
    common::Status run_group(std::vector<common::HostResult>& hosts, HostDone on_host = {});

private:
    // Passes terminal output on and turns the engine's host_done into `on_host` calls.
    class GroupEmbedder : public nse::Embedder {
    public:
        explicit GroupEmbedder(nse::Embedder& up) : up_(up) {}
        void write(bool to_stderr, const std::string& text) override { up_.write(to_stderr, text); }
        double now() override { return up_.now(); }
        bool cancelled() override { return up_.cancelled(); }
        std::size_t add_targets(const std::vector<std::string>& specs) override {
            return up_.add_targets(specs);
        }
        std::size_t targets_pending() override { return up_.targets_pending(); }
        std::size_t targets_added() override { return up_.targets_added(); }
        void host_done(std::size_t position) override {
            if (on_host && hosts && position < hosts->size()) on_host((*hosts)[position]);
        }
        HostDone on_host;
        std::vector<common::HostResult>* hosts = nullptr;

    private:
        nse::Embedder& up_;
    };

    EngineHost(const common::ScanOptions& opts, const common::Services& services,
               nse::Embedder& embedder, nse::SharedState& shared)
        : opts_(opts), services_(services), shared_(shared), embedder_(embedder) {}
    void pull_registry();
    void push_registry();
    // -sS/-sU with the privileges and address family they need; otherwise warns once and
    // the group gets the connect scan, as nmap falls back to -sT.
    bool use_raw_scan();
    // -sV's version scripts on a copy of the group; only port.service comes back.
    void version_phase(std::vector<common::HostResult>& hosts);
    void resolve_names(asio::io_context& io, std::vector<common::HostResult>& hosts,
                       PhaseLog& phase);

    const common::ScanOptions& opts_;
    const common::Services& services_;
    std::shared_ptr<const common::ServiceProbes> probes_;  // -sV only
    nse::SharedState& shared_;
    GroupEmbedder embedder_;
    std::unique_ptr<nse::Engine> engine_;
    std::unique_ptr<nse::Engine> version_engine_;  // -sV only
};

}  // namespace worker
