#include "nse/lib/dnet.h"

#include <arpa/inet.h>
#include <dumbnet.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "nse/lib/luax.h"
#include "nse/runtime.h"

namespace nse::lib {
namespace {

constexpr const char* kDnetMeta = "nsefleet.dnet";
constexpr const char* kStateMeta = "nsefleet.dnet.state";
constexpr std::size_t kMaxDevice = 32;  // the contract's limit on interface names

// One libdumbnet Ethernet handle, shared by every dnet object of an engine that opened the
// same interface.
struct EthHandle {
    eth_t* eth = nullptr;
    ~EthHandle() {
        if (eth) eth_close(eth);
    }
};

// Per-engine state, a userdata in the registry: the open Ethernet handles by name.
struct DnetState {
    std::map<std::string, std::weak_ptr<EthHandle>> eths;
};

struct Dnet {
    std::shared_ptr<EthHandle> eth;
    int ip4 = -1;  // raw IPv4 socket (header included)
    int ip6 = -1;  // raw IPv6 socket, opened on the first IPv6 packet
    bool ip_open = false;
};

void close_ip(Dnet& d) {
    if (d.ip4 >= 0) ::close(d.ip4);
    if (d.ip6 >= 0) ::close(d.ip6);
    d.ip4 = d.ip6 = -1;
    d.ip_open = false;
}

void close_all(Dnet& d) {
    d.eth.reset();
    close_ip(d);
}

Dnet& check_dnet(lua_State* L) { return *static_cast<Dnet*>(luaL_checkudata(L, 1, kDnetMeta)); }

// [-0, +0] The engine's DnetState, created in the registry on first use.
DnetState& state(lua_State* L) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, kStateMeta) == LUA_TUSERDATA) {
        auto* s = static_cast<DnetState*>(lua_touserdata(L, -1));
        lua_pop(L, 1);
        return *s;
    }
    lua_pop(L, 1);
    DnetState& s = push_in_place<DnetState>(L, "nsefleet.dnet.state.meta");
    lua_setfield(L, LUA_REGISTRYINDEX, kStateMeta);
    return s;
}

// ARPHRD_ETHER per SIOCGIFHWADDR (answers for the caller's network namespace, unlike a
// cached interface list). Loopback is not Ethernet.
bool is_ethernet(const std::string& name) {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name.c_str(), std::min(name.size(), sizeof ifr.ifr_name - 1));
    bool ok = ::ioctl(fd, SIOCGIFHWADDR, &ifr) == 0 && ifr.ifr_hwaddr.sa_family == ARPHRD_ETHER;
    ::close(fd);
    return ok;
}

int l_ethernet_open(lua_State* L) {
    Dnet& d = check_dnet(L);
    std::size_t len = 0;
    const char* name = luaL_checklstring(L, 2, &len);
    if (len >= kMaxDevice) return luaL_argerror(L, 2, "device name too long");
    std::string dev(name, len);
    if (len == 0 || !is_ethernet(dev))
        return luaL_argerror(L, 2, "device is not valid ethernet interface");
    DnetState& st = state(L);
    std::shared_ptr<EthHandle> h = st.eths[dev].lock();
    if (!h) {
        h = std::make_shared<EthHandle>();
        h->eth = eth_open(dev.c_str());
        if (!h->eth)
            return luaL_error(L, "unable to open dnet on ethernet interface %s", dev.c_str());
        st.eths[dev] = h;
    }
    d.eth = std::move(h);
    lua_pushboolean(L, 1);
    return 1;
}

int l_ethernet_send(lua_State* L) {
    Dnet& d = check_dnet(L);
    std::size_t len = 0;
    const char* frame = luaL_checklstring(L, 2, &len);
    if (!d.eth) return luaL_error(L, "dnet ethernet interface is not open");
    ssize_t n = eth_send(d.eth->eth, frame, len);
    if (n < 0 || static_cast<std::size_t>(n) != len) {
        return fail_false(L, "eth_send error: " + std::to_string(n));
    }
    lua_pushboolean(L, 1);
    return 1;
}

int l_ethernet_close(lua_State* L) {
    check_dnet(L).eth.reset();
    lua_pushboolean(L, 1);
    return 1;
}

// A raw socket that takes whole IP packets; non-blocking, so a full send buffer is a
// failure result rather than a stalled engine.
int open_raw(int family) {
    return ::socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
}

