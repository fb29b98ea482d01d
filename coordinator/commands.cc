// `nsefleet coordinator`, `status` and `keygen`: argument parsing and the small clients.
#include "coordinator/commands.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/options.h"
#include "common/transport/keys.h"
#include "common/transport/transport.h"
#include "common/wire/codec.h"
#include "coordinator/coordinator.h"
#include "nse/engine.h"
#include "nse/local_shared_state.h"

namespace coordinator {

namespace {

namespace wire = common::wire;
namespace transport = common::transport;

int fail(const std::string& msg) {
    std::fprintf(stderr, "nsefleet: %s\n", msg.c_str());
    return 1;
}

// Pops the value of a flag that takes one ("--listen X" or "--listen=X"); false at the end.
bool take_value(const std::vector<std::string>& args, std::size_t& i, const std::string& name,
                std::string& out) {
    const std::string& a = args[i];
    if (a == name) {
        if (i + 1 >= args.size()) return false;
        out = args[++i];
        return true;
    }
    out = a.substr(name.size() + 1);
    return true;
}

bool is_flag(const std::string& a, const std::string& name) {
    return a == name || a.rfind(name + "=", 0) == 0;
}

struct ClientArgs {
    std::string connect, key, server_key;
    bool insecure = false;
    double timeout = 5;
};

common::Result<transport::ClientSecurity> client_security(const ClientArgs& a) {
    transport::ClientSecurity sec;
    sec.insecure = a.insecure;
    if (!a.key.empty()) {
        auto kp = transport::load_secret_key(a.key);
        if (!kp) return kp.status();
        sec.key = *kp;
        if (a.server_key.empty())
            return common::Status::error("--key needs --server-key (the coordinator's .pub)");
        auto sk = transport::load_public_key(a.server_key);
        if (!sk) return sk.status();
        sec.server_key = *sk;
    }
    return sec;
}

}  // namespace

int run_coordinator(const std::vector<std::string>& args) {
    CoordinatorConfig cfg;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        std::string v;
        auto need = [&](const char* name) {
            if (!take_value(args, i, name, v)) {
                std::fprintf(stderr, "nsefleet: %s needs a value\n", name);
                return false;
            }
            return true;
        };
        if (is_flag(a, "--listen")) {
            if (!need("--listen")) return 2;
            cfg.listen = v;
        } else if (is_flag(a, "--state")) {
            if (!need("--state")) return 2;
            cfg.state = v;
        } else if (is_flag(a, "--key")) {
            if (!need("--key")) return 2;
            cfg.key_file = v;
        } else if (is_flag(a, "--allow")) {
            if (!need("--allow")) return 2;
            cfg.allow_dir = v;
        } else if (is_flag(a, "--lease-timeout")) {
            if (!need("--lease-timeout")) return 2;
            auto t = common::parse_time_spec(v);
            if (!t || *t < 0.5 || *t > 86400) {
                std::fprintf(stderr, "nsefleet: bad --lease-timeout '%s' (0.5s .. 24h)\n",
                             v.c_str());
                return 2;
            }
            cfg.lease_timeout = *t;
        } else if (a == "--resume") {
            cfg.resume = true;
        } else if (a == "--insecure") {
            cfg.insecure = true;
        } else if (a == "--plan-only") {
            cfg.plan_only = true;
        } else {
            cfg.scan_args.push_back(a);
        }
    }
    if (cfg.listen.empty() || cfg.state.empty()) {
        std::fprintf(stderr, "nsefleet: coordinator needs --listen ENDPOINT and --state DIR\n");
        return 2;
    }
    if (cfg.key_file.empty() != cfg.allow_dir.empty()) {
        std::fprintf(stderr, "nsefleet: --key and --allow go together\n");
        return 2;
    }
    if (!cfg.key_file.empty() && cfg.insecure) {
        std::fprintf(stderr, "nsefleet: --key and --insecure exclude each other\n");
        return 2;
    }
    return run_coordinator(std::move(cfg));
}

