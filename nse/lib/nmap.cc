// The `nmap` module: run-time facts, host/port data, registry, mutexes, condvars, new_try.
#include "nse/lib/nmap.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <openssl/rand.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/packet/interface.h"
#include "common/packet/privilege.h"
#include "nse/lib/dnet.h"
#include "nse/lib/luax.h"
#include "nse/lib/socket.h"
#include "nse/runtime.h"

namespace nse::lib {

namespace {

// Module state, kept as the first upvalue of every function (never a global: several engines
// live in one process).
struct NmapState {
    // (mutex key, owner coroutine id) → cleanup that releases it if the thread dies.
    std::map<std::pair<std::string, std::uint64_t>, CleanupId> held;
    // (base thread id, condvar key) pairs that already broadcast on thread end.
    std::set<std::pair<std::uint64_t, std::string>> cv_guards;
    std::vector<std::pair<int, int>> excluded;  // port ranges from nmap-service-probes
    bool excluded_loaded = false;
};

const char* const kStateMeta = "nsefleet.nmapstate";

NmapState& state(lua_State* L) {
    return *static_cast<NmapState*>(lua_touserdata(L, lua_upvalueindex(1)));
}

// ---- run-time information

// The embedder's clock (so a fake embedder controls it in tests).
int l_clock(lua_State* L) {
    lua_pushnumber(L, std::floor(runtime(L).embedder().now() * 1e6) / 1e6);
    return 1;
}

int l_clock_ms(lua_State* L) {
    lua_pushnumber(L, std::ceil(runtime(L).embedder().now() * 1000.0));
    return 1;
}

int l_debugging(lua_State* L) {
    lua_pushinteger(L, runtime(L).debugging());
    return 1;
}

int l_verbosity(lua_State* L) {
    auto& rt = runtime(L);
    const ThreadInfo* t = rt.current();
    lua_pushinteger(L, rt.verbosity() + (t && t->by_name ? 1 : 0));
    return 1;
}

int l_version_intensity(lua_State* L) {
    const ThreadInfo* t = runtime(L).current();
    if (t && t->by_name) {
        lua_pushinteger(L, 9);
        return 1;
    }
    lua_Integer v = runtime(L).version_intensity();
    lua_getfield(L, lua_upvalueindex(2), "registry");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "args");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "script-intensity");
            if (lua_isstring(L, -1)) {
                int isnum = 0;
                lua_Integer x = lua_tointegerx(L, -1, &isnum);
                if (isnum) v = x;
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushinteger(L, v);
    return 1;
}

int l_timing_level(lua_State* L) {
    lua_pushinteger(L, runtime(L).timing_level());
    return 1;
}

// Scripts read "privileged" as "may send raw packets and capture": the same check as the
// worker's choice of a raw port scan (common/packet/privilege.h).
int l_is_privileged(lua_State* L) {
    lua_pushboolean(L, packet::raw_privileged());
    return 1;
}

int l_have_ssl(lua_State* L) {
    lua_pushboolean(L, 1);
    return 1;
}

int l_address_family(lua_State* L) {
    lua_pushstring(L, runtime(L).ipv6() ? "inet6" : "inet");
    return 1;
}

int l_get_ttl(lua_State* L) {
    lua_pushinteger(L, 64);
    return 1;
}

int l_get_payload_length(lua_State* L) {
    lua_pushinteger(L, 0);
    return 1;
}

int l_get_interface(lua_State* L) {
    const std::string& e = runtime(L).iface();
    if (e.empty()) return 0;
    lua_pushstring(L, e.c_str());
    return 1;
}

int l_get_dns_servers(lua_State* L) {
    lua_newtable(L);
    std::ifstream in("/etc/resolv.conf");
    std::string line;
    lua_Integer n = 0;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string word, addr;
        if (ls >> word >> addr && word == "nameserver") {
            lua_pushstring(L, addr.c_str());
            lua_rawseti(L, -2, ++n);
        }
    }
    return 1;
}

int l_fetchfile(lua_State* L) {
    auto p = runtime(L).datafiles().find_file(luaL_checkstring(L, 1));
    if (!p) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, p->data(), p->size());
    return 1;
}

