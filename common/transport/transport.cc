// cppzmq wrappers: ROUTER/DEALER endpoints, CURVE set-up and the ZAP handler that admits
// only allowed worker keys. Every cppzmq call is inside a try at the function's edge.
#include "common/transport/transport.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

namespace common::transport {
namespace {

constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";

bool is_inproc(const std::string& endpoint) { return endpoint.rfind("inproc://", 0) == 0; }

// The shared security rule of both ends; returns an error text or "".
std::string check_security(const std::string& endpoint, const std::optional<KeyPair>& key,
                           bool insecure, bool need_secret) {
    if (key) {
        if (insecure) return "--insecure and a CURVE key are mutually exclusive";
        if (!valid_key(key->public_key) || (need_secret && !valid_key(key->secret_key)))
            return "malformed CURVE key";
        return "";
    }
    if (!insecure && !is_inproc(endpoint))
        return "refusing plain (unauthenticated) " + endpoint + " without --insecure";
    return "";
}

// Common socket options: no linger at close (a dead peer must not hang shutdown), the
// message size cap that makes libzmq drop an oversized peer before buffering its message,
// and a receive high-water mark per peer: a flooding peer is held back by its own send
// queue (which the worker keeps in its outbox) instead of filling this process's memory.
constexpr int kReceiveHighWater = 256;  // messages per peer

void base_options(zmq::socket_t& s, std::size_t max_bytes) {
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(max_bytes));
    s.set(zmq::sockopt::rcvhwm, kReceiveHighWater);
}

// Polls one socket for input for at most `timeout`. true when readable.
bool wait_readable(zmq::socket_t& s, std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, timeout);
    return (item.revents & ZMQ_POLLIN) != 0;
}

std::string z85(const std::string& raw32) {
    char out[41];
    if (raw32.size() != 32 ||
        !zmq_z85_encode(out, reinterpret_cast<const std::uint8_t*>(raw32.data()), 32))
        return "";
    return out;
}

// ZAP (RFC 27) handler: a REP socket on inproc://zeromq.zap.01 in the server's context,
// answering each CURVE handshake with 200 (key allowed) or 400. The admitted key becomes the
// connection's User-Id, which the ROUTER reads from every message's metadata.
class ZapHandler {
public:
    // Binds synchronously (so no handshake can race the handler) then serves on a thread.
    static common::Result<std::unique_ptr<ZapHandler>> start(const Context& ctx,
                                                             std::vector<std::string> allowed) {
        std::unique_ptr<ZapHandler> h(new ZapHandler(ctx, std::move(allowed)));
        try {
            h->sock_ = zmq::socket_t(ctx.raw(), zmq::socket_type::rep);
            h->sock_.set(zmq::sockopt::linger, 0);
            h->sock_.bind(kZapEndpoint);
        } catch (const zmq::error_t& e) {
            return common::Status::error(std::string("cannot start the ZAP handler: ") + e.what());
        }
        h->thread_ = std::thread([p = h.get()] { p->serve(); });
        return h;
    }

    ~ZapHandler() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }

    void set_allowed(std::vector<std::string> keys) {
        std::lock_guard lk(mu_);
        allowed_ = std::set<std::string>(keys.begin(), keys.end());
    }

    std::atomic<std::uint64_t> denied{0}, admitted{0};

private:
    ZapHandler(const Context& ctx, std::vector<std::string> allowed)
        : ctx_(ctx), allowed_(allowed.begin(), allowed.end()) {}

    void serve() {
        while (!stop_) {
            try {
                if (!wait_readable(sock_, std::chrono::milliseconds(100))) continue;
                std::vector<zmq::message_t> req;
                if (!zmq::recv_multipart(sock_, std::back_inserter(req), zmq::recv_flags::dontwait))
                    continue;
                reply(req);
            } catch (const zmq::error_t& e) {
                if (e.num() == ETERM) return;  // context shutting down
                // A garbled request: nothing to answer; keep serving the next ones.
            } catch (const std::exception&) {
                // Out of memory on one request: same.
            }
        }
    }

    // Request frames: version, request id, domain, address, routing id, mechanism,
    // credentials... Reply: version, request id, status code, status text, user id, metadata.
    void reply(const std::vector<zmq::message_t>& req) {
        std::string request_id = req.size() > 1 ? req[1].to_string() : "";
        std::string code = "400", text = "denied", user;
        if (req.size() >= 6 && req[0].to_string_view() == "1.0") {
            std::string mechanism = req[5].to_string();
            if (mechanism == "CURVE" && req.size() == 7 && req[2].to_string_view() == kZapDomain) {
                std::string key = z85(req[6].to_string());
                std::lock_guard lk(mu_);
                if (!key.empty() && allowed_.count(key)) {
                    code = "200", text = "OK", user = key;
                }
            }
        }
        (code == "200" ? admitted : denied)++;
        std::array<zmq::const_buffer, 6> out = {zmq::str_buffer("1.0"), zmq::buffer(request_id),
                                                zmq::buffer(code),      zmq::buffer(text),
                                                zmq::buffer(user),      zmq::str_buffer("")};
        zmq::send_multipart(sock_, out);
    }

    Context ctx_;  // keeps the context alive until the handler's socket is closed
    zmq::socket_t sock_;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::set<std::string> allowed_;
};

}  // namespace