int run_status(const std::vector<std::string>& args) {
    ClientArgs c;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        std::string v;
        bool ok = true;
        if (is_flag(a, "--connect"))
            ok = take_value(args, i, "--connect", c.connect);
        else if (is_flag(a, "--key"))
            ok = take_value(args, i, "--key", c.key);
        else if (is_flag(a, "--server-key"))
            ok = take_value(args, i, "--server-key", c.server_key);
        else if (is_flag(a, "--timeout")) {
            ok = take_value(args, i, "--timeout", v);
            auto t = ok ? common::parse_time_spec(v) : common::Result<double>(0.0);
            if (!t || *t <= 0 || *t > 3600)
                ok = false;
            else
                c.timeout = *t;
        } else if (a == "--insecure")
            c.insecure = true;
        else {
            std::fprintf(stderr, "nsefleet: status: unknown argument '%s'\n", a.c_str());
            return 2;
        }
        if (!ok) {
            std::fprintf(stderr, "nsefleet: status: bad or missing value for %s\n", a.c_str());
            return 2;
        }
    }
    if (c.connect.empty()) {
        std::fprintf(stderr, "nsefleet: status needs --connect ENDPOINT\n");
        return 2;
    }
    auto sec = client_security(c);
    if (!sec) return fail(sec.message());
    auto ctx = transport::Context::create();
    if (!ctx) return fail(ctx.message());
    auto dealer = transport::Dealer::connect(*ctx, c.connect, *sec);
    if (!dealer) return fail(dealer.message());
    if (auto s = (*dealer)->send(wire::encode(wire::StatusQuery{true}, 1)); !s)
        return fail(s.message());
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<long>(c.timeout * 1000));
    while (std::chrono::steady_clock::now() < deadline) {
        auto in = (*dealer)->recv(std::chrono::milliseconds(100));
        if (!in) return fail(in.message());
        if (!*in) continue;
        auto d = wire::decode(**in);
        if (!d) continue;
        if (auto* e = std::get_if<wire::Error>(&d->message)) return fail("coordinator: " + e->text);
        auto* r = std::get_if<wire::StatusReply>(&d->message);
        if (!r) continue;
        std::printf("scan %s: %s\n", r->scan_id.c_str(), r->state.c_str());
        std::printf("hosts: %llu/%llu%s done\n", static_cast<unsigned long long>(r->hosts_done),
                    static_cast<unsigned long long>(r->hosts_total),
                    r->targets_exhausted ? "" : "+");
        std::printf("groups: %llu pending, %llu leased, %llu done\n",
                    static_cast<unsigned long long>(r->groups_pending),
                    static_cast<unsigned long long>(r->groups_leased),
                    static_cast<unsigned long long>(r->groups_done));
        double now = common::epoch_now();
        for (const auto& w : r->workers) {
            std::string leases;
            for (auto g : w.leases)
                leases += (leases.empty() ? "" : ",") + std::to_string(g);
            std::printf("worker %llu %s: %u engine(s), leases [%s], seen %.1fs ago\n",
                        static_cast<unsigned long long>(w.worker_id), w.name.c_str(), w.engines,
                        leases.c_str(), std::max(0.0, now - w.last_seen));
        }
        return 0;
    }
    return fail("no answer from " + c.connect + " within " +
                std::to_string(static_cast<int>(c.timeout)) +
                "s (not running, wrong key, or not admitted)");
}

int run_keygen(const std::vector<std::string>& args) {
    if (args.size() != 1 || args[0].empty() || args[0][0] == '-') {
        std::fprintf(stderr,
                     "Usage: nsefleet keygen PREFIX   (writes PREFIX.key and PREFIX.pub)\n");
        return 2;
    }
    auto kp = transport::generate_keypair();
    if (!kp) return fail(kp.message());
    if (auto s = transport::write_keypair(args[0], *kp); !s) return fail(s.message());
    std::printf("wrote %s.key (secret, mode 0600) and %s.pub\n", args[0].c_str(), args[0].c_str());
    return 0;
}

int run_script_help(const std::string& scripts, const std::string& datadir) {
    // Script loading may print warnings: they go where the scan's would.
    struct Console final : nse::Embedder {
        void write(bool to_stderr, const std::string& text) override {
            std::fputs(text.c_str(), to_stderr ? stderr : stdout);
        }
        double now() override { return common::epoch_now(); }
    } console;
    nse::LocalSharedState shared;
    nse::EngineConfig cfg;
    cfg.datadir = datadir;
    std::size_t at = 0;
    while (at <= scripts.size()) {
        auto comma = scripts.find(',', at);
        auto item = scripts.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        if (!item.empty()) cfg.scripts.push_back(item);
        if (comma == std::string::npos) break;
        at = comma + 1;
    }
    if (cfg.scripts.empty()) {
        std::fprintf(stderr, "nsefleet: --script-help needs a script list\n");
        return 2;
    }
    auto engine = nse::Engine::create(cfg, console, shared);
    if (!engine) {
        std::fprintf(stderr, "nsefleet: %s\n", engine.message().c_str());
        return 2;
    }
    std::time_t t = std::time(nullptr);
    char when[64];
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M %Z", std::localtime(&t));
    std::printf("Starting nsefleet 0.1.0 ( nmap-compatible NSE fleet ) at %s\n", when);
    std::fputs((*engine)->script_help().c_str(), stdout);
    return 0;
}

