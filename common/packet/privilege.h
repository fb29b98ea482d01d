#pragma once
// Whether this process may do raw packet I/O: the one privilege check behind
// nmap.is_privileged() and the raw port scanner's choice of -sS/-sU over a connect scan.

namespace packet {

// True when this process may send raw IP packets and capture frames, i.e. open a raw IPv4
// socket and a packet socket (root, or CAP_NET_RAW over the current network namespace).
// Decided once per process by opening (and closing) both kinds of socket: the kernel's own
// answer is more accurate than reasoning about uids and capability sets, which gets wrong
// root without CAP_NET_RAW (containers that drop it, a user namespace not owning the network
// namespace), a non-root process given CAP_NET_RAW alone (enough for both), and sockets
// refused by seccomp or a security module.
bool raw_privileged();

}  // namespace packet
