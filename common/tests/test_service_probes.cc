#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/service_probes.h"

using common::fill_version_template;
using common::ServiceProbes;

namespace {

// A small probe file in nmap's format: every directive, fallbacks across probes, a softmatch.
const char* kProbes = R"(# test probes
Exclude T:9100-9102,U:7
Probe TCP NULL q||
totalwaitms 6000
tcpwrappedms 3000
match ssh m|^SSH-([\d.]+)-OpenSSH_([\w._-]+)[ -]{1,2}Debian[ -_]([^\r\n]+)\r?\n| p/OpenSSH/ v/$2 Debian $3/ i/protocol $1/ o/Linux/ cpe:/a:openbsd:openssh:$2/ cpe:/o:debian:debian_linux/ cpe:/o:linux:linux_kernel/a
softmatch ftp m|^220[- ]|
match ftp m|^220 (\S+) FTPd v([\d.]+)\r\n| p/$1 ftpd/ v/$2/
Probe TCP GetRequest q|GET / HTTP/1.0\r\n\r\n|
rarity 1
ports 80-85,8080
sslports 443
match http m|^HTTP/1\.[01] \d\d\d .*\r\nServer: nginx/([\d.]+)|s p/nginx/ v/$1/ cpe:/a:igor_sysoev:nginx:$1/
Probe TCP Help q|HELP\r\n|
rarity 3
ports 21
match ftp m|^214-Help for (\w+)|i p/$SUBST(1,"_",".")/ h/$P(1)/
Probe TCP Rare q|\x01\0\xff|
rarity 8
fallback GetRequest
match rare m|^RARE(..)| v/$I(1,">")/ i/$I(1,"<")/
Probe UDP DNSStatusRequest q|\0\0\x10\0\0\0\0\0\0\0\0\0|
rarity 1
ports 53
match domain m|^\0\0\x90| p/DNS/
)";

std::shared_ptr<const ServiceProbes> parsed() {
    auto p = ServiceProbes::parse(kProbes, "test-probes");
    REQUIRE_MESSAGE(p, p.message());
    return *p;
}

std::size_t index_of(const ServiceProbes& sp, const std::string& name) {
    for (std::size_t k = 0; k < sp.probes().size(); ++k)
        if (sp.probes()[k].name == name) return k;
    FAIL("no probe " << name);
    return 0;
}

}  // namespace

TEST_CASE("probes: directives, payload escapes, excludes") {
    auto sp = parsed();
    REQUIRE(sp->probes().size() == 5);
    CHECK(sp->null_probe() == std::optional<std::size_t>(0));
    const auto& null = sp->probes()[0];
    CHECK(null.totalwaitms == 6000);
    CHECK(null.tcpwrappedms == 3000);
    const auto& rare = sp->probes()[index_of(*sp, "Rare")];
    CHECK(rare.payload == std::string("\x01\0\xff", 3));
    CHECK(rare.rarity == 8);
    CHECK(sp->probes()[1].payload == "GET / HTTP/1.0\r\n\r\n");
    CHECK(sp->probes()[4].udp);
    CHECK(sp->excluded(9101, false));
    CHECK_FALSE(sp->excluded(9101, true));
    CHECK(sp->excluded(7, true));
    CHECK_FALSE(sp->excluded(22, false));
}

TEST_CASE("probes: plan puts registered probes first, then by rarity up to the intensity") {
    auto sp = parsed();
    auto names = [&](std::vector<std::size_t> v) {
        std::vector<std::string> out;
        for (auto k : v)
            out.push_back(sp->probes()[k].name);
        return out;
    };
    // Port 21: Help is registered (rarity 3), GetRequest is common; Rare (8) only at 9.
    CHECK(names(sp->plan(21, false, false, 7)) == std::vector<std::string>{"Help", "GetRequest"});
    CHECK(names(sp->plan(21, false, false, 9)) ==
          std::vector<std::string>{"Help", "GetRequest", "Rare"});
    // Intensity 0: only what is registered for the port.
    CHECK(names(sp->plan(80, false, false, 0)) == std::vector<std::string>{"GetRequest"});
    CHECK(names(sp->plan(443, false, true, 0)) == std::vector<std::string>{"GetRequest"});
    CHECK(names(sp->plan(443, false, false, 0)).empty());
    CHECK(names(sp->plan(53, true, false, 0)) == std::vector<std::string>{"DNSStatusRequest"});
}

