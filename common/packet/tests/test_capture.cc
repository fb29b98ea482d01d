// Live capture on lo (as root: skipped, with a message, otherwise), interface facts, and the
// privilege check.
#include <doctest/doctest.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio.hpp>
#include <chrono>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "common/packet/capture.h"
#include "common/packet/interface.h"
#include "common/packet/link_layer.h"
#include "common/packet/privilege.h"

namespace {

// Runs `io` until `done()` or two seconds pass.
template <typename Pred>
bool run_until(asio::io_context& io, Pred done) {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!done() && std::chrono::steady_clock::now() < until) {
        io.restart();
        io.run_for(std::chrono::milliseconds(20));
    }
    return done();
}

}  // namespace

TEST_CASE("interface facts of lo, and of no interface") {
    CHECK(packet::interface_index("lo") == if_nametoindex("lo"));
    CHECK(packet::interface_type("lo") == ARPHRD_LOOPBACK);
    CHECK(packet::interface_mtu("lo") > 0);
    unsigned flags = packet::interface_flags("lo");
    CHECK((flags & IFF_LOOPBACK) != 0);
    CHECK((flags & IFF_UP) != 0);
    auto mac = packet::interface_mac("lo");
    REQUIRE(mac.has_value());
    CHECK(*mac == packet::Mac{});

    for (const char* name : {"nsfnodev0", "", "..", "../lo"}) {
        CAPTURE(name);
        CHECK(packet::interface_index(name) == 0);
        CHECK(packet::interface_type(name) == -1);
        CHECK(packet::interface_mtu(name) == 0);
        CHECK(packet::interface_flags(name) == 0);
        CHECK_FALSE(packet::interface_mac(name).has_value());
    }
    const std::uint8_t m[6] = {0x02, 0x0a, 0xbc, 0x00, 0xff, 0x10};
    CHECK(packet::mac_text(m) == "02:0A:BC:00:FF:10");
}

TEST_CASE("raw_privileged agrees with the kernel about raw sockets") {
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    bool raw = fd >= 0;
    if (fd >= 0) close(fd);
    if (!raw) CHECK_FALSE(packet::raw_privileged());
    CHECK(packet::raw_privileged() == packet::raw_privileged());  // stable
}

TEST_CASE("capture on lo: a UDP datagram arrives whole, filtered, with its time") {
    if (!packet::raw_privileged()) {
        MESSAGE("not privileged: capture test skipped");
        return;
    }
    asio::io_context io;
    asio::ip::udp::socket rx(io, {asio::ip::make_address("127.0.0.1"), 0});
    std::uint16_t port = rx.local_endpoint().port();
    packet::CaptureOptions o;
    o.snaplen = 1500;
    o.filter = "udp and dst port " + std::to_string(port);
    auto cap = packet::Capture::open(io, "lo", o);
    REQUIRE_MESSAGE(cap.is_ok(), cap.message());
    CHECK((*cap)->device() == "lo");
    CHECK((*cap)->linktype() == DLT_EN10MB);

    std::vector<std::vector<std::uint8_t>> frames;
    std::vector<double> times;
    int batches = 0;
    (*cap)->start(
        [&](const packet::Frame& f) {
            frames.emplace_back(f.data, f.data + f.size);
            times.push_back(f.time);
        },
        [&](const common::Status& st) {
            CHECK(st.is_ok());
            ++batches;
        });

    asio::ip::udp::socket tx(io, asio::ip::udp::v4());
    tx.send_to(asio::buffer("nsefleet-capture", 16), rx.local_endpoint());
    double sent = static_cast<double>(std::time(nullptr));
    REQUIRE(run_until(io, [&] { return !frames.empty(); }));
    CHECK(batches >= 1);
    const auto& f = frames.front();
    auto link = packet::parse_link_header((*cap)->linktype(), f.data(), f.size());
    REQUIRE(link.valid);
    CHECK(link.length == 14);
    CHECK(link.ethertype == packet::kEtherIPv4);
    REQUIRE(f.size() == 14 + 20 + 8 + 16);
    const std::uint8_t* udp = f.data() + 14 + 20;
    CHECK((udp[2] << 8 | udp[3]) == port);
    CHECK(std::memcmp(udp + 8, "nsefleet-capture", 16) == 0);
    CHECK(times.front() > sent - 5);
    CHECK(times.front() < sent + 5);

    // After stop(), captured frames are no longer delivered.
    std::size_t seen = frames.size();
    (*cap)->stop();
    tx.send_to(asio::buffer("after-stop", 10), rx.local_endpoint());
    run_until(io, [] { return false; });
    CHECK(frames.size() == seen);
}

TEST_CASE("capture: poll reads without the watch; inject sends a frame the capture sees") {
    if (!packet::raw_privileged()) {
        MESSAGE("not privileged: capture test skipped");
        return;
    }
    asio::io_context io;
    packet::CaptureOptions o;
    o.filter = "ether proto 0x88b5";  // IEEE local experimental: nothing else sends it
    auto cap = packet::Capture::open(io, "lo", o);
    REQUIRE_MESSAGE(cap.is_ok(), cap.message());
    std::vector<std::vector<std::uint8_t>> frames;
    (*cap)->start([&](const packet::Frame& f) { frames.emplace_back(f.data, f.data + f.size); },
                  [](const common::Status&) {});
    std::vector<std::uint8_t> frame(60, 0);
    frame[12] = 0x88, frame[13] = 0xb5;
    std::memcpy(&frame[14], "nsefleet-inject", 15);
    REQUIRE((*cap)->inject(frame.data(), frame.size()).is_ok());
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (frames.empty() && std::chrono::steady_clock::now() < until) {
        REQUIRE((*cap)->poll().is_ok());  // no io.run: only poll can deliver
        usleep(10000);
    }
    REQUIRE_FALSE(frames.empty());
    CHECK(frames.front() == frame);
}

TEST_CASE("capture open failures carry libpcap's text; a best-effort filter is dropped") {
    if (!packet::raw_privileged()) {
        MESSAGE("not privileged: capture test skipped");
        return;
    }
    asio::io_context io;
    auto none = packet::Capture::open(io, "nsfnodev0", {});
    CHECK_FALSE(none.is_ok());
    if (!none.is_ok()) CHECK_FALSE(none.message().empty());

    packet::CaptureOptions bad;
    bad.filter = "this is not bpf";
    auto strict = packet::Capture::open(io, "lo", bad);
    CHECK_FALSE(strict.is_ok());
    if (!strict.is_ok()) CHECK(strict.message().find("syntax") != std::string::npos);
    bad.filter_best_effort = true;
    auto lax = packet::Capture::open(io, "lo", bad);
    CHECK(lax.is_ok());
}

TEST_CASE("a capture destroyed while watched calls nothing afterwards") {
    if (!packet::raw_privileged()) {
        MESSAGE("not privileged: capture test skipped");
        return;
    }
    asio::io_context io;
    int calls = 0;
    {
        auto cap = packet::Capture::open(io, "lo", {});
        REQUIRE(cap.is_ok());
        (*cap)->start([&](const packet::Frame&) { ++calls; },
                      [&](const common::Status&) { ++calls; });
    }
    asio::ip::udp::socket tx(io, asio::ip::udp::v4());
    tx.send_to(asio::buffer("x", 1),
               asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 9));
    run_until(io, [] { return false; });
    CHECK(calls == 0);
}
