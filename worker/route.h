#pragma once
// Which interface and source address reach a target, found the way the kernel would route it.
#include "common/result.h"

namespace worker {

// Fills h.interface, interface_mtu, directly_connected and source_address from the kernel's
// routing decision (a connected UDP socket: no packet is sent). Leaves them empty when the
// target has no route.
void fill_route(common::HostResult& h);

// The MAC address of a local interface ("AA:BB:CC:DD:EE:FF"), "" when it has none.
std::string interface_mac(const std::string& name);

}  // namespace worker
