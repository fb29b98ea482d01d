// The `libssh2` Lua module (docs/runtime-contract.md "libssh2"): Debian's libssh2 in non-blocking
// mode on a TCP socket this module owns. Every libssh2 call is an "attempt" that either finishes or
// reports LIBSSH2_ERROR_EAGAIN; on EAGAIN the calling script thread waits (through the engine's one
// yield door) for the socket to become readable/writable, then the attempt runs again from a
// continuation. The engine thread never blocks.
#include "nse/lib/libssh2.h"

#include <libssh2.h>
#include <sys/socket.h>

#include <algorithm>
#include <asio.hpp>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

#include "nse/lib/luax.h"
#include "nse/runtime.h"

namespace nse::lib {
namespace {

constexpr const char* kSessionMeta = "nsefleet.libssh2.session";
constexpr const char* kChannelMeta = "nsefleet.libssh2.channel";
constexpr long long kDefaultTimeoutMs = 30000;        // the NSE socket default
constexpr long long kMaxTimeoutMs = 1000000000000LL;  // keeps steady_clock arithmetic safe
constexpr int kAgain = -1;                            // an attempt's "would block"
constexpr std::size_t kReadChunk = 16384;

using tcp = asio::ip::tcp;

// One SSH connection: the socket, the libssh2 session and the wait bookkeeping. Shared by
// the session userdata, its channels and pending handlers (which may outlive the userdata).
struct Core {
    explicit Core(asio::io_context& io) : sock(io) {}
    // The userdata's __gc or the thread cleanup normally closed it already; the runtime may
    // be gone by now, so its cleanup list is not touched here.
    ~Core() {
        cleanup = 0;
        close();
    }
    Core(const Core&) = delete;
    Core& operator=(const Core&) = delete;

    Runtime* rt = nullptr;
    tcp::socket sock;
    LIBSSH2_SESSION* session = nullptr;
    long long timeout_ms = kDefaultTimeoutMs;  // per wait; <= 0 means none (libssh2's 0)
    bool waiting = false;                      // a thread is suspended on this session
    bool dead = false;                         // transport shut down (timeout, close)
    bool timed_out = false;                    // the last wait ended by its timeout
    CleanupId cleanup = 0;
    // Scratch that must survive EAGAIN retries of one call.
    LIBSSH2_CHANNEL* pending_channel = nullptr;
    bool pk_ok = false;  // publickey_canauth: the server answered PK_OK

    // Shuts the transport down without closing the descriptor: libssh2 may still hold it,
    // and later calls then fail at once instead of waiting (and never touch a reused fd).
    void kill() {
        std::error_code ec;
        if (sock.is_open()) {
            sock.cancel(ec);
            sock.shutdown(tcp::socket::shutdown_both, ec);
        }
        dead = true;
    }

    // Releases everything without waiting. Idempotent; never throws.
    void close() {
        if (cleanup != 0 && rt) rt->remove_cleanup(std::exchange(cleanup, 0));
        kill();
        if (session) {
            // With the transport shut down libssh2 cannot block on it; bound the retries anyway.
            for (int i = 0; i < 4 && libssh2_session_free(session) == LIBSSH2_ERROR_EAGAIN; ++i) {
            }
            session = nullptr;
        }
        pending_channel = nullptr;
        std::error_code ec;
        sock.close(ec);
    }
};

struct SessionUd {
    std::shared_ptr<Core> core;  // null while closed
};

struct ChannelUd {
    std::shared_ptr<Core> core;  // null while closed
    LIBSSH2_CHANNEL* ch = nullptr;

