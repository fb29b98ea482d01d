// Connect scanner against real sockets on 127.0.0.0/8 and ::1 (and, as root, a private
// network namespace). Ports are ephemeral; "filtered" is produced without a firewall by
// filling a listener's accept queue so the kernel silently drops further SYNs.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/services.h"
#include "worker/scan/connect_scan.h"

namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

const common::Services& services() {
    static common::Services s = [] {
        auto r = common::Services::load("/usr/share/nmap/nmap-services");
        REQUIRE_MESSAGE(r.is_ok(), r.message());
        return std::move(r.value());
    }();
    return s;
}

common::ScanOptions make_opts(std::vector<std::uint16_t> ports, bool pn = true) {
    common::ScanOptions o;
    for (auto p : ports)
        o.ports.push_back({p, 't'});
    o.skip_discovery = pn;
    o.timing.connect_timeout = 0.3;
    o.timing.max_retries = 1;
    return o;
}

std::vector<common::HostResult> make_hosts(std::vector<std::string> addrs) {
    std::vector<common::HostResult> hs;
    for (std::size_t i = 0; i < addrs.size(); ++i) {
        common::HostResult h;
        h.index = i;
        h.address = addrs[i];
        h.ipv6 = addrs[i].find(':') != std::string::npos;
        h.status = "";
        hs.push_back(h);
    }
    return hs;
}

// Listens and accepts (closing each connection) so the accept queue never fills.
struct Listener {
    tcp::acceptor acc;
    std::uint16_t port = 0;
    int accepted = 0;
    Listener(asio::io_context& io, const std::string& addr)
        : acc(io, tcp::endpoint(asio::ip::make_address(addr), 0)) {
        port = acc.local_endpoint().port();
        loop();
    }
    void loop() {
        acc.async_accept([this](const std::error_code& ec, tcp::socket) {
            if (ec) return;
            ++accepted;
            loop();
        });
    }
};

// A port that refuses: bound (so nobody else takes it) but not listening.
struct ClosedPort {
    tcp::socket sock;
    std::uint16_t port = 0;
    ClosedPort(asio::io_context& io, const std::string& addr) : sock(io) {
        auto a = asio::ip::make_address(addr);
        sock.open(a.is_v6() ? tcp::v6() : tcp::v4());
        sock.bind(tcp::endpoint(a, 0));
        port = sock.local_endpoint().port();
    }
};

// A port that never answers: backlog 0 and one unaccepted connection fill the accept
// queue, after which Linux drops new SYNs without a reply.
struct SilentPort {
    tcp::acceptor acc;
    tcp::socket filler;
    std::uint16_t port = 0;
    SilentPort(asio::io_context& io, const std::string& addr, std::uint16_t want = 0)
        : acc(io), filler(io) {
        tcp::endpoint ep(asio::ip::make_address(addr), want);
        acc.open(ep.protocol());
        acc.set_option(tcp::acceptor::reuse_address(true));
        acc.bind(ep);
        acc.listen(0);
        port = acc.local_endpoint().port();
        filler.connect(tcp::endpoint(ep.address(), port));
    }
};

// Runs `io` until the scan's done callback fires or `limit` seconds pass.
bool run_scan(asio::io_context& io, worker::ConnectScanner& sc,
              std::vector<common::HostResult>& hosts, double limit = 10) {
    int calls = 0;
    sc.start(hosts, [&] { ++calls; });
    CHECK(calls == 0);  // never synchronous
    auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(limit));
    while (calls == 0 && Clock::now() < deadline) {
        io.restart();
        io.run_one_for(std::chrono::milliseconds(50));
    }
    // Let any stray handler run: done must not fire twice.
    io.restart();
    io.poll();
    CHECK(calls <= 1);
    return calls == 1;
}

double since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

bool port_refuses(const std::string& addr, std::uint16_t port) {
    asio::io_context io;
    tcp::socket s(io);
    std::error_code ec;
    s.connect(tcp::endpoint(asio::ip::make_address(addr), port), ec);
    return ec == asio::error::connection_refused;
}

}  // namespace

