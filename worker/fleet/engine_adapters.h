#pragma once
// What the worker process plugs into each engine: the console every thread writes to, the
// board the I/O loop and the engine threads share, the engine's Embedder (output,
// cancellation, added targets) and its SharedState (the coordinator's lock service, or the
// phase's registry during a RunPhase).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/options.h"
#include "common/wire/messages.h"
#include "nse/registry_delta.h"
#include "nse/runtime.h"
#include "worker/fleet/fleet_shared_state.h"

namespace worker::fleet {

namespace wire = common::wire;
using Clock = std::chrono::steady_clock;

// Log lines and script terminal output from every thread, never interleaved.
class Console {
public:
    Console(int verbose, bool quiet) : verbose_(verbose), quiet_(quiet) {}
    void write(bool to_stderr, const std::string& text) {
        std::lock_guard lk(mu_);
        FILE* f = to_stderr ? stderr : stdout;
        std::fwrite(text.data(), 1, text.size(), f);
        std::fflush(f);
    }
    void log(const std::string& line) {
        if (!quiet_ || verbose_ > 0) write(true, "nsefleet worker: " + line + "\n");
    }
    void debug(const std::string& line) {
        if (verbose_ > 0) log(line);
    }

private:
    std::mutex mu_;
    int verbose_;
    bool quiet_;
};

// What the I/O loop hands to the engine threads and what they report back.
struct Board {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<wire::Lease> leases;
    std::deque<wire::RunPhase> phases;
    unsigned outstanding = 0;          // RequestWork sent, Lease/NoWork not yet received
    Clock::time_point requested_at{};  // last RequestWork: unanswered ones expire
    unsigned idle = 0;                 // engines ready and waiting
    unsigned ready = 0;                // engines created
    Clock::time_point retry_at{};      // no RequestWork before this (NoWork back-off)
    bool scan_done = false;
    bool stop = false;
    bool paused = false;    // coordinator forgot us: no RequestWork until the next Welcome
    unsigned in_phase = 0;  // engines running a RunPhase (the coordinator is quiet meanwhile)
    std::string fatal;      // set-up failed or coordinator refused us
    std::map<std::uint64_t, std::string> lost;  // running groups whose lease is gone
    std::set<std::uint64_t> running;            // groups being worked on (heartbeats)
};

// One engine's embedder: output to the console, cancellation when the worker stops or the
// running group's lease is lost, added targets to the coordinator.
class EngineEmbedder : public nse::Embedder {
public:
    using Send = std::function<bool(wire::Message)>;
    // `interrupted`: the process got SIGINT/SIGTERM.
    EngineEmbedder(Console& console, Board& board, const common::ScanOptions& opts,
                   std::atomic<std::size_t>& added, const std::atomic<bool>& interrupted, Send send,
                   FleetSharedState& fleet)
        : console_(console),
          board_(board),
          opts_(opts),
          added_(added),
          interrupted_(interrupted),
          send_(std::move(send)),
          fleet_(fleet) {}
    void write(bool to_stderr, const std::string& text) override {
        console_.write(to_stderr, text);
    }
    double now() override;
    bool cancelled() override {
        if (interrupted_) return true;
        std::lock_guard lk(board_.mu);
        return board_.stop || (group_ && board_.lost.count(*group_));
    }
    // Checked here against the scan's excludes so the script learns at once which specs were
    // taken; the coordinator drops hosts the scan was already given.
    std::size_t add_targets(const std::vector<std::string>& specs) override;
    // The whole fleet's counts, from the coordinator (this worker's own count of added
    // targets, and 0 pending, when it does not answer).
    std::size_t targets_added() override;
    std::size_t targets_pending() override;
    std::optional<std::uint64_t> group_;  // set by the engine thread only

private:
    Console& console_;
    Board& board_;
    const common::ScanOptions& opts_;
    std::atomic<std::size_t>& added_;
    const std::atomic<bool>& interrupted_;
    Send send_;
    FleetSharedState& fleet_;
};

// Per-engine view of the fleet state: mutexes and condvars go to the coordinator; during a
// RunPhase the registry comes from the message and goes back in PhaseResult instead.
class EngineShared : public nse::SharedState {
public:
    explicit EngineShared(FleetSharedState& up) : up_(up) {}
    void mutex_lock(const std::string& k, nse::Owner w, Wake g) override {
        up_.mutex_lock(k, w, std::move(g));
    }
    bool mutex_trylock(const std::string& k, nse::Owner w) override {
        return up_.mutex_trylock(k, w);
    }
    bool mutex_unlock(const std::string& k, nse::Owner w) override {
        return up_.mutex_unlock(k, w);
    }
    std::optional<nse::Owner> mutex_owner(const std::string& k) override {
        return up_.mutex_owner(k);
    }
    void mutex_abandon(const std::string& k, nse::Owner w) override { up_.mutex_abandon(k, w); }
    void condvar_wait(const std::string& k, nse::Owner w, Wake x) override {
        up_.condvar_wait(k, w, std::move(x));
    }
    void condvar_signal(const std::string& k) override { up_.condvar_signal(k); }
    void condvar_broadcast(const std::string& k) override { up_.condvar_broadcast(k); }
    void condvar_cancel(const std::string& k, nse::Owner w) override { up_.condvar_cancel(k, w); }
    // A phase fetches the whole registry once (in parts when large) and its merges collect
    // in a copy; what it changed goes back in the PhaseResult. The engine gets version 0, so
    // its next fetch after the phase is whole again.
    void registry_merge(const common::Value& delta, std::uint64_t engine) override {
        if (phase_)
            nse::registry_apply(phase_now_, delta);
        else
            up_.registry_merge(delta, engine);
    }
    nse::RegistryChanges registry_changes(std::uint64_t since, std::uint64_t engine) override {
        if (!phase_) return up_.registry_changes(since, engine);
        nse::RegistryChanges c;
        if (!phase_served_) {
            phase_served_ = true;
            auto whole = up_.registry_changes(0, engine);
            // Unavailable (the shared state logged why): the phase goes on with the
            // engine's own registry rather than an empty one.
            if (!whole.snapshot) return c;
            phase_in_ = std::move(whole.full);
            phase_now_ = phase_in_;
            c.snapshot = true;
            c.full = phase_in_;
        }
        return c;
    }

    void begin_phase() {
        phase_ = true;
        phase_served_ = false;
        phase_in_ = common::Value{common::Table{}};
        phase_now_ = phase_in_;
    }
    // Ends the phase; returns what it changed (a delta).
    common::Value end_phase() {
        phase_ = false;
        return nse::registry_diff(phase_in_, phase_now_);
    }
    // A delta too large for the PhaseResult goes to the coordinator in parts instead.
    void publish(const common::Value& delta, std::uint64_t engine) {
        up_.registry_merge(delta, engine);
    }

private:
    FleetSharedState& up_;
    bool phase_ = false, phase_served_ = false;
    common::Value phase_in_, phase_now_;
};

}  // namespace worker::fleet