    // The channel is usable only while its session lives (session_free frees channels).
    bool live() const { return core && core->session && ch; }
};

// ---- userdata plumbing ----

// [-0, +0] The open session at `idx`; raises when closed or busy in another thread.
Core& check_session(lua_State* L, int idx) {
    auto* u = static_cast<SessionUd*>(luaL_checkudata(L, idx, kSessionMeta));
    if (!u->core || !u->core->session) luaL_error(L, "libssh2: session is closed");
    if (u->core->waiting) luaL_error(L, "libssh2: session is in use by another thread");
    return *u->core;
}

// [-0, +0] A live channel of the session `core` at `idx`.
LIBSSH2_CHANNEL* check_channel(lua_State* L, int idx, const Core& core) {
    auto* u = static_cast<ChannelUd*>(luaL_checkudata(L, idx, kChannelMeta));
    if (!u->live()) luaL_error(L, "libssh2: channel is closed");
    if (u->core.get() != &core) luaL_argerror(L, idx, "channel belongs to another session");
    return u->ch;
}

// [-0, +0] The last libssh2 error text of a session.
std::string last_error(LIBSSH2_SESSION* s) {
    char* msg = nullptr;
    int len = 0;
    libssh2_session_last_error(s, &msg, &len, 0);
    return msg ? std::string(msg, static_cast<std::size_t>(len)) : std::string("unknown error");
}

int session_gc(lua_State* L) {
    auto* u = static_cast<SessionUd*>(luaL_checkudata(L, 1, kSessionMeta));
    if (u->core) {
        u->core->close();
        u->core.reset();
    }
    return 0;
}

int channel_gc(lua_State* L) {
    auto* u = static_cast<ChannelUd*>(luaL_checkudata(L, 1, kChannelMeta));
    // Channels are freed with their session; dropping the reference is enough.
    u->core.reset();
    u->ch = nullptr;
    return 0;
}

int session_tostring(lua_State* L) {
    auto* u = static_cast<SessionUd*>(luaL_checkudata(L, 1, kSessionMeta));
    lua_pushfstring(L, "libssh2 session (%s)", u->core && u->core->session ? "open" : "closed");
    return 1;
}

// ---- waiting ----

// One wait for socket readiness or timeout; exactly one of them wakes the thread.
struct Wait {
    explicit Wait(asio::io_context& io) : timer(io) {}
    Waker waker;
    asio::steady_timer timer;
    bool done = false;
};

// Starts waiting for the direction libssh2 is blocked on. A timeout shuts the transport down
// (the session is unusable afterwards, later calls fail at once). Pair with nse::yield.
void wait_socket(lua_State* L, const std::shared_ptr<Core>& cp) {
    Core& c = *cp;
    auto w = std::make_shared<Wait>(c.rt->io());
    w->waker = c.rt->prepare_wait(L);
    int dir = libssh2_session_block_directions(c.session);
    auto on_ready = [w](std::error_code) {
        if (w->done) return;
        w->done = true;
        w->timer.cancel();
        w->waker.wake();
    };
    // async_wait re-arms the descriptor (EPOLL_CTL_MOD), so readiness that arrived before
    // the wait is not lost.
    if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND) c.sock.async_wait(tcp::socket::wait_write, on_ready);
    if ((dir & LIBSSH2_SESSION_BLOCK_INBOUND) || !(dir & LIBSSH2_SESSION_BLOCK_OUTBOUND))
        c.sock.async_wait(tcp::socket::wait_read, on_ready);
    if (c.timeout_ms > 0) {
        w->timer.expires_after(std::chrono::milliseconds(std::min(c.timeout_ms, kMaxTimeoutMs)));
        w->timer.async_wait([w, cp](std::error_code ec) {
            if (ec || w->done) return;
            w->done = true;
            cp->timed_out = true;
            cp->kill();
            w->waker.wake();
        });
    }
    c.waiting = true;
}

// One try of a libssh2 call for the session at stack index 1: pushes results and returns
// their count, or returns kAgain (nothing pushed) when libssh2 would block.
using Attempt = int (*)(lua_State* L, Core& c);

int drive_k(lua_State* L, int status, lua_KContext ctx);

// Runs `a` until it finishes, yielding on EAGAIN. The session is at index 1.
int drive(lua_State* L, Attempt a) {
    auto* u = static_cast<SessionUd*>(luaL_checkudata(L, 1, kSessionMeta));
    if (!u->core || !u->core->session) return luaL_error(L, "libssh2: session is closed");
    std::shared_ptr<Core> cp = u->core;
    int n = a(L, *cp);
    if (n != kAgain) return n;
    if (cp->dead) return luaL_error(L, "libssh2: connection lost");  // cannot wait on it
    wait_socket(L, cp);
    return nse::yield(L, reinterpret_cast<lua_KContext>(a), drive_k);
}

int drive_k(lua_State* L, int, lua_KContext ctx) {
    // Continuations are not wrapped at registration: translate our exceptions here.
    std::string msg;
    try {
        auto* u = static_cast<SessionUd*>(luaL_checkudata(L, 1, kSessionMeta));
        if (u->core) {
            u->core->waiting = false;
            // Like a timed-out NSE socket under nmap's binding: the call raises "TIMEOUT".
            if (std::exchange(u->core->timed_out, false)) {
                lua_pushstring(L, reason::kTimeout);
                return lua_error(L);
            }
        }
        return drive(L, reinterpret_cast<Attempt>(ctx));
    } catch (const std::exception& e) {
        msg = e.what();
    }
    lua_pushlstring(L, msg.data(), msg.size());
    return lua_error(L);
}

// ---- session_open ----

// [-0, +0] Host argument: a host table (ip, else targetname) or an address string.
std::string check_host(lua_State* L, int idx) {
    if (lua_istable(L, idx)) {
        std::string addr;
        lua_getfield(L, idx, "ip");
        if (lua_type(L, -1) == LUA_TSTRING) addr = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (addr.empty()) {
            lua_getfield(L, idx, "targetname");
            if (lua_type(L, -1) == LUA_TSTRING) addr = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
        if (addr.empty()) luaL_argerror(L, idx, "host table lacks 'ip' and 'targetname' fields");
        return addr;
    }
    return luaL_checkstring(L, idx);
}

int handshake(lua_State* L, Core& c) {
    int rc = libssh2_session_handshake(c.session, c.sock.native_handle());
    if (rc == LIBSSH2_ERROR_EAGAIN) return kAgain;
    if (rc != 0) {
        c.close();
        return luaL_error(L, "Unable to complete libssh2 handshake.");
    }
    lua_pushvalue(L, 1);
    return 1;
}

// After the connect: [session host port] or [session host port errmsg].
int open_connected(lua_State* L) {
    auto* u = static_cast<SessionUd*>(luaL_checkudata(L, 1, kSessionMeta));
    if (lua_gettop(L) > 3 || !u->core) {
        if (u->core) u->core->close();
        if (lua_gettop(L) <= 3) lua_pushstring(L, reason::kError);
        return lua_error(L);  // the socket error, re-raised as is
    }
    Core& c = *u->core;
    c.waiting = false;
    c.session = libssh2_session_init();
    if (!c.session) return luaL_error(L, "libssh2: cannot create a session");
    libssh2_session_set_blocking(c.session, 0);
    return drive(L, handshake);
}

int open_connected_k(lua_State* L, int, lua_KContext) { return nse::guard<open_connected>(L); }

const char* connect_status(const std::error_code& ec) {
    if (ec == asio::error::operation_aborted) return reason::kCancelled;
    return reason::kError;
}

int l_session_open(lua_State* L) {
    std::string host = check_host(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    if (port < 0 || port > 65535) luaL_argerror(L, 2, "port number out of range");
    lua_settop(L, 2);
    Runtime& rt = nse::runtime(L);

    // Created closed, then opened (liolib style): [session host port].
    auto* u = static_cast<SessionUd*>(lua_newuserdatauv(L, sizeof(SessionUd), 0));
    new (u) SessionUd{};
    luaL_setmetatable(L, kSessionMeta);
    lua_insert(L, 1);

    auto w = std::make_shared<Wait>(rt.io());
    w->waker = rt.prepare_wait(L);  // raises outside script threads: before acquiring anything
    auto cp = std::make_shared<Core>(rt.io());
    cp->rt = &rt;
    u->core = cp;
    std::weak_ptr<Core> weak = cp;
    cp->cleanup = rt.add_cleanup(L, [weak] {
        if (auto c = weak.lock()) {
            c->cleanup = 0;
            c->close();
        }
    });
    cp->waiting = true;

    auto fail = [w](const char* status) {
        if (w->done) return;
        w->done = true;
        w->timer.cancel();
        w->waker.wake([status](lua_State* L) {
            lua_pushstring(L, status);
            return 1;
        });
    };
    auto connect = [w, cp, fail](const tcp::endpoint& ep) {
        if (w->done) return;
        cp->sock.async_connect(ep, [w, cp, fail](std::error_code ec) {
            if (w->done) return;
            if (ec) return fail(connect_status(ec));
            std::error_code ignored;
            cp->sock.native_non_blocking(true, ignored);
            cp->sock.set_option(tcp::no_delay(true), ignored);
            w->done = true;
            w->timer.cancel();
            w->waker.wake();
        });
    };
    if (cp->timeout_ms > 0) {
        w->timer.expires_after(std::chrono::milliseconds(cp->timeout_ms));
        w->timer.async_wait([w, cp, fail](std::error_code ec) {
            if (ec || w->done) return;
            cp->kill();
            fail(reason::kTimeout);
        });
    }
    std::error_code ec;
    asio::ip::address addr = asio::ip::make_address(host, ec);
    if (!ec) {
        asio::post(rt.io(), [connect, ep = tcp::endpoint(addr, static_cast<unsigned short>(port))] {
            connect(ep);
        });
    } else {
        auto resolver = std::make_shared<tcp::resolver>(rt.io());
        resolver->async_resolve(
            host, std::to_string(port),
            [resolver, connect, fail](std::error_code ec, tcp::resolver::results_type r) {
                if (ec || r.empty()) return fail(reason::kError);
                connect(r.begin()->endpoint());
            });
    }
    return nse::yield(L, 0, open_connected_k);
}

// ---- simple session calls ----

int l_set_timeout(lua_State* L) {
    Core& c = check_session(L, 1);
    // ssh-brute passes a float (1000 * parse_timespec); keep whole milliseconds.
    c.timeout_ms = static_cast<long long>(luaL_checknumber(L, 2));
    return 0;
}

int l_hostkey_hash(lua_State* L) {
    static const char* const names[] = {"md5", "sha1", nullptr};
    Core& c = check_session(L, 1);
    int which = luaL_checkoption(L, 2, nullptr, names);
    int type = which == 0 ? LIBSSH2_HOSTKEY_HASH_MD5 : LIBSSH2_HOSTKEY_HASH_SHA1;
    std::size_t len = which == 0 ? 16 : 20;
    const char* hash = libssh2_hostkey_hash(c.session, type);
    if (!hash) {
        return fail_false(L, "could not get hostkey hash");
    }
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (std::size_t i = 0; i < len; ++i) {
        auto b = static_cast<unsigned char>(hash[i]);
        if (i) out += ':';
        out += hex[b >> 4];
        out += hex[b & 15];
    }
    lua_pushlstring(L, out.data(), out.size());
    return 1;
}

// ---- authentication ----

// [session user]
int userauth_list_try(lua_State* L, Core& c) {
    std::size_t ulen = 0;
    const char* user = lua_tolstring(L, 2, &ulen);
    char* list = libssh2_userauth_list(c.session, user, static_cast<unsigned int>(ulen));
    if (list) {
        lua_newtable(L);
        std::string s(list);
        lua_Integer i = 0;
        std::size_t start = 0;
        while (start <= s.size()) {
            std::size_t comma = s.find(',', start);
            if (comma == std::string::npos) comma = s.size();
            if (comma > start) {
                lua_pushlstring(L, s.data() + start, comma - start);
                lua_rawseti(L, -2, ++i);
            }
            start = comma + 1;
        }
        return 1;
    }
    if (libssh2_session_last_errno(c.session) == LIBSSH2_ERROR_EAGAIN) return kAgain;
    if (libssh2_userauth_authenticated(c.session)) {
        lua_pushliteral(L, "none_auth");
        return 1;
    }
    return fail_false(L, "userauth_list: " + last_error(c.session));
}

int l_userauth_list(lua_State* L) {
    check_session(L, 1);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    return drive(L, userauth_list_try);
}

// [session user pass]
int userauth_password_try(lua_State* L, Core& c) {
    std::size_t ulen = 0, plen = 0;
    const char* user = lua_tolstring(L, 2, &ulen);
    const char* pass = lua_tolstring(L, 3, &plen);
    int rc = libssh2_userauth_password_ex(c.session, user, static_cast<unsigned int>(ulen), pass,
                                          static_cast<unsigned int>(plen), nullptr);
    if (rc == LIBSSH2_ERROR_EAGAIN) return kAgain;
    lua_pushboolean(L, rc == 0);
    return 1;
}

int l_userauth_password(lua_State* L) {
    check_session(L, 1);
    luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
    lua_settop(L, 3);
    return drive(L, userauth_password_try);
}

// [session user privkey passphrase pubkey|nil]
int userauth_publickey_try(lua_State* L, Core& c) {
    std::size_t ulen = 0;
    const char* user = lua_tolstring(L, 2, &ulen);
    const char* priv = lua_tostring(L, 3);
    const char* pass = lua_tostring(L, 4);
    const char* pub = lua_tostring(L, 5);  // nullptr: derived from the private key
    int rc = libssh2_userauth_publickey_fromfile_ex(
        c.session, user, static_cast<unsigned int>(ulen), pub, priv, pass);
    if (rc == LIBSSH2_ERROR_EAGAIN) return kAgain;
    lua_pushboolean(L, rc == 0);
    return 1;
}

int l_userauth_publickey(lua_State* L) {
    check_session(L, 1);
    luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
    luaL_optstring(L, 4, "");
    if (!lua_isnoneornil(L, 5)) luaL_checkstring(L, 5);
    lua_settop(L, 5);
    if (lua_isnil(L, 4)) {
        lua_pushliteral(L, "");
        lua_replace(L, 4);
    }
    return drive(L, userauth_publickey_try);
}

// Called only when the server answered PK_OK to the unsigned query: note it and refuse to
// sign, so nothing more is sent and the session stays unauthenticated.
int canauth_sign(LIBSSH2_SESSION*, unsigned char** sig, size_t* sig_len, const unsigned char*,
                 size_t, void** abstract) {
    *static_cast<bool*>(*abstract) = true;
    *sig = nullptr;
    *sig_len = 0;
    return -1;
}

// [session user blob]
int canauth_try(lua_State* L, Core& c) {
    std::size_t blen = 0;
    const char* user = lua_tostring(L, 2);
    const char* blob = lua_tolstring(L, 3, &blen);
    void* abstract = &c.pk_ok;
    int rc =
        libssh2_userauth_publickey(c.session, user, reinterpret_cast<const unsigned char*>(blob),
                                   blen, canauth_sign, &abstract);
    if (rc == LIBSSH2_ERROR_EAGAIN) return kAgain;
    if (rc == 0 || c.pk_ok) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED || rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED) {
        lua_pushboolean(L, 0);
        return 1;
    }
    return luaL_error(L, "Invalid Publickey");
}

int l_publickey_canauth(lua_State* L) {
    Core& c = check_session(L, 1);
    luaL_checkstring(L, 2);
    luaL_checkstring(L, 3);
    lua_settop(L, 3);
    c.pk_ok = false;
    return drive(L, canauth_try);
}

// Standard base64 (whitespace ignored); nullopt on malformed input.
std::optional<std::string> base64_decode(const std::string& in) {
    std::string out;
    unsigned int acc = 0;
    int bits = 0, pad = 0;
    for (char ch : in) {
        int v;
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '+')
            v = 62;
        else if (ch == '/')
            v = 63;
        else if (ch == '=') {
            ++pad;
            continue;
        } else
            return std::nullopt;
        if (pad) return std::nullopt;  // data after padding
        acc = (acc << 6) | static_cast<unsigned int>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xFF);
        }
    }
    return out;
}

