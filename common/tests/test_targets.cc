#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/targets.h"
#include "test/support/temp.h"

using common::expand_targets;
using common::Target;
using test_support::TempFile;

namespace {

using Strings = std::vector<std::string>;

std::vector<Target> expand(Strings specs, Strings excludes = {}, bool ipv6 = false,
                           Strings files = {}, Strings exfiles = {}) {
    auto r = expand_targets(specs, files, excludes, exfiles, ipv6);
    INFO("error: ", (r ? std::string() : r.message()));
    REQUIRE(r.is_ok());
    return *r;
}

Strings addrs(const std::vector<Target>& ts) {
    Strings out;
    for (const auto& t : ts)
        out.push_back(t.address);
    return out;
}

void fails(Strings specs, const std::string& token, bool ipv6 = false, std::size_t limit = 1u << 24,
           Strings excludes = {}) {
    auto r = expand_targets(specs, {}, excludes, {}, ipv6, limit);
    REQUIRE_FALSE(r.is_ok());
    INFO("message: ", r.message());
    CHECK(r.message().find(token) != std::string::npos);
}

}  // namespace

TEST_CASE("single addresses") {
    auto t = expand({"127.0.0.1"});
    REQUIRE(t.size() == 1);
    CHECK(t[0].address == "127.0.0.1");
    CHECK_FALSE(t[0].ipv6);
    CHECK(t[0].targetname.empty());

    auto v6 = expand({"::1"}, {}, true);
    REQUIRE(v6.size() == 1);
    CHECK(v6[0].address == "::1");
    CHECK(v6[0].ipv6);
    // Written in a long form, printed canonically.
    CHECK(addrs(expand({"0:0:0:0:0:0:0:1"}, {}, true)) == Strings{"::1"});
}

TEST_CASE("host names keep their targetname") {
    auto t = expand({"localhost"});
    REQUIRE(t.size() == 1);
    CHECK(t[0].address == "127.0.0.1");
    CHECK(t[0].targetname == "localhost");
    // A name with a netmask expands the network; no single host carries the name.
    auto net = expand({"localhost/30"});
    CHECK(addrs(net) == Strings{"127.0.0.0", "127.0.0.1", "127.0.0.2", "127.0.0.3"});
    CHECK(net[1].targetname.empty());
    // The name keeps its place (and wins the duplicate) in input order.
    auto mixed = expand({"localhost", "127.0.0.1", "127.0.0.2"});
    CHECK(addrs(mixed) == Strings{"127.0.0.1", "127.0.0.2"});
    CHECK(mixed[0].targetname == "localhost");
}

TEST_CASE("CIDR blocks are network aligned") {
    auto t = expand({"127.0.1.5/24"});
    REQUIRE(t.size() == 256);
    CHECK(t.front().address == "127.0.1.0");
    CHECK(t[5].address == "127.0.1.5");
    CHECK(t.back().address == "127.0.1.255");
    CHECK(addrs(expand({"127.0.0.9/32"})) == Strings{"127.0.0.9"});
    CHECK(addrs(expand({"127.0.0.9/31"})) == Strings{"127.0.0.8", "127.0.0.9"});
    CHECK(expand({"127.0.0.0/16"}).size() == 65536);
    auto v6 = expand({"::1/126"}, {}, true);
    CHECK(addrs(v6) == Strings{"::", "::1", "::2", "::3"});
    auto v6b = expand({"fe80::1:ff/120"}, {}, true);
    REQUIRE(v6b.size() == 256);
    CHECK(v6b.front().address == "fe80::1:0");
    CHECK(v6b.back().address == "fe80::1:ff");
}

TEST_CASE("octet ranges and lists") {
    CHECK(addrs(expand({"127.0.0.1,2,5"})) == Strings{"127.0.0.1", "127.0.0.2", "127.0.0.5"});
    auto r = expand({"127.0.1-3.1-254"});
    REQUIRE(r.size() == 3 * 254);
    CHECK(r[0].address == "127.0.1.1");
    CHECK(r[253].address == "127.0.1.254");
    CHECK(r[254].address == "127.0.2.1");
    CHECK(r.back().address == "127.0.3.254");
    auto all = expand({"127.0.0.-"});
    REQUIRE(all.size() == 256);
    CHECK(all[0].address == "127.0.0.0");
    CHECK(all[255].address == "127.0.0.255");
    CHECK(expand({"127.0.0.250-"}).size() == 6);
    CHECK(addrs(expand({"127.0.0.-2"})) == Strings{"127.0.0.0", "127.0.0.1", "127.0.0.2"});
    CHECK(expand({"127.0.0,1.1-2,4"}).size() == 6);
}

