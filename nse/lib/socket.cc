#include "nse/lib/socket.h"

#include <net/if.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/packet/capture.h"
#include "common/packet/link_layer.h"
#include "common/targets.h"
#include "nse/lib/certificate.h"
#include "nse/lib/luax.h"
#include "nse/lib/nsock_trace.h"
#include "nse/runtime.h"

namespace nse::lib {
namespace {

constexpr const char* kSocketMeta = "nsefleet.socket";
constexpr const char* kModuleMeta = "nsefleet.socket.module";
constexpr std::size_t kChunk = 65536;                 // one read: any TCP amount, one UDP datagram
constexpr long long kMaxTimeoutMs = 1000000000000LL;  // keeps steady_clock arithmetic safe
constexpr const char* kNotConnected = "socket must be connected";

using tcp = asio::ip::tcp;
using udp = asio::ip::udp;
using SslStream = asio::ssl::stream<tcp::socket&>;
using Handler = std::function<void(std::error_code, std::size_t)>;
using Push = std::function<int(lua_State*)>;

struct Capture;

// Module state, upvalue 1 of every function of the module: one TLS client context per
// lua_State (so per engine), created on first TLS use, and the engine's open captures by
// (device, snaplen, promisc, bpf), shared by every pcap socket opened with the same key.
struct Module {
    std::shared_ptr<asio::ssl::context> tls;
    std::map<std::string, std::weak_ptr<Capture>> captures;
};

// "address:port", as the trace lines name an endpoint.
std::string endpoint_text(const asio::ip::address& a, unsigned short port) {
    return a.to_string() + ":" + std::to_string(port);
}
template <class Endpoint>
std::string endpoint_text(const Endpoint& ep) {
    return endpoint_text(ep.address(), ep.port());
}

// The OS objects of one connection. Pending handlers hold it, so nothing an in-flight Asio
// operation refers to is destroyed under it: closing only closes descriptors, and replaced
// TLS streams are retired, not destroyed.
struct Conn {
    explicit Conn(asio::io_context& io) : tcp_sock(io), udp_sock(io) {}

    tcp::socket tcp_sock;
    udp::socket udp_sock;
    std::shared_ptr<asio::ssl::context> tls;  // keeps the context alive for `ssl`
    std::unique_ptr<SslStream> ssl;
    std::vector<std::unique_ptr<SslStream>> retired;
    bool is_udp = false;
    bool connected = false;  // TCP connected (and handshaken) / UDP peer fixed
    bool has_peer = false;   // UDP: peer known (connect, sendto, receive_from)
    bool eof = false;        // TCP/TLS: the peer closed its side
    // TLS connect: a handshake is in flight on tcp_sock. A retry must not reopen the socket
    // before that handshake has completed: its composed operation holds a reference to the
    // socket object and, resumed by a completion already queued, would read the new
    // connection's bytes (the new handshake then fails and http.lua falls back to plain HTTP
    // on a TLS port). The retry waits in `after_handshake` instead.
    bool handshaking = false;
    std::function<void()> after_handshake;
    double tcp_up = 0;  // TCP: when the handshake completed (steady seconds), 0 = not yet
    std::uint64_t bytes_in = 0;
    bool wrote = false;  // anything sent: later answers measure the service, not its load
    udp::endpoint peer;
    udp::endpoint from;  // receive_from scratch
    // --script-trace: where the lines go (empty when off).
    std::function<void(const std::string&)> tracer;

    bool is_open() const { return is_udp ? udp_sock.is_open() : tcp_sock.is_open(); }

    // "address:port" of the peer ("unknown" for a UDP socket that has none yet).
    std::string peer_text() const {
        std::error_code ec;
        if (is_udp) return has_peer ? endpoint_text(peer) : "unknown";
        auto ep = tcp_sock.remote_endpoint(ec);
        return ec ? "unknown" : endpoint_text(ep);
    }

    // --script-trace line, as nmap prints them: "NSE: TCP 127.0.0.1:40000 > 127.0.0.1:80 | x"
    // (`out`: from us; else to us). Data more than 5% unprintable is shown as a hex dump.
    void trace(bool out, const std::string& what) const {
        if (!tracer) return;
        std::error_code ec;
        std::string local, remote;
        if (is_udp) {
            local = endpoint_text(udp_sock.local_endpoint(ec));
            remote = endpoint_text(has_peer ? peer : from);
        } else {
            local = endpoint_text(tcp_sock.local_endpoint(ec));
            remote = endpoint_text(tcp_sock.remote_endpoint(ec));
        }
        tracer(std::string("NSE: ") +
               (is_udp ? "UDP "
                : ssl  ? "SSL "
                       : "TCP ") +
               local + (out ? " > " : " < ") + remote + " | " + what + "\n");
    }
    void trace_data(bool out, const char* p, std::size_t n) const {
        if (!tracer || n == 0) return;
        std::size_t odd = 0;
        for (std::size_t i = 0; i < n; ++i)
            if (!std::isprint(static_cast<unsigned char>(p[i]))) ++odd;
        if (odd * 20 <= n) return trace(out, std::string(p, n));
        std::string dump;
        for (std::size_t row = 0; row < n; row += 16) {
            char head[32];
            std::snprintf(head, sizeof head, "%s%08zx: ", row ? "\n" : "", row);
            dump += head;
            std::string ascii;
            for (std::size_t i = row; i < row + 16; ++i) {
                if (i < n) {
                    char hex[4];
                    auto c = static_cast<unsigned char>(p[i]);
                    std::snprintf(hex, sizeof hex, "%02x ", c);
                    dump += hex;
                    ascii += std::isprint(c) ? static_cast<char>(c) : ' ';
                } else {
                    dump += "   ";
                }
            }
            dump += ascii;
        }
        trace(out, dump);
    }

    // Aborts pending operations (their handlers see operation_aborted); the socket stays open.
    void cancel() {
        std::error_code ec;
        if (is_udp)
            udp_sock.cancel(ec);
        else
            tcp_sock.cancel(ec);
    }

    void close() {
        std::error_code ec;
        tcp_sock.close(ec);
        udp_sock.close(ec);
    }

    // Starts a new TLS stream over the TCP socket (connect "ssl" and STARTTLS).
    SslStream& start_tls(std::shared_ptr<asio::ssl::context> ctx, const std::string& sni) {
        if (ssl) retired.push_back(std::move(ssl));
        tls = std::move(ctx);
        ssl = std::make_unique<SslStream>(tcp_sock, *tls);
        std::error_code ec;
        asio::ip::make_address(sni, ec);
        // SNI carries host names only (RFC 6066), never address literals.
        if (!sni.empty() && ec) SSL_set_tlsext_host_name(ssl->native_handle(), sni.c_str());
        return *ssl;
    }

    // One read: whatever is available on TCP/TLS, exactly one datagram on UDP.
    // `self` keeps this object alive until the handler has run.
    // (The caller traces what arrives: nmap's NSOCK callback line comes before it.)
    void read_some(const std::shared_ptr<Conn>& self, asio::mutable_buffer b, Handler h) {
        if (is_udp && connected) {
            udp_sock.async_receive(b, std::move(h));
        } else if (is_udp) {
            udp_sock.async_receive_from(
                b, from, [self, h = std::move(h)](std::error_code ec, std::size_t n) {
                    if (!ec) {
                        self->peer = self->from;
                        self->has_peer = true;
                    }
                    h(ec, n);
                });
        } else if (eof) {
            // Asio's edge-triggered reactor may not report EOF twice: remember it.
            asio::post(tcp_sock.get_executor(), [h = std::move(h)] { h(asio::error::eof, 0); });
        } else {
            auto note_eof = [self, h = std::move(h)](std::error_code ec, std::size_t n) {
                if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)
                    self->eof = true;
                h(ec, n);
            };
            if (ssl)
                ssl->async_read_some(b, std::move(note_eof));
            else
                tcp_sock.async_read_some(b, std::move(note_eof));
        }
    }

