#include "worker/route.h"

#include <arpa/inet.h>
#include <dumbnet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "common/packet/interface.h"

namespace worker {

namespace {

// Same network as one of the interface's prefixes?
bool on_link(const sockaddr* addr, const sockaddr* mask, const void* target, bool v6) {
    const auto* a = static_cast<const unsigned char*>(
        v6 ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr)
           : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(addr)->sin_addr));
    const auto* m = static_cast<const unsigned char*>(
        v6 ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(mask)->sin6_addr)
           : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(mask)->sin_addr));
    const auto* t = static_cast<const unsigned char*>(target);
    for (int i = 0; i < (v6 ? 16 : 4); ++i)
        if ((a[i] & m[i]) != (t[i] & m[i])) return false;
    return true;
}

}  // namespace

std::string interface_mac(const std::string& name) {
    auto mac = packet::interface_mac(name);
    if (!mac || *mac == packet::Mac{}) return "";  // loopback's all-zero address is no MAC
    return packet::mac_text(mac->data());
}

void fill_route(common::HostResult& h) {
    int fam = h.ipv6 ? AF_INET6 : AF_INET;
    sockaddr_storage dst{};
    socklen_t len;
    unsigned char target[16];
    if (inet_pton(fam, h.address.c_str(), target) != 1) return;
    if (h.ipv6) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&dst);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(9);
        std::memcpy(&s6->sin6_addr, target, 16);
        len = sizeof *s6;
    } else {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&dst);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(9);
        std::memcpy(&s4->sin_addr, target, 4);
        len = sizeof *s4;
    }
    int fd = socket(fam, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    sockaddr_storage src{};
    socklen_t slen = sizeof src;
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&dst), len) == 0 &&
              getsockname(fd, reinterpret_cast<sockaddr*>(&src), &slen) == 0;
    close(fd);
    if (!ok) return;
    char buf[INET6_ADDRSTRLEN];
    const void* sa =
        h.ipv6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&src)->sin6_addr)
               : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&src)->sin_addr);
    if (!inet_ntop(fam, sa, buf, sizeof buf)) return;
    std::string source = buf;

    ifaddrs* all = nullptr;
    if (getifaddrs(&all) != 0) return;
    for (ifaddrs* a = all; a; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != fam) continue;
        const void* ia =
            h.ipv6
                ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr)
                : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr);
        if (std::memcmp(ia, sa, h.ipv6 ? 16 : 4) != 0) continue;
        h.interface = a->ifa_name;
        h.interface_mtu = packet::interface_mtu(h.interface);
        h.source_address = source;
        h.directly_connected =
            (a->ifa_flags & IFF_LOOPBACK) ||
            (a->ifa_netmask && on_link(a->ifa_addr, a->ifa_netmask, target, h.ipv6));
        break;
    }
    freeifaddrs(all);
}

std::optional<in_addr> ipv4_next_hop(in_addr target, bool on_link) {
    if (on_link) return target;
    route_t* r = route_open();
    if (!r) return std::nullopt;
    route_entry e{};
    addr_pack(&e.route_dst, ADDR_TYPE_IP, IP_ADDR_BITS, &target.s_addr, IP_ADDR_LEN);
    std::optional<in_addr> gw;
    if (route_get(r, &e) == 0 && e.route_gw.addr_type == ADDR_TYPE_IP && e.route_gw.addr_ip != 0) {
        in_addr a{};
        a.s_addr = e.route_gw.addr_ip;
        gw = a;
    }
    route_close(r);
    return gw;
}

std::optional<packet::Mac> cached_neighbor_mac(in_addr addr) {
    arp_t* a = arp_open();
    if (!a) return std::nullopt;
    arp_entry e{};
    addr_pack(&e.arp_pa, ADDR_TYPE_IP, IP_ADDR_BITS, &addr.s_addr, IP_ADDR_LEN);
    std::optional<packet::Mac> mac;
    if (arp_get(a, &e) == 0 && e.arp_ha.addr_type == ADDR_TYPE_ETH) {
        packet::Mac m{};
        std::memcpy(m.data(), e.arp_ha.addr_eth.data, m.size());
        if (m != packet::Mac{}) mac = m;  // an incomplete entry has no address yet
    }
    arp_close(a);
    return mac;
}

}  // namespace worker