int l_read_publickey(lua_State* L) {
    const char* path = luaL_checkstring(L, 1);
    std::ifstream f(path);
    std::string type, data;
    if (!f || !(f >> type >> data)) return luaL_error(L, "Error reading file");
    auto blob = base64_decode(data);
    if (!blob || blob->empty()) return luaL_error(L, "Error reading file");
    lua_pushlstring(L, blob->data(), blob->size());
    return 1;
}

// ---- channels ----

// [session channel-udata]
int open_channel_try(lua_State* L, Core& c) {
    if (!c.pending_channel) {
        LIBSSH2_CHANNEL* ch = libssh2_channel_open_session(c.session);
        if (!ch) {
            if (libssh2_session_last_errno(c.session) == LIBSSH2_ERROR_EAGAIN) return kAgain;
            return luaL_error(L, "Opening channel failed: %s", last_error(c.session).c_str());
        }
        c.pending_channel = ch;
    }
    int rc = libssh2_channel_request_pty(c.pending_channel, "vanilla");
    if (rc == LIBSSH2_ERROR_EAGAIN) return kAgain;
    auto* u = static_cast<ChannelUd*>(lua_touserdata(L, 2));
    u->ch = std::exchange(c.pending_channel, nullptr);
    if (rc != 0) return luaL_error(L, "Requesting pty failed: %s", last_error(c.session).c_str());
    lua_pushvalue(L, 2);
    return 1;
}