int l_log_write(lua_State* L) {
    static const char* const where[] = {"stdout", "stderr", nullptr};
    int w = luaL_checkoption(L, 1, nullptr, where);
    std::size_t n;
    const char* msg = luaL_checklstring(L, 2, &n);
    runtime(L).embedder().write(w == 1, "NSE: " + std::string(msg, n) + "\n");
    return 0;
}

int l_get_random_bytes(lua_State* L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 0) return luaL_error(L, "Invalid length argument to get_random_bytes.");
    std::string buf(static_cast<std::size_t>(n), '\0');
    if (n > 0) RAND_bytes(reinterpret_cast<unsigned char*>(buf.data()), static_cast<int>(n));
    lua_pushlstring(L, buf.data(), buf.size());
    return 1;
}

// ---- hosts and ports

// The engine's record for the host table at `idx`; raises like nmap when unknown.
common::HostResult& check_host(lua_State* L, int idx) {
    luaL_checktype(L, idx, LUA_TTABLE);
    auto& rt = runtime(L);
    lua_getfield(L, idx, "ip");
    lua_getfield(L, idx, "targetname");
    const char* ip = lua_tostring(L, -2);
    const char* name = lua_tostring(L, -1);
    if (!ip && !name) luaL_error(L, "host table does not have a 'ip' or 'targetname' field");
    common::HostResult* h = ip ? rt.find_host(ip) : nullptr;
    if (!h && name) h = rt.find_host(name);
    lua_pop(L, 2);
    if (!h) luaL_argerror(L, idx, "host is not being processed right now");
    return *h;
}

// Port number and protocol of the port table at `idx`, validated as nmap does.
std::pair<int, std::string> check_port(lua_State* L, int idx) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "number");
    if (!lua_isinteger(L, -1)) luaL_error(L, "port 'number' field must be an integer");
    int number = static_cast<int>(lua_tointeger(L, -1));
    lua_getfield(L, idx, "protocol");
    if (!lua_isstring(L, -1)) luaL_error(L, "port 'protocol' field must be a string");
    std::string proto = lua_tostring(L, -1);
    if (proto != "tcp" && proto != "udp" && proto != "sctp")
        luaL_error(L, "port 'protocol' field must be \"udp\", \"sctp\" or \"tcp\"");
    lua_pop(L, 2);
    return {number, proto};
}

common::PortResult* find_port(common::HostResult& h, int number, const std::string& proto) {
    for (auto& p : h.ports)
        if (p.number == number && p.protocol == proto) return &p;
    return nullptr;
}

void set_str(lua_State* L, const char* k, const std::string& v) {
    if (v.empty()) return;
    lua_pushlstring(L, v.data(), v.size());
    lua_setfield(L, -2, k);
}

int l_get_port_state(lua_State* L) {
    auto& h = check_host(L, 1);
    auto [number, proto] = check_port(L, 2);
    auto* p = find_port(h, number, proto);
    if (!p) return 0;
    push_port(L, *p);
    return 1;
}

int l_get_ports(lua_State* L) {
    auto& h = check_host(L, 1);
    static const char* const protos[] = {"tcp", "udp", "sctp", nullptr};
    static const char* const states[] = {"open",          "filtered",        "unfiltered", "closed",
                                         "open|filtered", "closed|filtered", nullptr};
    std::string proto = protos[luaL_checkoption(L, 3, nullptr, protos)];
    std::string st = states[luaL_checkoption(L, 4, nullptr, states)];
    std::vector<const common::PortResult*> match;
    for (const auto& p : h.ports)
        if (p.protocol == proto && p.state == st) match.push_back(&p);
    std::sort(match.begin(), match.end(),
              [](const auto* a, const auto* b) { return a->number < b->number; });
    std::size_t start = 0;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "number");
        int prev = static_cast<int>(lua_tointeger(L, -1));
        lua_pop(L, 1);
        for (std::size_t i = 0; i < match.size(); ++i)
            if (match[i]->number == prev) start = i + 1;
    }
    if (start >= match.size()) return 0;
    push_port(L, *match[start]);
    return 1;
}

int l_set_port_state(lua_State* L) {
    auto& h = check_host(L, 1);
    auto [number, proto] = check_port(L, 2);
    static const char* const states[] = {"open", "closed", nullptr};
    std::string st = states[luaL_checkoption(L, 3, nullptr, states)];
    auto* p = find_port(h, number, proto);
    if (p && p->state != st) {
        p->state = st;
        p->reason = "script-set";
    }
    return 0;
}