TEST_CASE("connect scan: services table names ports") {
    CHECK(services().name(80, "tcp") == "http");
    CHECK(services().name(22, "tcp") == "ssh");
}

TEST_CASE("connect scan: open, closed and service fields on 127.0.0.1") {
    asio::io_context io;
    Listener open(io, "127.0.0.1");
    ClosedPort closed(io, "127.0.0.1");
    auto opts = make_opts({closed.port, open.port, 80});
    worker::ConnectScanner sc(io, opts, services());
    auto hosts = make_hosts({"127.0.0.1"});
    REQUIRE(run_scan(io, sc, hosts));
    auto& h = hosts[0];
    CHECK(h.status == "up");
    CHECK(h.reason == "user-set");
    CHECK_FALSE(h.timed_out);
    REQUIRE(h.ports.size() == 3);
    for (std::size_t i = 1; i < h.ports.size(); ++i)
        CHECK(h.ports[i - 1].number < h.ports[i].number);
    for (auto& p : h.ports) {
        CHECK(p.protocol == "tcp");
        CHECK(p.reason_ttl == 0);
        CHECK(p.service.method == "table");
        CHECK(p.service.conf == 3);
        CHECK(p.service.name == services().name(p.number, "tcp"));
        if (p.number == open.port) {
            CHECK(p.state == "open");
            CHECK(p.reason == "syn-ack");
        } else if (p.number == closed.port) {
            CHECK(p.state == "closed");
            CHECK(p.reason == "conn-refused");
        } else {
            CHECK(p.number == 80);
            CHECK(p.service.name == "http");
        }
    }
    CHECK(h.srtt > 0);
    CHECK(h.srtt < 0.3);
    CHECK(h.start_time > 1e9);
    CHECK(h.end_time >= h.start_time);
}

TEST_CASE("connect scan: silent port is filtered after retries") {
    asio::io_context io;
    SilentPort silent(io, "127.0.0.1");
    ClosedPort closed(io, "127.0.0.1");
    auto opts = make_opts({silent.port, closed.port});
    opts.timing.connect_timeout = 0.2;
    opts.timing.max_retries = 2;
    worker::ConnectScanner sc(io, opts, services());
    auto hosts = make_hosts({"127.0.0.1"});
    auto t0 = Clock::now();
    REQUIRE(run_scan(io, sc, hosts));
    double took = since(t0);
    CHECK(took >= 0.55);  // three attempts of 0.2 s
    CHECK(took < 2.0);
    REQUIRE(hosts[0].ports.size() == 2);
    for (auto& p : hosts[0].ports) {
        if (p.number == silent.port) {
            CHECK(p.state == "filtered");
            CHECK(p.reason == "no-response");
        } else {
            CHECK(p.state == "closed");
        }
    }
}

TEST_CASE("connect scan: 50 hosts with discovery through a small window") {
    asio::io_context io;
    Listener open(io, "0.0.0.0");
    ClosedPort closed(io, "0.0.0.0");
    auto opts = make_opts({open.port, closed.port}, /*pn=*/false);
    opts.timing.max_parallel_connects = 16;
    worker::ConnectScanner sc(io, opts, services());
    sc.set_probe_own_addresses(true);
    std::vector<std::string> addrs;
    for (int i = 1; i <= 50; ++i)
        addrs.push_back("127.0.0." + std::to_string(i));
    auto hosts = make_hosts(addrs);
    auto t0 = Clock::now();
    REQUIRE(run_scan(io, sc, hosts));
    CHECK(since(t0) < 3.0);
    for (auto& h : hosts) {
        CAPTURE(h.address);
        CHECK(h.status == "up");
        CHECK((h.reason == "conn-refused" || h.reason == "syn-ack"));
        REQUIRE(h.ports.size() == 2);
        auto lo = std::min(open.port, closed.port);
        CHECK(h.ports[0].number == lo);
        for (auto& p : h.ports) {
            if (p.number == open.port) {
                CHECK(p.state == "open");
            } else {
                CHECK(p.state == "closed");
                CHECK(p.reason == "conn-refused");
            }
        }
    }
}

