#include "worker/scan/raw_scan.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <asio.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <random>
#include <sstream>
#include <unordered_map>

#include "common/datafiles.h"
#include "worker/route.h"

namespace worker {

namespace {

using Clock = std::chrono::steady_clock;

double epoch_now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

constexpr auto kTick = std::chrono::milliseconds(5);
constexpr std::uint16_t kEthArp = 0x0806, kEthIp = 0x0800;

// Probe kinds; part of the probe key.
enum Kind : std::uint8_t { kPing = 0, kTcp = 1, kUdp = 2 };

std::uint64_t key_of(std::size_t host, Kind k, std::uint16_t port) {
    return (static_cast<std::uint64_t>(host) << 24) | (static_cast<std::uint64_t>(k) << 16) | port;
}

std::uint16_t rd16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
void wr16(std::uint8_t* p, std::uint16_t v) { p[0] = v >> 8, p[1] = v & 0xff; }

std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t acc = 0) {
    for (std::size_t i = 0; i + 1 < n; i += 2) acc += rd16(p + i);
    if (n & 1) acc += static_cast<std::uint32_t>(p[n - 1]) << 8;
    return acc;
}

std::uint16_t fold(std::uint32_t acc) {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<std::uint16_t>(~acc);
}

// Builds an IPv4 packet around `l4` (TCP/UDP checksums computed over the pseudo-header).
std::vector<std::uint8_t> ip_packet(in_addr src, in_addr dst, std::uint8_t proto,
                                    std::vector<std::uint8_t> l4, std::uint16_t id) {
    std::vector<std::uint8_t> p(20 + l4.size());
    p[0] = 0x45;
    wr16(&p[2], static_cast<std::uint16_t>(p.size()));
    wr16(&p[4], id);
    p[8] = 64;
    p[9] = proto;
    std::memcpy(&p[12], &src, 4);
    std::memcpy(&p[16], &dst, 4);
    wr16(&p[10], fold(sum16(p.data(), 20)));
    int ck = proto == IPPROTO_TCP ? 16 : proto == IPPROTO_UDP ? 6 : proto == IPPROTO_ICMP ? 2 : -1;
    if (proto == IPPROTO_ICMP) {
        wr16(&l4[2], fold(sum16(l4.data(), l4.size())));
    } else if (ck >= 0) {
        std::uint32_t acc = sum16(&p[12], 8);
        acc += proto;
        acc += static_cast<std::uint32_t>(l4.size());
        std::uint16_t c = fold(sum16(l4.data(), l4.size(), acc));
        if (proto == IPPROTO_UDP && c == 0) c = 0xffff;
        wr16(&l4[ck], c);
    }
    std::memcpy(&p[20], l4.data(), l4.size());
    return p;
}

std::vector<std::uint8_t> tcp_segment(std::uint16_t sport, std::uint16_t dport,
                                      std::uint32_t seq, std::uint32_t ack, std::uint8_t flags) {
    std::vector<std::uint8_t> t(24, 0);  // 20-byte header + MSS option, as nmap's probes
    wr16(&t[0], sport);
    wr16(&t[2], dport);
    for (int i = 0; i < 4; ++i) t[4 + i] = static_cast<std::uint8_t>(seq >> (24 - 8 * i));
    for (int i = 0; i < 4; ++i) t[8 + i] = static_cast<std::uint8_t>(ack >> (24 - 8 * i));
    t[12] = 6 << 4;
    t[13] = flags;
    wr16(&t[14], 1024);
    t[20] = 2, t[21] = 4;
    wr16(&t[22], 1460);
    return t;
}

std::string mac_text(const std::uint8_t* m) {
    char b[18];
    std::snprintf(b, sizeof b, "%02X:%02X:%02X:%02X:%02X:%02X", m[0], m[1], m[2], m[3], m[4],
                  m[5]);
    return b;
}

bool read_mac(const std::string& ifname, std::array<std::uint8_t, 6>& mac) {
    std::ifstream f("/sys/class/net/" + ifname + "/address");
    std::string s;
    if (!(f >> s)) return false;
    unsigned v[6];
    if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
        return false;
    for (int i = 0; i < 6; ++i) mac[i] = static_cast<std::uint8_t>(v[i]);
    return true;
}

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

bool is_privileged() {
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) return false;
    close(fd);
    return true;
}