namespace {

// Rows printed under a header, each column as wide as its widest cell plus one space.
std::string table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> w;
    for (const auto& r : rows)
        for (std::size_t i = 0; i < r.size(); ++i) {
            if (w.size() <= i) w.push_back(0);
            w[i] = std::max(w[i], r[i].size());
        }
    std::string out;
    for (const auto& r : rows) {
        std::string line;
        for (std::size_t i = 0; i < r.size(); ++i)
            line += i + 1 < r.size() ? r[i] + std::string(w[i] - r[i].size() + 1, ' ') : r[i];
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
        out += line + "\n";
    }
    return out;
}

std::string sys_net(const std::string& dev, const char* what) {
    std::ifstream f("/sys/class/net/" + dev + "/" + what);
    std::string v;
    std::getline(f, v);
    return v;
}

int prefix_len(const sockaddr* mask) {
    if (!mask) return 0;
    const auto* b = mask->sa_family == AF_INET6
                        ? reinterpret_cast<const unsigned char*>(
                              &reinterpret_cast<const sockaddr_in6*>(mask)->sin6_addr)
                        : reinterpret_cast<const unsigned char*>(
                              &reinterpret_cast<const sockaddr_in*>(mask)->sin_addr);
    int n = 0, len = mask->sa_family == AF_INET6 ? 16 : 4;
    for (int i = 0; i < len; ++i)
        n += __builtin_popcount(b[i]);
    return n;
}

}  // namespace

int run_iflist() {
    ifaddrs* ifs = nullptr;
    if (getifaddrs(&ifs) != 0) {
        std::perror("nsefleet: getifaddrs");
        return 1;
    }
    std::vector<std::vector<std::string>> rows = {
        {"DEV", "(SHORT)", "IP/MASK", "TYPE", "UP", "MTU", "MAC"}};
    for (ifaddrs* i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr ||
            (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
            continue;
        char a[INET6_ADDRSTRLEN] = "";
        const void* src =
            i->ifa_addr->sa_family == AF_INET6
                ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr)
                : &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr;
        inet_ntop(i->ifa_addr->sa_family, src, a, sizeof a);
        std::string dev = i->ifa_name;
        bool loop = i->ifa_flags & IFF_LOOPBACK;
        std::string mac = loop ? "" : sys_net(dev, "address");
        for (auto& c : mac)
            c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        rows.push_back({dev, "(" + dev + ")",
                        std::string(a) + "/" + std::to_string(prefix_len(i->ifa_netmask)),
                        loop ? "loopback" : "ethernet", (i->ifa_flags & IFF_UP) ? "up" : "down",
                        sys_net(dev, "mtu"), mac});
    }
    freeifaddrs(ifs);
    std::vector<std::vector<std::string>> routes = {{"DST/MASK", "DEV", "METRIC", "GATEWAY"}};
    std::ifstream rt("/proc/net/route");
    std::string line;
    std::getline(rt, line);  // header
    while (std::getline(rt, line)) {
        std::istringstream f(line);
        std::string dev, dst, gw, flags, refcnt, use, metric, mask;
        if (!(f >> dev >> dst >> gw >> flags >> refcnt >> use >> metric >> mask)) continue;
        auto addr = [](const std::string& hex) {
            in_addr x{};
            x.s_addr = static_cast<in_addr_t>(std::stoul(hex, nullptr, 16));
            char b[INET_ADDRSTRLEN] = "";
            inet_ntop(AF_INET, &x, b, sizeof b);
            return std::string(b);
        };
        in_addr m{};
        m.s_addr = static_cast<in_addr_t>(std::stoul(mask, nullptr, 16));
        int bits = __builtin_popcount(m.s_addr);
        std::string g = addr(gw);
        routes.push_back(
            {addr(dst) + "/" + std::to_string(bits), dev, metric, g == "0.0.0.0" ? "" : g});
    }
    std::printf("************************INTERFACES************************\n%s\n",
                table(rows).c_str());
    std::printf("**************************ROUTES**************************\n%s",
                table(routes).c_str());
    return 0;
}

}  // namespace coordinator
