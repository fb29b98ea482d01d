// ZeroMQ endpoints over inproc:// and real loopback TCP: plain, --insecure rule, CURVE with
// a ZAP handler that admits only allowed keys, oversized and malformed input.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "common/transport/keys.h"
#include "common/transport/transport.h"
#include "common/wire/codec.h"
#include "test/support/temp.h"

using namespace common::transport;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using test_support::TempDir;

namespace {

Context make_context() {
    auto c = Context::create();
    REQUIRE(c.is_ok());
    return *c;
}

// Receives on the router within `timeout`, requiring a message.
Incoming expect(Router& r, std::chrono::milliseconds timeout = 3000ms) {
    auto m = r.recv(timeout);
    REQUIRE(m.is_ok());
    REQUIRE_MESSAGE(m->has_value(), "no message within the timeout");
    return **m;
}

std::string expect(Dealer& d, std::chrono::milliseconds timeout = 3000ms) {
    auto m = d.recv(timeout);
    REQUIRE(m.is_ok());
    REQUIRE_MESSAGE(m->has_value(), "no message within the timeout");
    return **m;
}

// One request and one reply through the pair.
void ping_pong(Router& r, Dealer& d, const std::string& text) {
    REQUIRE(d.send(text).is_ok());
    Incoming in = expect(r);
    CHECK(in.payload == text);
    CHECK_FALSE(in.peer.empty());
    REQUIRE(r.send(in.peer, "re:" + text).is_ok());
    CHECK(expect(d) == "re:" + text);
}

KeyPair new_keys(const fs::path& prefix) {
    auto k = generate_keypair();
    REQUIRE(k.is_ok());
    REQUIRE(write_keypair(prefix.string(), *k).is_ok());
    auto loaded = load_secret_key(prefix.string() + ".key");
    REQUIRE_MESSAGE(loaded.is_ok(), loaded.message());
    CHECK(loaded->public_key == k->public_key);
    CHECK(loaded->secret_key == k->secret_key);
    return *loaded;
}

}  // namespace

TEST_CASE("transport: ROUTER/DEALER over inproc, with wire messages") {
    Context ctx = make_context();
    auto r = Router::bind(ctx, "inproc://fleet-test", ServerSecurity{});
    REQUIRE_MESSAGE(r.is_ok(), r.message());
    auto d = Dealer::connect(ctx, "inproc://fleet-test", ClientSecurity{});
    REQUIRE(d.is_ok());
    ping_pong(**r, **d, "hello");

    // The two layers composed: an encoded Hello crosses and decodes.
    common::wire::Hello hello;
    hello.name = "w1";
    hello.engines = 3;
    REQUIRE((*d)->send(common::wire::encode(hello, 1)).is_ok());
    Incoming in = expect(**r);
    auto dec = common::wire::decode(in.payload);
    REQUIRE(dec.is_ok());
    CHECK(std::get<common::wire::Hello>(dec->message) == hello);

    // A multipart message from a peer is dropped and counted, never returned.
    REQUIRE(zmq_send((*d)->handle(), "a", 1, ZMQ_SNDMORE) == 1);
    REQUIRE(zmq_send((*d)->handle(), "b", 1, 0) == 1);
    REQUIRE((*d)->send("after").is_ok());
    CHECK(expect(**r).payload == "after");
    CHECK((*r)->dropped() == 1);

    // Sending to an unknown peer fails instead of vanishing silently.
    CHECK_FALSE((*r)->send("no-such-peer", "x").is_ok());
    // A quiet socket times out within the bound.
    auto t0 = std::chrono::steady_clock::now();
    auto none = (*r)->recv(200ms);
    REQUIRE(none.is_ok());
    CHECK_FALSE(none->has_value());
    CHECK(std::chrono::steady_clock::now() - t0 >= 190ms);
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
}

TEST_CASE("transport: a Waker ends a Dealer's wait from another thread; input ends it too") {
    Context ctx = make_context();
    auto r = Router::bind(ctx, "inproc://wake-test", ServerSecurity{});
    REQUIRE(r.is_ok());
    auto d = Dealer::connect(ctx, "inproc://wake-test", ClientSecurity{});
    REQUIRE(d.is_ok());
    auto w = Waker::create();
    REQUIRE(w.is_ok());

    // Nothing pending: the wait lasts its timeout.
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE((*d)->wait(150ms, w->get()).is_ok());
    CHECK(std::chrono::steady_clock::now() - t0 >= 140ms);

    // A poke from another thread ends a long wait early, and is consumed.
    std::thread poker([&] {
        std::this_thread::sleep_for(50ms);
        (*w)->poke();
    });
    t0 = std::chrono::steady_clock::now();
    REQUIRE((*d)->wait(5000ms, w->get()).is_ok());
    poker.join();
    CHECK(std::chrono::steady_clock::now() - t0 < 2000ms);
    t0 = std::chrono::steady_clock::now();
    REQUIRE((*d)->wait(100ms, w->get()).is_ok());
    CHECK(std::chrono::steady_clock::now() - t0 >= 90ms);

    // A message for the dealer ends the wait, and recv then has it.
    REQUIRE((*d)->send("hi").is_ok());
    Incoming in = expect(**r);
    REQUIRE((*r)->send(in.peer, "back").is_ok());
    t0 = std::chrono::steady_clock::now();
    REQUIRE((*d)->wait(5000ms, w->get()).is_ok());
    CHECK(std::chrono::steady_clock::now() - t0 < 2000ms);
    auto m = (*d)->recv(0ms);
    REQUIRE(m.is_ok());
    REQUIRE(m->has_value());
    CHECK(**m == "back");
    (*d)->set_linger(0ms);
}