std::map<std::uint16_t, std::string> load_udp_payloads(const std::string& path) {
    std::map<std::uint16_t, std::string> out;
    std::ifstream f(path);
    if (!f) return out;
    // Tokens: words and C-escaped quoted strings; '#' starts a comment outside strings.
    std::vector<std::pair<bool, std::string>> toks;  // (is_string, text)
    std::string line;
    while (std::getline(f, line)) {
        std::size_t i = 0;
        while (i < line.size()) {
            char c = line[i];
            if (c == '#') break;
            if (std::isspace(static_cast<unsigned char>(c))) { ++i; continue; }
            if (c == '"') {
                std::string s;
                for (++i; i < line.size() && line[i] != '"'; ++i) {
                    if (line[i] != '\\' || i + 1 >= line.size()) { s += line[i]; continue; }
                    char e = line[++i];
                    if (e == 'x' && i + 2 < line.size()) {
                        s += static_cast<char>(std::stoi(line.substr(i + 1, 2), nullptr, 16));
                        i += 2;
                    } else if (e == 'n') s += '\n';
                    else if (e == 'r') s += '\r';
                    else if (e == 't') s += '\t';
                    else if (e == '0') s += '\0';
                    else s += e;
                }
                ++i;
                toks.emplace_back(true, s);
                continue;
            }
            std::size_t j = i;
            while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j])) &&
                   line[j] != '"' && line[j] != '#')
                ++j;
            toks.emplace_back(false, line.substr(i, j - i));
            i = j;
        }
    }
    for (std::size_t i = 0; i < toks.size(); ++i) {
        if (toks[i].first || toks[i].second != "udp" || i + 1 >= toks.size()) continue;
        std::string ports = toks[++i].second, payload;
        while (i + 1 < toks.size() && toks[i + 1].first) payload += toks[++i].second;
        std::stringstream ps(ports);
        std::string item;
        while (std::getline(ps, item, ',')) {
            auto dash = item.find('-');
            try {
                int lo = std::stoi(item.substr(0, dash));
                int hi = dash == std::string::npos ? lo : std::stoi(item.substr(dash + 1));
                for (int p = lo; p <= hi && p < 65536; ++p)
                    out.emplace(static_cast<std::uint16_t>(p), payload);  // first one wins
            } catch (const std::exception&) {
                // malformed port item: skip it
            }
        }
    }
    return out;
}

RawPlan make_raw_plan(const common::ScanOptions& opts, const common::Services& services) {
    RawPlan plan;
    if (opts.ping_only) return plan;
    bool prefixed = opts.port_spec.find(':') != std::string::npos;
    for (const auto& p : opts.ports) {
        if (p.proto == 't' && opts.syn_scan) plan.tcp.push_back(p.number);
        if (opts.udp_scan && (p.proto == 'u' || (p.proto == 't' && !prefixed)))
            plan.udp.push_back(p.number);
    }
    if (opts.udp_scan && opts.port_spec.empty()) {
        int n = opts.top_ports > 0 ? opts.top_ports : opts.fast ? 100 : 1000;
        plan.udp.clear();
        for (const auto& p : services.top(n, 'u')) plan.udp.push_back(p.number);
    }
    for (auto* v : {&plan.tcp, &plan.udp}) {
        std::sort(v->begin(), v->end());
        v->erase(std::unique(v->begin(), v->end()), v->end());
    }
    return plan;
}

