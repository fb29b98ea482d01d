// --spoof-mac values as nmap reads them: 0, hex digits (whole or a prefix), a vendor name.
#include <doctest/doctest.h>

#include <string>

#include "common/packet/spoof_mac.h"
#include "test/support/temp.h"

namespace {

const char* kPrefixes =
    "# a comment 0003FF\n"
    "000393 Apple\n"
    "0020F2 Oracle\n"
    "00000C Cisco Systems\n";

std::string hex(const packet::Mac& m) { return packet::mac_text(m.data()); }

}  // namespace

TEST_CASE("--spoof-mac: random, whole, prefix and vendor forms") {
    test_support::TempFile file(kPrefixes);
    auto whole = packet::choose_spoof_mac("01:02:03:04:05:06", file.path);
    REQUIRE(whole.is_ok());
    CHECK(hex(whole->mac) == "01:02:03:04:05:06");
    CHECK(whole->vendor == "No registered vendor");
    auto bare = packet::choose_spoof_mac("deadbeefcafe", file.path);
    REQUIRE(bare.is_ok());
    CHECK(hex(bare->mac) == "DE:AD:BE:EF:CA:FE");
    auto prefix = packet::choose_spoof_mac("0020F2", file.path);
    REQUIRE(prefix.is_ok());
    CHECK(hex(prefix->mac).rfind("00:20:F2:", 0) == 0);
    CHECK(prefix->vendor == "Oracle");
    auto vendor = packet::choose_spoof_mac("apple", file.path);  // any case, a substring
    REQUIRE(vendor.is_ok());
    CHECK(hex(vendor->mac).rfind("00:03:93:", 0) == 0);
    CHECK(vendor->vendor == "Apple");
    CHECK(packet::choose_spoof_mac("systems", file.path)->vendor == "Cisco Systems");
    // 0: random, never multicast, and not the same twice in a row (2^-47 odds).
    auto r1 = packet::choose_spoof_mac("0", file.path),
         r2 = packet::choose_spoof_mac("0", file.path);
    REQUIRE(r1.is_ok());
    REQUIRE(r2.is_ok());
    CHECK((r1->mac[0] & 1) == 0);
    CHECK(r1->mac != r2->mac);
    // The chosen address read back (as a resumed scan does) is the same address.
    CHECK(hex(packet::choose_spoof_mac(hex(vendor->mac), file.path)->mac) == hex(vendor->mac));
}

TEST_CASE("--spoof-mac: values that are neither hex nor a vendor") {
    test_support::TempFile file(kPrefixes);
    for (const char* bad : {"xyzzy", "abc", "01:02:03:04:05:06:07", "0003FF"}) {
        INFO(bad);
        auto r = packet::choose_spoof_mac(bad, file.path);
        if (std::string(bad) == "0003FF") {  // hex: a prefix, listed or not
            CHECK(r.is_ok());
            continue;
        }
        REQUIRE_FALSE(r.is_ok());
        CHECK(r.message().find("--spoof-mac argument: " + std::string(bad)) != std::string::npos);
    }
    CHECK_FALSE(packet::choose_spoof_mac("Apple", "/nonexistent/prefixes").is_ok());
}