TEST_CASE("transport: plain tcp:// only with --insecure") {
    Context ctx = make_context();
    auto refused = Router::bind(ctx, "tcp://127.0.0.1:0", ServerSecurity{});
    REQUIRE_FALSE(refused.is_ok());
    CHECK(refused.message().find("--insecure") != std::string::npos);
    CHECK_FALSE(Dealer::connect(ctx, "tcp://127.0.0.1:9", ClientSecurity{}).is_ok());
    CHECK_FALSE(Router::bind(ctx, "bogus://x", ServerSecurity{{}, {}, true}).is_ok());

    ServerSecurity plain;
    plain.insecure = true;
    auto r = Router::bind(ctx, "tcp://127.0.0.1:0", plain);
    REQUIRE_MESSAGE(r.is_ok(), r.message());
    std::string ep = (*r)->endpoint();
    CHECK(ep.rfind("tcp://127.0.0.1:", 0) == 0);
    CHECK(ep != "tcp://127.0.0.1:0");
    // The port is taken: a second bind on it fails cleanly.
    CHECK_FALSE(Router::bind(ctx, ep, plain).is_ok());

    Context other = make_context();  // a worker in "another process"
    ClientSecurity cplain;
    cplain.insecure = true;
    auto d = Dealer::connect(other, ep, cplain);
    REQUIRE(d.is_ok());
    ping_pong(**r, **d, "over tcp");
}

TEST_CASE("transport: oversized messages are dropped, the router carries on") {
    Context ctx = make_context();
    ServerSecurity plain;
    plain.insecure = true;
    auto r = Router::bind(ctx, "tcp://127.0.0.1:0", plain, 1024);
    REQUIRE(r.is_ok());
    Context other = make_context();
    ClientSecurity cplain;
    cplain.insecure = true;
    auto big = Dealer::connect(other, (*r)->endpoint(), cplain);
    REQUIRE(big.is_ok());
    REQUIRE((*big)->send(std::string(4096, 'x')).is_ok());
    auto got = (*r)->recv(700ms);
    REQUIRE(got.is_ok());
    CHECK_FALSE(got->has_value());
    // Another worker is unaffected.
    auto small = Dealer::connect(other, (*r)->endpoint(), cplain);
    REQUIRE(small.is_ok());
    ping_pong(**r, **small, std::string(1000, 'y'));
}