TEST_CASE("connect scan: one window slot, each port probed exactly once") {
    asio::io_context io;
    Listener open(io, "0.0.0.0");
    auto opts = make_opts({open.port}, /*pn=*/false);
    opts.timing.max_parallel_connects = 1;
    worker::ConnectScanner sc(io, opts, services());
    auto hosts = make_hosts({"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"});
    REQUIRE(run_scan(io, sc, hosts));
    auto until = Clock::now() + std::chrono::milliseconds(200);
    while (open.accepted < 5 && Clock::now() < until)
        io.run_one_for(std::chrono::milliseconds(20));
    io.run_for(std::chrono::milliseconds(50));
    CHECK(open.accepted == 5);
    for (auto& h : hosts) {
        CHECK(h.status == "up");
        REQUIRE(h.ports.size() == 1);
        CHECK(h.ports[0].state == "open");
    }
}

TEST_CASE("connect scan: our own addresses are up without a probe, as in nmap") {
    asio::io_context io;
    auto opts = make_opts({22}, /*pn=*/false);
    opts.ping_only = true;
    worker::ConnectScanner sc(io, opts, services());
    auto hosts = make_hosts({"127.0.0.79"});
    REQUIRE(run_scan(io, sc, hosts));
    CHECK(hosts[0].status == "up");
    CHECK(hosts[0].reason == "localhost-response");
    CHECK(hosts[0].srtt == 0);  // nothing was sent: "Host is up." without a latency
}

TEST_CASE("connect scan: discovery, -Pn and -sn") {
    const std::string addr = "127.0.0.77";
    bool refuses = port_refuses(addr, 80) && port_refuses(addr, 443);
    asio::io_context io;

    SUBCASE("-sn: up by refusal, no ports") {
        auto opts = make_opts({22, 80}, /*pn=*/false);
        opts.ping_only = true;
        worker::ConnectScanner sc(io, opts, services());
        sc.set_probe_own_addresses(true);
        auto hosts = make_hosts({addr});
        REQUIRE(run_scan(io, sc, hosts));
        CHECK(hosts[0].status == "up");
        if (refuses) CHECK(hosts[0].reason == "conn-refused");
        CHECK(hosts[0].ports.empty());
        CHECK(hosts[0].srtt > 0);
    }
    SUBCASE("-sn -Pn: user-set without probes") {
        auto opts = make_opts({22}, /*pn=*/true);
        opts.ping_only = true;
        worker::ConnectScanner sc(io, opts, services());
        sc.set_probe_own_addresses(true);
        auto hosts = make_hosts({addr, "127.0.0.78"});
        REQUIRE(run_scan(io, sc, hosts));
        for (auto& h : hosts) {
            CHECK(h.status == "up");
            CHECK(h.reason == "user-set");
            CHECK(h.ports.empty());
            CHECK(h.srtt == 0);
        }
    }
    SUBCASE("-Pn scans without discovery") {
        ClosedPort closed(io, "0.0.0.0");
        auto opts = make_opts({closed.port}, /*pn=*/true);
        worker::ConnectScanner sc(io, opts, services());
        sc.set_probe_own_addresses(true);
        auto hosts = make_hosts({addr});
        REQUIRE(run_scan(io, sc, hosts));
        CHECK(hosts[0].reason == "user-set");
        REQUIRE(hosts[0].ports.size() == 1);
        CHECK(hosts[0].ports[0].state == "closed");
    }
}

TEST_CASE("connect scan: 1000 ports on one host") {
    asio::io_context io;
    std::vector<std::uint16_t> ports;
    for (int p = 1; p <= 1000; ++p)
        ports.push_back(static_cast<std::uint16_t>(p));
    auto opts = make_opts(ports);
    worker::ConnectScanner sc(io, opts, services());
    auto hosts = make_hosts({"127.0.0.1"});
    auto t0 = Clock::now();
    REQUIRE(run_scan(io, sc, hosts));
    CHECK(since(t0) < 3.0);
    auto& ps = hosts[0].ports;
    REQUIRE(ps.size() == 1000);
    for (std::size_t i = 0; i < ps.size(); ++i) {
        CHECK(ps[i].number == i + 1);
        CHECK((ps[i].state == "open" || ps[i].state == "closed"));
    }
    CHECK(ps[79].service.name == "http");
}

