#include "worker/scan/packet_builder.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
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

std::vector<std::uint8_t> icmp_netmask(std::uint16_t id) {
    std::vector<std::uint8_t> m(12, 0);
    m[0] = 17;
    wr16(&m[4], id);
    return m;
}

void rewrite_ipv4(std::vector<std::uint8_t>& pkt, int ttl, bool badsum) {
    if (pkt.size() < 20) return;
    if (ttl >= 0) pkt[8] = static_cast<std::uint8_t>(ttl);
    wr16(&pkt[10], 0);
    wr16(&pkt[10], checksum_fold(checksum_add(pkt.data(), 20)));
    if (!badsum) return;
    std::size_t off = pkt[9] == IPPROTO_TCP ? 36 : pkt[9] == IPPROTO_UDP ? 26 : 22;
    if (pkt.size() >= off + 2) {
        // A checksum that is wrong whatever it was: its complement plus one.
        std::uint16_t c = static_cast<std::uint16_t>((pkt[off] << 8) | pkt[off + 1]);
        wr16(&pkt[off], static_cast<std::uint16_t>(c + 0x1234));
    }
}

std::vector<std::vector<std::uint8_t>> fragment_ipv4(const std::vector<std::uint8_t>& pkt,
                                                     int mtu) {
    std::vector<std::vector<std::uint8_t>> out;
    if (mtu <= 0 || pkt.size() <= 20 + static_cast<std::size_t>(mtu)) {
        out.push_back(pkt);
        return out;
    }
    std::size_t step = static_cast<std::size_t>(mtu) & ~std::size_t(7);
    for (std::size_t off = 20; off < pkt.size(); off += step) {
        std::size_t n = std::min(step, pkt.size() - off);
        std::vector<std::uint8_t> f(pkt.begin(), pkt.begin() + 20);
        f.insert(f.end(), pkt.begin() + static_cast<std::ptrdiff_t>(off),
                 pkt.begin() + static_cast<std::ptrdiff_t>(off + n));
        bool more = off + n < pkt.size();
        wr16(&f[2], static_cast<std::uint16_t>(f.size()));
        wr16(&f[6], static_cast<std::uint16_t>(((off - 20) / 8) | (more ? 0x2000 : 0)));
        wr16(&f[10], 0);
        wr16(&f[10], checksum_fold(checksum_add(f.data(), 20)));
        out.push_back(std::move(f));
    }
    return out;
}

std::string describe_ipv4(const std::uint8_t* p, std::size_t n) {
    if (n < 20 || (p[0] >> 4) != 4) return "unknown packet";
    std::size_t ihl = (p[0] & 15) * 4u;
    if (n < ihl) return "truncated IPv4 packet";
    auto rd = [](const std::uint8_t* b) { return static_cast<unsigned>((b[0] << 8) | b[1]); };
    char src[INET_ADDRSTRLEN] = "", dst[INET_ADDRSTRLEN] = "";
    inet_ntop(AF_INET, p + 12, src, sizeof src);
    inet_ntop(AF_INET, p + 16, dst, sizeof dst);
    char ip[64];
    std::snprintf(ip, sizeof ip, "ttl=%u id=%u iplen=%u", p[8], rd(p + 4), rd(p + 2));
    const std::uint8_t* l4 = p + ihl;
    std::size_t l4n = n - ihl;
    bool first_fragment = (rd(p + 6) & 0x1fff) == 0;
    char out[256];
    if (p[9] == IPPROTO_TCP && l4n >= 20 && first_fragment) {
        std::string flags;
        static const char names[] = "FSRPAUEC";
        for (int i = 0; i < 8; ++i)
            if (l4[13] & (1 << i)) flags += names[i];
        unsigned long seq = (static_cast<unsigned long>(rd(l4 + 4)) << 16) | rd(l4 + 6);
        std::snprintf(out, sizeof out, "TCP %s:%u > %s:%u %s %s  seq=%lu win=%u", src, rd(l4), dst,
                      rd(l4 + 2), flags.c_str(), ip, seq, rd(l4 + 14));
    } else if (p[9] == IPPROTO_UDP && l4n >= 8 && first_fragment) {
        std::snprintf(out, sizeof out, "UDP %s:%u > %s:%u %s", src, rd(l4), dst, rd(l4 + 2), ip);
    } else if (p[9] == IPPROTO_ICMP && l4n >= 8 && first_fragment) {
        const char* what = l4[0] == 8    ? "Echo request"
                           : l4[0] == 0  ? "Echo reply"
                           : l4[0] == 13 ? "Timestamp request"
                           : l4[0] == 14 ? "Timestamp reply"
                           : l4[0] == 17 ? "Address mask request"
                           : l4[0] == 18 ? "Address mask reply"
                           : l4[0] == 3  ? "Destination unreachable"
                                         : "ICMP";
        std::snprintf(out, sizeof out, "ICMP [%s > %s %s (type=%u/code=%u) id=%u seq=%u] IP [%s ]",
                      src, dst, what, l4[0], l4[1], rd(l4 + 4), rd(l4 + 6), ip);
    } else {
        std::snprintf(out, sizeof out, "IP [%s > %s proto=%u %s frag=%u]", src, dst, p[9], ip,
                      (rd(p + 6) & 0x1fff) * 8);
    }
    return out;
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

std::vector<std::uint8_t> ethernet_frame(const packet::Mac& dst, const packet::Mac& src,
                                         const std::vector<std::uint8_t>& ip) {
    std::vector<std::uint8_t> f(14 + ip.size());
    std::memcpy(&f[0], dst.data(), 6);
    std::memcpy(&f[6], src.data(), 6);
    wr16(&f[12], packet::kEtherIPv4);
    std::memcpy(&f[14], ip.data(), ip.size());
    return f;
}

}  // namespace worker
