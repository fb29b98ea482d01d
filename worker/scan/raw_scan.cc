#include "worker/scan/raw_scan.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
#include <random>
#include <unordered_map>

#include "common/clock.h"
#include "common/datafiles.h"
#include "common/packet/capture.h"
#include "common/packet/interface.h"
#include "common/packet/link_layer.h"
#include "common/packet/spoof_mac.h"
#include "common/targets.h"
#include "worker/route.h"
#include "worker/scan/packet_builder.h"
#include "worker/scan/payloads.h"

namespace worker {

namespace {

using common::epoch_now;

using Clock = std::chrono::steady_clock;

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

constexpr auto kTick = std::chrono::milliseconds(5);
constexpr std::size_t kFramesPerRead = 32768;  // per readiness event or tick, then yield

// Probe kinds; part of the probe key.
enum Kind : std::uint8_t { kPing = 0, kTcp = 1, kUdp = 2 };

std::uint64_t key_of(std::size_t host, Kind k, std::uint16_t port) {
    return (static_cast<std::uint64_t>(host) << 24) | (static_cast<std::uint64_t>(k) << 16) | port;
}

std::uint16_t rd16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

const char* unreach_reason(int code) {
    switch (code) {
    case 0: return "net-unreach";
    case 1: return "host-unreach";
    case 2: return "proto-unreach";
    case 3: return "port-unreach";
    case 9: return "net-prohibited";
    case 10: return "host-prohibited";
    case 13: return "admin-prohibited";
    default: return nullptr;  // nmap ignores the other codes for port states
    }
}

}  // namespace

RawPlan make_raw_plan(const common::ScanOptions& opts, const common::Services& services) {
    auto pp = common::protocol_ports(opts, services);
    RawPlan plan;
    if (opts.syn_scan) plan.tcp = std::move(pp.tcp);
    plan.udp = std::move(pp.udp);
    return plan;
}

struct RawScanner::Impl {
    // One capture per interface the group's routes use.
    struct Capture {
        std::string name;
        std::shared_ptr<packet::Capture> pcap;
        packet::Mac mac{};  // the interface's own address, for ARP requests
    };
    struct Host {
        common::HostResult* r = nullptr;
        in_addr addr{}, src{};
        Capture* cap = nullptr;
        bool arp = false;         // directly connected ethernet: discover by ARP
        bool local = false;       // one of our own addresses: up without probing
        bool cap_warned = false;  // "giving up on port" said
        bool up = false, finished = false;
        std::string mac;
        // --spoof-mac: probes go out as Ethernet frames to this next hop (the target on link,
        // else its gateway), whose address the neighbour cache or an ARP request gives.
        bool eth = false;
        in_addr next_hop{};
        double srtt = 0, rttvar = 0;
        int rtt_n = 0;
        std::size_t pending = 0;  // port probes not yet resolved
        std::unordered_map<std::uint32_t, common::PortResult> ports;  // (kind<<16|port) → result
        Clock::time_point deadline = Clock::time_point::max();
    };
    struct Probe {
        std::size_t host;
        Kind kind;
        std::uint16_t port;
        int tries = 0;
        Clock::time_point sent;
    };

    // --spoof-mac: the next hops' hardware addresses, found once per scanner.
    struct NextHop {
        std::optional<packet::Mac> mac;
        int asks = 0;  // ARP requests sent
        Clock::time_point asked{};
        bool warned = false;  // "no ARP reply" said
    };
    static constexpr int kNextHopAsks = 4;  // then its probes are dropped, with a warning
    static constexpr auto kNextHopWait = std::chrono::milliseconds(250);

    asio::io_context& io;
    const common::ScanOptions& opts;
    const common::Services& services;
    RawPlan plan;
    std::map<std::uint16_t, std::string> payloads;
    std::vector<Host> hosts;
    std::vector<std::unique_ptr<Capture>> caps;
    int raw_fd = -1;
    std::uint16_t sport = 0;
    std::uint32_t seq_base = 0;
    std::uint16_t ip_id = 0;
    std::mt19937 data_rng{std::random_device{}()};  // --data-length bytes
    std::optional<packet::Mac> spoof;               // --spoof-mac (the coordinator chose it)
    std::unordered_map<std::uint32_t, NextHop> next_hops;
    Clock::time_point next_send{};  // pacing
    Clock::time_point born = Clock::now();
    std::function<void(const std::string&)> trace;  // --packet-trace
    std::function<void(const std::string&)> say;    // nmap's warnings on the terminal
    std::function<void(const std::string&)> warn;   // nsefleet's own warnings (stderr)