int l_open_channel(lua_State* L) {
    auto* su = static_cast<SessionUd*>(luaL_checkudata(L, 1, kSessionMeta));
    Core& c = check_session(L, 1);
    lua_settop(L, 1);
    auto* u = static_cast<ChannelUd*>(lua_newuserdatauv(L, sizeof(ChannelUd), 0));
    new (u) ChannelUd{};
    luaL_setmetatable(L, kChannelMeta);
    u->core = su->core;
    c.pending_channel = nullptr;
    return drive(L, open_channel_try);
}

// [session channel cmd]
int channel_exec_try(lua_State* L, Core& c) {
    LIBSSH2_CHANNEL* ch = check_channel(L, 2, c);
    int rc = libssh2_channel_exec(ch, lua_tostring(L, 3));
    if (rc == LIBSSH2_ERROR_EAGAIN) return kAgain;
    if (rc != 0) return luaL_error(L, "Error executing command: %s", last_error(c.session).c_str());
    lua_pushboolean(L, 1);
    return 1;
}

int l_channel_exec(lua_State* L) {
    Core& c = check_session(L, 1);
    check_channel(L, 2, c);
    luaL_checkstring(L, 3);
    lua_settop(L, 3);
    return drive(L, channel_exec_try);
}

// [session channel data]
int channel_write_try(lua_State* L, Core& c) {
    LIBSSH2_CHANNEL* ch = check_channel(L, 2, c);
    std::size_t len = 0;
    const char* data = lua_tolstring(L, 3, &len);
    ssize_t n = libssh2_channel_write(ch, data, len);
    if (n == LIBSSH2_ERROR_EAGAIN) return kAgain;
    if (n < 0) return luaL_error(L, "Writing to channel: %s", last_error(c.session).c_str());
    lua_pushinteger(L, static_cast<lua_Integer>(n));
    return 1;
}

