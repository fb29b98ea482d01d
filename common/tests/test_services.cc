#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/options.h"
#include "common/services.h"
#include "test/support/temp.h"

namespace doctest {
template <>
struct StringMaker<common::PortSpec> {
    static String convert(const common::PortSpec& p) {
        return (std::string(1, p.proto) + ":" + std::to_string(p.number)).c_str();
    }
};
}  // namespace doctest

using common::parse_port_list;
using common::PortSpec;
using common::Services;

namespace {

const char* kNmapServices = "/usr/share/nmap/nmap-services";

// A small services file with known frequencies and a tie (81 and 82).
const char* kSmall =
    "# test services\n"
    "\n"
    "http\t80/tcp\t0.48\t# WWW\n"
    "http\t80/udp\t0.03\n"
    "http-alt\t8080/tcp\t0.04\n"
    "hosts2-ns\t81/tcp\t0.01\n"
    "xfer\t82/tcp\t0.01\n"
    "ssh\t22/tcp\t0.18\t# Secure Shell\n"
    "domain\t53/udp\t0.21\n"
    "domain\t53/tcp\t0.04\n"
    "snmp\t161/udp\t0.43\n"
    "nofreq\t9/tcp\n"
    "garbage line without port\n";

struct SmallServices {
    test_support::TempFile file{kSmall, "nsefleet-services"};
    Services s{load(file.path)};
    static Services load(const std::string& p) {
        auto r = Services::load(p);
        REQUIRE(r.is_ok());
        return *r;
    }
};

std::vector<PortSpec> ports(const std::string& spec, const Services* s = nullptr) {
    auto r = parse_port_list(spec, s);
    INFO(spec, " -> ", (r ? std::string() : r.message()));
    REQUIRE(r.is_ok());
    return *r;
}

void bad(const std::string& spec, const std::string& token, const Services* s = nullptr) {
    auto r = parse_port_list(spec, s);
    INFO(spec);
    REQUIRE_FALSE(r.is_ok());
    INFO(r.message());
    CHECK(r.message().find("invalid port specification: '" + token + "'") != std::string::npos);
}

PortSpec T(int n) { return PortSpec{static_cast<std::uint16_t>(n), 't'}; }
PortSpec U(int n) { return PortSpec{static_cast<std::uint16_t>(n), 'u'}; }

}  // namespace

TEST_CASE("Services::load and name") {
    SmallServices sm;
    CHECK(sm.s.name(80, "tcp") == "http");
    CHECK(sm.s.name(22, "tcp") == "ssh");
    CHECK(sm.s.name(161, "udp") == "snmp");
    CHECK(sm.s.name(161, "tcp") == "");
    CHECK(sm.s.name(9, "tcp") == "nofreq");
    CHECK(sm.s.name(1, "tcp") == "");
    auto missing = Services::load("/nonexistent/nmap-services");
    REQUIRE_FALSE(missing.is_ok());
    CHECK(missing.message().find("'/nonexistent/nmap-services'") != std::string::npos);
}

TEST_CASE("Services::top orders by frequency, ties by port") {
    SmallServices sm;
    CHECK(sm.s.top(3, 't') == std::vector<PortSpec>{T(80), T(22), T(53)});
    // 53/tcp and 8080 share 0.04: lower port first; 81 and 82 likewise.
    CHECK(sm.s.top(7, 't') ==
          std::vector<PortSpec>{T(80), T(22), T(53), T(8080), T(81), T(82), T(9)});
    CHECK(sm.s.top(100, 't').size() == 7);
    CHECK(sm.s.top(2, 'u') == std::vector<PortSpec>{U(161), U(53)});
    CHECK(sm.s.top(0, 't').empty());
}

TEST_CASE("real nmap-services") {
    auto r = Services::load(kNmapServices);
    REQUIRE(r.is_ok());
    const Services& s = *r;
    CHECK(s.name(22, "tcp") == "ssh");
    CHECK(s.name(443, "tcp") == "https");
    CHECK(s.name(53, "udp") == "domain");
    auto t1 = s.top(1, 't');
    REQUIRE(t1.size() == 1);
    CHECK(t1[0] == T(80));
    CHECK(s.top(5, 't') == std::vector<PortSpec>{T(80), T(23), T(443), T(21), T(22)});
    auto t1000 = s.top(1000, 't');
    CHECK(t1000.size() == 1000);
    CHECK(std::find(t1000.begin(), t1000.end(), T(3306)) != t1000.end());
    CHECK(s.top(1, 'u').at(0).proto == 'u');

    // Names and globs through the real file, for the current protocol only.
    CHECK(ports("ssh", &s) == std::vector<PortSpec>{T(22)});
    auto globbed = ports("http*", &s);
    CHECK(std::find(globbed.begin(), globbed.end(), T(80)) != globbed.end());
    CHECK(std::find(globbed.begin(), globbed.end(), T(443)) != globbed.end());  // https
    CHECK(std::find(globbed.begin(), globbed.end(), T(22)) == globbed.end());
    for (const auto& p : globbed)
        CHECK(p.proto == 't');
}