    std::string elapsed() const {
        char b[32];
        std::snprintf(b, sizeof b, "%.4f", secs(Clock::now() - born));
        return b;
    }
    std::unordered_map<std::uint64_t, Probe> inflight;
    std::deque<std::pair<std::uint64_t, Clock::time_point>> sent_order;  // for timeouts
    std::deque<Probe> queue;  // not yet sent (retries go to the front)
    std::size_t window = 0;
    double g_srtt = 0, g_rttvar = 0;
    int g_rtt_n = 0;
    bool discovery = false;
    bool finished = false;
    // pause_after_discovery(): the port scan waits for resume_ports().
    std::function<void()> on_settled;
    bool hold = false;
    bool probed = false;  // a discovery probe was queued (discovery_probes())
    asio::steady_timer tick;
    std::function<void()> done;

    Impl(asio::io_context& io, const common::ScanOptions& o, const common::Services& s, RawPlan p)
        : io(io), opts(o), services(s), plan(std::move(p)), tick(io) {
        std::random_device rd;
        sport = opts.packet.source_port >= 0 ? static_cast<std::uint16_t>(opts.packet.source_port)
                                             : static_cast<std::uint16_t>(40000 + rd() % 20000);
        seq_base = rd();
        ip_id = static_cast<std::uint16_t>(rd());
        // In-flight probes: nmap's group congestion window tops out near these values.
        window = opts.timing.level >= 4 ? 4096
                 : opts.timing.level == 3
                     ? 2048
                     : static_cast<std::size_t>(std::max(1, opts.timing.max_parallel_connects));
        window = std::max(window, static_cast<std::size_t>(opts.timing.min_parallelism));
    }
    ~Impl() {
        tick.cancel();
        caps.clear();
        if (raw_fd >= 0) close(raw_fd);
    }

    // Round-trip timeout: nmap's srtt + 4*rttvar, clamped to [100 ms, initial timeout].
    Clock::duration timeout() const {
        double hi = opts.timing.level >= 4 ? 1.25 : std::max(1.0, opts.timing.connect_timeout);
        hi = std::min(hi, opts.timing.max_rtt_timeout);
        double lo = std::min(opts.timing.min_rtt_timeout, hi);
        double t = g_rtt_n ? g_srtt + 4 * g_rttvar : std::min(hi, opts.timing.connect_timeout);
        t = std::clamp(t, lo, hi);
        return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(t));
    }

    common::Status open_capture(Host& h, const std::string& ifname) {
        for (auto& c : caps)
            if (c->name == ifname) return h.cap = c.get(), common::Status::ok();
        auto c = std::make_unique<Capture>();
        c->name = ifname;
        packet::CaptureOptions o;
        o.snaplen = 256;
        o.buffer_size = 32 << 20;
        o.inbound_only = true;
        o.filter = "arp or icmp or ((tcp or udp) and dst port " + std::to_string(sport) + ")";
        o.filter_best_effort = true;  // the filter only saves work: on_frame checks everything
        auto opened = packet::Capture::open(io, ifname, o);
        if (!opened) return common::Status::error("pcap(" + ifname + "): " + opened.message());
        c->pcap = std::move(*opened);
        c->mac = packet::interface_mac(ifname).value_or(packet::Mac{});
        Capture* cp = c.get();
        c->pcap->start([this, cp](const packet::Frame& f) { on_frame(*cp, f.data, f.size); },
                       [this](const common::Status&) { after_read(); }, kFramesPerRead);
        h.cap = cp;
        caps.push_back(std::move(c));
        return common::Status::ok();
    }

    // Reads what the capture holds now (the tick's poll, beside the descriptor watch).
    void drain(Capture& c) {
        (void)c.pcap->poll(kFramesPerRead);  // a failed read: the next tick tries again
        after_read();
    }