struct RawScanner::Impl {
    struct Capture {
        Impl* owner = nullptr;
        std::string name;
        pcap_t* pcap = nullptr;
        int linktype = 0;
        std::array<std::uint8_t, 6> mac{};
        std::unique_ptr<asio::posix::stream_descriptor> sd;
        ~Capture() {
            if (sd) {
                asio::error_code ec;
                sd->cancel(ec);
                sd->close(ec);
            }
            if (pcap) pcap_close(pcap);
        }
    };
    struct Host {
        common::HostResult* r = nullptr;
        in_addr addr{}, src{};
        Capture* cap = nullptr;
        bool arp = false;   // directly connected ethernet: discover by ARP
        bool local = false; // one of our own addresses: up without probing
        bool up = false, finished = false;
        std::string mac;
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
    std::unordered_map<std::uint64_t, Probe> inflight;
    std::deque<std::pair<std::uint64_t, Clock::time_point>> sent_order;  // for timeouts
    std::deque<Probe> queue;  // not yet sent (retries go to the front)
    std::size_t window = 0;
    double g_srtt = 0, g_rttvar = 0;
    int g_rtt_n = 0;
    bool discovery = false;
    bool finished = false;
    asio::steady_timer tick;
    std::function<void()> done;

    Impl(asio::io_context& io, const common::ScanOptions& o, const common::Services& s, RawPlan p)
        : io(io), opts(o), services(s), plan(std::move(p)), tick(io) {
        std::random_device rd;
        sport = static_cast<std::uint16_t>(40000 + rd() % 20000);
        seq_base = rd();
        ip_id = static_cast<std::uint16_t>(rd());
        // In-flight probes: nmap's group congestion window tops out near these values.
        window = opts.timing.level >= 4 ? 4096 : opts.timing.level == 3 ? 2048 :
                 static_cast<std::size_t>(std::max(1, opts.timing.max_parallel_connects));
    }
    ~Impl() {
        tick.cancel();
        caps.clear();
        if (raw_fd >= 0) close(raw_fd);
    }

    // Round-trip timeout: nmap's srtt + 4*rttvar, clamped to [100 ms, initial timeout].
    Clock::duration timeout() const {
        double hi = opts.timing.level >= 4 ? 1.25 : std::max(1.0, opts.timing.connect_timeout);
        double t = g_rtt_n ? g_srtt + 4 * g_rttvar : std::min(hi, opts.timing.connect_timeout);
        t = std::clamp(t, 0.1, hi);
        return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(t));
    }

    common::Status open_capture(Host& h, const std::string& ifname) {
        for (auto& c : caps)
            if (c->name == ifname) return h.cap = c.get(), common::Status::ok();
        auto c = std::make_unique<Capture>();
        c->owner = this;
        c->name = ifname;
        char err[PCAP_ERRBUF_SIZE] = "";
        c->pcap = pcap_create(ifname.c_str(), err);
        if (!c->pcap) return common::Status::error("pcap_create(" + ifname + "): " + err);
        pcap_set_snaplen(c->pcap, 256);
        pcap_set_promisc(c->pcap, 0);
        pcap_set_immediate_mode(c->pcap, 1);
        pcap_set_buffer_size(c->pcap, 32 << 20);
        if (pcap_activate(c->pcap) < 0)
            return common::Status::error("pcap_activate(" + ifname + "): " + pcap_geterr(c->pcap));
        pcap_setdirection(c->pcap, PCAP_D_IN);  // best effort: lo shows each packet once
        bpf_program prog;
        std::string filter = "arp or icmp or ((tcp or udp) and dst port " + std::to_string(sport) + ")";
        if (pcap_compile(c->pcap, &prog, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) == 0) {
            pcap_setfilter(c->pcap, &prog);
            pcap_freecode(&prog);
        }
        if (pcap_setnonblock(c->pcap, 1, err) < 0)
            return common::Status::error(std::string("pcap_setnonblock: ") + err);
        c->linktype = pcap_datalink(c->pcap);
        read_mac(ifname, c->mac);
        int fd = pcap_get_selectable_fd(c->pcap);
        if (fd < 0) return common::Status::error("pcap: no selectable descriptor for " + ifname);
        c->sd = std::make_unique<asio::posix::stream_descriptor>(io, dup(fd));
        h.cap = c.get();
        caps.push_back(std::move(c));
        arm(*caps.back());
        return common::Status::ok();
    }