TEST_CASE("parse_port_list numbers and ranges") {
    CHECK(ports("22") == std::vector<PortSpec>{T(22)});
    CHECK(ports("80,22,80") == std::vector<PortSpec>{T(22), T(80)});
    CHECK(ports("1-1024").size() == 1024);
    CHECK(ports("1-1024").front() == T(1));
    auto all = ports("-");
    CHECK(all.size() == 65535);
    CHECK(all.front() == T(1));
    CHECK(all.back() == T(65535));
    auto low = ports("-100");
    CHECK(low.size() == 100);
    CHECK(low.front() == T(1));
    auto high = ports("60000-");
    CHECK(high.size() == 5536);
    CHECK(high.back() == T(65535));
    CHECK(ports("0") == std::vector<PortSpec>{T(0)});
    CHECK(ports("0-2").size() == 3);
    CHECK(ports(" 22 , 25 ,") == std::vector<PortSpec>{T(22), T(25)});
    CHECK(ports("80,443,8000-8100").size() == 103);
}

TEST_CASE("parse_port_list protocol prefixes") {
    CHECK(ports("T:80,U:53") == std::vector<PortSpec>{T(80), U(53)});
    CHECK(ports("U:53,T:22") == std::vector<PortSpec>{T(22), U(53)});
    CHECK(ports("U:53,161,T:21-22,80") ==
          std::vector<PortSpec>{T(21), T(22), T(80), U(53), U(161)});
    CHECK(ports("22,U:22") == std::vector<PortSpec>{T(22), U(22)});
    CHECK(ports("u:7") == std::vector<PortSpec>{U(7)});
}

TEST_CASE("parse_port_list service names") {
    SmallServices sm;
    CHECK(ports("http", &sm.s) == std::vector<PortSpec>{T(80)});
    CHECK(ports("U:http", &sm.s) == std::vector<PortSpec>{U(80)});
    CHECK(ports("http*", &sm.s) == std::vector<PortSpec>{T(80), T(8080)});
    CHECK(ports("HTTP", &sm.s) == std::vector<PortSpec>{T(80)});
    CHECK(ports("ssh,U:snmp", &sm.s) == std::vector<PortSpec>{T(22), U(161)});
    bad("snmp", "snmp", &sm.s);  // udp-only name asked for tcp
    bad("nosuchservice", "nosuchservice", &sm.s);
    bad("http", "http", nullptr);  // no services table
}

TEST_CASE("parse_port_list errors name the token") {
    bad("70000", "70000");
    bad("22,x-1", "x-1");
    bad("100-1", "100-1");
    bad("22,S:80", "S:80");
    bad("1-2-3", "1-2-3");
    bad("65536-", "65536-");
    bad("T:", "T:");
    bad("", "");
    bad(",", ",");
    bad("22;80", "22;80");
}

TEST_CASE("resolve_ports") {
    SmallServices sm;
    common::ScanOptions o;
    REQUIRE(resolve_ports(o, sm.s).is_ok());  // default: top 1000 tcp (all 7 here), sorted
    CHECK(o.ports == std::vector<PortSpec>{T(9), T(22), T(53), T(80), T(81), T(82), T(8080)});
    o.top_ports = 2;
    REQUIRE(resolve_ports(o, sm.s).is_ok());
    CHECK(o.ports == std::vector<PortSpec>{T(22), T(80)});
    o.port_spec = "8080,22";  // -p wins
    REQUIRE(resolve_ports(o, sm.s).is_ok());
    CHECK(o.ports == std::vector<PortSpec>{T(22), T(8080)});
    o.port_spec = "x";
    auto st = resolve_ports(o, sm.s);
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.message().find("'x'") != std::string::npos);
    o.port_spec = "T:22,U:53";
    st = resolve_ports(o, sm.s);
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.message().find("UDP") != std::string::npos);
    CHECK(st.message().find("T:22,U:53") != std::string::npos);

    auto real = Services::load(kNmapServices);
    REQUIRE(real.is_ok());
    common::ScanOptions d;
    REQUIRE(resolve_ports(d, *real).is_ok());
    CHECK(d.ports.size() == 1000);
    CHECK(std::is_sorted(d.ports.begin(), d.ports.end(),
                         [](auto& a, auto& b) { return a.number < b.number; }));
    d.fast = true;
    REQUIRE(resolve_ports(d, *real).is_ok());
    CHECK(d.ports.size() == 100);
    d.top_ports = 10;  // --top-ports beats -F
    REQUIRE(resolve_ports(d, *real).is_ok());
    CHECK(d.ports.size() == 10);
    common::ScanOptions ping;
    ping.ping_only = true;
    REQUIRE(resolve_ports(ping, *real).is_ok());
    CHECK(ping.ports.empty());
}