    void after_read() {
        if (finished) return;
        pump();
        maybe_finish();
    }

    void on_frame(const Capture& c, const std::uint8_t* f, std::size_t n) {
        packet::LinkHeader link = packet::parse_link_header(c.pcap->linktype(), f, n);
        if (!link.valid) return;
        if (link.ethertype == packet::kEtherArp)
            on_arp(f + link.length, n - link.length);
        else if (link.ethertype == packet::kEtherIPv4)
            on_ip(f + link.length, n - link.length);
    }

    Host* host_by_addr(const in_addr& a) {
        // Hosts per group are few (tens to a few thousand): a linear scan is cheap next to I/O.
        for (auto& h : hosts)
            if (h.addr.s_addr == a.s_addr) return &h;
        return nullptr;
    }
    std::size_t index_of(const Host* h) const { return static_cast<std::size_t>(h - hosts.data()); }

    void on_arp(const std::uint8_t* a, std::size_t n) {
        if (n < 28 || rd16(a + 6) != 2) return;  // reply only
        in_addr spa;
        std::memcpy(&spa, a + 14, 4);
        if (spoof) {  // a next hop's address (an ARP ping's answer gives it too)
            NextHop& nh = next_hops[spa.s_addr];
            if (!nh.mac) {
                packet::Mac m{};
                std::memcpy(m.data(), a + 8, m.size());
                nh.mac = m;
            }
        }
        Host* h = host_by_addr(spa);
        if (!h || !h->arp) return;
        auto it = inflight.find(key_of(index_of(h), kPing, 0));
        if (it == inflight.end()) return;
        h->mac = packet::mac_text(a + 8);
        rtt_sample(*h, it->second);
        inflight.erase(it);
        mark_up(*h, "arp-response", 0);
    }

    void on_ip(const std::uint8_t* p, std::size_t n) {
        if (n < 20 || (p[0] >> 4) != 4) return;
        if (trace) trace("RCVD (" + elapsed() + "s) " + describe_ipv4(p, n));
        std::size_t ihl = (p[0] & 15) * 4u;
        if (n < ihl + 8) return;
        int ttl = p[8];
        std::uint8_t proto = p[9];
        in_addr src;
        std::memcpy(&src, p + 12, 4);
        const std::uint8_t* l4 = p + ihl;
        std::size_t l4n = n - ihl;
        if (proto == IPPROTO_ICMP) return on_icmp(src, l4, l4n, ttl);
        Host* h = host_by_addr(src);
        if (!h) return;
        std::size_t hi = index_of(h);
        std::uint16_t from = rd16(l4), to = rd16(l4 + 2);
        if (to != sport) return;
        if (proto == IPPROTO_TCP) {
            if (l4n < 14) return;
            std::uint8_t flags = l4[13];
            bool synack = (flags & 0x12) == 0x12, rst = flags & 0x04;
            if (!synack && !rst) return;
            if (auto it = inflight.find(key_of(hi, kPing, 0)); it != inflight.end()) {
                if (discovery_tcp_port(from)) {
                    rtt_sample(*h, it->second);
                    inflight.erase(it);
                    mark_up(*h, synack ? "syn-ack" : "reset", ttl);
                }
                return;
            }
            resolve(hi, kTcp, from, synack ? "open" : "closed", synack ? "syn-ack" : "reset", ttl);
        } else if (proto == IPPROTO_UDP) {
            if (auto it = inflight.find(key_of(hi, kPing, 0)); it != inflight.end()) {
                rtt_sample(*h, it->second);  // an answer to a -PU probe
                inflight.erase(it);
                mark_up(*h, "udp-response", ttl);
                return;
            }
            resolve(hi, kUdp, from, "open", "udp-response", ttl);
        }
    }

