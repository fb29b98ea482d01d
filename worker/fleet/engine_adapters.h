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
                   std::atomic<std::size_t>& added, const std::atomic<bool>& interrupted, Send send)
        : console_(console),
          board_(board),
          opts_(opts),
          added_(added),
          interrupted_(interrupted),
          send_(std::move(send)) {}
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
    // This worker's count (the fleet's total is the coordinator's to know).
    std::size_t targets_added() override { return added_; }
    std::optional<std::uint64_t> group_;  // set by the engine thread only

private:
    Console& console_;
    Board& board_;
    const common::ScanOptions& opts_;
    std::atomic<std::size_t>& added_;
    const std::atomic<bool>& interrupted_;
    Send send_;
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
    void registry_merge(const common::Value& v) override {
        if (phase_)
            phase_out = v;
        else
            up_.registry_merge(v);
    }
    common::Value registry_snapshot() override {
        return phase_ ? phase_in : up_.registry_snapshot();
    }

    void begin_phase(common::Value in) {
        phase_ = true;
        phase_in = std::move(in);
        phase_out = {};
    }
    void end_phase() { phase_ = false; }
    common::Value phase_in, phase_out;

private:
    FleetSharedState& up_;
    bool phase_ = false;
};

}  // namespace worker::fleet
