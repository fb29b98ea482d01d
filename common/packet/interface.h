#pragma once
// Facts about a local network interface, as the kernel publishes them under /sys/class/net
// (the only place nsefleet reads that tree). Each answers for the caller's network namespace
// at the time of the call; nothing is cached.
#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace packet {

using Mac = std::array<std::uint8_t, 6>;

// Interface index (if_nametoindex's number); 0 when unknown.
unsigned interface_index(const std::string& name);

// Hardware type, an ARPHRD_* value (1: Ethernet, 772: loopback); -1 when unknown.
int interface_type(const std::string& name);

// MTU in bytes; 0 when unknown.
int interface_mtu(const std::string& name);

// IFF_* flags (IFF_UP, IFF_LOOPBACK, ...); 0 when unknown.
unsigned interface_flags(const std::string& name);

// The hardware address when it is a 6-byte one (Ethernet, loopback's all-zero address);
// nullopt when the interface has none or another kind.
std::optional<Mac> interface_mac(const std::string& name);

// "AA:BB:CC:DD:EE:FF".
std::string mac_text(const std::uint8_t* mac);

}  // namespace packet