    void arm(Capture& c) {
        c.sd->async_wait(asio::posix::stream_descriptor::wait_read, [this, &c](std::error_code ec) {
            if (ec || finished) return;
            drain(c);
            arm(c);
        });
    }

    void drain(Capture& c) {
        for (int rounds = 0; rounds < 64; ++rounds) {
            int n = pcap_dispatch(
                c.pcap, 512,
                [](u_char* user, const pcap_pkthdr* hdr, const u_char* bytes) {
                    auto* cap = reinterpret_cast<Capture*>(user);
                    cap->owner->on_frame(*cap, bytes, hdr->caplen);
                },
                reinterpret_cast<u_char*>(&c));
            if (n <= 0) break;
        }
        pump();
        maybe_finish();
    }

    void on_frame(Capture& c, const std::uint8_t* f, std::size_t n) {
        std::size_t off;
        std::uint16_t type;
        if (c.linktype == DLT_EN10MB) {
            if (n < 14) return;
            type = rd16(f + 12);
            off = 14;
            if (type == 0x8100 && n >= 18) type = rd16(f + 16), off = 18;
        } else if (c.linktype == DLT_LINUX_SLL) {
            if (n < 16) return;
            type = rd16(f + 14);
            off = 16;
        } else if (c.linktype == DLT_RAW) {
            type = kEthIp;
            off = 0;
        } else {
            return;
        }
        if (type == kEthArp) on_arp(f + off, n - off);
        else if (type == kEthIp) on_ip(f + off, n - off);
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
        Host* h = host_by_addr(spa);
        if (!h || !h->arp) return;
        auto it = inflight.find(key_of(index_of(h), kPing, 0));
        if (it == inflight.end()) return;
        h->mac = mac_text(a + 8);
        rtt_sample(*h, it->second);
        inflight.erase(it);
        mark_up(*h, "arp-response", 0);
    }