    // Writes all of `b` (one datagram on UDP).
    void write(asio::const_buffer b, Handler h) {
        wrote = true;
        if (tracer) {
            trace_data(true, static_cast<const char*>(b.data()), b.size());
            h = [this, h = std::move(h)](std::error_code ec, std::size_t n) {
                if (!ec) trace(true, "SEND");
                h(ec, n);
            };
        }
        if (is_udp)
            udp_sock.async_send(b, std::move(h));
        else if (ssl)
            asio::async_write(*ssl, b, std::move(h));
        else
            asio::async_write(tcp_sock, b, std::move(h));
    }
};

struct PcapSub;

// A socket object's state, shared by the userdata and by every pending handler (handlers may
// complete after the Lua object was collected).
struct SockState {
    Runtime* rt = nullptr;
    bool udp_proto = false;  // protocol chosen at creation
    bool inet6 = false;
    long long timeout_ms = 30000;  // -1 = none
    bool has_bind = false;
    std::optional<asio::ip::address> bind_addr;  // nullopt = unspecified of the peer family
    unsigned short bind_port = 0;
    std::string buf;          // receive_buf's private buffer
    std::string sni;          // from the last connect, for reconnect_ssl
    std::uint64_t owner = 0;  // coroutine id owning pending I/O, 0 = none
    std::shared_ptr<Conn> conn;
    std::shared_ptr<PcapSub> pcap;  // set while the socket is a pcap socket
    bool open = false;              // what close() reports
    CleanupId cleanup = 0;
    std::uint64_t cleanup_thread = 0;
    // Governor slot held for `conn` (by thread slot_tid), or the ticket while queued for one.
    bool has_slot = false;
    std::uint64_t slot_tid = 0;
    Governor::Ticket ticket = 0;
    MemCharge buf_charge;  // `buf` counted against the engine's memory budget
    long iod = 0;          // --packet-trace: its NSOCK descriptor number (0: none yet)
};

// The userdata: just the shared state (empty after __gc).
struct Udata {
    std::shared_ptr<SockState> s;
};

// One asynchronous operation: its Waker, its timeout timer and its buffers. Exactly one
// delivery happens (`done`), whichever of completion and timeout comes first.
struct Op : std::enable_shared_from_this<Op> {
    explicit Op(asio::io_context& io) : timer(io) {}
    Waker waker;
    asio::steady_timer timer;
    bool done = false;
    std::string data;         // bytes to write / bytes read so far
    std::vector<char> chunk;  // read buffer
    // receive_lines: newlines in data[0, lines_scanned), so each chunk is scanned once (an
    // endless line must fail for memory, not slow to a crawl rescanning what it has).
    std::size_t lines_scanned = 0;
    lua_Integer lines_seen = 0;
    std::optional<tcp::resolver> resolver;
    std::function<void(Op&)> on_timeout;  // cancels the I/O and delivers
    MemCharge charge;                     // `data` of a read, against the memory budget
    // TCP connect: the current attempt (stale handlers compare), when it started, and how to
    // start another one after a time-out under congestion.
    int attempt = 0;
    double attempt_started = 0;
    bool extended = false;  // a greeting wait given a second time-out under congestion
    std::function<void()> retry;
    // Whose operation it is, for counting results lost to the memory budget.
    std::string script;
    int host = -1;
    // --packet-trace: the NSOCK event this operation stands for, until its callback line.
    struct Nsock {
        Runtime* rt;
        nsock::Event type;
        long eid;
        std::string peer;  // "address:port"
    };
    std::optional<Nsock> nsock;
};

Push push_status(const char* status) {
    return [status](lua_State* L) { return fail_nil(L, status); };
}

Push push_false(std::string msg) {
    return [msg = std::move(msg)](lua_State* L) { return fail_false(L, msg); };
}

Push push_true() {
    return [](lua_State* L) {
        lua_pushboolean(L, 1);
        return 1;
    };
}

Push push_data(std::string data) {
    return [data = std::move(data)](lua_State* L) {
        lua_pushboolean(L, 1);
        lua_pushlstring(L, data.data(), data.size());
        return 2;
    };
}

const char* status_of(const std::error_code& ec) {
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) return reason::kEof;
    if (ec == asio::error::operation_aborted) return reason::kCancelled;
    return reason::kError;
}

// gai_strerror text for a resolver failure (the contract returns it verbatim).
std::string gai_text(const std::error_code& ec) {
    if (ec == asio::error::host_not_found) return gai_strerror(EAI_NONAME);
    if (ec == asio::error::host_not_found_try_again) return gai_strerror(EAI_AGAIN);
    if (ec == asio::error::no_recovery) return gai_strerror(EAI_FAIL);
    if (ec == asio::error::no_data) return gai_strerror(EAI_NODATA);
    if (ec == asio::error::address_family_not_supported) return gai_strerror(EAI_FAMILY);
    if (!ec) return gai_strerror(EAI_NONAME);  // resolved to nothing
    return ec.message();
}

// --packet-trace: the NSOCK callback line of the operation's event (once; no-op when off).
void nsock_report(Op& op, const char* status, const std::error_code& ec = {},
                  const std::string* data = nullptr) {
    if (!op.nsock || op.done) return;
    op.nsock->rt->embedder().write(
        true, nsock::callback(op.nsock->type, status, op.nsock->eid, op.nsock->peer, ec, data));
    op.nsock.reset();
}

// The NSOCK status word for a failed operation.
const char* nsock_status(const std::error_code& ec) {
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) return "EOF";
    if (ec == asio::error::operation_aborted) return "CANCELLED";
    return "ERROR";
}

// Delivers once; later completions of the same operation are ignored.
void finish(Op& op, Push push) {
    if (op.done) return;
    op.done = true;
    op.timer.cancel();
    op.waker.wake(std::move(push));
}

// Starts the operation's timeout (none for -1).
void arm(const std::shared_ptr<Op>& op, long long ms) {
    if (ms < 0) return;
    op->timer.expires_after(std::chrono::milliseconds(std::min(ms, kMaxTimeoutMs)));
    op->timer.async_wait([op](std::error_code ec) {
        if (ec || op->done) return;
        op->on_timeout(*op);
    });
}

// [-0, +0] A new operation for the calling thread; raises outside script threads.
std::shared_ptr<Op> new_op(lua_State* L, Runtime& rt) {
    auto op = std::make_shared<Op>(rt.io());
    op->waker = rt.prepare_wait(L);
    const ThreadInfo* t = rt.current();  // non-null: prepare_wait raised otherwise
    op->script = t->script_id;
    op->host = t->host;
    return op;
}

// Resolves `host` (numeric addresses directly, names for the socket family) and runs `next`
// from the event loop; resolution failure delivers false, <gai text>.
void resolve_then(const std::shared_ptr<Op>& op, asio::io_context& io, const std::string& host,
                  bool v6, std::function<void(const asio::ip::address&)> next) {
    std::error_code ec;
    asio::ip::address a = asio::ip::make_address(host, ec);
    if (!ec) {
        asio::post(io, [op, a, next = std::move(next)] {
            if (!op->done) next(a);
        });
        return;
    }
    if (common::never_resolves(host)) {  // as the resolver would answer, without a query
        asio::post(io, [op] {
            if (!op->done) finish(*op, push_false(gai_text(asio::error::host_not_found)));
        });
        return;
    }
    op->resolver.emplace(io);
    op->resolver->async_resolve(
        v6 ? tcp::v6() : tcp::v4(), host, "0", tcp::resolver::flags(),
        [op, next = std::move(next)](std::error_code ec, tcp::resolver::results_type r) {
            if (op->done) return;
            if (ec || r.empty()) {
                finish(*op, push_false(gai_text(ec)));
                return;
            }
            next(r.begin()->endpoint().address());
        });
}

// ---- userdata plumbing ----

const std::shared_ptr<SockState>& check_socket(lua_State* L) {
    auto* u = static_cast<Udata*>(luaL_checkudata(L, 1, kSocketMeta));
    if (!u->s) luaL_error(L, "attempt to use a finalized socket");
    return u->s;
}

// Closes the connection's descriptors (or leaves the capture); pending operations complete
// with CANCELLED.
void drop_conn(SockState& s) {
    if (s.conn) {
        s.conn->close();
        s.conn.reset();
    }
    s.pcap.reset();
    s.open = false;
    Governor& g = s.rt->governor();
    if (s.ticket != 0) g.cancel(std::exchange(s.ticket, 0));
    if (s.has_slot) {
        s.has_slot = false;
        g.release(s.slot_tid, s.rt->steady_now());
    }
}

// receive_buf's buffer changed size: count it. False when the budget cannot take it (the
// buffer is then emptied).
bool sync_buf_charge(SockState& s) {
    if (s.buf_charge.set(s.buf.size())) return true;
    s.buf.clear();
    s.buf.shrink_to_fit();
    s.buf_charge.set(0);
    return false;
}

// Full close (close(), __close, __gc). Returns whether the socket was open. Idempotent.
// --script-trace: a new connection's lines go to the terminal output.
std::function<void(const std::string&)> tracer_for(SockState& s) {
    if (!s.rt->script_trace()) return {};
    Runtime* rt = s.rt;
    return [rt](const std::string& line) { rt->embedder().write(false, line); };
}

// --packet-trace: gives the socket an NSOCK descriptor, as nmap makes one per socket object
// and again for a socket used after close(). NSOCK lines go to stderr, as nmap's do.
void nsock_iod(SockState& s) {
    if (s.iod != 0 || !s.rt->packet_trace()) return;
    s.iod = nsock::next_iod();
    s.rt->embedder().write(
        true, nsock::line("nsock_iod_new2", "nsock_iod_new (IOD #" + std::to_string(s.iod) + ")"));
}

