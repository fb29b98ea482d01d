// The link-layer parser on synthetic frames: every link type nsefleet captures on, stacked
// VLAN tags, both byte orders of BSD loopback, and frames cut short inside their headers.
#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "common/packet/link_layer.h"

namespace {

using Bytes = std::vector<std::uint8_t>;

// A minimal IPv4 / IPv6 header start (only the version nibble matters to the parser).
const Bytes kIPv4 = {0x45, 0x00, 0x00, 0x14, 0, 0, 0, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1};
const Bytes kIPv6 = {0x60, 0, 0, 0, 0, 0, 6, 64};

Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts)
        out.insert(out.end(), p.begin(), p.end());
    return out;
}

Bytes ether(std::initializer_list<std::uint16_t> types) {
    Bytes f = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2};  // destination, source
    bool first = true;
    for (auto t : types) {
        if (!first) f.insert(f.end(), {0x00, 0x2a});  // TCI of the tag before: VLAN 42
        f.push_back(static_cast<std::uint8_t>(t >> 8));
        f.push_back(static_cast<std::uint8_t>(t & 0xff));
        first = false;
    }
    return f;
}

packet::LinkHeader parse(int dlt, const Bytes& f) {
    return packet::parse_link_header(dlt, f.data(), f.size());
}

}  // namespace

TEST_CASE("Ethernet: plain, one 802.1Q tag, 802.1ad + 802.1Q stacked, three tags") {
    auto h = parse(DLT_EN10MB, cat({ether({0x0800}), kIPv4}));
    CHECK(h.valid);
    CHECK(h.length == 14);
    CHECK(h.ethertype == packet::kEtherIPv4);

    h = parse(DLT_EN10MB, cat({ether({0x8100, 0x0806}), Bytes(28, 0)}));
    CHECK(h.valid);
    CHECK(h.length == 18);
    CHECK(h.ethertype == packet::kEtherArp);

    h = parse(DLT_EN10MB, cat({ether({0x88a8, 0x8100, 0x86dd}), kIPv6}));
    CHECK(h.valid);
    CHECK(h.length == 22);
    CHECK(h.ethertype == packet::kEtherIPv6);

    h = parse(DLT_EN10MB, cat({ether({0x8100, 0x8100, 0x8100, 0x0800}), kIPv4}));
    CHECK(h.valid);
    CHECK(h.length == 26);
    CHECK(h.ethertype == packet::kEtherIPv4);

    // A frame that is exactly its headers: valid, empty layer 3.
    h = parse(DLT_EN10MB, ether({0x8100, 0x0800}));
    CHECK(h.valid);
    CHECK(h.length == 18);
}

TEST_CASE("Ethernet cut short: rejected, length is what fits") {
    Bytes f = cat({ether({0x0800}), kIPv4});
    auto h = parse(DLT_EN10MB, Bytes(f.begin(), f.begin() + 13));
    CHECK_FALSE(h.valid);
    CHECK(h.length == 13);
    CHECK(h.ethertype == 0);
    CHECK_FALSE(parse(DLT_EN10MB, {}).valid);

    // Ends inside the second of two tags: the base header and the complete tag count.
    Bytes tagged = ether({0x88a8, 0x8100, 0x0800});  // 22 bytes
    h = parse(DLT_EN10MB, Bytes(tagged.begin(), tagged.begin() + 20));
    CHECK_FALSE(h.valid);
    CHECK(h.length == 18);
    CHECK(h.ethertype == 0);
    h = parse(DLT_EN10MB, Bytes(tagged.begin(), tagged.begin() + 16));
    CHECK_FALSE(h.valid);
    CHECK(h.length == 14);
}

TEST_CASE("Linux cooked captures: SLL (16 bytes) and SLL2 (20 bytes)") {
    // SLL: packet type, ARPHRD, address length, 8 address bytes, then the protocol.
    Bytes sll = {0, 0, 0x03, 0x04, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00};
    auto h = parse(DLT_LINUX_SLL, cat({sll, kIPv4}));
    CHECK(h.valid);
    CHECK(h.length == 16);
    CHECK(h.ethertype == packet::kEtherIPv4);
    h = parse(DLT_LINUX_SLL, Bytes(sll.begin(), sll.begin() + 15));
    CHECK_FALSE(h.valid);
    CHECK(h.length == 15);

    // SLL2: the protocol first, then reserved, interface index, ARPHRD, type, address.
    Bytes sll2 = {0x86, 0xdd, 0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0};
    h = parse(DLT_LINUX_SLL2, cat({sll2, kIPv6}));
    CHECK(h.valid);
    CHECK(h.length == 20);
    CHECK(h.ethertype == packet::kEtherIPv6);
    h = parse(DLT_LINUX_SLL2, Bytes(sll2.begin(), sll2.begin() + 19));
    CHECK_FALSE(h.valid);
    CHECK(h.length == 19);
}

TEST_CASE("BSD loopback: NULL in either byte order, LOOP, IPv6 family numbers") {
    auto h = parse(DLT_NULL, cat({{2, 0, 0, 0}, kIPv4}));  // little-endian host
    CHECK(h.valid);
    CHECK(h.length == 4);
    CHECK(h.ethertype == packet::kEtherIPv4);
    h = parse(DLT_NULL, cat({{0, 0, 0, 2}, kIPv4}));  // big-endian host
    CHECK(h.ethertype == packet::kEtherIPv4);
    h = parse(DLT_LOOP, cat({{0, 0, 0, 2}, kIPv4}));  // always network order
    CHECK(h.valid);
    CHECK(h.ethertype == packet::kEtherIPv4);
    for (std::uint8_t af : {10, 24, 28, 30}) {
        CHECK(parse(DLT_NULL, cat({{af, 0, 0, 0}, kIPv6})).ethertype == packet::kEtherIPv6);
        CHECK(parse(DLT_LOOP, cat({{0, 0, 0, af}, kIPv6})).ethertype == packet::kEtherIPv6);
    }
    h = parse(DLT_NULL, cat({{7, 0, 0, 0}, kIPv4}));  // an unknown family: valid, unnamed
    CHECK(h.valid);
    CHECK(h.ethertype == 0);
    h = parse(DLT_LOOP, {0, 0, 0});
    CHECK_FALSE(h.valid);
    CHECK(h.length == 3);
}

TEST_CASE("Raw IP: the version nibble names the protocol, no header") {
    for (int dlt : {DLT_RAW, DLT_IPV4, DLT_IPV6}) {
        CAPTURE(dlt);
        auto h = parse(dlt, kIPv4);
        CHECK(h.valid);
        CHECK(h.length == 0);
        CHECK(h.ethertype == packet::kEtherIPv4);
        h = parse(dlt, kIPv6);
        CHECK(h.ethertype == packet::kEtherIPv6);
        CHECK(parse(dlt, {0x10}).ethertype == 0);
        CHECK_FALSE(parse(dlt, {}).valid);
    }
}

TEST_CASE("Unknown link types: no header, rejected") {
    auto h = parse(DLT_IEEE802_11, cat({ether({0x0800}), kIPv4}));
    CHECK_FALSE(h.valid);
    CHECK(h.length == 0);
    CHECK(h.ethertype == 0);
}