int l_channel_write(lua_State* L) {
    Core& c = check_session(L, 1);
    check_channel(L, 2, c);
    luaL_checkstring(L, 3);
    lua_settop(L, 3);
    return drive(L, channel_write_try);
}

// [session channel]: data, or nil at end of stream.
template <int Stream>
int channel_read_try(lua_State* L, Core& c) {
    LIBSSH2_CHANNEL* ch = check_channel(L, 2, c);
    char buf[kReadChunk];
    ssize_t n = libssh2_channel_read_ex(ch, Stream, buf, sizeof buf);
    if (n == LIBSSH2_ERROR_EAGAIN) return kAgain;
    if (n < 0) return luaL_error(L, "Reading from channel: %s", last_error(c.session).c_str());
    if (n == 0)
        lua_pushnil(L);
    else
        lua_pushlstring(L, buf, static_cast<std::size_t>(n));
    return 1;
}

int l_channel_read(lua_State* L) {
    Core& c = check_session(L, 1);
    check_channel(L, 2, c);
    lua_settop(L, 2);
    return drive(L, channel_read_try<0>);
}

int l_channel_read_stderr(lua_State* L) {
    Core& c = check_session(L, 1);
    check_channel(L, 2, c);
    lua_settop(L, 2);
    return drive(L, channel_read_try<SSH_EXTENDED_DATA_STDERR>);
}