// --packet-trace (callers check it: the texts cost on every I/O): the request line of
// `op`'s event: `fn`(): `text` (IOD #n)... EID e, with `before_eid` between the descriptor
// and the event id.
void nsock_request(Op& op, SockState& s, nsock::Event type, std::string peer, std::string_view fn,
                   const std::string& text, const std::string& before_eid,
                   const std::string& after_eid = {}) {
    nsock_iod(s);
    long eid = nsock::next_eid(type);
    s.rt->embedder().write(
        true, nsock::line(fn, text + "IOD #" + std::to_string(s.iod) + before_eid + " EID " +
                                  std::to_string(eid) + after_eid));
    op.nsock = Op::Nsock{s.rt, type, eid, std::move(peer)};
}

bool close_socket(SockState& s) {
    bool was_open = s.open;
    if (s.conn && s.conn->is_open() && (s.conn->connected || s.conn->has_peer))
        s.conn->trace(true, "CLOSE");
    if (s.iod != 0) {
        s.rt->embedder().write(
            true, nsock::line("nsock_iod_delete",
                              "nsock_iod_delete (IOD #" + std::to_string(s.iod) + ")"));
        s.iod = 0;
    }
    drop_conn(s);
    if (s.cleanup != 0) s.rt->remove_cleanup(std::exchange(s.cleanup, 0));
    s.buf.clear();
    s.buf.shrink_to_fit();
    sync_buf_charge(s);
    s.has_bind = false;
    s.bind_addr.reset();
    s.bind_port = 0;
    s.owner = 0;
    return was_open;
}

// Ties the socket's resources to the current base thread: they close when it ends
// (docs/runtime-contract.md "Sockets and script threads").
void ensure_cleanup(lua_State* L, const std::shared_ptr<SockState>& sp) {
    SockState& s = *sp;
    const ThreadInfo* t = s.rt->current();
    std::uint64_t tid = t ? t->id : 0;
    if (s.cleanup != 0 && s.cleanup_thread == tid) return;
    if (s.cleanup != 0) s.rt->remove_cleanup(std::exchange(s.cleanup, 0));
    std::weak_ptr<SockState> weak = sp;
    s.cleanup = s.rt->add_cleanup(L, [weak] {
        if (auto s = weak.lock()) {
            s->cleanup = 0;
            drop_conn(*s);
            s->owner = 0;
        }
    });
    s.cleanup_thread = tid;
}

// Pending I/O belongs to one coroutine (docs/runtime-contract.md "Socket ownership").
void take_ownership(lua_State* L, SockState& s) {
    std::uint64_t me = s.rt->coroutine_id(L);
    if (s.owner != 0 && s.owner != me)
        luaL_error(L, "Invalid reuse of a socket from one thread to another.");
    s.owner = me;
}

// [-0, +2] false, "socket must be connected".
int not_connected(lua_State* L) { return fail_false(L, kNotConnected); }

// Opens `sock` for `proto` and binds it to the bind address if one was given (or to the
// unspecified address when `always_bind`). Returns false on failure.
template <class Socket, class Proto>
bool open_and_bind(SockState& s, Socket& sock, Proto proto, bool always_bind) {
    std::error_code ec;
    // An open socket is already bound (bind, connect or an earlier send did it): binding it
    // again fails, and a connected UDP socket must still sendto (rpc.lua does).
    if (sock.is_open()) return true;
    sock.open(proto, ec);
    if (ec) return false;
    if (s.has_bind || always_bind) {
        asio::ip::address a = s.bind_addr ? *s.bind_addr
                              : proto.family() == AF_INET6
                                  ? asio::ip::address(asio::ip::address_v6::any())
                                  : asio::ip::address(asio::ip::address_v4::any());
        sock.bind(typename Proto::endpoint(a, s.bind_port), ec);
        if (ec) return false;
    }
    return true;
}

// The connection send/receive use: nullptr when not connected. An unconnected UDP socket is
// set up on demand for receiving (bound to the bind address or the unspecified address).
std::shared_ptr<Conn> io_conn(lua_State* L, const std::shared_ptr<SockState>& sp, bool receiving) {
    SockState& s = *sp;
    if (s.conn && s.conn->is_udp && s.conn->is_open()) return s.conn;
    if (s.conn && !s.conn->is_udp && s.conn->connected) return s.conn;
    if (!receiving || !s.udp_proto || s.conn) return nullptr;
    auto c = std::make_shared<Conn>(s.rt->io());
    c->tracer = tracer_for(s);
    c->is_udp = true;
    if (!open_and_bind(s, c->udp_sock, s.inet6 ? udp::v6() : udp::v4(), true))
        luaL_error(L, "Error in setup of iod with proto udp and af %s", s.inet6 ? "inet6" : "inet");
    s.conn = c;
    s.open = true;
    ensure_cleanup(L, sp);
    return c;
}

std::shared_ptr<asio::ssl::context> make_tls_context() {
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    ctx->set_verify_mode(asio::ssl::verify_none);
    SSL_CTX* c = ctx->native_handle();
    // A scanner talks to old and misconfigured servers: accept everything OpenSSL can do.
    SSL_CTX_set_security_level(c, 0);
    SSL_CTX_set_min_proto_version(c, 0);
    SSL_CTX_set_cipher_list(c, "ALL:@SECLEVEL=0");
    SSL_CTX_set_options(c,
                        SSL_OP_ALL | SSL_OP_LEGACY_SERVER_CONNECT | SSL_OP_IGNORE_UNEXPECTED_EOF);
    return ctx;
}

// [-0, +0] The module's TLS context (upvalue 1), created on first use.
std::shared_ptr<asio::ssl::context> tls_context(lua_State* L) {
    auto* m = static_cast<Module*>(luaL_checkudata(L, lua_upvalueindex(1), kModuleMeta));
    if (!m->tls) m->tls = make_tls_context();
    return m->tls;
}

// [-0, +0] Host argument: a host table (ip, else targetname) or a string. `name` gets the
// TLS server name (targetname or the string).
std::string check_host(lua_State* L, int idx, std::string* name) {
    if (lua_istable(L, idx)) {
        std::string addr;
        lua_getfield(L, idx, "targetname");
        if (lua_type(L, -1) == LUA_TSTRING) {
            addr = lua_tostring(L, -1);
            if (name) *name = addr;
        }
        lua_pop(L, 1);
        lua_getfield(L, idx, "ip");
        if (lua_type(L, -1) == LUA_TSTRING) addr = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (addr.empty()) luaL_argerror(L, idx, "host table lacks 'ip' and 'targetname' fields");
        return addr;
    }
    std::string addr = luaL_checkstring(L, idx);
    if (name) *name = addr;
    return addr;
}