TEST_CASE("probes: hard match fills templates and keeps one CPE per part") {
    auto sp = parsed();
    auto m = sp->match(0, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
    REQUIRE(m);
    CHECK_FALSE(m->soft);
    CHECK(m->service == "ssh");
    CHECK(m->product == "OpenSSH");
    CHECK(m->version == "9.2p1 Debian 2+deb12u3");
    CHECK(m->extrainfo == "protocol 2.0");
    CHECK(m->ostype == "Linux");
    // The later OS CPE replaces the earlier one, as in nmap's reports.
    CHECK(m->cpe ==
          std::vector<std::string>{"cpe:/a:openbsd:openssh:9.2p1", "cpe:/o:linux:linux_kernel"});
    CHECK(m->probe == "NULL");
    CHECK(m->line == 6);
}

TEST_CASE("probes: softmatch, then only that service's lines; fallbacks and the NULL probe") {
    auto sp = parsed();
    auto soft = sp->match(0, "220 welcome\r\n");
    REQUIRE(soft);
    CHECK(soft->soft);
    CHECK(soft->service == "ftp");
    // A hard match after the softmatch: the line of the same service is used.
    auto hard = sp->match(0, "220 acme FTPd v1.2\r\n");
    REQUIRE(hard);
    CHECK_FALSE(hard->soft);
    CHECK(hard->product == "acme ftpd");
    // The Help probe's lines are case-insensitive (i flag); $SUBST and $P work.
    auto help = sp->match(index_of(*sp, "Help"), "214-HELP FOR my_ftp\x01\r\n", "ftp");
    REQUIRE(help);
    CHECK(help->product == "my.ftp");
    CHECK(help->hostname == "my_ftp");
    // After a softmatch for ftp, an http answer matches nothing.
    CHECK_FALSE(sp->match(index_of(*sp, "GetRequest"),
                          "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\r\n", "ftp"));
    // Rare falls back to GetRequest's lines (the s flag lets . cross lines).
    auto fb = sp->match(index_of(*sp, "Rare"), "HTTP/1.1 404 Not\r\nX: y\r\nServer: nginx/1.2\r\n");
    REQUIRE(fb);
    CHECK(fb->service == "http");
    CHECK(fb->probe == "GetRequest");
    CHECK(fb->cpe == std::vector<std::string>{"cpe:/a:igor_sysoev:nginx:1.2"});
    // A TCP probe falls back to the NULL probe's lines last.
    auto null_fb = sp->match(index_of(*sp, "Rare"), "SSH-2.0-OpenSSH_8.0 Debian-1\r\n");
    REQUIRE(null_fb);
    CHECK(null_fb->probe == "NULL");
    // $I: big- and little-endian integers from bytes; NULs in the response are data.
    auto ints = sp->match(index_of(*sp, "Rare"), std::string("RARE\x01\x02", 6));
    REQUIRE(ints);
    CHECK(ints->version == "258");
    CHECK(ints->extrainfo == "513");
    CHECK(sp->match(index_of(*sp, "DNSStatusRequest"), std::string("\0\0\x90\0", 4)));
    CHECK_FALSE(sp->match(0, "nothing known"));
}

TEST_CASE("probes: version templates") {
    std::vector<std::string> g = {"all", "a_b_c", "x\x01y", "\x01\x00"};
    g[3] = std::string("\x01\x00", 2);
    CHECK(fill_version_template("v$1 and $2", g) == "va_b_c and x\x01y");
    CHECK(fill_version_template("$P(2)", g) == "xy");
    CHECK(fill_version_template("$SUBST(1,\"_\",\".\")", g) == "a.b.c");
    CHECK(fill_version_template("$I(3,\">\")/$I(3,\"<\")", g) == "256/1");
    CHECK(fill_version_template("$9 costs $", g) == " costs $");
    CHECK(fill_version_template("$Q(1)", g) == "$Q(1)");
    // CPE: response text lower-cased and percent-encoded, the template's own text kept.
    std::vector<std::string> v = {"", "10.11-MariaDB-0+deb12u1", "a b:c"};
    CHECK(fill_version_template("a:mariadb:mariadb:$1", v, true) ==
          "a:mariadb:mariadb:10.11-mariadb-0%2Bdeb12u1");
    CHECK(fill_version_template("a:x:$SUBST(2,\" \",\"_\")", v, true) == "a:x:a_b%3Ac");
}

TEST_CASE("probes: errors name the line") {
    auto bad = [](const std::string& text) {
        auto p = ServiceProbes::parse(text, "f");
        REQUIRE_FALSE(p);
        return p.message();
    };
    CHECK(bad("Probe TCP NULL q||\nmatch x m|(unclosed| p/x/\n").find("f:2: bad pattern") == 0);
    CHECK(bad("match x m|a|\n").find("f:1: 'match' before the first Probe") == 0);
    CHECK(bad("Probe TCP A q|x|\nrarity 12\n").find("f:2: rarity") == 0);
    CHECK(bad("Probe TCP A q|x|\nfallback Nope\n").find("f:1: fallback names an unknown probe") ==
          0);
    CHECK(bad("Probe SCTP A q|x|\n").find("f:1: Probe protocol") == 0);
    CHECK(bad("Probe TCP A q|\\xZZ|\n").find("f:1: bad escape") == 0);
    CHECK(bad("Probe TCP A q||\nmatch x m|a| z/oops/\n").find("f:2: unknown version field") == 0);
    CHECK(bad("Probe TCP A q||\nbogus 1\n").find("f:2: unknown directive 'bogus'") == 0);
    CHECK(bad("# only comments\n").find("f: no Probe") == 0);
    CHECK_FALSE(ServiceProbes::load("/nonexistent/nmap-service-probes"));
}

TEST_CASE("probes: Debian's nmap-service-probes parses and identifies OpenSSH") {
    auto sp = ServiceProbes::load("/usr/share/nmap/nmap-service-probes");
    REQUIRE_MESSAGE(sp, sp.message());
    CHECK((*sp)->probes().size() > 100);
    auto again = ServiceProbes::load("/usr/share/nmap/nmap-service-probes");
    REQUIRE(again);
    CHECK(again->get() == sp->get());  // parsed once per process
    auto m = (*sp)->match(*(*sp)->null_probe(), "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
    REQUIRE(m);
    CHECK(m->product == "OpenSSH");
    CHECK(m->version == "9.2p1 Debian 2+deb12u3");
}