TEST_CASE("connect scan: IPv6 loopback") {
    asio::io_context io;
    std::error_code ec;
    {
        tcp::acceptor probe(io);
        probe.open(tcp::v6(), ec);
    }
    if (ec) {
        MESSAGE("no IPv6 here; skipped");
        return;
    }
    Listener open(io, "::1");
    ClosedPort closed(io, "::1");
    auto opts = make_opts({open.port, closed.port}, /*pn=*/false);
    worker::ConnectScanner sc(io, opts, services());
    auto hosts = make_hosts({"::1"});
    REQUIRE(run_scan(io, sc, hosts));
    CHECK(hosts[0].status == "up");
    REQUIRE(hosts[0].ports.size() == 2);
    for (auto& p : hosts[0].ports)
        CHECK(p.state == (p.number == open.port ? "open" : "closed"));
}

TEST_CASE("connect scan: --scan-delay spaces probes") {
    asio::io_context io;
    ClosedPort a(io, "127.0.0.1"), b(io, "127.0.0.1"), c(io, "127.0.0.1"), d(io, "127.0.0.1");
    auto opts = make_opts({a.port, b.port, c.port, d.port});
    opts.timing.scan_delay = 0.1;
    worker::ConnectScanner sc(io, opts, services());
    auto hosts = make_hosts({"127.0.0.1"});
    auto t0 = Clock::now();
    REQUIRE(run_scan(io, sc, hosts));
    CHECK(since(t0) >= 0.29);
    CHECK(since(t0) < 1.5);
    REQUIRE(hosts[0].ports.size() == 4);
    for (auto& p : hosts[0].ports)
        CHECK(p.state == "closed");
}

TEST_CASE("connect scan: --host-timeout abandons a slow host") {
    asio::io_context io;
    SilentPort silent(io, "127.0.0.1");
    auto opts = make_opts({silent.port});
    opts.timing.connect_timeout = 5;
    opts.host_timeout = 0.3;
    worker::ConnectScanner sc(io, opts, services());
    auto hosts = make_hosts({"127.0.0.1", "127.0.0.2"});
    // The second host must finish normally and is not held back by the first.
    auto t0 = Clock::now();
    REQUIRE(run_scan(io, sc, hosts));
    CHECK(since(t0) < 1.5);
    CHECK(hosts[0].timed_out);
    CHECK(hosts[0].status == "up");
    CHECK(hosts[0].ports.empty());
    CHECK(hosts[0].end_time - hosts[0].start_time >= 0.25);
    // 127.0.0.2 has nothing on the silent port (bound to 127.0.0.1 only): refused.
    CHECK_FALSE(hosts[1].timed_out);
    REQUIRE(hosts[1].ports.size() == 1);
    CHECK(hosts[1].ports[0].state == "closed");
}

TEST_CASE("connect scan: empty host list posts done") {
    asio::io_context io;
    auto opts = make_opts({80});
    worker::ConnectScanner sc(io, opts, services());
    std::vector<common::HostResult> none;
    int calls = 0;
    sc.start(none, [&] { ++calls; });
    CHECK(calls == 0);
    io.run_for(std::chrono::seconds(2));
    CHECK(calls == 1);
}

TEST_CASE("connect scan: destruction while probes are in flight") {
    asio::io_context io;
    SilentPort silent(io, "127.0.0.1");
    auto opts = make_opts({silent.port});
    opts.timing.connect_timeout = 5;
    int calls = 0;
    auto hosts = make_hosts({"127.0.0.1", "127.0.0.3"});
    {
        auto sc = std::make_unique<worker::ConnectScanner>(io, opts, services());
        sc->start(hosts, [&] { ++calls; });
        io.run_for(std::chrono::milliseconds(100));
        sc.reset();
    }
    hosts.clear();  // results memory gone: late handlers must not touch it
    auto t0 = Clock::now();
    io.restart();
    io.run_for(std::chrono::seconds(3));  // returns as soon as cancelled handlers drained
    CHECK(since(t0) < 1.0);
    CHECK(calls == 0);
}

