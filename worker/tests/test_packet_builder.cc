// The raw scanner's probe builders: exact bytes of each header and checksums that verify
// (the receiver's sum over a packet with its checksum in place folds to zero).
#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "worker/scan/packet_builder.h"

namespace {

in_addr addr(const char* text) {
    in_addr a{};
    REQUIRE(inet_pton(AF_INET, text, &a) == 1);
    return a;
}

std::uint16_t be16(const std::vector<std::uint8_t>& v, std::size_t at) {
    return static_cast<std::uint16_t>(v[at] << 8 | v[at + 1]);
}

// The receiver's check of a TCP/UDP checksum: pseudo-header + segment folds to zero.
std::uint16_t verify_l4(const std::vector<std::uint8_t>& ip) {
    std::size_t l4n = ip.size() - 20;
    std::uint32_t acc = worker::checksum_add(&ip[12], 8);
    acc += ip[9];
    acc += static_cast<std::uint32_t>(l4n);
    return worker::checksum_fold(worker::checksum_add(&ip[20], l4n, acc));
}

}  // namespace

TEST_CASE("checksum: the RFC 1071 example, odd lengths, carries") {
    const std::uint8_t rfc[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    CHECK(worker::checksum_add(rfc, sizeof rfc) == 0x2ddf0);
    CHECK(worker::checksum_fold(worker::checksum_add(rfc, sizeof rfc)) == 0x220d);
    const std::uint8_t odd[] = {0x12, 0x34, 0x56};  // the last byte is the high half of a word
    CHECK(worker::checksum_add(odd, 3) == 0x1234 + 0x5600);
    CHECK(worker::checksum_fold(0) == 0xffff);
    CHECK(worker::checksum_fold(0x1fffe) == 0x0000);  // 0xfffe + 1 = 0xffff, complemented
}

TEST_CASE("ipv4_packet + tcp_segment: header fields and both checksums") {
    auto tcp = worker::tcp_segment(40001, 443, 0x01020304, 0x0a0b0c0d, 0x02);
    REQUIRE(tcp.size() == 24);
    CHECK(be16(tcp, 0) == 40001);
    CHECK(be16(tcp, 2) == 443);
    CHECK(std::vector<std::uint8_t>(tcp.begin() + 4, tcp.begin() + 12) ==
          std::vector<std::uint8_t>{1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d});
    CHECK(tcp[12] == 0x60);  // 6 words: 20 bytes + the MSS option
    CHECK(tcp[13] == 0x02);  // SYN
    CHECK(be16(tcp, 14) == 1024);
    CHECK(be16(tcp, 16) == 0);  // left for ipv4_packet
    CHECK(tcp[20] == 2);
    CHECK(tcp[21] == 4);
    CHECK(be16(tcp, 22) == 1460);

    auto ip =
        worker::ipv4_packet(addr("198.51.100.1"), addr("198.51.100.2"), IPPROTO_TCP, tcp, 0x1234);
    REQUIRE(ip.size() == 44);
    CHECK(ip[0] == 0x45);
    CHECK(be16(ip, 2) == 44);
    CHECK(be16(ip, 4) == 0x1234);
    CHECK(ip[8] == 64);
    CHECK(ip[9] == IPPROTO_TCP);
    CHECK(std::vector<std::uint8_t>(ip.begin() + 12, ip.begin() + 20) ==
          std::vector<std::uint8_t>{198, 51, 100, 1, 198, 51, 100, 2});
    CHECK(worker::checksum_fold(worker::checksum_add(ip.data(), 20)) == 0);
    CHECK(be16(ip, 20 + 16) != 0);
    CHECK(verify_l4(ip) == 0);
}

TEST_CASE("udp_datagram: length, payload, checksum; a zero sum goes out as 0xffff") {
    auto udp = worker::udp_datagram(40001, 53, std::string("\0\1q", 3));
    REQUIRE(udp.size() == 11);
    CHECK(be16(udp, 0) == 40001);
    CHECK(be16(udp, 2) == 53);
    CHECK(be16(udp, 4) == 11);
    CHECK(be16(udp, 6) == 0);
    CHECK(udp[8] == 0);
    CHECK(udp[9] == 1);
    CHECK(udp[10] == 'q');
    auto ip = worker::ipv4_packet(addr("127.0.0.1"), addr("127.0.0.2"), IPPROTO_UDP, udp, 7);
    CHECK(ip[9] == IPPROTO_UDP);
    CHECK(verify_l4(ip) == 0);

    // Choose a 2-byte payload that makes the one's-complement sum 0xffff, i.e. a computed
    // checksum of 0, which UDP reserves for "none".
    auto probe = worker::ipv4_packet(addr("127.0.0.1"), addr("127.0.0.2"), IPPROTO_UDP,
                                     worker::udp_datagram(1, 2, std::string(2, '\0')), 7);
    std::uint16_t rest = static_cast<std::uint16_t>(~be16(probe, 26));  // folded sum so far
    REQUIRE(rest != 0xffff);
    std::uint16_t w = static_cast<std::uint16_t>(0xffff - rest);
    std::string fill{static_cast<char>(w >> 8), static_cast<char>(w & 0xff)};
    auto zero = worker::ipv4_packet(addr("127.0.0.1"), addr("127.0.0.2"), IPPROTO_UDP,
                                    worker::udp_datagram(1, 2, fill), 7);
    CHECK(be16(zero, 26) == 0xffff);
}

TEST_CASE("icmp_echo and icmp_timestamp: type, id, sequence, checksum over the message") {
    auto echo = worker::icmp_echo(0xbeef, 3);
    REQUIRE(echo.size() == 8);
    CHECK(echo[0] == 8);
    CHECK(echo[1] == 0);
    CHECK(be16(echo, 4) == 0xbeef);
    CHECK(be16(echo, 6) == 3);
    auto ip = worker::ipv4_packet(addr("127.0.0.1"), addr("127.0.0.1"), IPPROTO_ICMP, echo, 1);
    CHECK(ip.size() == 28);
    CHECK(worker::checksum_fold(worker::checksum_add(&ip[20], 8)) == 0);

    auto ts = worker::icmp_timestamp(0xbeef);
    REQUIRE(ts.size() == 20);
    CHECK(ts[0] == 13);
    CHECK(be16(ts, 4) == 0xbeef);
    ip = worker::ipv4_packet(addr("127.0.0.1"), addr("127.0.0.1"), IPPROTO_ICMP, ts, 2);
    CHECK(worker::checksum_fold(worker::checksum_add(&ip[20], 20)) == 0);
}

TEST_CASE("arp_request: broadcast who-has from our MAC and address") {
    packet::Mac mac{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30};
    auto f = worker::arp_request(mac, addr("198.51.100.1"), addr("198.51.100.2"));
    const std::uint8_t want[42] = {
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,  // addresses
        0x08, 0x06,                                                              // ARP
        0x00, 0x01, 0x08, 0x00, 6,    4,    0x00, 0x01,           // Ethernet/IPv4, request
        0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 198,  51,   100,  1,  // sender
        0,    0,    0,    0,    0,    0,    198,  51,   100,  2,  // target
    };
    CHECK(std::vector<std::uint8_t>(f.begin(), f.end()) ==
          std::vector<std::uint8_t>(want, want + 42));
}