// [-0, +0] Port argument: integer or table with integer `number` (and optional `protocol`).
unsigned short check_port(lua_State* L, int idx, std::string* proto) {
    lua_Integer n = 0;
    if (lua_istable(L, idx)) {
        lua_getfield(L, idx, "number");
        int isnum = 0;
        if (lua_type(L, -1) == LUA_TNUMBER) n = lua_tointegerx(L, -1, &isnum);
        if (!isnum) luaL_argerror(L, idx, "port table lacks integer 'number' field");
        lua_pop(L, 1);
        if (proto) {
            lua_getfield(L, idx, "protocol");
            if (lua_type(L, -1) == LUA_TSTRING) *proto = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
    } else {
        n = luaL_checkinteger(L, idx);
    }
    if (n < 0 || n > 65535) luaL_argerror(L, idx, "port number out of range");
    return static_cast<unsigned short>(n);
}

// Ports on which some server greeted (sent first) in this engine: only a wait for a
// greeting that such services give is extended under congestion, not one on a port whose
// services never greet (HTTP, Redis), where waiting longer only costs time. Per engine thread.
std::unordered_set<std::uint16_t>& greeting_ports() {
    thread_local std::unordered_set<std::uint16_t> ports;
    return ports;
}

// ---- connect ----

enum class How { tcp, udp, ssl };

// Connect time-outs retried while the governor sees congestion: a full accept queue costs
// time, not the result.
constexpr int kCongestionRetries = 3;
// A connection closed before its first byte this soon after the handshake was shed by the
// server (accept queue, connection limit), not answered.
constexpr double kEarlyDropSeconds = 1.0;

void tcp_attempt(const std::shared_ptr<Op>& op, const std::shared_ptr<SockState>& sp,
                 const std::shared_ptr<Conn>& c, tcp::endpoint ep, How how,
                 std::shared_ptr<asio::ssl::context> ctx, std::string sni);

void connect_to(const std::shared_ptr<Op>& op, const std::shared_ptr<SockState>& sp,
                const std::shared_ptr<Conn>& c, const asio::ip::address& addr, unsigned short port,
                How how, std::shared_ptr<asio::ssl::context> ctx, std::string sni) {
    // Ownership is released by a completed connect, whatever its outcome.
    auto done = [op, sp, c](Push push) {
        if (sp->conn == c) sp->owner = 0;
        finish(*op, std::move(push));
    };
    SockState& s = *sp;
    if (s.rt->packet_trace()) {
        std::string peer = endpoint_text(addr, port);
        const char* kind = how == How::udp ? "UDP" : how == How::ssl ? "SSL" : "TCP";
        nsock_request(*op, s, how == How::ssl ? nsock::Event::ssl_connect : nsock::Event::connect,
                      peer,
                      how == How::udp   ? "nsock_connect_udp"
                      : how == How::ssl ? "nsock_connect_ssl"
                                        : "nsock_connect_tcp",
                      std::string(kind) + " connection requested to " + peer +
                          (how == How::ssl ? "/tcp (" : " ("),
                      ")");
    }
    if (how == How::udp) {
        udp::endpoint ep(addr, port);
        if (!open_and_bind(s, c->udp_sock, ep.protocol(), false)) {
            nsock_report(*op, "ERROR");
            done(c->udp_sock.is_open() ? push_status(reason::kError)
                                       : push_false("Nsock connect failed immediately"));
            return;
        }
        c->udp_sock.async_connect(ep, [op, c, ep, done](std::error_code ec) {
            nsock_report(*op, ec ? nsock_status(ec) : "SUCCESS", ec);
            if (ec) return done(push_status(status_of(ec)));
            c->connected = true;
            c->trace(true, "CONNECT");
            c->has_peer = true;
            c->peer = ep;
            done(push_true());
        });
        return;
    }
    tcp_attempt(op, sp, c, tcp::endpoint(addr, port), how, std::move(ctx), std::move(sni));
}

// One TCP connect attempt (a fresh socket, so a fresh SYN). Feeds the governor; under
// congestion a timed-out attempt is retried (Op::retry, from the connect's on_timeout).
void tcp_attempt(const std::shared_ptr<Op>& op, const std::shared_ptr<SockState>& sp,
                 const std::shared_ptr<Conn>& c, tcp::endpoint ep, How how,
                 std::shared_ptr<asio::ssl::context> ctx, std::string sni) {
    auto done = [op, sp, c](Push push) {
        if (sp->conn == c) sp->owner = 0;
        op->retry = nullptr;
        finish(*op, std::move(push));
    };
    std::error_code ignored;
    if (op->attempt > 0) {
        c->tcp_sock.close(ignored);  // a fresh socket (and TLS stream) for the new attempt
        c->tcp_up = 0;
    }
    if (!open_and_bind(*sp, c->tcp_sock, ep.protocol(), false)) {
        nsock_report(*op, "ERROR");
        done(c->tcp_sock.is_open() ? push_status(reason::kError)
                                   : push_false("Nsock connect failed immediately"));
        return;
    }
    Runtime* rt = sp->rt;
    int attempt = ++op->attempt;
    op->attempt_started = rt->steady_now();
    std::weak_ptr<Op> weak = op;
    op->retry = [weak, sp, c, ep, how, ctx, sni] {
        auto o = weak.lock();
        if (!o) return;
        arm(o, sp->timeout_ms);
        if (c->handshaking) {
            std::error_code ignored;
            c->tcp_sock.close(ignored);  // ends the old handshake; the new attempt follows it
            std::weak_ptr<Conn> wc = c;  // the Conn holds this function: no cycle
            c->after_handshake = [weak, sp, wc, ep, how, ctx, sni] {
                auto o2 = weak.lock();
                auto c2 = wc.lock();
                if (o2 && c2 && !o2->done) tcp_attempt(o2, sp, c2, ep, how, ctx, sni);
            };
            return;
        }
        tcp_attempt(o, sp, c, ep, how, ctx, sni);
    };
    c->tcp_sock.async_connect(ep, [op, c, how, ctx, sni, done, rt, attempt](std::error_code ec) {
        if (attempt != op->attempt || op->done) return;  // replaced by a retry, or timed out
        double now = rt->steady_now();
        if (!ec) {
            // Loopback simultaneous open onto its own port: nothing listens there.
            std::error_code a, b;
            if (c->tcp_sock.local_endpoint(a) == c->tcp_sock.remote_endpoint(b) && !a && !b)
                ec = asio::error::connection_refused;
        }
        if (ec) {
            nsock_report(*op, nsock_status(ec), ec);
            return done(push_status(status_of(ec)));
        }
        c->tcp_up = now;
        if (how != How::ssl) {
            nsock_report(*op, "SUCCESS");
            rt->governor().feedback(Signal::connected, now - op->attempt_started, now);
            c->connected = true;
            c->trace(true, "CONNECT");
            return done(push_true());
        }
        // The handshake is part of the connect for the governor: a server too busy to
        // finish it in time is congestion too.
        c->handshaking = true;
        c->start_tls(ctx, sni).async_handshake(
            asio::ssl::stream_base::client, [op, c, done, rt, attempt](std::error_code ec) {
                c->handshaking = false;
                if (c->after_handshake) {  // a retry was waiting for this attempt to end
                    auto next = std::move(c->after_handshake);
                    c->after_handshake = nullptr;
                    return next();
                }
                if (attempt != op->attempt || op->done) return;
                double now = rt->steady_now();
                if (ec) {
                    if (ec != asio::error::operation_aborted &&
                        now - c->tcp_up < kEarlyDropSeconds &&
                        (ec == asio::error::eof || ec == asio::error::connection_reset ||
                         ec == asio::ssl::error::stream_truncated))
                        rt->governor().feedback(Signal::early_drop, now - c->tcp_up, now);
                    nsock_report(*op, nsock_status(ec), ec);
                    return done(push_status(status_of(ec)));
                }
                nsock_report(*op, "SUCCESS");
                rt->governor().feedback(Signal::connected, now - op->attempt_started, now);
                c->connected = true;
                c->trace(true, "CONNECT");
                done(push_true());
            });
    });
}

int l_connect(lua_State* L) {
    const auto sp = check_socket(L);
    SockState& s = *sp;
    std::string sni;
    std::string host = check_host(L, 2, &sni);
    std::string port_proto;
    unsigned short port = check_port(L, 3, &port_proto);
    std::string how_name = luaL_optstring(
        L, 4, port_proto.empty() ? (s.udp_proto ? "udp" : "tcp") : port_proto.c_str());
    How how;
    if (how_name == "tcp")
        how = How::tcp;
    else if (how_name == "udp")
        how = How::udp;
    else if (how_name == "ssl")
        how = How::ssl;
    else
        return luaL_argerror(
            L, 4, lua_pushfstring(L, "invalid connection method '%s'", how_name.c_str()));
    take_ownership(L, s);
    std::shared_ptr<asio::ssl::context> ctx;
    if (how == How::ssl) ctx = tls_context(L);

    // A connected socket is closed first; the bind address survives, the buffer does not.
    drop_conn(s);
    s.buf.clear();
    sync_buf_charge(s);
    s.sni = sni;
    auto c = std::make_shared<Conn>(s.rt->io());
    c->tracer = tracer_for(s);
    c->is_udp = how == How::udp;
    s.conn = c;
    s.open = true;
    ensure_cleanup(L, sp);

    Runtime& rt = *s.rt;
    auto op = new_op(L, rt);
    op->on_timeout = [c, sp](Op& o) {
        Runtime& rt = *sp->rt;
        double now = rt.steady_now();
        if (o.retry && !c->connected) {
            // The connect itself (TCP, then TLS) timed out: a congestion signal, and while
            // the governor sees congestion, another attempt rather than a lost result.
            rt.governor().feedback(Signal::timeout, now - o.attempt_started, now);
            if (o.attempt <= kCongestionRetries && rt.governor().congested(now)) {
                rt.governor().note_retry();
                auto retry = o.retry;
                retry();
                return;
            }
        }
        if (o.resolver) o.resolver->cancel();
        c->cancel();
        if (sp->conn == c) sp->owner = 0;
        o.retry = nullptr;
        nsock_report(o, "TIMEOUT");
        finish(o, push_status(reason::kTimeout));
    };
    // The connect starts once the thread holds a governor slot; the time-out runs from then.
    auto start = [op, sp, c, host, port, how, ctx, sni] {
        if (op->done || sp->conn != c) return;
        arm(op, sp->timeout_ms);
        resolve_then(op, sp->rt->io(), host, sp->inet6,
                     [op, sp, c, port, how, ctx, sni](const asio::ip::address& a) {
                         connect_to(op, sp, c, a, port, how, ctx, sni);
                     });
    };
    const ThreadInfo* t = rt.current();
    std::uint64_t tid = t->id;
    std::weak_ptr<SockState> weak = sp;
    asio::io_context* io = &rt.io();
    // A thread holding a mutex goes first: slot holders may be waiting for that mutex.
    s.ticket =
        rt.governor().acquire(tid, t->locks_held > 0, rt.steady_now(), [weak, tid, io, start] {
            auto sp = weak.lock();
            if (!sp) return;
            sp->ticket = 0;
            sp->has_slot = true;
            sp->slot_tid = tid;
            asio::post(*io, start);
        });
    if (s.ticket == 0) {
        s.has_slot = true;
        s.slot_tid = tid;
        start();
    }
    return nse::yield(L);
}

// ---- reading ----

enum class ReadMode { some, bytes, lines };

bool satisfied(Op& op, ReadMode mode, lua_Integer n) {
    if (mode == ReadMode::bytes) return static_cast<lua_Integer>(op.data.size()) >= n;
    if (mode == ReadMode::lines) {
        auto from = op.data.begin() + static_cast<std::ptrdiff_t>(op.lines_scanned);
        op.lines_seen += std::count(from, op.data.end(), '\n');
        op.lines_scanned = op.data.size();
        return op.lines_seen >= n;
    }
    return true;
}

void read_step(const std::shared_ptr<Op>& op, const std::shared_ptr<Conn>& c, ReadMode mode,
               lua_Integer n, Runtime* rt) {
    c->read_some(
        c, asio::buffer(op->chunk), [op, c, mode, n, rt](std::error_code ec, std::size_t len) {
            if (op->done) return;
            // Grown by hand so the charge covers the capacity, not just the size.
            std::size_t need = op->data.size() + len;
            std::size_t cap = need <= op->data.capacity()
                                  ? op->data.capacity()
                                  : std::max(need, op->data.capacity() + op->data.capacity() / 2);
            if (!op->charge.set(cap)) {
                // What the script asked for does not fit the engine's memory cap.
                c->cancel();
                op->data.clear();
                op->data.shrink_to_fit();
                op->charge.reset();
                rt->note_resource_loss(op->script, op->host, "memory");
                nsock_report(*op, "ERROR");
                c->trace_data(false, op->chunk.data(), len);
                finish(*op, push_status(kNotEnoughMemory));
                return;
            }
            op->data.reserve(cap);
            op->data.append(op->chunk.data(), len);
            if (len > 0 && c->bytes_in == 0 && !c->is_udp && !c->ssl && !c->wrote &&
                c->tcp_up > 0) {
                std::error_code ignored;
                greeting_ports().insert(c->tcp_sock.remote_endpoint(ignored).port());
                // A greeting (banner) the server sent by itself: how long a fork-per-connection
                // daemon takes to greet is how loaded it is.
                double now = rt->steady_now();
                rt->governor().feedback(Signal::greeting, now - c->tcp_up, now);
            }
            c->bytes_in += len;
            if (ec && !c->is_udp && c->bytes_in == 0 && c->tcp_up > 0 &&
                ec != asio::error::operation_aborted) {
                // Closed or reset before the first byte, right after the connect: a server
                // shedding load (full queues, connection limits).
                double now = rt->steady_now();
                if (now - c->tcp_up < kEarlyDropSeconds)
                    rt->governor().feedback(Signal::early_drop, now - c->tcp_up, now);
            }
            auto trace_chunk = [&] { c->trace_data(false, op->chunk.data(), len); };
            if (ec) {
                // receive_bytes/lines hand back what they have on EOF or error.
                if (mode != ReadMode::some && !op->data.empty()) {
                    nsock_report(*op, "SUCCESS", {}, &op->data);
                    trace_chunk();
                    finish(*op, push_data(std::move(op->data)));
                } else {
                    nsock_report(*op, nsock_status(ec), ec);
                    trace_chunk();
                    finish(*op, push_status(status_of(ec)));
                }
                return;
            }
            // A UDP read always ends with its datagram, whatever the mode.
            if (c->is_udp || satisfied(*op, mode, n)) {
                nsock_report(*op, "SUCCESS", {}, &op->data);
                trace_chunk();
                finish(*op, push_data(std::move(op->data)));
                return;
            }
            trace_chunk();
            read_step(op, c, mode, n, rt);
        });
}

// Starts a read on the socket at index 1 and yields; k (if any) gets true, data | nil, status.
int start_read(lua_State* L, ReadMode mode, lua_Integer n, bool check_owner,
               lua_KFunction k = nullptr) {
    const auto sp = check_socket(L);
    SockState& s = *sp;
    if (check_owner) take_ownership(L, s);
    std::shared_ptr<Conn> c = io_conn(L, sp, true);
    if (!c) return not_connected(L);
    auto op = new_op(L, *s.rt);
    op->charge = MemCharge(s.rt->memory());
    op->chunk.resize(kChunk);
    Runtime* rt = s.rt;
    long long ms = s.timeout_ms;
    op->on_timeout = [c, mode, rt, ms](Op& o) {
        // Waiting for a greeting on a fresh connection while servers are congested: the
        // server accepted but is too loaded to greet yet. One more time-out on the same
        // connection (nothing is resent) rather than a lost result.
        std::error_code ignored;
        if (!o.extended && !c->is_udp && !c->wrote && c->bytes_in == 0 && o.data.empty() &&
            greeting_ports().count(c->tcp_sock.remote_endpoint(ignored).port()) > 0 &&
            rt->governor().congested(rt->steady_now())) {
            o.extended = true;
            rt->governor().note_retry();
            auto self = o.shared_from_this();
            arm(self, ms);
            return;
        }
        c->cancel();
        if (mode != ReadMode::some && !o.data.empty()) {
            nsock_report(o, "SUCCESS", {}, &o.data);
            finish(o, push_data(std::move(o.data)));
        } else {
            nsock_report(o, "TIMEOUT");
            finish(o, push_status(reason::kTimeout));
        }
    };
    if (s.rt->packet_trace()) {
        std::string peer = c->peer_text();
        if (mode == ReadMode::bytes)
            nsock_request(*op, s, nsock::Event::read, peer, "nsock_readbytes",
                          "Read request for " + std::to_string(n) + " bytes from ",
                          " [" + peer + "]");
        else if (mode == ReadMode::lines)
            nsock_request(*op, s, nsock::Event::read, peer, "nsock_readlines",
                          "Read request for " + std::to_string(n) + " lines from ",
                          " [" + peer + "]");
        else
            nsock_request(*op, s, nsock::Event::read, peer, "nsock_read", "Read request from ",
                          " [" + peer + "] (timeout: " + std::to_string(s.timeout_ms) + "ms)");
    }
    arm(op, s.timeout_ms);
    read_step(op, c, mode, n, s.rt);
    return nse::yield(L, 0, k);
}

int l_receive(lua_State* L) {
    check_socket(L);
    return start_read(L, ReadMode::some, 0, true);
}

int l_receive_bytes(lua_State* L) {
    check_socket(L);
    lua_Integer n = luaL_checkinteger(L, 2);
    return start_read(L, ReadMode::bytes, n, true);
}

int l_receive_lines(lua_State* L) {
    check_socket(L);
    lua_Integer n = luaL_checkinteger(L, 2);
    return start_read(L, ReadMode::lines, n, true);
}

// receive_buf: [1] socket, [2] delimiter, [3] keep. Returns the number of results pushed on
// a match, -1 when the buffer holds no match. Raises on invalid indices.
int recvbuf_match(lua_State* L, SockState& s) {
    // The empty buffer is tested too, as nmap does (a matcher may accept it).
    if (lua_isfunction(L, 2)) {
        lua_pushvalue(L, 2);                             // f
        lua_pushlstring(L, s.buf.data(), s.buf.size());  // f buf
        lua_call(L, 1, 2);                               // start end
    } else {
        lua_pushvalue(L, lua_upvalueindex(2));           // string.find
        lua_pushlstring(L, s.buf.data(), s.buf.size());  // find buf
        lua_pushvalue(L, 2);                             // find buf pattern
        lua_call(L, 2, 2);                               // start end
    }
    if (lua_isnil(L, -2)) {
        lua_pop(L, 2);
        return -1;
    }
    int ok1 = 0, ok2 = 0;
    lua_Integer b = lua_tointegerx(L, -2, &ok1);
    lua_Integer e = lua_tointegerx(L, -1, &ok2);
    lua_pop(L, 2);
    if (!ok1 || !ok2 || b > e || e > static_cast<lua_Integer>(s.buf.size()) || e < 0)
        return luaL_error(L, "invalid indices for match");
    std::size_t take = lua_toboolean(L, 3)
                           ? static_cast<std::size_t>(e)
                           : static_cast<std::size_t>(std::max<lua_Integer>(b - 1, 0));
    lua_pushboolean(L, 1);
    lua_pushlstring(L, s.buf.data(), take);
    s.buf.erase(0, static_cast<std::size_t>(e));
    sync_buf_charge(s);
    return 2;
}

int recvbuf_k(lua_State* L, int status, lua_KContext ctx);

// Tests the buffer, else reads more and continues in recvbuf_k.
int recvbuf_loop(lua_State* L) {
    SockState& s = *check_socket(L);
    int n = recvbuf_match(L, s);
    if (n >= 0) return n;
    lua_settop(L, 3);
    return start_read(L, ReadMode::some, 0, false, recvbuf_k);
}

int recvbuf_step(lua_State* L) {
    // Stack: socket delim keep | true data  or  socket delim keep | nil status
    if (lua_gettop(L) >= 4 && !lua_toboolean(L, 4)) return lua_gettop(L) - 3;
    SockState& s = *check_socket(L);
    std::size_t len = 0;
    const char* data = lua_tolstring(L, 5, &len);
    if (data) s.buf.append(data, len);
    if (!sync_buf_charge(s)) {
        s.rt->note_resource_loss("memory");
        return fail_nil(L, kNotEnoughMemory);
    }
    lua_settop(L, 3);
    return recvbuf_loop(L);
}

int recvbuf_k(lua_State* L, int, lua_KContext) {
    return nse::guard<recvbuf_step>(L);  // continuations are not wrapped at registration
}

int l_receive_buf(lua_State* L) {
    SockState& s = *check_socket(L);
    if (!lua_isfunction(L, 2) && !lua_isstring(L, 2)) luaL_typeerror(L, 2, "string or function");
    luaL_checktype(L, 3, LUA_TBOOLEAN);
    lua_settop(L, 3);
    take_ownership(L, s);
    return recvbuf_loop(L);
}

// ---- writing ----

void start_write(const std::shared_ptr<Op>& op, SockState& s, const std::shared_ptr<Conn>& c) {
    op->on_timeout = [c](Op& o) {
        c->cancel();
        nsock_report(o, "TIMEOUT");
        finish(o, push_status(reason::kTimeout));
    };
    if (s.rt->packet_trace()) {
        std::string peer = c->peer_text();
        nsock_request(*op, s, nsock::Event::write, peer, "nsock_write",
                      "Write request for " + std::to_string(op->data.size()) + " bytes to ", "",
                      " [" + peer + "]");
    }
    arm(op, s.timeout_ms);
    c->write(asio::buffer(op->data), [op, c](std::error_code ec, std::size_t) {
        nsock_report(*op, ec ? nsock_status(ec) : "SUCCESS", ec);
        finish(*op, ec ? push_status(status_of(ec)) : push_true());
    });
}

int l_send(lua_State* L) {
    const auto sp = check_socket(L);
    SockState& s = *sp;
    std::size_t len = 0;
    const char* data = luaL_checklstring(L, 2, &len);
    take_ownership(L, s);
    std::shared_ptr<Conn> c = io_conn(L, sp, false);
    if (!c) return not_connected(L);
    auto op = new_op(L, *s.rt);
    op->data.assign(data, len);
    start_write(op, s, c);
    return nse::yield(L);
}

int l_sendto(lua_State* L) {
    const auto sp = check_socket(L);
    SockState& s = *sp;
    std::string host = check_host(L, 2, nullptr);
    unsigned short port = check_port(L, 3, nullptr);
    std::size_t len = 0;
    const char* data = luaL_checklstring(L, 4, &len);
    take_ownership(L, s);
    if (s.conn && !s.conn->is_udp) {
        // Connected TCP: the data goes on the connection and the address is ignored, as in
        // nmap (rpc.lua sends every packet with sendto, over TCP too).
        std::shared_ptr<Conn> c = io_conn(L, sp, false);
        if (!c) return not_connected(L);
        auto op = new_op(L, *s.rt);
        op->data.assign(data, len);
        start_write(op, s, c);
        return nse::yield(L);
    }
    if (!s.conn) {
        auto c = std::make_shared<Conn>(s.rt->io());
        c->tracer = tracer_for(s);
        c->is_udp = true;
        s.conn = c;
        s.open = true;
        ensure_cleanup(L, sp);
    }
    std::shared_ptr<Conn> c = s.conn;
    auto op = new_op(L, *s.rt);
    op->data.assign(data, len);
    op->on_timeout = [c](Op& o) {
        if (o.resolver) o.resolver->cancel();
        c->cancel();
        nsock_report(o, "TIMEOUT");
        finish(o, push_status(reason::kTimeout));
    };
    arm(op, s.timeout_ms);
    resolve_then(op, s.rt->io(), host, s.inet6, [op, sp, c, port](const asio::ip::address& a) {
        udp::endpoint ep(a, port);
        if (sp->rt->packet_trace()) {
            std::string peer = endpoint_text(a, port);
            nsock_request(*op, *sp, nsock::Event::write, peer, "nsock_sendto",
                          "Sendto request for " + std::to_string(op->data.size()) + " bytes to ",
                          "", " [" + peer + "]");
        }
        if (!open_and_bind(*sp, c->udp_sock, ep.protocol(), false)) {
            nsock_report(*op, "ERROR");
            return finish(*op, push_status(reason::kError));
        }
        c->udp_sock.async_send_to(asio::buffer(op->data), ep,
                                  [op, c, ep](std::error_code ec, std::size_t) {
                                      if (!ec && !c->connected) {
                                          c->peer = ep;
                                          c->has_peer = true;
                                      }
                                      nsock_report(*op, ec ? nsock_status(ec) : "SUCCESS", ec);
                                      finish(*op, ec ? push_status(status_of(ec)) : push_true());
                                  });
    });
    return nse::yield(L);
}

// ---- TLS ----

int l_reconnect_ssl(lua_State* L) {
    const auto sp = check_socket(L);
    SockState& s = *sp;
    take_ownership(L, s);
    if (!s.conn || s.conn->is_udp || !s.conn->connected) return not_connected(L);
    std::shared_ptr<Conn> c = s.conn;
    auto ctx = tls_context(L);
    s.buf.clear();
    sync_buf_charge(s);
    auto op = new_op(L, *s.rt);
    op->on_timeout = [c, sp](Op& o) {
        c->cancel();
        if (sp->conn == c) sp->owner = 0;
        finish(o, push_status(reason::kTimeout));
    };
    arm(op, s.timeout_ms);
    c->start_tls(ctx, s.sni)
        .async_handshake(asio::ssl::stream_base::client, [op, sp, c](std::error_code ec) {
            if (sp->conn == c) sp->owner = 0;
            finish(*op, ec ? push_status(status_of(ec)) : push_true());
        });
    return nse::yield(L);
}

int l_get_ssl_certificate(lua_State* L) {
    SockState& s = *check_socket(L);
    if (!s.conn || !s.conn->ssl) return luaL_argerror(L, 1, "not a SSL socket");
    std::unique_ptr<X509, decltype(&X509_free)> cert(
        SSL_get1_peer_certificate(s.conn->ssl->native_handle()), &X509_free);
    if (!cert) {
        lua_pushnil(L);
        return 1;
    }
    return push_certificate(L, cert.get());
}

// ---- pcap ----
//
// One libpcap handle per (device, snaplen, promisc, bpf) per engine, non-blocking, its
// selectable descriptor watched by the engine's Asio loop. Captured packets go into the
// capture's ring; every subscribed socket reads the ring from its own cursor (packets
// captured after its pcap_open), so each socket sees what a private handle would have seen.
// Sockets opened with a test function only take the packets whose hash (the function's
// result) equals the hash they registered with pcap_register.

constexpr std::size_t kRingPackets = 4096;  // per capture; older packets are dropped
constexpr std::size_t kRingBytes = 16 * 1024 * 1024;
constexpr std::size_t kDispatchFrames = 16384;  // per readiness event, then yield to others

struct Packet {
    std::string data;    // link header + layer 3, as captured
    std::size_t l2 = 0;  // link header length
    double time = 0;
};

// One pending pcap_receive: resumed once, by a new packet (no values: rescan) or by its
// timeout / the socket closing (the final status).
struct PcapWait {
    explicit PcapWait(asio::io_context& io) : timer(io) {}
    Waker waker;
    asio::steady_timer timer;
    bool done = false;
};

void wake_wait(PcapWait& w, Push push) {
    if (w.done) return;
    w.done = true;
    w.timer.cancel();
    w.waker.wake(std::move(push));
}

struct Capture {
    explicit Capture(std::shared_ptr<packet::Capture> p) : pcap(std::move(p)) {}
    Capture(const Capture&) = delete;
    Capture& operator=(const Capture&) = delete;

    std::uint64_t end() const { return first + ring.size(); }

    std::shared_ptr<packet::Capture> pcap;
    std::deque<std::shared_ptr<const Packet>> ring;
    std::uint64_t first = 0;  // sequence number of ring.front()
    std::size_t bytes = 0;
    bool fresh = false;   // packets arrived in the current batch
    bool failed = false;  // the device went away: every receive ends with ERROR
    std::vector<PcapSub*> subs;
    std::vector<std::weak_ptr<PcapWait>> waiters;
};

// A socket's membership in a capture.
struct PcapSub {
    ~PcapSub() {
        if (wait) wake_wait(*wait, push_status(reason::kCancelled));
        if (!cap) return;
        auto& v = cap->subs;
        v.erase(std::remove(v.begin(), v.end(), this), v.end());
    }
    std::shared_ptr<Capture> cap;
    std::uint64_t cursor = 0;        // next sequence number to look at
    bool hashed = false;             // opened with a test function
    std::string hash;                // registered with pcap_register ("" until then)
    std::shared_ptr<PcapWait> wait;  // the pending receive
    long long deadline = -1;         // of the pending receive (steady ms, -1: none)
};

// Drops packets every subscriber has passed, then the oldest beyond the ring's bounds.
void trim(Capture& c) {
    std::uint64_t low = c.end();
    for (const PcapSub* s : c.subs)
        low = std::min(low, s->cursor);
    while (!c.ring.empty() &&
           (c.first < low || c.ring.size() > kRingPackets || c.bytes > kRingBytes)) {
        c.bytes -= c.ring.front()->data.size();
        c.ring.pop_front();
        ++c.first;
    }
}

// Wakes every waiting receive of the capture to rescan (or to fail, once the capture failed).
void notify(Capture& c) {
    auto waiters = std::move(c.waiters);
    c.waiters.clear();
    for (auto& w : waiters)
        if (auto sw = w.lock())
            wake_wait(*sw,
                      c.failed ? push_status(reason::kError) : Push([](lua_State*) { return 0; }));
}

// Opens a capture and starts feeding its ring; nullptr and `err` (libpcap's text) on failure.
std::shared_ptr<Capture> open_capture(asio::io_context& io, const std::string& dev, int snaplen,
                                      bool promisc, const std::string& bpf, std::string& err) {
    packet::CaptureOptions o;
    o.snaplen = snaplen;
    o.promisc = promisc;
    o.filter = bpf;
    auto opened = packet::Capture::open(io, dev, o);
    if (!opened) {
        err = opened.message();
        return nullptr;
    }
    auto c = std::make_shared<Capture>(std::move(*opened));
    std::weak_ptr<Capture> weak = c;
    const int linktype = c->pcap->linktype();
    c->pcap->start(
        [weak, linktype](const packet::Frame& f) {
            auto cp = weak.lock();
            if (!cp) return;
            auto p = std::make_shared<Packet>();
            p->data.assign(reinterpret_cast<const char*>(f.data), f.size);
            p->l2 = packet::parse_link_header(linktype, f.data, f.size).length;
            p->time = f.time;
            cp->bytes += p->data.size();
            cp->ring.push_back(std::move(p));
            cp->fresh = true;
        },
        [weak](const common::Status& st) {
            auto cp = weak.lock();
            if (!cp) return;
            if (!st) cp->failed = true;
            trim(*cp);
            if (cp->fresh || cp->failed) notify(*cp);
            cp->fresh = false;
        },
        kDispatchFrames);
    return c;
}

// pcap_open(device, snaplen, promisc, bpf)                  (7.93)
// pcap_open(device, snaplen, promisc, test_function, bpf)   (hash form, with pcap_register)
int l_pcap_open(lua_State* L) {
    const auto sp = check_socket(L);
    SockState& s = *sp;
    std::size_t devlen = 0;
    const char* dev = luaL_checklstring(L, 2, &devlen);
    lua_Integer snaplen = luaL_checkinteger(L, 3);
    bool hashed = lua_isfunction(L, 5);
    bool promisc;
    if (hashed && !lua_isboolean(L, 4)) {
        promisc = luaL_checkinteger(L, 4) != 0;  // the old form passed 0/1
    } else {
        luaL_checktype(L, 4, LUA_TBOOLEAN);
        promisc = lua_toboolean(L, 4);
    }
    std::string bpf = luaL_optstring(L, hashed ? 6 : 5, "");
    if (s.open || s.pcap) return luaL_error(L, "socket is already open");
    if (devlen == 0 || devlen >= IFNAMSIZ || std::strlen(dev) != devlen)
        return luaL_error(L, "bad device name");
    if (snaplen <= 0 || snaplen > 262144) snaplen = 262144;

    auto* m = static_cast<Module*>(luaL_checkudata(L, lua_upvalueindex(1), kModuleMeta));
    std::string key = std::string(dev, devlen) + '\0' + std::to_string(snaplen) + '\0' +
                      (promisc ? "1" : "0") + '\0' + bpf;
    std::shared_ptr<Capture> cap = m->captures[key].lock();
    if (!cap) {
        std::string err;
        cap = open_capture(s.rt->io(), dev, static_cast<int>(snaplen), promisc, bpf, err);
        if (!cap) return luaL_error(L, "can't open pcap reader on %s (%s)", dev, err.c_str());
        std::erase_if(m->captures, [](const auto& kv) { return kv.second.expired(); });
        m->captures[key] = cap;
    }
    auto sub = std::make_shared<PcapSub>();
    sub->cap = cap;
    sub->cursor = cap->end();
    sub->hashed = hashed;
    cap->subs.push_back(sub.get());
    if (hashed)
        lua_pushvalue(L, 5);
    else
        lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);
    s.pcap = std::move(sub);
    s.open = true;
    ensure_cleanup(L, sp);
    return 0;
}