// Replaces non-printable bytes and caps the length, as nmap stores service fields.
std::string clean(const char* s, std::size_t max) {
    std::string out;
    for (const char* c = s; *c && out.size() < max; ++c)
        out += (static_cast<unsigned char>(*c) >= 0x20 && static_cast<unsigned char>(*c) < 0x7f)
                   ? *c
                   : '.';
    return out;
}

int l_set_port_version(lua_State* L) {
    auto& h = check_host(L, 1);
    auto [number, proto] = check_port(L, 2);
    static const char* const probestates[] = {"hardmatched", "softmatched", "nomatch",
                                              "tcpwrapped",  "incomplete",  nullptr};
    int ps = luaL_checkoption(L, 3, "hardmatched", probestates);
    lua_getfield(L, 2, "version");
    if (!lua_istable(L, -1)) luaL_error(L, "port 'version' field must be a table");
    int v = lua_gettop(L);
    auto field = [&](const char* k, std::size_t max) {
        lua_getfield(L, v, k);
        std::string s = lua_isstring(L, -1) ? clean(lua_tostring(L, -1), max) : "";
        lua_pop(L, 1);
        return s;
    };
    common::ServiceInfo si;
    si.name = field("name", 80);
    si.product = field("product", 80);
    si.version = field("version", 80);
    si.extrainfo = field("extrainfo", 256);
    si.hostname = field("hostname", 80);
    si.ostype = field("ostype", 32);
    si.devicetype = field("devicetype", 32);
    std::string fp = field("service_fp", 4096);
    lua_getfield(L, v, "service_tunnel");
    if (!lua_isnil(L, -1)) {
        std::string t = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
        if (t != "none" && t != "ssl")
            luaL_argerror(L, 2, "invalid value for port.version.service_tunnel");
        if (t == "ssl") si.tunnel = "ssl";
    }
    lua_pop(L, 1);
    lua_getfield(L, v, "cpe");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1)) luaL_error(L, "port.version 'cpe' field must be a table");
        for (lua_Integer i = 1;; ++i) {
            lua_rawgeti(L, -1, i);
            if (!lua_isstring(L, -1)) {
                lua_pop(L, 1);
                break;
            }
            si.cpe.push_back(clean(lua_tostring(L, -1), 80));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2);
    auto* p = find_port(h, number, proto);
    if (!p) return 0;
    if (ps <= 1) {
        si.method = "probed";
        si.conf = 10;
    } else if (ps == 3) {
        si.method = "probed";
        si.conf = 8;
        if (si.name.empty()) si.name = "tcpwrapped";
    } else {
        si.method = "table";
        si.conf = 3;
        if (si.name.empty()) si.name = p->service.name;
    }
    if (ps != 0) si.servicefp = fp;
    p->service = std::move(si);
    return 0;
}

void load_excluded(NmapState& st, Runtime& rt) {
    st.excluded_loaded = true;
    auto path = rt.datafiles().find_file("nmap-service-probes");
    if (!path) return;
    std::ifstream in(*path);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("Exclude ", 0) != 0) continue;
        std::stringstream ss(line.substr(8));
        std::string item;
        while (std::getline(ss, item, ',')) {
            if (item.rfind("T:", 0) == 0)
                item = item.substr(2);
            else if (item.rfind("U:", 0) == 0)
                item = item.substr(2);
            auto dash = item.find('-');
            try {
                int a = std::stoi(item.substr(0, dash));
                int b = dash == std::string::npos ? a : std::stoi(item.substr(dash + 1));
                st.excluded.emplace_back(a, b);
            } catch (const std::exception&) {
            }
        }
    }
}

int l_port_is_excluded(lua_State* L) {
    lua_Integer port = luaL_checkinteger(L, 1);
    luaL_checkstring(L, 2);
    auto& st = state(L);
    if (!st.excluded_loaded) load_excluded(st, runtime(L));
    bool ex = false;
    for (auto [a, b] : st.excluded)
        ex = ex || (port >= a && port <= b);
    lua_pushboolean(L, ex);
    return 1;
}