TEST_CASE("connect scan: running out of descriptors does not mark ports") {
    asio::io_context io;  // its own descriptors exist before the limit drops
    std::vector<std::uint16_t> ports;
    for (int p = 1; p <= 300; ++p)
        ports.push_back(static_cast<std::uint16_t>(p));
    auto opts = make_opts(ports);
    worker::ConnectScanner sc(io, opts, services());
    auto hosts = make_hosts({"127.0.0.1"});

    std::size_t open_fds = 0;
    for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        (void)e;
        ++open_fds;
    }
    rlimit saved{};
    REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    rlimit tight = saved;
    tight.rlim_cur = open_fds + 10;  // room for a handful of sockets only
    REQUIRE(setrlimit(RLIMIT_NOFILE, &tight) == 0);
    bool finished = run_scan(io, sc, hosts, 20);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    REQUIRE(finished);
    REQUIRE(hosts[0].ports.size() == 300);
    for (auto& p : hosts[0].ports) {
        CAPTURE(p.number);
        CHECK((p.state == "open" || p.state == "closed"));
    }
}

// Host discovery of a host that never answers needs addresses whose 80/443 are silent:
// done inside a private network namespace (root only; deleted afterwards).
TEST_CASE("connect scan: silent host is down (network namespace)") {
    if (geteuid() != 0 || std::system("command -v ip >/dev/null 2>&1") != 0) {
        MESSAGE("needs root and iproute2; skipped");
        return;
    }
    const std::string ns = "hscan-test-" + std::to_string(getpid());
    if (std::system(("ip netns add " + ns + " 2>/dev/null").c_str()) != 0) {
        MESSAGE("cannot create a network namespace; skipped");
        return;
    }
    REQUIRE(std::system(("ip netns exec " + ns + " ip link set lo up").c_str()) == 0);
    int home = open("/proc/self/ns/net", O_RDONLY);
    int target = open(("/var/run/netns/" + ns).c_str(), O_RDONLY);
    bool entered = home >= 0 && target >= 0 && setns(target, CLONE_NEWNET) == 0;
    if (entered) {
        asio::io_context io;
        {
            SilentPort s80(io, "127.0.0.1", 80), s443(io, "127.0.0.1", 443);
            auto opts = make_opts({22}, /*pn=*/false);
            opts.timing.connect_timeout = 0.2;
            opts.timing.max_retries = 1;
            worker::ConnectScanner sc(io, opts, services());
            sc.set_probe_own_addresses(true);
            auto hosts = make_hosts({"127.0.0.1"});
            auto t0 = Clock::now();
            // CHECK, not REQUIRE: we must get back to our namespace either way.
            CHECK(run_scan(io, sc, hosts));
            CHECK(since(t0) >= 0.35);
            CHECK(hosts[0].status == "down");
            CHECK(hosts[0].reason == "no-response");
            CHECK(hosts[0].ports.empty());
        }
        CHECK(setns(home, CLONE_NEWNET) == 0);
    }
    if (home >= 0) close(home);
    if (target >= 0) close(target);
    CHECK(std::system(("ip netns del " + ns).c_str()) == 0);
    CHECK(entered);
}

TEST_CASE("connect scan: one scanner, two batches in flight together") {
    asio::io_context io;
    Listener open(io, "0.0.0.0");
    auto opts = make_opts({open.port});
    opts.timing.max_parallel_connects = 2;
    worker::ConnectScanner sc(io, opts, services());
    auto a = make_hosts({"127.0.0.1", "127.0.0.2"});
    auto b = make_hosts({"127.0.0.3"});
    int done_a = 0, done_b = 0;
    sc.start(a, [&] { ++done_a; });
    sc.start(b, [&] { ++done_b; });
    auto until = Clock::now() + std::chrono::seconds(5);
    while ((done_a == 0 || done_b == 0) && Clock::now() < until)
        io.run_one_for(std::chrono::milliseconds(50));
    io.poll();
    CHECK(done_a == 1);
    CHECK(done_b == 1);
    for (auto* v : {&a, &b})
        for (auto& h : *v) {
            REQUIRE(h.ports.size() == 1);
            CHECK(h.ports[0].state == "open");
        }
    // And a third batch after the first two were pruned.
    auto c = make_hosts({"127.0.0.4"});
    REQUIRE(run_scan(io, sc, c));
    REQUIRE(c[0].ports.size() == 1);
    CHECK(c[0].ports[0].state == "open");
}