    void on_ip(const std::uint8_t* p, std::size_t n) {
        if (n < 20 || (p[0] >> 4) != 4) return;
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
                if (from == 443 || from == 80) {
                    rtt_sample(*h, it->second);
                    inflight.erase(it);
                    mark_up(*h, synack ? "syn-ack" : "reset", ttl);
                }
                return;
            }
            resolve(hi, kTcp, from, synack ? "open" : "closed", synack ? "syn-ack" : "reset", ttl);
        } else if (proto == IPPROTO_UDP) {
            resolve(hi, kUdp, from, "open", "udp-response", ttl);
        }
    }

    void on_icmp(const in_addr& src, const std::uint8_t* m, std::size_t n, int ttl) {
        if (n < 8) return;
        int type = m[0], code = m[1];
        if (type == 0 || type == 14) {  // echo / timestamp reply to our discovery probe
            if (rd16(m + 4) != sport) return;
            Host* h = host_by_addr(src);
            if (!h) return;
            auto it = inflight.find(key_of(index_of(h), kPing, 0));
            if (it == inflight.end()) return;
            rtt_sample(*h, it->second);
            inflight.erase(it);
            mark_up(*h, type == 0 ? "echo-reply" : "timestamp-reply", ttl);
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
            if (n++ == 0) srtt = r, var = r / 2;
            else var += (std::abs(r - srtt) - var) / 4, srtt += (r - srtt) / 8;
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

    void settle(Host& h, Kind k, std::uint16_t port, const char* state, const char* reason, int ttl) {
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
        for (auto& [k, v] : h.ports) keys.push_back(k);
        std::sort(keys.begin(), keys.end());  // tcp (1) before udp (2), ascending ports
        for (auto k : keys) r.ports.push_back(std::move(h.ports[k]));
        h.ports.clear();
        if (h.rtt_n) r.srtt = h.srtt;
        r.end_time = epoch_now();
    }

    bool send_ip(const Host& h, std::uint8_t proto, std::vector<std::uint8_t> l4) {
        auto pkt = ip_packet(h.src, h.addr, proto, std::move(l4), ip_id++);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr = h.addr;
        return sendto(raw_fd, pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&to),
                      sizeof to) == static_cast<ssize_t>(pkt.size());
    }

    bool send_probe(Probe& p) {
        Host& h = hosts[p.host];
        if (p.kind == kTcp)
            return send_ip(h, IPPROTO_TCP, tcp_segment(sport, p.port, seq_base + p.port, 0, 0x02));
        if (p.kind == kUdp) {
            auto it = payloads.find(p.port);
            std::string data = it == payloads.end() ? std::string() : it->second;
            std::vector<std::uint8_t> u(8 + data.size());
            wr16(&u[0], sport);
            wr16(&u[2], p.port);
            wr16(&u[4], static_cast<std::uint16_t>(u.size()));
            std::memcpy(u.data() + 8, data.data(), data.size());
            return send_ip(h, IPPROTO_UDP, std::move(u));
        }
        if (h.arp) {  // who-has target tell us
            std::array<std::uint8_t, 42> f{};
            std::fill(f.begin(), f.begin() + 6, 0xff);
            std::memcpy(&f[6], h.cap->mac.data(), 6);
            wr16(&f[12], kEthArp);
            std::uint8_t* a = &f[14];
            wr16(a, 1), wr16(a + 2, kEthIp), a[4] = 6, a[5] = 4, wr16(a + 6, 1);
            std::memcpy(a + 8, h.cap->mac.data(), 6);
            std::memcpy(a + 14, &h.src, 4);
            std::memcpy(a + 24, &h.addr, 4);
            return pcap_inject(h.cap->pcap, f.data(), f.size()) == static_cast<int>(f.size());
        }
        // nmap's default root discovery: echo, SYN to 443, ACK to 80, timestamp.
        std::vector<std::uint8_t> echo(8, 0);
        echo[0] = 8;
        wr16(&echo[4], sport);
        wr16(&echo[6], static_cast<std::uint16_t>(p.tries));
        std::vector<std::uint8_t> ts(20, 0);
        ts[0] = 13;
        wr16(&ts[4], sport);
        bool ok = send_ip(h, IPPROTO_ICMP, std::move(echo));
        ok = send_ip(h, IPPROTO_TCP, tcp_segment(sport, 443, seq_base, 0, 0x02)) && ok;
        ok = send_ip(h, IPPROTO_TCP, tcp_segment(sport, 80, seq_base, seq_base, 0x10)) && ok;
        ok = send_ip(h, IPPROTO_ICMP, std::move(ts)) && ok;
        return ok;
    }

    void pump() {
        if (finished) return;
        auto now = Clock::now();
        while (!queue.empty() && inflight.size() < window) {
            Probe p = queue.front();
            Host& h = hosts[p.host];
            if (h.finished) { queue.pop_front(); continue; }
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
        start_ports();
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
        for (auto& c : caps) {
            asio::error_code ec;
            c->sd->cancel(ec);
        }
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
            h.arp = !h.local && r.directly_connected && h.cap->linktype == DLT_EN10MB;
        }
        discovery = true;
        for (std::size_t i = 0; i < hosts.size(); ++i) {
            Host& h = hosts[i];
            if (h.finished) continue;
            if (opts.skip_discovery) mark_up(h, "user-set", 0);
            else if (h.local) mark_up(h, "localhost-response", 0);
            else queue.push_back({i, kPing, 0, 0, {}});
        }
        maybe_end_discovery();
        on_tick();
        return common::Status::ok();
    }
};

RawScanner::RawScanner(asio::io_context& io, const common::ScanOptions& opts,
                       const common::Services& services, RawPlan plan)
    : impl_(std::make_unique<Impl>(io, opts, services, std::move(plan))) {}

RawScanner::~RawScanner() = default;

common::Status RawScanner::start(std::vector<common::HostResult>& hosts,
                                 std::function<void()> done) {
    return impl_->start(hosts, std::move(done));
}

std::string RawScanner::mac_of(std::size_t index) const {
    for (const auto& h : impl_->hosts)
        if (h.r && h.r->index == index) return h.mac;
    return "";
}

}  // namespace worker
