#include "common/packet/privilege.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace packet {

namespace {

bool can_open(int family, int type, int protocol) {
    int fd = ::socket(family, type | SOCK_CLOEXEC, protocol);
    if (fd < 0) return false;
    ::close(fd);
    return true;
}

}  // namespace

bool raw_privileged() {
    // Once per process: privileges do not change while nsefleet runs, and a process without
    // them need not have its refused socket calls audited on every nmap.is_privileged().
    static const bool privileged = can_open(AF_INET, SOCK_RAW, IPPROTO_RAW) &&
                                   can_open(AF_PACKET, SOCK_RAW, 0);  // 0: receives nothing
    return privileged;
}

}  // namespace packet