TEST_CASE("connect scan: pause_after_discovery holds the port scan until resume_ports") {
    asio::io_context io;
    ClosedPort closed(io, "0.0.0.0");
    auto opts = make_opts({closed.port}, /*pn=*/false);
    worker::ConnectScanner sc(io, opts, services());
    sc.set_probe_own_addresses(true);  // discovery probes go out, as without root
    int settled = 0;
    sc.pause_after_discovery([&] {
        ++settled;
        CHECK(sc.discovery_probes());
    });
    auto hosts = make_hosts({"127.0.0.81", "127.0.0.82"});
    int done = 0;
    sc.start(hosts, [&] { ++done; });
    CHECK(sc.discovery_probes());
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (settled == 0 && done == 0 && Clock::now() < deadline) {
        io.restart();
        io.run_one_for(std::chrono::milliseconds(50));
    }
    REQUIRE(settled == 1);
    // Discovery is decided for both, and no port was scanned yet, however long we wait.
    for (auto& h : hosts)
        CHECK(h.status == "up");
    io.restart();
    io.run_for(std::chrono::milliseconds(300));
    CHECK(done == 0);
    sc.resume_ports();
    while (done == 0 && Clock::now() < deadline) {
        io.restart();
        io.run_one_for(std::chrono::milliseconds(50));
    }
    REQUIRE(done == 1);
    for (auto& h : hosts) {
        REQUIRE(h.ports.size() == 1);
        CHECK(h.ports[0].state == "closed");
    }
    CHECK(settled == 1);
}

TEST_CASE("connect scan: a host that times out while parked is not touched again") {
    // The host timers run while the port scan waits (as nmap's do during its DNS phase); the
    // scanner drops finished hosts meanwhile, and resume_ports() must not use them.
    asio::io_context io;
    ClosedPort closed(io, "0.0.0.0");
    auto opts = make_opts({closed.port}, /*pn=*/false);
    opts.host_timeout = 0.2;
    worker::ConnectScanner sc(io, opts, services());
    sc.set_probe_own_addresses(true);
    bool settled = false;
    sc.pause_after_discovery([&] { settled = true; });
    auto hosts = make_hosts({"127.0.0.83"});
    int done = 0;
    sc.start(hosts, [&] { ++done; });
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!settled && Clock::now() < deadline) {
        io.restart();
        io.run_one_for(std::chrono::milliseconds(50));
    }
    REQUIRE(settled);
    while (done == 0 && Clock::now() < deadline) {  // the host times out, parked
        io.restart();
        io.run_one_for(std::chrono::milliseconds(50));
    }
    REQUIRE(done == 1);
    CHECK(hosts[0].timed_out);
    sc.resume_ports();  // nothing left to scan; must not touch the dropped host
    io.restart();
    io.poll();
    CHECK(done == 1);
}

TEST_CASE("connect scan: pause_after_discovery with every host down still settles") {
    asio::io_context io;
    auto opts = make_opts({22}, /*pn=*/false);
    opts.timing.connect_timeout = 0.2;
    opts.timing.max_retries = 0;
    worker::ConnectScanner sc(io, opts, services());
    int settled = 0;
    sc.pause_after_discovery([&] { ++settled; });
    auto hosts = make_hosts({"not-an-address"});  // unusable: down at once
    REQUIRE(run_scan(io, sc, hosts));
    CHECK(settled == 1);
    CHECK(hosts[0].status == "down");
}
