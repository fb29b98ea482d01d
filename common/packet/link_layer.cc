#include "common/packet/link_layer.h"

#include <algorithm>

namespace packet {

namespace {

std::uint16_t rd16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

bool is_tag(std::uint16_t type) { return type == kEtherVlan || type == kEtherQinQ; }

// A header of fixed length whose EtherType sits at `type_at`.
LinkHeader fixed(const std::uint8_t* f, std::size_t n, std::size_t len, std::size_t type_at) {
    LinkHeader h;
    h.length = std::min(len, n);
    if (n < len) return h;
    h.ethertype = rd16(f + type_at);
    h.valid = true;
    return h;
}

// BSD loopback: a 4-byte address family, in the capturing host's byte order (NULL) or in
// network order (LOOP). Either order is accepted: families are small numbers, so the order
// that gives a value above 0xffff is the wrong one.
std::uint16_t family_type(const std::uint8_t* f) {
    std::uint32_t v = static_cast<std::uint32_t>(f[0]) << 24 |
                      static_cast<std::uint32_t>(f[1]) << 16 |
                      static_cast<std::uint32_t>(f[2]) << 8 | f[3];
    if (v > 0xffff)
        v = static_cast<std::uint32_t>(f[3]) << 24 | static_cast<std::uint32_t>(f[2]) << 16 |
            static_cast<std::uint32_t>(f[1]) << 8 | f[0];
    switch (v) {
    case 2: return kEtherIPv4;   // AF_INET everywhere
    case 10:                     // AF_INET6: Linux
    case 24:                     // NetBSD, OpenBSD
    case 28:                     // FreeBSD, DragonFly
    case 30: return kEtherIPv6;  // macOS
    default: return 0;
    }
}

std::uint16_t ip_version_type(const std::uint8_t* f) {
    switch (f[0] >> 4) {
    case 4: return kEtherIPv4;
    case 6: return kEtherIPv6;
    default: return 0;
    }
}

}  // namespace

LinkHeader parse_link_header(int linktype, const std::uint8_t* f, std::size_t n) {
    switch (linktype) {
    case DLT_EN10MB: {
        // Tags sit between the addresses and the real EtherType, 4 bytes each.
        std::size_t off = 14;
        while (off + 4 <= n && is_tag(rd16(f + off - 2)))
            off += 4;
        LinkHeader h;
        h.length = std::min(off, n);
        if (n < off || is_tag(rd16(f + off - 2))) return h;  // cut short inside a header
        h.ethertype = rd16(f + off - 2);
        h.valid = true;
        return h;
    }
    case DLT_LINUX_SLL: return fixed(f, n, 16, 14);
    case DLT_LINUX_SLL2: return fixed(f, n, 20, 0);
    case DLT_NULL:
    case DLT_LOOP: {
        LinkHeader h = fixed(f, n, 4, 0);
        if (h.valid) h.ethertype = family_type(f);
        return h;
    }
    case DLT_RAW:
    case DLT_IPV4:
    case DLT_IPV6: {
        LinkHeader h;
        if (n == 0) return h;
        h.ethertype = ip_version_type(f);
        h.valid = true;
        return h;
    }
    default: return {};
    }
}

}  // namespace packet