int l_resolve(lua_State* L) {
    const char* name = luaL_checkstring(L, 1);
    static const char* const fams[] = {"inet", "inet6", "unspec", nullptr};
    int fam = luaL_checkoption(L, 2, "unspec", fams);
    addrinfo hints{};
    hints.ai_family = fam == 0 ? AF_INET : fam == 1 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(name, nullptr, &hints, &res) != 0 || !res) {
        return fail_false(L, "Failed to resolve");
    }
    lua_pushboolean(L, 1);
    lua_newtable(L);
    lua_Integer n = 0;
    std::set<std::string> seen;
    for (addrinfo* a = res; a; a = a->ai_next) {
        char buf[INET6_ADDRSTRLEN];
        if (getnameinfo(a->ai_addr, a->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST))
            continue;
        if (!seen.insert(buf).second) continue;
        lua_pushstring(L, buf);
        lua_rawseti(L, -2, ++n);
    }
    freeaddrinfo(res);
    return 2;
}

int l_add_targets(lua_State* L) {
    auto& emb = runtime(L).embedder();
    int n = lua_gettop(L);
    if (n == 0) {
        lua_pushinteger(L, static_cast<lua_Integer>(emb.targets_pending()));
        return 1;
    }
    std::vector<std::string> specs;
    for (int i = 1; i <= n; ++i)
        specs.emplace_back(luaL_checkstring(L, i));
    std::size_t added = emb.add_targets(specs);
    lua_pushinteger(L, static_cast<lua_Integer>(added));
    if (added == 0) {
        lua_pushstring(L, "failed to add new targets.");
        return 2;
    }
    return 1;
}

int l_new_targets_num(lua_State* L) {
    lua_pushinteger(L, static_cast<lua_Integer>(runtime(L).embedder().targets_added()));
    return 1;
}

// ---- interfaces

const char* link_type(unsigned flags, const std::string& name) {
    if (flags & IFF_LOOPBACK) return "loopback";
    if (flags & IFF_POINTOPOINT) return "p2p";
    if (packet::interface_type(name) == 1) return "ethernet";  // ARPHRD_ETHER
    return "other";
}

// The 6 raw bytes of the interface's MAC, "" when it has none.
std::string mac_of(const std::string& name) {
    auto mac = packet::interface_mac(name);
    return mac ? std::string(mac->begin(), mac->end()) : std::string();
}

int prefix_len(const sockaddr* mask) {
    if (!mask) return 0;
    int bits = 0;
    const unsigned char* b;
    std::size_t n;
    if (mask->sa_family == AF_INET) {
        b = reinterpret_cast<const unsigned char*>(
            &reinterpret_cast<const sockaddr_in*>(mask)->sin_addr);
        n = 4;
    } else {
        b = reinterpret_cast<const unsigned char*>(
            &reinterpret_cast<const sockaddr_in6*>(mask)->sin6_addr);
        n = 16;
    }
    for (std::size_t i = 0; i < n; ++i)
        bits += __builtin_popcount(b[i]);
    return bits;
}

std::string addr_text(const sockaddr* sa) {
    char buf[INET6_ADDRSTRLEN] = "";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
    else
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
    return buf;
}

// [-0, +1] one interface table (docs/runtime-contract.md "Targets, resolution and interfaces").
void push_iface(lua_State* L, const ifaddrs* ifa) {
    std::string name = ifa->ifa_name;
    lua_newtable(L);
    set_str(L, "device", name);
    set_str(L, "shortname", name);
    lua_pushinteger(L, prefix_len(ifa->ifa_netmask));
    lua_setfield(L, -2, "netmask");
    set_str(L, "address", addr_text(ifa->ifa_addr));
    const char* link = link_type(ifa->ifa_flags, name);
    lua_pushstring(L, link);
    lua_setfield(L, -2, "link");
    if (std::strcmp(link, "ethernet") == 0) {
        set_str(L, "mac", mac_of(name));
        if (ifa->ifa_addr->sa_family == AF_INET && ifa->ifa_broadaddr)
            set_str(L, "broadcast", addr_text(ifa->ifa_broadaddr));
    }
    lua_pushstring(L, (ifa->ifa_flags & IFF_UP) ? "up" : "down");
    lua_setfield(L, -2, "up");
    lua_pushinteger(L, packet::interface_mtu(name));
    lua_setfield(L, -2, "mtu");
}