// [session channel]
int channel_send_eof_try(lua_State* L, Core& c) {
    LIBSSH2_CHANNEL* ch = check_channel(L, 2, c);
    int rc = libssh2_channel_send_eof(ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return kAgain;
    if (rc != 0) return luaL_error(L, "Sending EOF: %s", last_error(c.session).c_str());
    lua_pushboolean(L, 1);
    return 1;
}

int l_channel_send_eof(lua_State* L) {
    Core& c = check_session(L, 1);
    check_channel(L, 2, c);
    lua_settop(L, 2);
    return drive(L, channel_send_eof_try);
}

int l_channel_eof(lua_State* L) {
    auto* u = static_cast<ChannelUd*>(luaL_checkudata(L, 1, kChannelMeta));
    // A channel whose session is gone or dead will never see more data: report its end, so
    // read-until-eof loops terminate.
    if (!u->live() || u->core->dead) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, libssh2_channel_eof(u->ch) != 0);
    return 1;
}

// [session channel]: close (waits for the peer's close), then free.
int channel_close_try(lua_State* L, Core& c) {
    auto* u = static_cast<ChannelUd*>(lua_touserdata(L, 2));
    if (!u->live() || c.dead) {
        lua_pushboolean(L, 1);
        return 1;
    }
    int rc = libssh2_channel_close(u->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return kAgain;
    rc = libssh2_channel_free(u->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN) return kAgain;
    u->ch = nullptr;
    u->core.reset();
    lua_pushboolean(L, 1);
    return 1;
}

int l_channel_close(lua_State* L) {
    Core& c = check_session(L, 1);
    check_channel(L, 2, c);
    lua_settop(L, 2);
    return drive(L, channel_close_try);
}

// [session]: orderly disconnect, then release everything.
int session_close_try(lua_State* L, Core& c) {
    if (!c.dead) {
        int rc = libssh2_session_disconnect(c.session, "Normal Shutdown");
        if (rc == LIBSSH2_ERROR_EAGAIN) return kAgain;
    }
    c.close();
    lua_pushboolean(L, 1);
    return 1;
}

int l_session_close(lua_State* L) {
    auto* u = static_cast<SessionUd*>(luaL_checkudata(L, 1, kSessionMeta));
    if (!u->core || !u->core->session) {  // already closed: nothing to do
        lua_pushboolean(L, 1);
        return 1;
    }
    check_session(L, 1);
    lua_settop(L, 1);
    return drive(L, session_close_try);
}

std::once_flag g_init;

}  // namespace