TEST_CASE("order follows input, duplicates dropped (first wins)") {
    auto t = expand({"127.0.0.3", "127.0.0.1-4", "127.0.0.2"});
    CHECK(addrs(t) == Strings{"127.0.0.3", "127.0.0.1", "127.0.0.2", "127.0.0.4"});
}

TEST_CASE("excludes") {
    CHECK(addrs(expand({"127.0.0.0/29"}, {"127.0.0.2", "127.0.0.4-5"})) ==
          Strings{"127.0.0.0", "127.0.0.1", "127.0.0.3", "127.0.0.6", "127.0.0.7"});
    CHECK(expand({"127.0.0.0/24"}, {"127.0.0.128/25"}).size() == 128);
    CHECK(expand({"127.0.0.0/24"}, {"127.0.0.0/8"}).empty());
    CHECK(addrs(expand({"localhost", "127.0.0.2"}, {"localhost"})) == Strings{"127.0.0.2"});
    CHECK(addrs(expand({"::1/127"}, {"::1"}, true)) == Strings{"::"});
    // A big exclusion is matched, not expanded.
    CHECK(expand({"127.0.0.1"}, {"0.0.0.0/0"}).empty());

    TempFile ex("# comment line\n127.0.0.1 127.0.0.3  # trailing comment\n\n");
    CHECK(addrs(expand({"127.0.0.1-4"}, {}, false, {}, {ex.path})) ==
          Strings{"127.0.0.2", "127.0.0.4"});
    fails({"127.0.0.1"}, "'10.0.0.0/33'", false, 1u << 24, {"10.0.0.0/33"});
}

TEST_CASE("-iL files") {
    TempFile f("# hosts\n127.0.0.5\n127.0.0.1-2 localhost\t127.0.0.9 # nine\n  \n");
    auto t = expand({"127.0.0.7"}, {}, false, {f.path});
    CHECK(addrs(t) == Strings{"127.0.0.7", "127.0.0.5", "127.0.0.1", "127.0.0.2", "127.0.0.9"});
    auto r = expand_targets({}, {"/nonexistent/nsefleet-targets"}, {}, {}, false);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.message().find("'/nonexistent/nsefleet-targets'") != std::string::npos);
    CHECK(r.message().find("No such file") != std::string::npos);
    auto e = expand_targets({"127.0.0.1"}, {}, {}, {"/nonexistent/ex"}, false);
    REQUIRE_FALSE(e.is_ok());
    CHECK(e.message().find("'/nonexistent/ex'") != std::string::npos);
    TempFile bad("127.0.0.1\n127.0.0.300\n");
    auto b = expand_targets({}, {bad.path}, {}, {}, false);
    REQUIRE_FALSE(b.is_ok());
    CHECK(b.message().find("'127.0.0.300'") != std::string::npos);
}

TEST_CASE("errors name the bad token") {
    fails({"127.0.0.1", "10.0.0.0/33"}, "invalid target specification: '10.0.0.0/33'");
    fails({"127.0.0.256"}, "'127.0.0.256'");
    fails({"127.0.0"}, "'127.0.0'");
    fails({"127.0.0.1."}, "'127.0.0.1.'");
    fails({"127.0.0.5-2"}, "'127.0.0.5-2'");
    fails({"127.0.0.1,,2"}, "'127.0.0.1,,2'");
    fails({"127.0.0.1/"}, "'127.0.0.1/'");
    fails({"127.0.0.1/x"}, "'127.0.0.1/x'");
    fails({"127.0.0.1-2/24"}, "'127.0.0.1-2/24'");
    fails({"bad name!"}, "'bad name!'");
    fails({"a..b"}, "'a..b'");
    fails({""}, "''");
    fails({"::1"}, "IPv6 target '::1' requires -6");
    fails({"::1/129"}, "'::1/129'", true);
    fails({"::g"}, "'::g'", true);
    fails({"127.0.0.1"}, "'127.0.0.1'", true);  // IPv4 with -6
}

TEST_CASE("limit") {
    CHECK(expand_targets({"127.0.0.0/24"}, {}, {}, {}, false, 256).is_ok());
    fails({"127.0.0.0/24"}, "'127.0.0.0/24'", false, 255);
    fails({"127.0.0.1", "127.0.0.0/24"}, "'127.0.0.0/24'", false, 256);
    fails({"0.0.0.0/0"}, "'0.0.0.0/0'");
    fails({"::/0"}, "'::/0'", true);
    fails({"::/64"}, "'::/64'", true);
}