int l_list_interfaces(lua_State* L) {
    ifaddrs* all = nullptr;
    if (getifaddrs(&all) != 0) {
        return fail_false(L, std::strerror(errno));
    }
    lua_newtable(L);
    lua_Integer n = 0;
    for (ifaddrs* a = all; a; a = a->ifa_next) {
        if (!a->ifa_addr ||
            (a->ifa_addr->sa_family != AF_INET && a->ifa_addr->sa_family != AF_INET6))
            continue;
        push_iface(L, a);
        lua_rawseti(L, -2, ++n);
    }
    freeifaddrs(all);
    return 1;
}

int l_get_interface_info(lua_State* L) {
    std::string want = luaL_checkstring(L, 1);
    int fam = runtime(L).ipv6() ? AF_INET6 : AF_INET;
    ifaddrs* all = nullptr;
    if (getifaddrs(&all) == 0) {
        for (ifaddrs* a = all; a; a = a->ifa_next) {
            if (a->ifa_addr && a->ifa_addr->sa_family == fam && want == a->ifa_name) {
                push_iface(L, a);
                freeifaddrs(all);
                return 1;
            }
        }
        freeifaddrs(all);
    }
    return fail_false(L, "failed to find interface");
}

int l_get_interface_link(lua_State* L) {
    std::string want = luaL_checkstring(L, 1);
    ifaddrs* all = nullptr;
    if (getifaddrs(&all) != 0) return 0;
    const char* link = nullptr;
    for (ifaddrs* a = all; a && !link; a = a->ifa_next)
        if (want == a->ifa_name) link = link_type(a->ifa_flags, want);
    freeifaddrs(all);
    if (!link) return 0;
    lua_pushstring(L, link);
    return 1;
}

// ---- synchronisation

// Key of a mutex/condvar: strings by value, other objects by identity.
std::string sync_key(lua_State* L, int idx, Runtime& rt) {
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        std::size_t n;
        const char* s = lua_tolstring(L, idx, &n);
        // The fleet's lock service takes bounded keys; misuse raises.
        if (n + 2 > kMaxSharedKeyBytes)
            luaL_argerror(L, idx, "key too long for a mutex or condition variable");
        return "s:" + std::string(s, n);
    }
    case LUA_TTABLE:
    case LUA_TFUNCTION:
    case LUA_TUSERDATA:
    case LUA_TTHREAD:
    case LUA_TLIGHTUSERDATA: {
        char buf[64];
        std::snprintf(buf, sizeof buf, "o:%llu:%p", static_cast<unsigned long long>(rt.engine_id()),
                      lua_topointer(L, idx));
        return buf;
    }
    default: luaL_argerror(L, idx, "object expected"); return "";
    }
}

// The closure-producing part shared by mutex and condvar: looks `key` up in the weak cache
// (upvalue 2 of the factory) and else builds a closure of `op` over (state, key text, key).
int cached_closure(lua_State* L, lua_CFunction op, const std::string& key) {
    lua_pushvalue(L, 1);
    lua_rawget(L, lua_upvalueindex(2));
    if (lua_isfunction(L, -1)) return 1;
    lua_pop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushlstring(L, key.data(), key.size());
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, op, 3);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, lua_upvalueindex(2));
    return 1;
}