int luaopen_libssh2(lua_State* L) {
    // libssh2_init is not thread-safe; engines may open the module on several threads.
    std::call_once(g_init, [] { libssh2_init(0); });

    // [-0, +0] Session and channel metatables: __gc and __close share the idempotent close.
    if (luaL_newmetatable(L, kSessionMeta)) {
        lua_pushcfunction(L, nse::guard<session_gc>);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, nse::guard<session_gc>);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, nse::guard<session_tostring>);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, kChannelMeta)) {
        lua_pushcfunction(L, nse::guard<channel_gc>);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, nse::guard<channel_gc>);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);

    static const luaL_Reg funcs[] = {{"session_open", nse::guard<l_session_open>},
                                     {"set_timeout", nse::guard<l_set_timeout>},
                                     {"hostkey_hash", nse::guard<l_hostkey_hash>},
                                     {"userauth_list", nse::guard<l_userauth_list>},
                                     {"userauth_password", nse::guard<l_userauth_password>},
                                     {"userauth_publickey", nse::guard<l_userauth_publickey>},
                                     {"read_publickey", nse::guard<l_read_publickey>},
                                     {"publickey_canauth", nse::guard<l_publickey_canauth>},
                                     {"open_channel", nse::guard<l_open_channel>},
                                     {"channel_exec", nse::guard<l_channel_exec>},
                                     {"channel_write", nse::guard<l_channel_write>},
                                     {"channel_read", nse::guard<l_channel_read>},
                                     {"channel_read_stderr", nse::guard<l_channel_read_stderr>},
                                     {"channel_send_eof", nse::guard<l_channel_send_eof>},
                                     {"channel_eof", nse::guard<l_channel_eof>},
                                     {"channel_close", nse::guard<l_channel_close>},
                                     {"session_close", nse::guard<l_session_close>},
                                     {nullptr, nullptr}};
    luaL_newlib(L, funcs);
    return 1;
}

}  // namespace nse::lib
