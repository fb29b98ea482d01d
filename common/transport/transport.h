#pragma once
// ZeroMQ endpoints for the fleet: the coordinator's ROUTER and a worker's DEALER. They move
// opaque byte strings (one message = one frame); encoding is common/wire's business.
// Nothing here throws: cppzmq exceptions are caught at this edge and become Status.
// Each endpoint is used from one thread at a time (ZeroMQ sockets are not thread-safe).
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/transport/keys.h"

namespace zmq {
class context_t;
}

namespace common::transport {

// Default per-message size cap (ZMQ_MAXMSGSIZE): a peer sending more is disconnected.
inline constexpr std::size_t kDefaultMaxMessageBytes = 16u << 20;
// ZAP domain the coordinator's CURVE socket authenticates in.
inline constexpr const char* kZapDomain = "nsefleet";

// A ZeroMQ context. Copies share it; it ends (zmq_ctx_term) with the last copy, after the
// endpoints that hold it. inproc:// endpoints only meet within one context.
class Context {
public:
    // Fails only if libzmq cannot create a context (out of file descriptors).
    static common::Result<Context> create();
    zmq::context_t& raw() const { return *ctx_; }

private:
    std::shared_ptr<zmq::context_t> ctx_;
};

// How the coordinator's socket admits peers.
//  - `key` set: CURVE server; a ZAP handler admits only clients whose public key is in
//    `allowed` (an empty list admits nobody). Works on any transport.
//  - `key` unset: plain (no encryption, no authentication). Allowed on inproc:// always, on
//    tcp:// / ipc:// only with `insecure` set (the user typed --insecure).
struct ServerSecurity {
    std::optional<KeyPair> key;
    std::vector<std::string> allowed;  // Z85 client public keys
    bool insecure = false;
};

// How a worker connects: CURVE with its own key pair and the server's public key, or
// plain under the same rule as above.
struct ClientSecurity {
    std::optional<KeyPair> key;
    std::string server_key;  // Z85; required with `key`
    bool insecure = false;
};

// One message received by the ROUTER.
struct Incoming {
    std::string peer;     // ZeroMQ routing id of the sending DEALER (pass to Router::send)
    std::string user_id;  // CURVE: the client's Z85 public key as admitted by ZAP; else ""
    std::string payload;
};

// Wakes a thread waiting in Dealer::wait from any other thread: an eventfd polled beside the
// socket, so threads that must not touch the socket (ZeroMQ sockets are single-threaded) can
// hand it work.
class Waker {
public:
    // Fails only when the process is out of file descriptors.
    static common::Result<std::unique_ptr<Waker>> create();
    ~Waker();
    Waker(const Waker&) = delete;
    Waker& operator=(const Waker&) = delete;
    void poke();  // any thread, never blocks

private:
    friend class Dealer;
    explicit Waker(int fd) : fd_(fd) {}
    void drain();
    int fd_;
};

class Router {
public:
    // Binds `endpoint` ("tcp://127.0.0.1:0" picks a free port; see endpoint()). Fails on a
    // bad endpoint, an address in use, a plain tcp:// without `insecure`, a key with
    // `insecure`, a malformed key, or a second CURVE Router in the same context (one ZAP
    // handler per context).
    static common::Result<std::unique_ptr<Router>> bind(
        const Context& ctx, const std::string& endpoint, const ServerSecurity& security,
        std::size_t max_message_bytes = kDefaultMaxMessageBytes);
    ~Router();
    Router(const Router&) = delete;
    Router& operator=(const Router&) = delete;

    // The bound endpoint with the real port ("tcp://127.0.0.1:41234").
    const std::string& endpoint() const;

    // Queues `payload` for `peer` without blocking. Fails when the peer is unknown or gone
    // (EHOSTUNREACH) or its queue is full (would block): the caller decides to drop or retry.
    common::Status send(const std::string& peer, std::string_view payload);

    // Waits up to `timeout` for one message. nullopt on timeout. Multipart messages that
    // are not [routing id, payload] are dropped and counted (dropped()), never returned.
    // Fails only when the socket itself fails (context terminated).
    common::Result<std::optional<Incoming>> recv(std::chrono::milliseconds timeout);

    std::uint64_t dropped() const;   // malformed multiparts dropped by recv
    std::uint64_t denied() const;    // CURVE handshakes refused by the ZAP handler
    std::uint64_t admitted() const;  // CURVE handshakes admitted by the ZAP handler

    // Replaces the admitted key list (e.g. after re-reading --allow). Existing sessions stay.
    void set_allowed(std::vector<std::string> keys);

    struct Impl;

private:
    explicit Router(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

class Dealer {
public:
    // Connects to `endpoint` (the connection itself is made and re-made in the background;
    // messages sent before it is up are queued). Fails on a bad endpoint, a plain tcp://
    // without `insecure`, or a malformed or missing key.
    static common::Result<std::unique_ptr<Dealer>> connect(
        const Context& ctx, const std::string& endpoint, const ClientSecurity& security,
        std::size_t max_message_bytes = kDefaultMaxMessageBytes);
    ~Dealer();
    Dealer(const Dealer&) = delete;
    Dealer& operator=(const Dealer&) = delete;

    // Queues `payload` without blocking. Fails when the queue is full (would block).
    common::Status send(std::string_view payload);

    // Waits up to `timeout` for one message; nullopt on timeout. Messages with more than
    // one frame are dropped and counted.
    common::Result<std::optional<std::string>> recv(std::chrono::milliseconds timeout);

    // Waits up to `timeout` until a message can be received or `waker` (when given) was
    // poked; a poke is consumed. A signal ends the wait early. Fails only when the socket
    // itself fails.
    common::Status wait(std::chrono::milliseconds timeout, Waker* waker = nullptr);

    // How long destruction may wait to deliver queued messages (0, the default: not at all).
    void set_linger(std::chrono::milliseconds linger);

    std::uint64_t dropped() const;
    // The raw ZeroMQ socket, for transport tests that send malformed multipart frames.
    void* handle();

    struct Impl;

private:
    explicit Dealer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace common::transport