    void on_icmp(const in_addr& src, const std::uint8_t* m, std::size_t n, int ttl) {
        if (n < 8) return;
        int type = m[0], code = m[1];
        if (type == 0 || type == 14 || type == 18) {  // echo/timestamp/mask reply: discovery
            if (rd16(m + 4) != sport) return;
            Host* h = host_by_addr(src);
            if (!h) return;
            auto it = inflight.find(key_of(index_of(h), kPing, 0));
            if (it == inflight.end()) return;
            rtt_sample(*h, it->second);
            inflight.erase(it);
            mark_up(*h,
                    type == 0    ? "echo-reply"
                    : type == 14 ? "timestamp-reply"
                                 : "addressmask-reply",
                    ttl);
            return;
        }
        if (type != 3 || n < 8 + 20 + 8) return;
        const std::uint8_t* ip = m + 8;
        std::size_t ihl = (ip[0] & 15) * 4u;
        if (n < 8 + ihl + 4) return;
        in_addr dst;
        std::memcpy(&dst, ip + 16, 4);
        Host* h = host_by_addr(dst);
        if (!h) return;
        const std::uint8_t* l4 = ip + ihl;
        if (rd16(l4) != sport) return;
        std::uint16_t port = rd16(l4 + 2);
        const char* why = unreach_reason(code);
        if (!why) return;
        std::size_t hi = index_of(h);
        if (auto it = inflight.find(key_of(hi, kPing, 0)); it != inflight.end()) {
            // Any answer from the target itself proves it is up.
            if (src.s_addr == dst.s_addr) {
                rtt_sample(*h, it->second);
                inflight.erase(it);
                mark_up(*h, why, ttl);
            }
            return;
        }
        if (ip[9] == IPPROTO_UDP)
            resolve(hi, kUdp, port, code == 3 && src.s_addr == dst.s_addr ? "closed" : "filtered",
                    why, ttl);
        else if (ip[9] == IPPROTO_TCP)
            resolve(hi, kTcp, port, "filtered", why, ttl);
    }

    void rtt_sample(Host& h, const Probe& p) {
        if (p.tries != 1) return;  // ambiguous after a retransmission
        double r = secs(Clock::now() - p.sent);
        auto upd = [r](double& srtt, double& var, int& n) {
            if (n++ == 0)
                srtt = r, var = r / 2;
            else
                var += (std::abs(r - srtt) - var) / 4, srtt += (r - srtt) / 8;
        };
        upd(h.srtt, h.rttvar, h.rtt_n);
        upd(g_srtt, g_rttvar, g_rtt_n);
    }

    void mark_up(Host& h, const char* reason, int ttl) {
        if (h.up) return;
        h.up = true;
        h.r->status = "up";
        h.r->reason = reason;
        h.r->reason_ttl = ttl;
        if (!discovery) return;
        maybe_end_discovery();
    }

    void resolve(std::size_t hi, Kind k, std::uint16_t port, const char* state, const char* reason,
                 int ttl) {
        auto it = inflight.find(key_of(hi, k, port));
        if (it == inflight.end()) return;  // late duplicate, or not ours
        Host& h = hosts[hi];
        rtt_sample(h, it->second);
        inflight.erase(it);
        settle(h, k, port, state, reason, ttl);
    }

    void settle(Host& h, Kind k, std::uint16_t port, const char* state, const char* reason,
                int ttl) {
        common::PortResult pr;
        pr.number = port;
        pr.protocol = k == kTcp ? "tcp" : "udp";
        pr.state = state;
        pr.reason = reason;
        pr.reason_ttl = ttl;
        pr.service.name = services.name(port, pr.protocol);
        h.ports[(static_cast<std::uint32_t>(k) << 16) | port] = std::move(pr);
        if (h.pending > 0 && --h.pending == 0) finish_host(h);
    }

    void finish_host(Host& h) {
        if (h.finished) return;
        h.finished = true;
        auto& r = *h.r;
        std::vector<std::uint32_t> keys;
        for (auto& [k, v] : h.ports)
            keys.push_back(k);
        std::sort(keys.begin(), keys.end());  // tcp (1) before udp (2), ascending ports
        for (auto k : keys)
            r.ports.push_back(std::move(h.ports[k]));
        h.ports.clear();
        if (h.rtt_n) r.srtt = h.srtt;
        r.end_time = epoch_now();
    }

