#pragma once
// The script-socket concurrency governor, one per engine (docs/architecture.md, "Script
// socket governor").
//
// As in NSE, a script thread takes a *slot* before its first connection and keeps it while it
// has a connection open or opening; threads without a slot queue in FIFO order. Unlike NSE's
// fixed 20 slots, the number of slots (the window) adapts to what the network answers: it
// grows while connects succeed quickly (slow start, then additive increase) and halves on
// congestion (a connect that needed SYN retransmissions or timed out, a connection reset or
// closed before its first byte), at most once per congestion epoch. A fixed window
// (--max-parallelism) does not adapt.
//
// Liveness: a thread that already holds a slot never waits; a thread that holds a mutex gets
// a slot over the window (the holders may be waiting for its mutex); and when waiters have
// waited `kStallSeconds` without any slot coming free, one is let in over the window, so
// slot holders blocked on condvars or sleeps cannot starve the others forever.
//
// Pure bookkeeping: no I/O, no Lua. Grant callbacks run synchronously from release(),
// abandon() or tick(); callers post to their loop when they must not re-enter.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <unordered_map>

namespace nse {

struct GovernorConfig {
    double initial = 64;  // starting window (slots)
    double min = 4;       // never below
    double max = 1024;    // never above (descriptor budget)
    bool fixed = false;   // --max-parallelism: the window stays at `initial`
};

// How one connection attempt or early exchange ended, as seen by the governor.
enum class Signal {
    connected,   // connected after `rtt` seconds; slow ones (SYN retransmissions: a queue was
                 // full) count as congestion
    timeout,     // the connect timed out
    early_drop,  // reset/closed by the peer before any byte arrived, right after connect
    greeting,    // the server's unprompted first bytes came `rtt` seconds after the connect;
                 // far slower than usual counts as congestion (a server starved of CPU or
                 // workers accepts at once but greets late)
};

struct GovernorStats {
    double window = 0;
    std::size_t in_use = 0;       // slots held
    std::size_t waiting = 0;      // threads queued for a slot
    std::uint64_t granted = 0;    // slots handed out
    std::uint64_t waited = 0;     // of those, after queueing
    std::uint64_t decreases = 0;  // congestion events that cut the window
    std::uint64_t overflow = 0;   // slots granted over the window (mutex holders, stalls)
    std::uint64_t retries = 0;    // connects retried because of congestion
};

class Governor {
public:
    using Grant = std::function<void()>;
    using Ticket = std::uint64_t;
    static constexpr double kStallSeconds = 1.0;
    // Congestion stays "recent" this long after the last cut (retry decisions).
    static constexpr double kCongestionMemory = 10.0;

    explicit Governor(GovernorConfig cfg);

    // Thread `tid` wants to open a connection at time `now`. Returns 0 when it may go ahead
    // at once (it holds a slot, took a free one, or `priority`); otherwise queues `grant`
    // and returns a ticket. `grant` runs once when the slot is taken for the thread.
    Ticket acquire(std::uint64_t tid, bool priority, double now, Grant grant);
    // The thread stopped waiting (died, timed out): drops its ticket if still queued.
    void cancel(Ticket t);
    // One connection of `tid` closed (or its connect failed): when it was the thread's last,
    // its slot is freed and handed to the next waiter.
    void release(std::uint64_t tid, double now);
    // Frees every slot reference of a thread (it ended).
    void abandon(std::uint64_t tid, double now);

    // Feedback from a connect or its first exchange; `rtt` is the connect time in seconds
    // (for early_drop and greeting: the time since the connect completed). Signals from connects
    // that started before the last cut belong to that congestion event and cut nothing more.
    void feedback(Signal s, double rtt, double now);
    // True when the window was cut within kCongestionMemory seconds.
    bool congested(double now) const;
    void note_retry() { ++stats_.retries; }

    // Periodic check (the scheduler calls it): breaks stalls.
    void tick(double now);

    GovernorStats stats() const;

private:
    struct Waiter {
        Ticket ticket;
        std::uint64_t tid;
        Grant grant;
    };
    void take(std::uint64_t tid);
    void pump(double now);
    bool room() const { return static_cast<double>(in_use_) < window_; }

    GovernorConfig cfg_;
    double window_;
    double ssthresh_;
    std::unordered_map<std::uint64_t, int> refs_;  // tid -> open connections
    std::size_t in_use_ = 0;
    std::deque<Waiter> queue_;
    Ticket next_ticket_ = 1;
    double last_free_ = 0;     // when a slot last came free (stall detection)
    double last_cut_ = -1e18;  // when the window was last cut
    double srtt_ = 0;          // smoothed connect time of fast connects
    double sgreet_ = 0;        // smoothed greeting delay (all of them: a service that always
                               // greets late, as SMTP greet pauses, sets its own baseline)
    GovernorStats stats_;
};

}  // namespace nse
