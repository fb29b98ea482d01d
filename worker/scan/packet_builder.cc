#include "worker/scan/packet_builder.h"

#include <algorithm>
#include <cstring>

#include "common/packet/link_layer.h"

namespace worker {

namespace {

std::uint16_t rd16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
void wr16(std::uint8_t* p, std::uint16_t v) { p[0] = v >> 8, p[1] = v & 0xff; }
void wr32(std::uint8_t* p, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        p[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}

}  // namespace

std::uint32_t checksum_add(const std::uint8_t* p, std::size_t n, std::uint32_t acc) {
    for (std::size_t i = 0; i + 1 < n; i += 2)
        acc += rd16(p + i);
    if (n & 1) acc += static_cast<std::uint32_t>(p[n - 1]) << 8;
    return acc;
}

std::uint16_t checksum_fold(std::uint32_t acc) {
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<std::uint16_t>(~acc);
}

std::vector<std::uint8_t> ipv4_packet(in_addr src, in_addr dst, std::uint8_t proto,
                                      std::vector<std::uint8_t> l4, std::uint16_t id) {
    std::vector<std::uint8_t> p(20 + l4.size());
    p[0] = 0x45;
    wr16(&p[2], static_cast<std::uint16_t>(p.size()));
    wr16(&p[4], id);
    p[8] = 64;
    p[9] = proto;
    std::memcpy(&p[12], &src, 4);
    std::memcpy(&p[16], &dst, 4);
    wr16(&p[10], checksum_fold(checksum_add(p.data(), 20)));
    int ck = proto == IPPROTO_TCP ? 16 : proto == IPPROTO_UDP ? 6 : -1;
    if (proto == IPPROTO_ICMP) {
        wr16(&l4[2], checksum_fold(checksum_add(l4.data(), l4.size())));
    } else if (ck >= 0) {
        std::uint32_t acc = checksum_add(&p[12], 8);  // pseudo-header: addresses,
        acc += proto;                                 // protocol and length
        acc += static_cast<std::uint32_t>(l4.size());
        std::uint16_t c = checksum_fold(checksum_add(l4.data(), l4.size(), acc));
        if (proto == IPPROTO_UDP && c == 0) c = 0xffff;  // 0 means "no checksum" in UDP
        wr16(&l4[ck], c);
    }
    std::memcpy(&p[20], l4.data(), l4.size());
    return p;
}

std::vector<std::uint8_t> tcp_segment(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq,
                                      std::uint32_t ack, std::uint8_t flags) {
    std::vector<std::uint8_t> t(24, 0);
    wr16(&t[0], sport);
    wr16(&t[2], dport);
    wr32(&t[4], seq);
    wr32(&t[8], ack);
    t[12] = 6 << 4;  // data offset: 6 words
    t[13] = flags;
    wr16(&t[14], 1024);
    t[20] = 2, t[21] = 4;  // MSS option
    wr16(&t[22], 1460);
    return t;
}

std::vector<std::uint8_t> udp_datagram(std::uint16_t sport, std::uint16_t dport,
                                       std::string_view payload) {
    std::vector<std::uint8_t> u(8 + payload.size());
    wr16(&u[0], sport);
    wr16(&u[2], dport);
    wr16(&u[4], static_cast<std::uint16_t>(u.size()));
    std::memcpy(u.data() + 8, payload.data(), payload.size());
    return u;
}

std::vector<std::uint8_t> icmp_echo(std::uint16_t id, std::uint16_t seq) {
    std::vector<std::uint8_t> m(8, 0);
    m[0] = 8;
    wr16(&m[4], id);
    wr16(&m[6], seq);
    return m;
}

std::vector<std::uint8_t> icmp_timestamp(std::uint16_t id) {
    std::vector<std::uint8_t> m(20, 0);
    m[0] = 13;
    wr16(&m[4], id);
    return m;
}

std::array<std::uint8_t, 42> arp_request(const packet::Mac& src_mac, in_addr src, in_addr target) {
    std::array<std::uint8_t, 42> f{};
    std::fill(f.begin(), f.begin() + 6, 0xff);
    std::memcpy(&f[6], src_mac.data(), 6);
    wr16(&f[12], packet::kEtherArp);
    std::uint8_t* a = &f[14];
    wr16(a, 1), wr16(a + 2, packet::kEtherIPv4), a[4] = 6, a[5] = 4, wr16(a + 6, 1);  // request
    std::memcpy(a + 8, src_mac.data(), 6);
    std::memcpy(a + 14, &src, 4);
    std::memcpy(a + 24, &target, 4);
    return f;
}

}  // namespace worker