TEST_CASE("transport: key files") {
    TempDir dir("nsefleet-keys");
    KeyPair k = new_keys(dir / "w");
    struct stat st {};
    REQUIRE(stat((dir / "w.key").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    REQUIRE(stat((dir / "w.pub").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0644);
    CHECK(valid_key(k.public_key));
    CHECK_FALSE(valid_key("short"));
    CHECK_FALSE(valid_key(std::string(40, '"')));

    // The .pub has no secret; the .key has both.
    std::ifstream pub(dir / "w.pub");
    std::string text((std::istreambuf_iterator<char>(pub)), {});
    CHECK(text.find(k.public_key) != std::string::npos);
    CHECK(text.find(k.secret_key) == std::string::npos);
    auto p = load_public_key(dir / "w.pub");
    REQUIRE(p.is_ok());
    CHECK(*p == k.public_key);

    // A world-readable secret is refused.
    REQUIRE(chmod((dir / "w.key").c_str(), 0644) == 0);
    auto loose = load_secret_key(dir / "w.key");
    REQUIRE_FALSE(loose.is_ok());
    CHECK(loose.message().find("chmod 600") != std::string::npos);
    REQUIRE(chmod((dir / "w.key").c_str(), 0600) == 0);

    // A secret with someone else's public key is refused.
    KeyPair other = *generate_keypair();
    {
        std::ofstream f(dir / "bad.key");
        f << "public-key = \"" << other.public_key << "\"\nsecret-key = \"" << k.secret_key
          << "\"\n";
    }
    REQUIRE(chmod((dir / "bad.key").c_str(), 0600) == 0);
    CHECK_FALSE(load_secret_key(dir / "bad.key").is_ok());
    CHECK_FALSE(load_secret_key(dir / "missing.key").is_ok());

    // Allow directory: every .pub, sorted; a malformed one fails the whole load.
    TempDir allow("nsefleet-keys");
    new_keys(allow / "a");
    new_keys(allow / "b");
    fs::remove(allow / "a.key");
    fs::remove(allow / "b.key");
    auto keys = load_allowed_keys(allow.path);
    REQUIRE(keys.is_ok());
    CHECK(keys->size() == 2);
    { std::ofstream(allow / "c.pub") << "public-key = \"nope\"\n"; }
    CHECK_FALSE(load_allowed_keys(allow.path).is_ok());
    CHECK_FALSE(load_allowed_keys(allow / "none").is_ok());
}

TEST_CASE("transport: CURVE over tcp: allowed key works, unknown key gets nothing through") {
    REQUIRE(zmq_has("curve") == 1);
    TempDir dir("nsefleet-keys");
    fs::create_directory(dir / "allow");
    KeyPair server = new_keys(dir / "coordinator");
    KeyPair good = new_keys(dir / "allow/good");
    fs::rename(dir / "allow/good.key", dir / "good.key");
    KeyPair evil = new_keys(dir / "evil");  // not in the allow directory
    auto allowed = load_allowed_keys(dir / "allow");
    REQUIRE(allowed.is_ok());
    REQUIRE(allowed->size() == 1);

    Context ctx = make_context();
    ServerSecurity sec;
    sec.key = server;
    sec.allowed = *allowed;
    auto r = Router::bind(ctx, "tcp://127.0.0.1:0", sec);
    REQUIRE_MESSAGE(r.is_ok(), r.message());
    // One ZAP handler per context: a second CURVE router in it is refused cleanly.
    CHECK_FALSE(Router::bind(ctx, "tcp://127.0.0.1:0", sec).is_ok());
    // A key together with --insecure is a configuration error.
    ServerSecurity both = sec;
    both.insecure = true;
    CHECK_FALSE(Router::bind(ctx, "tcp://127.0.0.1:0", both).is_ok());

    Context wctx = make_context();
    ClientSecurity cs;
    cs.key = good;
    cs.server_key = *load_public_key(dir / "coordinator.pub");
    auto d = Dealer::connect(wctx, (*r)->endpoint(), cs);
    REQUIRE(d.is_ok());
    REQUIRE((*d)->send("signed").is_ok());
    Incoming in = expect(**r);
    CHECK(in.payload == "signed");
    CHECK(in.user_id == good.public_key);  // the coordinator knows which key spoke
    REQUIRE((*r)->send(in.peer, "welcome").is_ok());
    CHECK(expect(**d) == "welcome");
    CHECK((*r)->admitted() >= 1);

    // The unknown key: its messages never reach the router, and it receives nothing.
    Context ectx = make_context();
    ClientSecurity ecs = cs;
    ecs.key = evil;
    auto e = Dealer::connect(ectx, (*r)->endpoint(), ecs);
    REQUIRE(e.is_ok());
    for (int i = 0; i < 5; ++i)
        REQUIRE((*e)->send("let me in " + std::to_string(i)).is_ok());
    auto got = (*r)->recv(1500ms);
    REQUIRE(got.is_ok());
    CHECK_FALSE(got->has_value());
    CHECK((*r)->denied() >= 1);
    auto back = (*e)->recv(200ms);
    REQUIRE(back.is_ok());
    CHECK_FALSE(back->has_value());

    // A client with the right key but the wrong server key never completes a handshake.
    ClientSecurity wrong_server = cs;
    wrong_server.server_key = evil.public_key;
    auto w = Dealer::connect(ectx, (*r)->endpoint(), wrong_server);
    REQUIRE(w.is_ok());
    REQUIRE((*w)->send("hi").is_ok());
    auto got2 = (*r)->recv(1000ms);
    REQUIRE(got2.is_ok());
    CHECK_FALSE(got2->has_value());

    // A plain client against the CURVE server gets nothing through either.
    ClientSecurity plain;
    plain.insecure = true;
    auto pd = Dealer::connect(ectx, (*r)->endpoint(), plain);
    REQUIRE(pd.is_ok());
    REQUIRE((*pd)->send("plain").is_ok());
    auto got3 = (*r)->recv(1000ms);
    REQUIRE(got3.is_ok());
    CHECK_FALSE(got3->has_value());

    // The allowed worker still works; after revoking its key, a new session is refused.
    ping_pong(**r, **d, "still here");
    (*r)->set_allowed({});
    auto d2 = Dealer::connect(wctx, (*r)->endpoint(), cs);
    REQUIRE(d2.is_ok());
    REQUIRE((*d2)->send("revoked").is_ok());
    auto got4 = (*r)->recv(1000ms);
    REQUIRE(got4.is_ok());
    CHECK_FALSE(got4->has_value());

    // Client-side validation.
    ClientSecurity nokey = cs;
    nokey.server_key = "";
    CHECK_FALSE(Dealer::connect(wctx, (*r)->endpoint(), nokey).is_ok());
}