SockState& check_pcap(lua_State* L) {
    SockState& s = *check_socket(L);
    if (!s.pcap) luaL_error(L, "not a pcap socket");
    return s;
}

// pcap_register(hash): the hash form's socket receives the packets whose test function
// returns `hash`.
int l_pcap_register(lua_State* L) {
    SockState& s = check_pcap(L);
    std::size_t len = 0;
    const char* h = luaL_checklstring(L, 2, &len);
    s.pcap->hash.assign(h, len);
    return 0;
}

long long steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

int pcap_k(lua_State* L, int status, lua_KContext ctx);

// Stack: [1] socket. Looks through the packets after the socket's cursor; on a match
// returns true, captured_len, l2, l3, time; else waits for more until `deadline` (-1: none).
int pcap_scan(lua_State* L, long long deadline) {
    const auto sp = check_socket(L);
    SockState& s = *sp;
    std::shared_ptr<PcapSub> sub = s.pcap;
    if (!sub) {
        return fail_nil(L, reason::kCancelled);
    }
    std::shared_ptr<Capture> cap = sub->cap;
    sub->cursor = std::max(sub->cursor, cap->first);  // packets dropped from a full ring
    while (sub->cursor < cap->end()) {
        std::shared_ptr<const Packet> p = cap->ring[sub->cursor - cap->first];
        ++sub->cursor;
        std::size_t n = p->data.size();
        if (sub->hashed) {
            lua_getiuservalue(L, 1, 1);                             // fn
            lua_pushinteger(L, static_cast<lua_Integer>(n));        // fn size
            lua_pushlstring(L, p->data.data(), p->l2);              // fn size l2
            lua_pushlstring(L, p->data.data() + p->l2, n - p->l2);  // fn size l2 l3
            lua_call(L, 3, 1);                                      // hash
            std::size_t hl = 0;
            const char* h = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
                                ? lua_tolstring(L, -1, &hl)
                                : nullptr;
            bool match = h && s.pcap == sub && std::string_view(h, hl) == sub->hash;
            lua_pop(L, 1);
            if (s.pcap != sub) break;  // the test function closed the socket
            if (!match) continue;
        }
        trim(*cap);
        lua_pushboolean(L, 1);
        lua_pushinteger(L, static_cast<lua_Integer>(n));
        lua_pushlstring(L, p->data.data(), p->l2);
        lua_pushlstring(L, p->data.data() + p->l2, n - p->l2);
        lua_pushnumber(L, p->time);
        return 5;
    }
    if (s.pcap != sub) {
        return fail_nil(L, reason::kCancelled);
    }
    trim(*cap);
    if (cap->failed) {
        return fail_nil(L, reason::kError);
    }
    long long left = deadline < 0 ? -1 : deadline - steady_ms();
    if (deadline >= 0 && left <= 0) {
        return fail_nil(L, reason::kTimeout);
    }
    auto w = std::make_shared<PcapWait>(s.rt->io());
    w->waker = s.rt->prepare_wait(L);
    if (left >= 0) {
        w->timer.expires_after(std::chrono::milliseconds(std::min(left, kMaxTimeoutMs)));
        w->timer.async_wait([w](std::error_code ec) {
            if (!ec) wake_wait(*w, push_status(reason::kTimeout));
        });
    }
    sub->wait = w;
    sub->deadline = deadline;
    cap->waiters.push_back(w);
    lua_settop(L, 1);
    return nse::yield(L, 0, pcap_k);
}

