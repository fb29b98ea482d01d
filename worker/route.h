#pragma once
// Which interface and source address reach a target, found the way the kernel would route it.
#include <netinet/in.h>

#include <optional>

#include "common/packet/interface.h"
#include "common/result.h"

namespace worker {

// Fills h.interface, interface_mtu, directly_connected and source_address from the kernel's
// routing decision (a connected UDP socket: no packet is sent). Leaves them empty when the
// target has no route.
void fill_route(common::HostResult& h);

// The MAC address of a local interface ("AA:BB:CC:DD:EE:FF"), "" when it has none.
std::string interface_mac(const std::string& name);

// The IPv4 next hop towards `target`: the target itself when `on_link`, else the gateway of
// the kernel's route to it. nullopt when the route has no gateway.
std::optional<in_addr> ipv4_next_hop(in_addr target, bool on_link);

// The hardware address the kernel's neighbour cache holds for `addr`, if it holds a complete one.
std::optional<packet::Mac> cached_neighbor_mac(in_addr addr);

}  // namespace worker
