#pragma once
// The link-layer parser for captured frames: where layer 3 starts and what it is. One parser
// for every capture in nsefleet (NSE's pcap_receive and the raw port scanner).
#include <pcap/dlt.h>

#include <cstddef>
#include <cstdint>

namespace packet {

// EtherType values the callers look for.
constexpr std::uint16_t kEtherIPv4 = 0x0800;
constexpr std::uint16_t kEtherArp = 0x0806;
constexpr std::uint16_t kEtherIPv6 = 0x86dd;
constexpr std::uint16_t kEtherVlan = 0x8100;  // 802.1Q tag
constexpr std::uint16_t kEtherQinQ = 0x88a8;  // 802.1ad service tag

struct LinkHeader {
    // Bytes before the layer-3 header. For a frame cut short inside its link headers: the
    // whole headers that fit (Ethernet: the base header plus the complete tags), at most the
    // frame's size; 0 for an unknown link type.
    std::size_t length = 0;
    // EtherType of what follows (kEtherIPv4, kEtherArp, ...): read from the header (Ethernet
    // after all VLAN tags, Linux SLL/SLL2), mapped from the address family (NULL/LOOP) or
    // from the IP version (raw IP). 0 when the frame does not say.
    std::uint16_t ethertype = 0;
    // False when the frame is shorter than its link headers (or ends inside a VLAN tag) or
    // the link type is unknown: `ethertype` is then 0 and the frame should be dropped by
    // callers that decode layer 3.
    bool valid = false;
};

// Parses the link-layer header of `frame` (`size` captured bytes) for link type `linktype`
// (a DLT_* value): Ethernet with any number of stacked 802.1Q / 802.1ad tags, Linux cooked
// captures v1 (SLL) and v2 (SLL2), BSD loopback (NULL in either byte order, LOOP), and raw
// IP (DLT_RAW, DLT_IPV4, DLT_IPV6).
LinkHeader parse_link_header(int linktype, const std::uint8_t* frame, std::size_t size);

}  // namespace packet