// After a wake: the final values were delivered (timeout, close, failure), or it is time
// to rescan.
int pcap_resume(lua_State* L) {
    if (lua_gettop(L) > 1) return lua_gettop(L) - 1;
    SockState& s = *check_socket(L);
    if (!s.pcap) {
        return fail_nil(L, reason::kCancelled);
    }
    s.pcap->wait.reset();
    return pcap_scan(L, s.pcap->deadline);
}

int pcap_k(lua_State* L, int, lua_KContext) {
    return nse::guard<pcap_resume>(L);  // continuations are not wrapped at registration
}

int l_pcap_receive(lua_State* L) {
    SockState& s = check_pcap(L);
    take_ownership(L, s);
    lua_settop(L, 1);
    long long deadline = s.timeout_ms < 0 ? -1 : steady_ms() + s.timeout_ms;
    return pcap_scan(L, deadline);
}

// ---- the rest ----

int l_bind(lua_State* L) {
    SockState& s = *check_socket(L);
    const char* addr = luaL_optstring(L, 2, nullptr);
    lua_Integer port = luaL_checkinteger(L, 3);
    if (port < 0 || port > 65535) return luaL_argerror(L, 3, "port number out of range");
    std::optional<asio::ip::address> a;
    if (addr) {
        // Numeric only: getaddrinfo gives the error text the contract wants.
        addrinfo hints{};
        hints.ai_flags = AI_NUMERICHOST;
        addrinfo* res = nullptr;
        int rc = getaddrinfo(addr, nullptr, &hints, &res);
        if (rc != 0) {
            return fail_false(L, std::string("getaddrinfo: ") + gai_strerror(rc));
        }
        freeaddrinfo(res);
        std::error_code ec;
        a = asio::ip::make_address(addr, ec);
        if (ec) {
            return fail_false(L, "getaddrinfo: " + ec.message());
        }
    }
    s.has_bind = true;
    s.bind_addr = a;
    s.bind_port = static_cast<unsigned short>(port);
    lua_pushboolean(L, 1);
    return 1;
}

