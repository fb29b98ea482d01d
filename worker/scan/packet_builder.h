#pragma once
// The raw scanner's probes, byte for byte: IPv4 packets around TCP, UDP and ICMP, and the
// Ethernet ARP request, with their Internet checksums (RFC 1071). Multi-byte fields are in
// network order.
#include <netinet/in.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/packet/interface.h"

namespace worker {

// One's-complement sum of `n` bytes read as big-endian 16-bit words (an odd last byte is
// padded with zero), added to `acc`; not yet folded.
std::uint32_t checksum_add(const std::uint8_t* p, std::size_t n, std::uint32_t acc = 0);

// Folds the carries of `acc` and complements: the value for a checksum field.
std::uint16_t checksum_fold(std::uint32_t acc);

// An IPv4 packet (20-byte header, TTL 64, identification `id`) carrying `l4` as protocol
// `proto`. Fills the header checksum, and the checksum of `l4` when it is TCP or UDP (over
// the pseudo-header; a UDP sum of 0 is sent as 0xffff) or ICMP (over the message); the
// checksum field of `l4` must be zero on entry.
std::vector<std::uint8_t> ipv4_packet(in_addr src, in_addr dst, std::uint8_t proto,
                                      std::vector<std::uint8_t> l4, std::uint16_t id);

// A TCP header with an MSS option of 1460 (24 bytes, as nmap's probes), window 1024,
// checksum left zero for ipv4_packet.
std::vector<std::uint8_t> tcp_segment(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq,
                                      std::uint32_t ack, std::uint8_t flags);

// A UDP datagram carrying `payload`, checksum left zero for ipv4_packet.
std::vector<std::uint8_t> udp_datagram(std::uint16_t sport, std::uint16_t dport,
                                       std::string_view payload);

// ICMP echo request (type 8) and timestamp request (type 13, zero timestamps), checksum left
// zero for ipv4_packet.
std::vector<std::uint8_t> icmp_echo(std::uint16_t id, std::uint16_t seq);
std::vector<std::uint8_t> icmp_timestamp(std::uint16_t id);

// ICMP address mask request (type 17), checksum left zero for ipv4_packet.
std::vector<std::uint8_t> icmp_netmask(std::uint16_t id);

// --ttl and --badsum on a finished IPv4 packet: sets the TTL (ttl >= 0), refreshes the header
// checksum, and with `badsum` makes the TCP/UDP/ICMP checksum wrong.
void rewrite_ipv4(std::vector<std::uint8_t>& pkt, int ttl, bool badsum);

// -f/--mtu: the packet as IPv4 fragments carrying at most `mtu` bytes of payload each (a
// multiple of 8); unchanged when it fits or mtu is 0.
std::vector<std::vector<std::uint8_t>> fragment_ipv4(const std::vector<std::uint8_t>& pkt, int mtu);

// One IPv4 packet as nmap's --packet-trace shows it, e.g. "TCP 10.0.0.1:40000 > 10.0.0.2:22 S
// ttl=64 id=7 iplen=44  seq=1 win=1024" or "ICMP [10.0.0.1 > 10.0.0.2 Echo request
// (type=8/code=0) id=5 seq=1] IP [ttl=64 id=9 iplen=28 ]".
std::string describe_ipv4(const std::uint8_t* p, std::size_t n);

// A broadcast Ethernet frame asking who has `target`, to be answered to `src_mac`/`src`.
std::array<std::uint8_t, 42> arp_request(const packet::Mac& src_mac, in_addr src, in_addr target);

// An Ethernet II frame carrying the IPv4 packet `ip` from `src` to `dst` (--spoof-mac).
std::vector<std::uint8_t> ethernet_frame(const packet::Mac& dst, const packet::Mac& src,
                                         const std::vector<std::uint8_t>& ip);

}  // namespace worker
