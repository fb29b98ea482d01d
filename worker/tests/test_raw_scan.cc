// Raw scanner pieces: the per-protocol port plan, and (as root) a real SYN + UDP scan of
// 127.0.0.1 through a raw socket and a capture on lo. Probe bytes and nmap-payloads have
// their own tests (test_packet_builder.cc, test_payloads.cc); the namespace comparisons with
// nmap live in test/raw/run_scan_tests.py.
#include <doctest/doctest.h>

#include <asio.hpp>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "common/packet/privilege.h"
#include "common/services.h"
#include "test/support/temp.h"
#include "worker/scan/raw_scan.h"

namespace {

const common::Services& services() {
    static common::Services s = [] {
        auto r = common::Services::load("/usr/share/nmap/nmap-services");
        REQUIRE_MESSAGE(r.is_ok(), r.message());
        return std::move(*r);
    }();
    return s;
}

const common::PortResult* find(const common::HostResult& h, const char* proto, int port) {
    for (const auto& p : h.ports)
        if (p.protocol == proto && p.number == port) return &p;
    return nullptr;
}

}  // namespace

TEST_CASE("make_raw_plan splits ports per scan type") {
    common::ScanOptions o;
    o.syn_scan = true;
    o.udp_scan = true;
    o.port_spec = "T:22,80,U:53";
    o.ports = {{22, 't'}, {80, 't'}, {53, 'u'}};
    auto p = worker::make_raw_plan(o, services());
    CHECK(p.tcp == std::vector<std::uint16_t>{22, 80});
    CHECK(p.udp == std::vector<std::uint16_t>{53});

    o.port_spec = "53,161";  // no prefixes: plain items apply to every selected protocol
    o.ports = {{53, 't'}, {161, 't'}};
    p = worker::make_raw_plan(o, services());
    CHECK(p.tcp == std::vector<std::uint16_t>{53, 161});
    CHECK(p.udp == std::vector<std::uint16_t>{53, 161});

    o.syn_scan = false;  // -sU alone, default ports: nmap-services' top UDP ports
    o.port_spec.clear();
    o.fast = true;
    o.ports.clear();
    p = worker::make_raw_plan(o, services());
    CHECK(p.tcp.empty());
    CHECK(p.udp.size() == 100);
    CHECK(std::find(p.udp.begin(), p.udp.end(), 161) != p.udp.end());

    o.ping_only = true;
    p = worker::make_raw_plan(o, services());
    CHECK(p.tcp.empty());
    CHECK(p.udp.empty());
}

TEST_CASE("raw SYN and UDP scan of 127.0.0.1") {
    if (!packet::raw_privileged()) {
        MESSAGE("not privileged: raw scan test skipped");
        return;
    }
    asio::io_context io;
    asio::ip::tcp::acceptor open_tcp(io, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::udp::socket open_udp(io, {asio::ip::make_address("127.0.0.1"), 0});
    std::uint16_t tport = open_tcp.local_endpoint().port();
    std::uint16_t uport = open_udp.local_endpoint().port();
    // Closed: a port bound then released (nothing listens there any more).
    std::uint16_t closed;
    {
        asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
        closed = a.local_endpoint().port();
    }
    std::vector<char> buf(512);
    asio::ip::udp::endpoint peer;
    std::function<void()> echo = [&]() {
        open_udp.async_receive_from(asio::buffer(buf), peer, [&](std::error_code ec, std::size_t) {
            if (ec) return;
            open_udp.send_to(asio::buffer("pong", 4), peer);
            echo();
        });
    };
    echo();

    common::ScanOptions o;
    o.syn_scan = o.udp_scan = true;
    o.skip_discovery = true;
    o.timing.level = 4;
    o.timing.connect_timeout = 0.5;
    o.timing.max_retries = 1;
    worker::RawPlan plan{{closed, tport}, {closed, uport}};
    std::sort(plan.tcp.begin(), plan.tcp.end());
    std::sort(plan.udp.begin(), plan.udp.end());
    std::vector<common::HostResult> hosts(1);
    hosts[0].address = "127.0.0.1";
    worker::RawScanner scanner(io, o, services(), plan);
    bool done = false;
    auto st = scanner.start(hosts, [&]() { done = true; });
    REQUIRE_MESSAGE(st.is_ok(), st.message());
    auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!done && std::chrono::steady_clock::now() < limit)
        io.run_one_for(std::chrono::milliseconds(100));
    REQUIRE(done);
    const auto& h = hosts[0];
    CHECK(h.status == "up");
    CHECK(h.reason == "user-set");
    CHECK(h.interface == "lo");
    CHECK(h.ports.size() == 4);
    auto* p = find(h, "tcp", tport);
    REQUIRE(p);
    CHECK(p->state == "open");
    CHECK(p->reason == "syn-ack");
    CHECK(p->reason_ttl == 64);
    p = find(h, "tcp", closed);
    REQUIRE(p);
    CHECK(p->state == "closed");
    CHECK(p->reason == "reset");
    p = find(h, "udp", uport);
    REQUIRE(p);
    CHECK(p->state == "open");
    CHECK(p->reason == "udp-response");
    p = find(h, "udp", closed);
    REQUIRE(p);
    CHECK(p->state == "closed");
    CHECK(p->reason == "port-unreach");
    CHECK(h.ports[0].protocol == "tcp");  // tcp before udp, each ascending
    CHECK(h.ports[3].protocol == "udp");
}