int l_get_info(lua_State* L) {
    SockState& s = *check_socket(L);
    std::shared_ptr<Conn> c = s.conn;
    if (!c || !c->is_open() || (!c->is_udp && !c->connected)) return not_connected(L);
    std::error_code ec;
    asio::ip::address lip, rip;
    unsigned short lport = 0, rport = 0;
    if (c->is_udp) {
        udp::endpoint le = c->udp_sock.local_endpoint(ec);
        lip = le.address();
        lport = le.port();
        if (c->has_peer) {
            rip = c->peer.address();
            rport = c->peer.port();
        } else if (lip.is_v6()) {
            rip = asio::ip::address_v6::any();
        }
    } else {
        tcp::endpoint le = c->tcp_sock.local_endpoint(ec);
        tcp::endpoint re;
        if (!ec) re = c->tcp_sock.remote_endpoint(ec);
        lip = le.address();
        lport = le.port();
        rip = re.address();
        rport = re.port();
    }
    if (ec) {
        return fail_nil(L, reason::kError);
    }
    lua_pushboolean(L, 1);
    lua_pushstring(L, lip.to_string().c_str());
    lua_pushinteger(L, lport);
    lua_pushstring(L, rip.to_string().c_str());
    lua_pushinteger(L, rport);
    return 5;
}