common::Result<Context> Context::create() {
    try {
        Context c;
        c.ctx_ = std::make_shared<zmq::context_t>();
        return c;
    } catch (const std::exception& e) {
        return common::Status::error(std::string("cannot create a ZeroMQ context: ") + e.what());
    }
}

// ---------------------------------------------------------------- Router

struct Router::Impl {
    Context ctx;
    std::unique_ptr<ZapHandler> zap;  // declared before sock: destroyed after it
    zmq::socket_t sock;
    std::string endpoint;
    std::size_t max_bytes = 0;
    std::uint64_t dropped = 0;
};

Router::Router(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Router::~Router() = default;

common::Result<std::unique_ptr<Router>> Router::bind(const Context& ctx,
                                                     const std::string& endpoint,
                                                     const ServerSecurity& security,
                                                     std::size_t max_message_bytes) {
    if (auto err = check_security(endpoint, security.key, security.insecure, true); !err.empty())
        return common::Status::error(err);
    auto impl = std::make_unique<Impl>();
    impl->ctx = ctx;
    impl->max_bytes = max_message_bytes;
    try {
        if (security.key) {
            auto zap = ZapHandler::start(ctx, security.allowed);
            if (!zap) return zap.status();
            impl->zap = std::move(*zap);
        }
        impl->sock = zmq::socket_t(ctx.raw(), zmq::socket_type::router);
        base_options(impl->sock, max_message_bytes);
        impl->sock.set(zmq::sockopt::router_mandatory, true);
        if (security.key) {
            impl->sock.set(zmq::sockopt::curve_server, true);
            impl->sock.set(zmq::sockopt::curve_secretkey, security.key->secret_key);
            impl->sock.set(zmq::sockopt::zap_domain, kZapDomain);
        }
        impl->sock.bind(endpoint);
        impl->endpoint = impl->sock.get(zmq::sockopt::last_endpoint);
    } catch (const zmq::error_t& e) {
        return common::Status::error("cannot bind " + endpoint + ": " + e.what());
    }
    return std::unique_ptr<Router>(new Router(std::move(impl)));
}

const std::string& Router::endpoint() const { return impl_->endpoint; }

common::Status Router::send(const std::string& peer, std::string_view payload) {
    try {
        if (!impl_->sock.send(zmq::buffer(peer),
                              zmq::send_flags::sndmore | zmq::send_flags::dontwait))
            return common::Status::error("send to peer would block");
        // With ROUTER_MANDATORY the first frame already failed for an unknown peer; the
        // payload frame cannot block once the routing frame was accepted.
        if (!impl_->sock.send(zmq::buffer(payload.data(), payload.size()),
                              zmq::send_flags::dontwait))
            return common::Status::error("send to peer would block");
        return common::Status::ok();
    } catch (const zmq::error_t& e) {
        if (e.num() == EHOSTUNREACH) return common::Status::error("unknown or disconnected peer");
        return common::Status::error(std::string("send failed: ") + e.what());
    }
}

common::Result<std::optional<Incoming>> Router::recv(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    try {
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            if (left.count() < 0) left = std::chrono::milliseconds(0);
            if (!wait_readable(impl_->sock, left)) {
                if (std::chrono::steady_clock::now() >= until) return std::optional<Incoming>{};
                continue;  // woken without input (EINTR-like): wait out the rest
            }
            std::vector<zmq::message_t> parts;
            if (!zmq::recv_multipart(impl_->sock, std::back_inserter(parts),
                                     zmq::recv_flags::dontwait))
                continue;
            if (parts.size() != 2 || parts[1].size() > impl_->max_bytes) {
                ++impl_->dropped;
                continue;
            }
            Incoming in;
            in.peer = parts[0].to_string();
            if (impl_->zap) {
                const char* uid = zmq_msg_gets(parts[1].handle(), "User-Id");
                if (uid) in.user_id = uid;
            }
            in.payload = parts[1].to_string();
            return std::optional<Incoming>(std::move(in));
        }
    } catch (const zmq::error_t& e) {
        return common::Status::error(std::string("receive failed: ") + e.what());
    }
}

