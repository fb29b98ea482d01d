// The nmap-payloads parser: a synthetic file for the grammar, then the installed file.
#include <doctest/doctest.h>

#include <string>

#include "test/support/temp.h"
#include "worker/scan/payloads.h"

TEST_CASE("load_udp_payloads: escapes, multi-line strings, port lists, first wins") {
    test_support::TempFile file(
        "# comment \"not a string\"\n"
        "udp 7,9-10 \"\\x0D\\x0A\" # trailing\n"
        "  \"ab\"\n"
        "udp 9 \"second\" source 53\n"
        "udp 53 \"\\x00\\x01q\\\\\"\n",
        "nsefleet-payloads");
    auto m = worker::load_udp_payloads(file.path);
    CHECK(m.size() == 4);
    CHECK(m[7] == std::string("\r\nab"));
    CHECK(m[9] == std::string("\r\nab"));  // the first payload for a port is kept
    CHECK(m[10] == std::string("\r\nab"));
    CHECK(m[53] == std::string("\0\1q\\", 4));
    CHECK(worker::load_udp_payloads("/nonexistent/nmap-payloads").empty());

    // The real file: DNS (53) and SNMP (161) have payloads.
    auto real = worker::load_udp_payloads("/usr/share/nmap/nmap-payloads");
    CHECK(real.count(53) == 1);
    CHECK(real.count(161) == 1);
    CHECK(real[161].size() == 60);  // the first entry (SNMPv3 discovery), four strings joined
    CHECK(real[161].compare(0, 2, "\x30\x3A") == 0);
}

TEST_CASE("load_udp_payloads: malformed port items are skipped, the rest kept") {
    std::string path = "/tmp/nsefleet-payloads-bad-" + std::to_string(getpid());
    {
        std::ofstream f(path);
        f << "udp 1-x,5,y \"z\"\n"
             "udp 70000 \"too high\"\n"
             "tcp 6 \"not udp\"\n";
    }
    auto m = worker::load_udp_payloads(path);
    std::remove(path.c_str());
    CHECK(m.size() == 1);
    CHECK(m[5] == "z");
}