int mutex_op(lua_State* L) {
    static const char* const ops[] = {"lock", "trylock", "done", "running", nullptr};
    int op = luaL_checkoption(L, 1, nullptr, ops);
    auto& st = state(L);
    auto& rt = runtime(L);
    std::string key = lua_tostring(L, lua_upvalueindex(2));
    Owner me{rt.engine_id(), rt.coroutine_id(L)};
    std::uint64_t tid = rt.current() ? rt.current()->id : 0;
    auto hold = [&]() {
        SharedState* shared = &rt.shared();
        auto* held = &st.held;
        auto* r = &rt;
        auto k = std::make_pair(key, me.id);
        rt.note_lock(tid, +1);
        st.held[k] = rt.add_cleanup(L, [shared, held, k, key, me, r, tid]() {
            held->erase(k);
            r->note_lock(tid, -1);
            shared->mutex_abandon(key, me);
        });
    };
    switch (op) {
    // Release consistency (docs/fleet.md): the holder sees every registry change published
    // by earlier holders, and publishes its own before the next one is granted.
    case 0: {  // lock
        if (rt.shared().mutex_trylock(key, me)) {
            hold();
            rt.registry_refresh();
            return 0;
        }
        Waker w = rt.prepare_wait(L);
        hold();
        asio::io_context* io = &rt.io();
        Runtime* r = &rt;
        rt.shared().mutex_lock(key, me, [io, w, r]() {
            asio::post(*io, [w, r]() {
                w.wake([r](lua_State*) {
                    r->registry_refresh();
                    return 0;
                });
            });
        });
        return yield(L);
    }
    case 1: {  // trylock
        bool ok = rt.shared().mutex_trylock(key, me);
        if (ok) {
            hold();
            rt.registry_refresh();
        }
        lua_pushboolean(L, ok);
        return 1;
    }
    case 2: {  // done
        if (st.held.count({key, me.id})) rt.registry_publish();
        if (!rt.shared().mutex_unlock(key, me))
            return luaL_error(L, "do not have a lock on this mutex");
        auto it = st.held.find({key, me.id});
        if (it != st.held.end()) {
            rt.remove_cleanup(it->second);
            st.held.erase(it);
            rt.note_lock(tid, -1);
        }
        return 0;
    }
    default: {  // running
        auto owner = rt.shared().mutex_owner(key);
        lua_pushnil(L);
        if (!owner || owner->engine != rt.engine_id()) return 1;
        if (luaL_getsubtable(L, LUA_REGISTRYINDEX, kCoroutinesById) == 0) return 1;
        lua_rawgeti(L, -1, static_cast<lua_Integer>(owner->id));
        return 1;
    }
    }
}

int l_mutex(lua_State* L) {
    luaL_checkany(L, 1);
    std::string key = sync_key(L, 1, runtime(L));
    return cached_closure(L, guard<mutex_op>, key);
}

int condvar_wait_done(lua_State* L, int, lua_KContext ctx) {
    runtime(L).remove_cleanup(static_cast<CleanupId>(ctx));
    return 0;
}

int condvar_op(lua_State* L) {
    static const char* const ops[] = {"wait", "signal", "broadcast", nullptr};
    int op = luaL_checkoption(L, 1, nullptr, ops);
    auto& rt = runtime(L);
    std::string key = lua_tostring(L, lua_upvalueindex(2));
    if (op == 0) {
        Owner me{rt.engine_id(), rt.coroutine_id(L)};
        Waker w = rt.prepare_wait(L);
        SharedState* shared = &rt.shared();
        CleanupId id = rt.add_cleanup(L, [shared, key, me]() { shared->condvar_cancel(key, me); });
        asio::io_context* io = &rt.io();
        rt.shared().condvar_wait(key, me, [io, w]() { asio::post(*io, [w]() { w.wake(); }); });
        return yield(L, static_cast<lua_KContext>(id), condvar_wait_done);
    }
    if (op == 1)
        rt.shared().condvar_signal(key);
    else
        rt.shared().condvar_broadcast(key);
    return 0;
}

int l_condvar(lua_State* L) {
    luaL_checkany(L, 1);
    auto& rt = runtime(L);
    std::string key = sync_key(L, 1, rt);
    // A thread that dies broadcasts every condvar it touched, so pools never hang on it.
    if (const ThreadInfo* t = rt.current()) {
        auto& guards = state(L).cv_guards;
        auto g = std::make_pair(t->id, key);
        if (guards.insert(g).second) {
            SharedState* shared = &rt.shared();
            rt.add_cleanup(L, [shared, key, g, &guards]() {
                guards.erase(g);
                shared->condvar_broadcast(key);
            });
        }
    }
    return cached_closure(L, guard<condvar_op>, key);
}

// ---- new_try

int try_raise(lua_State* L, int, lua_KContext) {
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "nmap.new_try");
    lua_setfield(L, -2, "errtype");
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "message");
    return lua_error(L);
}