std::uint64_t Router::dropped() const { return impl_->dropped; }
std::uint64_t Router::denied() const { return impl_->zap ? impl_->zap->denied.load() : 0; }
std::uint64_t Router::admitted() const { return impl_->zap ? impl_->zap->admitted.load() : 0; }
void Router::set_allowed(std::vector<std::string> keys) {
    if (impl_->zap) impl_->zap->set_allowed(std::move(keys));
}

// ---------------------------------------------------------------- Waker

common::Result<std::unique_ptr<Waker>> Waker::create() {
    int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return common::Status::error(std::string("eventfd: ") + std::strerror(errno));
    return std::unique_ptr<Waker>(new Waker(fd));
}

Waker::~Waker() { ::close(fd_); }

void Waker::poke() {
    std::uint64_t one = 1;
    if (::write(fd_, &one, sizeof one) < 0) {
        // EAGAIN: the counter is saturated, the waiter wakes anyway.
    }
}

void Waker::drain() {
    std::uint64_t n;
    if (::read(fd_, &n, sizeof n) < 0) {
        // EAGAIN: nothing pending.
    }
}

// ---------------------------------------------------------------- Dealer

struct Dealer::Impl {
    Context ctx;
    zmq::socket_t sock;
    std::size_t max_bytes = 0;
    std::uint64_t dropped = 0;
};

Dealer::Dealer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Dealer::~Dealer() = default;

common::Result<std::unique_ptr<Dealer>> Dealer::connect(const Context& ctx,
                                                        const std::string& endpoint,
                                                        const ClientSecurity& security,
                                                        std::size_t max_message_bytes) {
    if (auto err = check_security(endpoint, security.key, security.insecure, true); !err.empty())
        return common::Status::error(err);
    if (security.key && !valid_key(security.server_key))
        return common::Status::error("missing or malformed server public key");
    auto impl = std::make_unique<Impl>();
    impl->ctx = ctx;
    impl->max_bytes = max_message_bytes;
    try {
        impl->sock = zmq::socket_t(ctx.raw(), zmq::socket_type::dealer);
        base_options(impl->sock, max_message_bytes);
        if (security.key) {
            impl->sock.set(zmq::sockopt::curve_serverkey, security.server_key);
            impl->sock.set(zmq::sockopt::curve_publickey, security.key->public_key);
            impl->sock.set(zmq::sockopt::curve_secretkey, security.key->secret_key);
        }
        impl->sock.connect(endpoint);
    } catch (const zmq::error_t& e) {
        return common::Status::error("cannot connect to " + endpoint + ": " + e.what());
    }
    return std::unique_ptr<Dealer>(new Dealer(std::move(impl)));
}

common::Status Dealer::send(std::string_view payload) {
    try {
        if (!impl_->sock.send(zmq::buffer(payload.data(), payload.size()),
                              zmq::send_flags::dontwait))
            return common::Status::error("send would block (queue full)");
        return common::Status::ok();
    } catch (const zmq::error_t& e) {
        return common::Status::error(std::string("send failed: ") + e.what());
    }
}

common::Result<std::optional<std::string>> Dealer::recv(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    try {
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            if (left.count() < 0) left = std::chrono::milliseconds(0);
            if (!wait_readable(impl_->sock, left)) {
                if (std::chrono::steady_clock::now() >= until) return std::optional<std::string>{};
                continue;
            }
            std::vector<zmq::message_t> parts;
            if (!zmq::recv_multipart(impl_->sock, std::back_inserter(parts),
                                     zmq::recv_flags::dontwait))
                continue;
            if (parts.size() != 1 || parts[0].size() > impl_->max_bytes) {
                ++impl_->dropped;
                continue;
            }
            return std::optional<std::string>(parts[0].to_string());
        }
    } catch (const zmq::error_t& e) {
        return common::Status::error(std::string("receive failed: ") + e.what());
    }
}

common::Status Dealer::wait(std::chrono::milliseconds timeout, Waker* waker) {
    zmq::pollitem_t items[2] = {{impl_->sock.handle(), 0, ZMQ_POLLIN, 0},
                                {nullptr, waker ? waker->fd_ : -1, ZMQ_POLLIN, 0}};
    if (zmq_poll(items, waker ? 2 : 1, static_cast<long>(timeout.count())) < 0 &&
        zmq_errno() != EINTR)
        return common::Status::error(std::string("poll failed: ") + zmq_strerror(zmq_errno()));
    if (waker && (items[1].revents & ZMQ_POLLIN)) waker->drain();
    return common::Status::ok();
}

void Dealer::set_linger(std::chrono::milliseconds linger) {
    try {
        impl_->sock.set(zmq::sockopt::linger, static_cast<int>(linger.count()));
    } catch (const zmq::error_t&) {
        // Only a closed socket refuses: nothing left to deliver.
    }
}

std::uint64_t Dealer::dropped() const { return impl_->dropped; }
void* Dealer::handle() { return impl_->sock.handle(); }

}  // namespace common::transport