int l_set_timeout(lua_State* L) {
    SockState& s = *check_socket(L);
    lua_Number t = std::floor(luaL_checknumber(L, 2));
    if (t < -1) return luaL_error(L, "Negative timeout: %f", t);
    s.timeout_ms =
        t > static_cast<lua_Number>(kMaxTimeoutMs) ? kMaxTimeoutMs : static_cast<long long>(t);
    lua_pushboolean(L, 1);
    return 1;
}

int l_close(lua_State* L) {
    SockState& s = *check_socket(L);
    if (!close_socket(s)) {
        return fail_false(L, "socket already closed");
    }
    lua_pushboolean(L, 1);
    return 1;
}

// __close: like close(), silently.
int m_close(lua_State* L) {
    auto* u = static_cast<Udata*>(luaL_checkudata(L, 1, kSocketMeta));
    if (u->s) close_socket(*u->s);
    return 0;
}

// __gc: close, then release the state (pending handlers may still hold it).
int m_gc(lua_State* L) {
    auto* u = static_cast<Udata*>(luaL_checkudata(L, 1, kSocketMeta));
    if (u->s) close_socket(*u->s);
    u->s.reset();  // Lua frees the block without destructors: leave nothing owned in it
    return 0;
}

int l_new(lua_State* L) {
    static const char* const protos[] = {"tcp", "udp", nullptr};
    static const char* const families[] = {"inet", "inet6", nullptr};
    Runtime& rt = runtime(L);
    int proto = luaL_checkoption(L, 1, "tcp", protos);
    int af = luaL_checkoption(L, 2, rt.ipv6() ? "inet6" : "inet", families);
    // Created closed: the userdata exists (and will be collected) before any state.
    // User value 1: the pcap test function (hash form of pcap_open).
    auto* u = static_cast<Udata*>(lua_newuserdatauv(L, sizeof(Udata), 1));
    new (u) Udata();
    luaL_setmetatable(L, kSocketMeta);
    auto s = std::make_shared<SockState>();
    s->rt = &rt;
    s->buf_charge = MemCharge(rt.memory());
    s->udp_proto = proto == 1;
    s->inet6 = af == 1;
    nsock_iod(*s);
    u->s = std::move(s);
    return 1;
}

// nmap.socket.sleep(seconds): a timer; a cleanup cancels it if the thread dies first.
struct Sleeper {
    explicit Sleeper(asio::io_context& io) : timer(io) {}
    asio::steady_timer timer;
};

int sleep_k(lua_State* L, int, lua_KContext ctx) {
    runtime(L).remove_cleanup(static_cast<CleanupId>(ctx));
    return 0;
}

int l_sleep(lua_State* L) {
    lua_Number secs = luaL_checknumber(L, 1);
    if (secs < 0) {
        lua_pushfstring(L, "argument to sleep (%f) must not be negative\n", secs);
        return lua_error(L);
    }
    Runtime& rt = runtime(L);
    double ms = std::min(std::round(secs * 1000), static_cast<double>(kMaxTimeoutMs));
    auto sl = std::make_shared<Sleeper>(rt.io());
    std::weak_ptr<Sleeper> weak = sl;
    CleanupId id = rt.add_cleanup(L, [weak] {
        if (auto s = weak.lock()) s->timer.cancel();
    });
    Waker w = rt.prepare_wait(L);
    sl->timer.expires_after(std::chrono::milliseconds(static_cast<long long>(ms)));
    sl->timer.async_wait([sl, w](std::error_code ec) {
        if (!ec) w.wake();
    });
    static_assert(sizeof(lua_KContext) >= sizeof(CleanupId));
    return nse::yield(L, static_cast<lua_KContext>(id), sleep_k);
}

int l_get_stats(lua_State* L) {
    lua_createtable(L, 0, 1);
    // Threads queued for a governor slot (stdnse uses it to throttle new_thread workers).
    lua_pushinteger(L, static_cast<lua_Integer>(runtime(L).governor().stats().waiting));
    lua_setfield(L, -2, "connect_waiting");
    return 1;
}

int l_loop(lua_State* L) { return luaL_error(L, "nmap.socket.loop is driver-only"); }

const luaL_Reg kMethods[] = {
    {"connect", nse::guard<l_connect>},
    {"bind", nse::guard<l_bind>},
    {"send", nse::guard<l_send>},
    {"sendto", nse::guard<l_sendto>},
    {"receive", nse::guard<l_receive>},
    {"receive_buf", nse::guard<l_receive_buf>},
    {"receive_bytes", nse::guard<l_receive_bytes>},
    {"receive_lines", nse::guard<l_receive_lines>},
    {"get_info", nse::guard<l_get_info>},
    {"set_timeout", nse::guard<l_set_timeout>},
    {"close", nse::guard<l_close>},
    {"reconnect_ssl", nse::guard<l_reconnect_ssl>},
    {"get_ssl_certificate", nse::guard<l_get_ssl_certificate>},
    {"pcap_open", nse::guard<l_pcap_open>},
    {"pcap_register", nse::guard<l_pcap_register>},
    {"pcap_receive", nse::guard<l_pcap_receive>},
    {"pcap_close", nse::guard<l_close>},
    {nullptr, nullptr},
};

const luaL_Reg kModule[] = {
    {"new", nse::guard<l_new>}, {"sleep", nse::guard<l_sleep>},
    {"get_stats", l_get_stats}, {"loop", l_loop},
    {nullptr, nullptr},
};

}  // namespace

int open_socket(lua_State* L) {
    // Upvalues shared by every function: [1] module state, [2] string.find.
    push_in_place<Module>(L, kModuleMeta);  // module
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "string");  // module LOADED string
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        luaL_requiref(L, "string", luaopen_string, 0);
    }
    lua_getfield(L, -1, "find");  // module LOADED string find
    lua_replace(L, -3);           // module find string
    lua_pop(L, 1);                // module find

    luaL_newmetatable(L, kSocketMeta);  // module find mt
    lua_createtable(L, 0, 16);          // module find mt methods
    lua_pushvalue(L, -4);
    lua_pushvalue(L, -4);
    luaL_setfuncs(L, kMethods, 2);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_setfield(L, -2, "__metatable");  // protected: getmetatable gives the methods
    lua_pushcfunction(L, m_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);  // module find

    lua_createtable(L, 0, 5);  // module find socket
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -3);
    luaL_setfuncs(L, kModule, 2);
    lua_pushcfunction(L, parse_ssl_certificate);
    lua_setfield(L, -2, "parse_ssl_certificate");
    lua_replace(L, -3);  // socket find
    lua_pop(L, 1);       // socket
    return 1;
}

}  // namespace nse::lib