int try_call(lua_State* L) {
    int n = lua_gettop(L);
    if (n >= 1 && lua_toboolean(L, 1)) {
        if (!lua_isboolean(L, 1)) {
            runtime(L).embedder().write(
                true, "finalizing a non-conforming function that did not first return a boolean\n");
        }
        return n - 1;
    }
    lua_settop(L, 2);
    if (lua_isfunction(L, lua_upvalueindex(1))) {
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_callk(L, 0, 0, 0, try_raise);  // the handler may yield
    }
    return try_raise(L, LUA_OK, 0);
}

int l_new_try(lua_State* L) {
    lua_settop(L, 1);
    lua_pushcclosure(L, try_call, 1);
    return 1;
}

}  // namespace

void push_port(lua_State* L, const common::PortResult& p) {
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, p.number);
    lua_setfield(L, -2, "number");
    set_str(L, "protocol", p.protocol);
    set_str(L, "state", p.state);
    set_str(L, "reason", p.reason);
    lua_pushinteger(L, p.reason_ttl);
    lua_setfield(L, -2, "reason_ttl");
    set_str(L, "service", p.service.name);
    const auto& s = p.service;
    lua_createtable(L, 0, 12);
    set_str(L, "name", s.name);
    lua_pushnumber(L, static_cast<lua_Number>(s.conf));
    lua_setfield(L, -2, "name_confidence");
    set_str(L, "product", s.product);
    set_str(L, "version", s.version);
    set_str(L, "extrainfo", s.extrainfo);
    set_str(L, "hostname", s.hostname);
    set_str(L, "ostype", s.ostype);
    set_str(L, "devicetype", s.devicetype);
    lua_pushstring(L, s.tunnel == "ssl" ? "ssl" : "none");
    lua_setfield(L, -2, "service_tunnel");
    set_str(L, "service_fp", s.servicefp);
    lua_pushstring(L, s.method == "probed" ? "probed" : "table");
    lua_setfield(L, -2, "service_dtype");
    lua_createtable(L, static_cast<int>(s.cpe.size()), 0);
    for (std::size_t i = 0; i < s.cpe.size(); ++i) {
        lua_pushstring(L, s.cpe[i].c_str());
        lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
    }
    lua_setfield(L, -2, "cpe");
    lua_setfield(L, -2, "version");
}

void push_host(lua_State* L, const common::HostResult& h, int registry) {
    registry = lua_absindex(L, registry);
    lua_createtable(L, 0, 12);
    set_str(L, "ip", h.address);
    lua_pushstring(L, h.hostname.c_str());
    lua_setfield(L, -2, "name");
    set_str(L, "targetname", h.targetname);
    set_str(L, "reason", h.reason);
    lua_pushinteger(L, h.reason_ttl);
    lua_setfield(L, -2, "reason_ttl");
    unsigned char bin[16];
    bool v6 = h.ipv6;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, h.address.c_str(), bin) == 1) {
        lua_pushlstring(L, reinterpret_cast<char*>(bin), v6 ? 16 : 4);
        lua_setfield(L, -2, "bin_ip");
    }
    // Route facts only when the scan knew them (nmap leaves them out with -sT -Pn).
    if (!h.interface.empty()) {
        lua_pushstring(L, h.interface.c_str());
        lua_setfield(L, -2, "interface");
        lua_pushboolean(L, h.directly_connected);
        lua_setfield(L, -2, "directly_connected");
        unsigned char src[16];
        if (!h.source_address.empty() &&
            inet_pton(v6 ? AF_INET6 : AF_INET, h.source_address.c_str(), src) == 1) {
            lua_pushlstring(L, reinterpret_cast<char*>(src), v6 ? 16 : 4);
            lua_setfield(L, -2, "bin_ip_src");
        }
    }
    lua_pushinteger(L, h.interface_mtu);
    lua_setfield(L, -2, "interface_mtu");
    // MACs as 6 raw bytes, only when a raw scan learnt them.
    auto mac_bytes = [](const std::string& text) {
        std::string out;
        for (std::size_t i = 0; i + 1 < text.size() + 1 && out.size() < 6; i += 3)
            out += static_cast<char>(std::strtol(text.substr(i, 2).c_str(), nullptr, 16));
        return out;
    };
    if (h.mac_address.size() == 17) {
        std::string m = mac_bytes(h.mac_address);
        lua_pushlstring(L, m.data(), m.size());
        lua_setfield(L, -2, "mac_addr");
        lua_pushlstring(L, m.data(), m.size());
        lua_setfield(L, -2, "mac_addr_next_hop");
    }
    if (h.source_mac.size() == 17) {
        std::string m = mac_bytes(h.source_mac);
        lua_pushlstring(L, m.data(), m.size());
        lua_setfield(L, -2, "mac_addr_src");
    }
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, h.srtt);
    lua_setfield(L, -2, "srtt");
    // nmap's initial variance and its 100 ms floor on the timeout.
    double rttvar = std::max(0.005, h.srtt / 2);
    lua_pushnumber(L, rttvar);
    lua_setfield(L, -2, "rttvar");
    lua_pushnumber(L, std::max(0.1, h.srtt + 4 * rttvar));
    lua_setfield(L, -2, "timeout");
    lua_setfield(L, -2, "times");
    lua_pushvalue(L, registry);
    lua_setfield(L, -2, "registry");
}

