#include "nse/governor.h"

#include <algorithm>

namespace nse {

namespace {
// A connect slower than this (and much slower than usual) needed a SYN retransmission: the
// kernel's first retransmission comes after one second.
constexpr double kSlowConnect = 0.75;
// A greeting this late (and 4 times the usual) means a loaded server.
constexpr double kSlowGreeting = 1.0;
}  // namespace

Governor::Governor(GovernorConfig cfg) : cfg_(cfg) {
    cfg_.min = std::max(1.0, cfg_.min);
    cfg_.max = std::max(cfg_.min, cfg_.max);
    window_ = std::clamp(cfg_.initial, cfg_.min, cfg_.max);
    ssthresh_ = cfg_.max;
}

void Governor::take(std::uint64_t tid) {
    if (refs_[tid]++ == 0) ++in_use_;
    ++stats_.granted;
}

Governor::Ticket Governor::acquire(std::uint64_t tid, bool priority, double now, Grant grant) {
    auto it = refs_.find(tid);
    if (it != refs_.end() && it->second > 0) {
        ++it->second;
        return 0;
    }
    if (priority || (room() && queue_.empty())) {
        if (!room()) ++stats_.overflow;
        take(tid);
        return 0;
    }
    if (queue_.empty()) last_free_ = now;  // the stall clock starts with the first waiter
    Ticket t = next_ticket_++;
    queue_.push_back({t, tid, std::move(grant)});
    return t;
}

void Governor::cancel(Ticket t) {
    auto it =
        std::find_if(queue_.begin(), queue_.end(), [t](const Waiter& w) { return w.ticket == t; });
    if (it != queue_.end()) queue_.erase(it);
}

void Governor::release(std::uint64_t tid, double now) {
    auto it = refs_.find(tid);
    if (it == refs_.end()) return;
    if (--it->second <= 0) {
        refs_.erase(it);
        --in_use_;
        last_free_ = now;
        pump(now);
    }
}

void Governor::abandon(std::uint64_t tid, double now) {
    auto it = refs_.find(tid);
    if (it == refs_.end()) return;
    it->second = 1;
    release(tid, now);
}

void Governor::pump(double) {
    while (!queue_.empty() && room()) {
        Waiter w = std::move(queue_.front());
        queue_.pop_front();
        take(w.tid);
        ++stats_.waited;
        w.grant();
    }
}

void Governor::feedback(Signal s, double rtt, double now) {
    if (cfg_.fixed) return;
    bool congestion = s != Signal::connected && s != Signal::greeting;
    if (s == Signal::greeting) {
        congestion = rtt >= std::max(kSlowGreeting, 4 * sgreet_);
        sgreet_ = sgreet_ == 0 ? rtt : 0.875 * sgreet_ + 0.125 * rtt;
    } else if (s == Signal::connected) {
        if (rtt >= std::max(kSlowConnect, 4 * srtt_)) {
            congestion = true;
        } else {
            srtt_ = srtt_ == 0 ? rtt : 0.875 * srtt_ + 0.125 * rtt;
            // Slow start below the threshold, then one slot per window of successes.
            window_ += window_ < ssthresh_ ? 1.0 : 1.0 / window_;
            window_ = std::min(window_, cfg_.max);
            pump(now);
            return;
        }
    }
    if (!congestion || now - rtt < last_cut_) return;  // same congestion event
    last_cut_ = now;
    ++stats_.decreases;
    window_ = std::max(cfg_.min, window_ / 2);
    ssthresh_ = std::max(cfg_.min, window_);
}

bool Governor::congested(double now) const { return now - last_cut_ < kCongestionMemory; }

void Governor::tick(double now) {
    if (queue_.empty() || now - last_free_ < kStallSeconds) return;
    // Nobody gave a slot back for a while: the holders may all be waiting on something the
    // queued threads would provide. Let one in over the window.
    Waiter w = std::move(queue_.front());
    queue_.pop_front();
    take(w.tid);
    ++stats_.waited;
    ++stats_.overflow;
    last_free_ = now;
    w.grant();
}

GovernorStats Governor::stats() const {
    GovernorStats s = stats_;
    s.window = window_;
    s.in_use = in_use_;
    s.waiting = queue_.size();
    return s;
}

}  // namespace nse