    // --data-length: random bytes after the TCP header or ICMP message (UDP probes carry
    // them in their payload, see udp_probe).
    std::string random_data() {
        std::string d(static_cast<std::size_t>(opts.packet.data_length), '\0');
        for (auto& c : d)
            c = static_cast<char>(data_rng());
        return d;
    }

    // -D: the sources every probe goes out from, in order; nullopt is our own address.
    std::vector<std::optional<in_addr>> sources{std::nullopt};

    common::Status plan_decoys() {
        if (opts.packet.decoys.empty()) return common::Status::ok();
        auto list = common::parse_decoys(opts.packet.decoys);
        if (!list) return list.status();
        sources.clear();
        bool me = false;
        for (const auto& d : *list) {
            if (d == "ME") {
                me = true;
                sources.emplace_back(std::nullopt);
                continue;
            }
            in_addr a{};
            inet_pton(AF_INET, d.c_str(), &a);
            sources.emplace_back(a);
        }
        if (!me) {  // as nmap: our own probe at a random place among the decoys
            std::uniform_int_distribution<std::size_t> at(0, sources.size());
            sources.insert(sources.begin() + static_cast<std::ptrdiff_t>(at(data_rng)),
                           std::nullopt);
        }
        return common::Status::ok();
    }

    // --spoof-mac: whether the host's next hop has a known hardware address (or will never
    // have one), asking for it (ARP, from our real address so the answer reaches us) when
    // not. pump() puts a probe whose next hop is being asked back in the queue.
    bool next_hop_ready(const Host& h) {
        if (!h.eth) return true;
        NextHop& nh = next_hops[h.next_hop.s_addr];
        if (nh.mac) return true;
        auto now = Clock::now();
        if (nh.asks > 0 && now - nh.asked < kNextHopWait) return false;  // an answer may come
        if (nh.asks >= kNextHopAsks) {
            if (!nh.warned && warn) {
                char a[INET_ADDRSTRLEN] = {};
                inet_ntop(AF_INET, &h.next_hop, a, sizeof a);
                warn(std::string("WARNING: --spoof-mac: no ARP reply from ") + a +
                     "; the probes that go through it are not sent.");
            }
            nh.warned = true;
            return true;  // send_from drops them
        }
        if (nh.asks == 0 && (nh.mac = cached_neighbor_mac(h.next_hop))) return true;
        auto f = arp_request(h.cap->mac, h.src, h.next_hop);
        (void)h.cap->pcap->inject(f.data(), f.size());
        ++nh.asks;
        nh.asked = now;
        return false;
    }

    bool send_ip(const Host& h, std::uint8_t proto, std::vector<std::uint8_t> l4) {
        if (opts.packet.data_length > 0 && proto != IPPROTO_UDP) {
            auto d = random_data();
            l4.insert(l4.end(), d.begin(), d.end());
        }
        bool ok = true;
        for (const auto& src : sources)
            ok = send_from(h, src ? *src : h.src, proto, l4) && ok;
        return ok;
    }