int luaopen_nmap(lua_State* L) {
    const luaL_Reg funcs[] = {
        {"clock", guard<l_clock>},
        {"clock_ms", guard<l_clock_ms>},
        {"debugging", guard<l_debugging>},
        {"verbosity", guard<l_verbosity>},
        {"timing_level", guard<l_timing_level>},
        {"version_intensity", guard<l_version_intensity>},
        {"is_privileged", guard<l_is_privileged>},
        {"have_ssl", guard<l_have_ssl>},
        {"address_family", guard<l_address_family>},
        {"get_ttl", guard<l_get_ttl>},
        {"get_payload_length", guard<l_get_payload_length>},
        {"get_interface", guard<l_get_interface>},
        {"get_dns_servers", guard<l_get_dns_servers>},
        {"fetchfile", guard<l_fetchfile>},
        {"log_write", guard<l_log_write>},
        {"get_random_bytes", guard<l_get_random_bytes>},
        {"get_port_state", guard<l_get_port_state>},
        {"get_ports", guard<l_get_ports>},
        {"set_port_state", guard<l_set_port_state>},
        {"set_port_version", guard<l_set_port_version>},
        {"port_is_excluded", guard<l_port_is_excluded>},
        {"resolve", guard<l_resolve>},
        {"add_targets", guard<l_add_targets>},
        {"new_targets_num", guard<l_new_targets_num>},
        {"list_interfaces", guard<l_list_interfaces>},
        {"get_interface_info", guard<l_get_interface_info>},
        {"get_interface_link", guard<l_get_interface_link>},
        {"new_try", guard<l_new_try>},
        {"new_dnet", guard<new_dnet>},
        {nullptr, nullptr},
    };
    lua_newtable(L);  // module
    int mod = lua_gettop(L);
    // upvalue 1: module state
    push_in_place<NmapState>(L, kStateMeta);
    int st = lua_gettop(L);
    lua_pushvalue(L, mod);  // target table
    lua_pushvalue(L, st);
    lua_pushvalue(L, mod);  // upvalue 2: the module itself (version_intensity reads registry)
    luaL_setfuncs(L, funcs, 2);
    lua_pop(L, 1);

    // mutex and condvar: upvalue 2 is each one's weak cache of key → function.
    for (auto [name, fn] : {std::pair<const char*, lua_CFunction>{"mutex", guard<l_mutex>},
                            std::pair<const char*, lua_CFunction>{"condvar", guard<l_condvar>}}) {
        lua_pushvalue(L, st);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "v");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushcclosure(L, fn, 2);
        lua_setfield(L, mod, name);
    }
    lua_pop(L, 1);  // state

    lua_newtable(L);
    lua_setfield(L, mod, "registry");

    // nmap.socket and nmap.dnet (also reachable through require).
    open_socket(L);
    lua_getfield(L, -1, "new");
    lua_setfield(L, mod, "new_socket");
    lua_pushvalue(L, -1);
    lua_setfield(L, mod, "socket");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "nmap.socket");
    lua_pop(L, 2);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, guard<new_dnet>);
    lua_setfield(L, -2, "new");
    lua_getfield(L, mod, "get_interface_info");
    lua_setfield(L, -2, "get_interface_info");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "nmap.dnet");
    lua_pop(L, 1);
    lua_setfield(L, mod, "dnet");
    return 1;
}

}  // namespace nse::lib