int l_ip_open(lua_State* L) {
    Dnet& d = check_dnet(L);
    if (d.ip_open) {
        lua_pushboolean(L, 1);
        return 1;
    }
    int fd = open_raw(AF_INET);
    if (fd < 0) {
        int e = errno;
        return luaL_error(L, "failed to open raw socket: %s (errno %d)", std::strerror(e), e);
    }
    d.ip4 = fd;
    d.ip_open = true;
    lua_pushboolean(L, 1);
    return 1;
}

// [-0, +0] The destination argument: a host table (its `ip`) or an address string; nil
// when absent.
const char* dst_arg(lua_State* L, int idx) {
    if (lua_isnoneornil(L, idx)) return nullptr;
    if (lua_istable(L, idx)) {
        lua_getfield(L, idx, "ip");
        const char* ip = lua_tostring(L, -1);
        lua_pop(L, 1);  // the string stays reachable through the table
        if (!ip) luaL_argerror(L, idx, "host table lacks 'ip' field");
        return ip;
    }
    return luaL_checkstring(L, idx);
}

int send_failed(lua_State* L, const char* why) { return fail_false(L, why); }

int l_ip_send(lua_State* L) {
    Dnet& d = check_dnet(L);
    std::size_t len = 0;
    const auto* pkt = reinterpret_cast<const unsigned char*>(luaL_checklstring(L, 2, &len));
    const char* dst = dst_arg(L, 3);
    if (!d.ip_open) return luaL_error(L, "raw socket not open to send");
    int version = len > 0 ? pkt[0] >> 4 : 0;
    if (!((version == 4 && len >= 20) || (version == 6 && len >= 40)))
        return luaL_error(L, "can't parse ip packet");

    sockaddr_storage ss{};
    socklen_t sslen = 0;
    int fd = -1;
    if (version == 4) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
        sin->sin_family = AF_INET;
        if (dst) {
            if (inet_pton(AF_INET, dst, &sin->sin_addr) != 1)
                return send_failed(L, "destination is not an IPv4 address");
        } else {
            std::memcpy(&sin->sin_addr, pkt + 16, 4);
        }
        sslen = sizeof *sin;
        fd = d.ip4;
    } else {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
        sin6->sin6_family = AF_INET6;
        if (dst) {
            if (inet_pton(AF_INET6, dst, &sin6->sin6_addr) != 1)
                return send_failed(L, "destination is not an IPv6 address");
        } else {
            std::memcpy(&sin6->sin6_addr, pkt + 24, 16);
        }
        sslen = sizeof *sin6;
        if (d.ip6 < 0) d.ip6 = open_raw(AF_INET6);
        if (d.ip6 < 0) return send_failed(L, std::strerror(errno));
        fd = d.ip6;
    }
    ssize_t n = ::sendto(fd, pkt, len, 0, reinterpret_cast<sockaddr*>(&ss), sslen);
    if (n < 0) return send_failed(L, std::strerror(errno));
    lua_pushboolean(L, 1);
    return 1;
}

int l_ip_close(lua_State* L) {
    Dnet& d = check_dnet(L);
    if (!d.ip_open) return send_failed(L, "raw socket already closed");
    close_ip(d);
    lua_pushboolean(L, 1);
    return 1;
}

// __gc and __close: idempotent. Lua frees the block without destructors, so closing must
// leave nothing owned in it (the shared_ptr ends empty).
int m_close(lua_State* L) {
    close_all(check_dnet(L));
    return 0;
}

const luaL_Reg kMethods[] = {
    {"ethernet_open", nse::guard<l_ethernet_open>},
    {"ethernet_send", nse::guard<l_ethernet_send>},
    {"ethernet_close", nse::guard<l_ethernet_close>},
    {"ip_open", nse::guard<l_ip_open>},
    {"ip_send", nse::guard<l_ip_send>},
    {"ip_close", nse::guard<l_ip_close>},
    {nullptr, nullptr},
};

}  // namespace

int new_dnet(lua_State* L) {
    // Created closed: no handle is acquired before the userdata exists.
    auto* d = static_cast<Dnet*>(lua_newuserdatauv(L, sizeof(Dnet), 0));
    new (d) Dnet();
    if (luaL_newmetatable(L, kDnetMeta)) {
        lua_createtable(L, 0, 6);
        luaL_setfuncs(L, kMethods, 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "__index");
        lua_setfield(L, -2, "__metatable");  // protected: getmetatable gives the methods
        lua_pushcfunction(L, m_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, m_close);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    return 1;
}

}  // namespace nse::lib