    bool send_from(const Host& h, in_addr src, std::uint8_t proto, std::vector<std::uint8_t> l4) {
        auto pkt = ipv4_packet(src, h.addr, proto, std::move(l4), ip_id++);
        if (opts.packet.ttl >= 0 || opts.packet.badsum)
            rewrite_ipv4(pkt, opts.packet.ttl, opts.packet.badsum);
        if (trace) trace("SENT (" + elapsed() + "s) " + describe_ipv4(pkt.data(), pkt.size()));
        if (h.eth) {
            // A next hop that never answered ARP: the probe is not sent (a plain IP packet
            // would carry our own MAC address), so the port looks filtered, as it would be.
            auto nh = next_hops.find(h.next_hop.s_addr);
            if (nh == next_hops.end() || !nh->second.mac) return true;
            for (const auto& f : fragment_ipv4(pkt, opts.packet.mtu)) {
                auto frame = ethernet_frame(*nh->second.mac, *spoof, f);
                if (!h.cap->pcap->inject(frame.data(), frame.size())) return false;
            }
            return true;
        }
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr = h.addr;
        for (const auto& f : fragment_ipv4(pkt, opts.packet.mtu))
            if (sendto(raw_fd, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&to),
                       sizeof to) != static_cast<ssize_t>(f.size()))
                return false;
        return true;
    }

    std::vector<std::uint8_t> udp_probe(std::uint16_t port, bool with_payload) {
        std::string data;
        if (with_payload)
            if (auto it = payloads.find(port); it != payloads.end()) data = it->second;
        if (opts.packet.data_length > 0) data += random_data();
        return udp_datagram(sport, port, data);
    }

    bool discovery_tcp_port(std::uint16_t port) const {
        if (!opts.discovery.given()) return port == 443 || port == 80;
        auto has = [port](const std::vector<int>& v) {
            return std::find(v.begin(), v.end(), port) != v.end();
        };
        return has(opts.discovery.syn) || has(opts.discovery.ack);
    }

    bool send_discovery(Host& h, const Probe& p) {
        const auto& d = opts.discovery;
        auto tries = static_cast<std::uint16_t>(p.tries);
        if (!d.given()) {  // nmap's default root discovery: echo, SYN to 443, ACK to 80, timestamp
            bool ok = send_ip(h, IPPROTO_ICMP, icmp_echo(sport, tries));
            ok = send_ip(h, IPPROTO_TCP, tcp_segment(sport, 443, seq_base, 0, 0x02)) && ok;
            ok = send_ip(h, IPPROTO_TCP, tcp_segment(sport, 80, seq_base, seq_base, 0x10)) && ok;
            return send_ip(h, IPPROTO_ICMP, icmp_timestamp(sport)) && ok;
        }
        bool ok = true;
        if (d.echo) ok = send_ip(h, IPPROTO_ICMP, icmp_echo(sport, tries)) && ok;
        if (d.timestamp) ok = send_ip(h, IPPROTO_ICMP, icmp_timestamp(sport)) && ok;
        if (d.netmask) ok = send_ip(h, IPPROTO_ICMP, icmp_netmask(sport)) && ok;
        for (int port : d.syn)
            ok = send_ip(h, IPPROTO_TCP,
                         tcp_segment(sport, static_cast<std::uint16_t>(port), seq_base, 0, 0x02)) &&
                 ok;
        for (int port : d.ack)
            ok = send_ip(h, IPPROTO_TCP,
                         tcp_segment(sport, static_cast<std::uint16_t>(port), seq_base, seq_base,
                                     0x10)) &&
                 ok;
        for (int port : d.udp)
            ok = send_ip(h, IPPROTO_UDP, udp_probe(static_cast<std::uint16_t>(port), false)) && ok;
        return ok;
    }

    bool send_probe(Probe& p) {
        Host& h = hosts[p.host];
        if (p.kind == kTcp)
            return send_ip(h, IPPROTO_TCP, tcp_segment(sport, p.port, seq_base + p.port, 0, 0x02));
        if (p.kind == kUdp) return send_ip(h, IPPROTO_UDP, udp_probe(p.port, true));
        if (h.arp) {  // who-has target tell us
            auto f = arp_request(h.cap->mac, h.src, h.addr);
            return h.cap->pcap->inject(f.data(), f.size()).is_ok();
        }
        return send_discovery(h, p);
    }

    void pump() {
        if (finished) return;
        auto now = Clock::now();
        std::size_t deferred = 0;
        while (!queue.empty() && inflight.size() < window) {
            // --scan-delay / --max-rate (the 5 ms tick paces: below that, a probe per tick).
            if (double gap = opts.timing.probe_interval(); gap > 0) {
                if (now < next_send) return;
                next_send = now + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(gap));
            }
            Probe p = queue.front();
            Host& h = hosts[p.host];
            if (h.finished) {
                queue.pop_front();
                continue;
            }
            // --spoof-mac: a next hop still being asked; the other hosts' probes go first.
            if (!(p.kind == kPing && h.arp) && !next_hop_ready(h)) {
                queue.pop_front();
                queue.push_back(p);
                if (++deferred >= queue.size()) break;  // every queued probe waits: next tick
                continue;
            }
            deferred = 0;
            ++p.tries;
            p.sent = now;
            if (!send_probe(p)) {
                if (errno == ENOBUFS || errno == EAGAIN) break;  // device queue full: next tick
                // Unsendable (no route, bad address): nothing will answer.
            }
            queue.pop_front();
            auto k = key_of(p.host, p.kind, p.port);
            inflight[k] = p;
            sent_order.emplace_back(k, now);
        }
    }

    void expire() {
        auto now = Clock::now();
        auto limit = timeout();
        while (!sent_order.empty() && now - sent_order.front().second >= limit) {
            auto [k, when] = sent_order.front();
            sent_order.pop_front();
            auto it = inflight.find(k);
            if (it == inflight.end() || it->second.sent != when) continue;  // answered or resent
            Probe p = it->second;
            inflight.erase(it);
            Host& h = hosts[p.host];
            int max_tries = 1 + opts.timing.max_retries;
            if (p.kind == kPing) max_tries = std::max(max_tries, 2);
            if (p.tries < max_tries && !h.finished) {
                queue.push_front(p);
                continue;
            }
            if (p.kind == kPing) {
                h.r->status = "down";
                h.r->reason = "no-response";
                maybe_end_discovery();
            } else {
                if (opts.timing.max_retries_set && !h.cap_warned && say) {
                    h.cap_warned = true;  // nmap's warning, once per host
                    say("Warning: " + h.r->address +
                        " giving up on port because retransmission cap hit (" +
                        std::to_string(opts.timing.max_retries) + ").");
                }
                settle(h, p.kind, p.port, p.kind == kTcp ? "filtered" : "open|filtered",
                       "no-response", 0);
            }
        }
    }

    void host_timeouts() {
        auto now = Clock::now();
        for (auto& h : hosts) {
            if (h.finished || now < h.deadline) continue;
            h.r->timed_out = true;
            h.finished = true;
            h.ports.clear();
            h.r->end_time = epoch_now();
        }
    }

    void maybe_end_discovery() {
        if (!discovery) return;
        for (std::size_t i = 0; i < hosts.size(); ++i)
            if (!hosts[i].up && hosts[i].r->status != "down") return;
        discovery = false;
        if (on_settled) asio::post(io, [this] { on_settled(); });
        if (!hold) start_ports();
    }

    void resume_ports() {
        if (!hold) return;
        hold = false;
        if (finished) return;
        start_ports();
        pump();
        maybe_finish();
    }

    void start_ports() {
        for (std::size_t i = 0; i < hosts.size(); ++i) {
            Host& h = hosts[i];
            if (!h.up) {
                h.finished = true;
                h.r->end_time = epoch_now();
                continue;
            }
            h.pending = opts.ping_only ? 0 : plan.tcp.size() + plan.udp.size();
            if (h.pending == 0) finish_host(h);
        }
        if (opts.ping_only) return;
        // Port-major order spreads each host's load across the window, as nmap's groups do.
        for (auto port : plan.tcp)
            for (std::size_t i = 0; i < hosts.size(); ++i)
                if (hosts[i].up) queue.push_back({i, kTcp, port, 0, {}});
        for (auto port : plan.udp)
            for (std::size_t i = 0; i < hosts.size(); ++i)
                if (hosts[i].up) queue.push_back({i, kUdp, port, 0, {}});
    }

    void maybe_finish() {
        if (finished || discovery) return;
        for (auto& h : hosts)
            if (!h.finished) return;
        finished = true;
        tick.cancel();
        for (auto& c : caps)
            c->pcap->stop();
        asio::post(io, [this]() {
            if (done) {
                auto d = std::move(done);
                done = nullptr;
                d();
            }
        });
    }

    void on_tick() {
        if (finished) return;
        for (auto& c : caps) {
            drain(*c);
            if (finished) return;
        }
        expire();
        host_timeouts();
        pump();
        maybe_finish();
        if (finished) return;
        tick.expires_after(kTick);
        tick.async_wait([this](std::error_code ec) {
            if (!ec) on_tick();
        });
    }

    common::Status start(std::vector<common::HostResult>& rs, std::function<void()> d) {
        done = std::move(d);
        raw_fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_RAW);
        if (raw_fd < 0)
            return common::Status::error(std::string("raw socket: ") + std::strerror(errno) +
                                         " (raw scans need root)");
        if (!opts.iface.empty() &&
            setsockopt(raw_fd, SOL_SOCKET, SO_BINDTODEVICE, opts.iface.c_str(),
                       static_cast<socklen_t>(opts.iface.size())) != 0)
            return common::Status::error("-e " + opts.iface + ": " + std::strerror(errno));
        int buf = 8 << 20;
        setsockopt(raw_fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
        if (auto st = plan_decoys(); !st) return st;
        if (!opts.packet.spoof_mac.empty()) {
            auto m = packet::choose_spoof_mac(opts.packet.spoof_mac, "");
            if (!m) return m.status();
            spoof = m->mac;
        }
        if (!plan.udp.empty()) {
            common::DataFiles df(opts.datadir);
            if (auto path = df.find_file("nmap-payloads")) payloads = load_udp_payloads(*path);
        }
        auto now = Clock::now();
        hosts.resize(rs.size());
        for (std::size_t i = 0; i < rs.size(); ++i) {
            Host& h = hosts[i];
            auto& r = rs[i];
            h.r = &r;
            r.start_time = epoch_now();
            r.ports.clear();
            if (opts.host_timeout > 0)
                h.deadline = now + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(opts.host_timeout));
            fill_route(r);
            if (!opts.iface.empty()) r.interface = opts.iface;
            if (!opts.source.empty()) r.source_address = opts.source;
            if (r.ipv6 || inet_pton(AF_INET, r.address.c_str(), &h.addr) != 1 ||
                r.interface.empty() || inet_pton(AF_INET, r.source_address.c_str(), &h.src) != 1) {
                r.status = "down";  // no IPv4 route: nothing can be probed
                r.reason = "no-route";
                h.finished = true;
                r.end_time = epoch_now();
                continue;
            }
            if (auto st = open_capture(h, r.interface); !st) return st;
            h.local = r.interface == "lo" || r.address == r.source_address;
            h.arp = !h.local && r.directly_connected && h.cap->pcap->linktype() == DLT_EN10MB;
            if (spoof && !h.local && h.cap->pcap->linktype() == DLT_EN10MB) {
                if (auto nh = ipv4_next_hop(h.addr, r.directly_connected)) {
                    h.eth = true;
                    h.next_hop = *nh;
                }
            }
        }
        discovery = true;
        for (std::size_t i = 0; i < hosts.size(); ++i) {
            Host& h = hosts[i];
            if (h.finished) continue;
            if (opts.skip_discovery)
                mark_up(h, "user-set", 0);
            else if (h.local)
                mark_up(h, "localhost-response", 0);
            else {
                queue.push_back({i, kPing, 0, 0, {}});
                probed = true;
            }
        }
        maybe_end_discovery();
        // From the loop: the caller prints its phase lines before the first probe's trace.
        tick.expires_after(std::chrono::seconds(0));
        tick.async_wait([this](std::error_code ec) {
            if (!ec) on_tick();
        });
        return common::Status::ok();
    }
};

RawScanner::RawScanner(asio::io_context& io, const common::ScanOptions& opts,
                       const common::Services& services, RawPlan plan,
                       std::function<void(const std::string&)> trace)
    : impl_(std::make_unique<Impl>(io, opts, services, std::move(plan))) {
    impl_->say = trace;
    if (opts.packet_trace) impl_->trace = std::move(trace);
}

RawScanner::~RawScanner() = default;

common::Status RawScanner::start(std::vector<common::HostResult>& hosts,
                                 std::function<void()> done) {
    return impl_->start(hosts, std::move(done));
}

void RawScanner::pause_after_discovery(std::function<void()> settled) {
    if (impl_->opts.skip_discovery) return;
    impl_->hold = !impl_->opts.ping_only;
    impl_->on_settled = std::move(settled);
}

void RawScanner::resume_ports() { impl_->resume_ports(); }

void RawScanner::set_warnings(std::function<void(const std::string&)> warn) {
    impl_->warn = std::move(warn);
}

bool RawScanner::discovery_probes() const { return impl_->probed; }

std::string RawScanner::mac_of(std::size_t index) const {
    for (const auto& h : impl_->hosts)
        if (h.r && h.r->index == index) return h.mac;
    return "";
}

}  // namespace worker
