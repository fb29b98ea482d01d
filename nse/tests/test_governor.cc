// The script-socket governor (nse/governor.h) and the memory budget (nse/runtime.h).
#include <doctest/doctest.h>

#include <vector>

#include "nse/governor.h"
#include "nse/runtime.h"

using nse::Governor;
using nse::GovernorConfig;
using nse::Signal;

namespace {
GovernorConfig window(double n, double max = 1024) {
    GovernorConfig c;
    c.initial = n;
    c.min = 1;
    c.max = max;
    return c;
}
}  // namespace

TEST_CASE("slots: a thread keeps its slot while it has connections; others queue FIFO") {
    Governor g(window(2));
    std::vector<int> order;
    CHECK(g.acquire(1, false, 0, [] {}) == 0);
    CHECK(g.acquire(1, false, 0, [] {}) == 0);  // second socket of the same thread: no wait
    CHECK(g.acquire(2, false, 0, [] {}) == 0);
    auto t3 = g.acquire(3, false, 0, [&] { order.push_back(3); });
    auto t4 = g.acquire(4, false, 0, [&] { order.push_back(4); });
    CHECK(t3 != 0);
    CHECK(t4 != 0);
    CHECK(g.stats().in_use == 2);
    CHECK(g.stats().waiting == 2);
    g.release(1, 0);  // thread 1 still has a connection
    CHECK(order.empty());
    g.release(1, 0);  // its last: slot handed to the first waiter
    CHECK(order == std::vector<int>{3});
    g.cancel(t4);  // thread 4 died waiting
    g.abandon(2, 0);
    CHECK(order == std::vector<int>{3});
    CHECK(g.stats().waiting == 0);
    CHECK(g.stats().in_use == 1);
}

TEST_CASE("slots: a mutex holder goes over the window; a stall lets one waiter in") {
    Governor g(window(1));
    CHECK(g.acquire(1, false, 0, [] {}) == 0);
    CHECK(g.acquire(2, true, 0, [] {}) == 0);  // holds a mutex: never queued
    CHECK(g.stats().overflow == 1);
    bool granted = false;
    CHECK(g.acquire(3, false, 10, [&] { granted = true; }) != 0);
    g.tick(10.5);
    CHECK_FALSE(granted);
    g.tick(10 + Governor::kStallSeconds + 0.01);  // nobody freed a slot for a while
    CHECK(granted);
}

TEST_CASE("window: slow start on fast connects, one cut per congestion event") {
    Governor g(window(4, 64));
    for (int i = 0; i < 4; ++i)
        g.feedback(Signal::connected, 0.001, 1.0);
    CHECK(g.stats().window == doctest::Approx(8));
    // A connect that needed a SYN retransmission halves the window ...
    g.feedback(Signal::connected, 1.05, 2.0);
    CHECK(g.stats().window == doctest::Approx(4));
    CHECK(g.congested(2.5));
    // ... and the other victims of the same burst (started before the cut) cut nothing more.
    g.feedback(Signal::timeout, 1.5, 2.1);
    g.feedback(Signal::early_drop, 0.2, 2.05);
    CHECK(g.stats().window == doctest::Approx(4));
    CHECK(g.stats().decreases == 1);
    // After the cut, growth is additive: about one slot per window of successes.
    for (int i = 0; i < 4; ++i)
        g.feedback(Signal::connected, 0.001, 3.0);
    CHECK(g.stats().window < 5.1);
    CHECK(g.stats().window > 4.5);
    // A new event, later, cuts again.
    g.feedback(Signal::timeout, 1.0, 5.0);
    CHECK(g.stats().decreases == 2);
    CHECK_FALSE(g.congested(5.0 + Governor::kCongestionMemory + 1));
}

TEST_CASE("window: a late greeting is congestion; a service that always greets late is not") {
    Governor g(window(16, 64));
    for (int i = 0; i < 8; ++i)
        g.feedback(Signal::greeting, 0.01, 1.0);  // banners in 10 ms
    CHECK(g.stats().decreases == 0);
    g.feedback(Signal::greeting, 4.0, 6.0);  // accepted at once, greeted 4 s later
    CHECK(g.stats().decreases == 1);
    CHECK(g.stats().window == doctest::Approx(8));
    CHECK(g.congested(6.5));
    // Greetings that stay late set the baseline: after a few, they cut nothing more.
    Governor h(window(16, 64));
    double now = 10;
    for (int i = 0; i < 40; ++i, now += 10)
        h.feedback(Signal::greeting, 6.0, now);  // an SMTP greet pause on every server
    std::uint64_t cuts = h.stats().decreases;
    CHECK(cuts >= 1);
    for (int i = 0; i < 20; ++i, now += 10)
        h.feedback(Signal::greeting, 6.0, now);
    CHECK(h.stats().decreases == cuts);
}

TEST_CASE("window: --max-parallelism is fixed") {
    GovernorConfig c;
    c.initial = c.min = c.max = 3;
    c.fixed = true;
    Governor g(c);
    g.feedback(Signal::timeout, 1.0, 1.0);
    for (int i = 0; i < 10; ++i)
        g.feedback(Signal::connected, 0.001, 2.0);
    CHECK(g.stats().window == doctest::Approx(3));
    CHECK(g.stats().decreases == 0);
}

TEST_CASE("memory budget: charges count against the cap; one buffer takes at most a quarter") {
    auto b = std::make_shared<nse::MemoryBudget>();
    b->limit = 1000;
    CHECK(b->charge(500));
    nse::MemCharge c(b);
    CHECK(c.set(200));
    CHECK(b->used == 700);
    CHECK_FALSE(c.set(300));  // over a quarter of the cap
    CHECK(b->used == 700);
    CHECK(c.set(100));  // shrinking always works
    CHECK(b->used == 600);
    {
        nse::MemCharge d(b);
        CHECK(d.set(250));
        CHECK_FALSE(nse::MemCharge(b).set(251));
        CHECK(b->used == 850);
    }
    CHECK(b->used == 600);  // released with the charge
    CHECK_FALSE(b->charge(401));
    c.reset();
    CHECK(b->used == 500);
}
