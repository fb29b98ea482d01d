#include "common/targets.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <bitset>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <unordered_set>

namespace common {

namespace {

Status invalid(const std::string& tok) {
    return Status::error("invalid target specification: '" + tok + "'");
}

bool parse_uint(const std::string& s, int max, int& out) {
    if (s.empty() || s.size() > 3) return false;
    int v = 0;
    for (char c : s) {
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
        v = v * 10 + (c - '0');
        if (v > max) return false;
    }
    out = v;
    return true;
}

// One octet field: comma list of N, N-M, -M, N-, or "-".
bool parse_octet(const std::string& field, std::bitset<256>& set) {
    std::size_t start = 0;
    while (true) {
        auto comma = field.find(',', start);
        std::string item =
            field.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (item.empty()) return false;
        int lo = 0, hi = 255;
        auto dash = item.find('-');
        if (dash == std::string::npos) {
            if (!parse_uint(item, 255, lo)) return false;
            hi = lo;
        } else {
            std::string a = item.substr(0, dash), b = item.substr(dash + 1);
            if (!a.empty() && !parse_uint(a, 255, lo)) return false;
            if (!b.empty() && !parse_uint(b, 255, hi)) return false;
            if (lo > hi) return false;
        }
        for (int i = lo; i <= hi; ++i)
            set.set(i);
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return true;
}

bool looks_like_v4_range(const std::string& s) {
    return !s.empty() && s.find_first_not_of("0123456789.,-") == std::string::npos;
}

bool valid_hostname(const std::string& s) {
    if (s.empty() || s.size() > 253 || s.front() == '.' || s.front() == '-') return false;
    for (char c : s)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_')
            return false;
    return s.find("..") == std::string::npos;
}

}  // namespace

bool never_resolves(const std::string& name) {
    std::string n = name;
    for (auto& c : n)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!n.empty() && n.back() == '.') n.pop_back();
    return n == "invalid" || (n.size() > 8 && n.compare(n.size() - 8, 8, ".invalid") == 0);
}

bool unresolved_name(const Status& st) {
    return !st && st.message().rfind("failed to resolve '", 0) == 0;
}

bool random_target_candidate(std::uint32_t a) {
    // IANA special-purpose and non-unicast blocks (RFC 6890 and successors), as prefixes.
    static const std::pair<std::uint32_t, int> reserved[] = {
        {0x00000000, 8},  {0x0A000000, 8},  {0x64400000, 10}, {0x7F000000, 8},  {0xA9FE0000, 16},
        {0xAC100000, 12}, {0xC0000000, 24}, {0xC0000200, 24}, {0xC0586300, 24}, {0xC0A80000, 16},
        {0xC6120000, 15}, {0xC6336400, 24}, {0xCB007100, 24}, {0xE0000000, 3},
    };
    for (auto [net, len] : reserved)
        if ((a >> (32 - len)) == (net >> (32 - len))) return false;
    return (a & 0xFF) != 0 && (a & 0xFF) != 0xFF;  // network/broadcast-looking
}

std::vector<std::string> random_public_ipv4(int n) {
    std::random_device rd;
    std::mt19937 rng(rd());
    std::vector<std::string> out;
    out.reserve(static_cast<std::size_t>(std::max(n, 0)));
    while (static_cast<int>(out.size()) < n) {
        std::uint32_t a = rng();
        if (random_target_candidate(a)) out.push_back(format_v4(a));
    }
    return out;
}

Result<std::vector<std::string>> parse_decoys(const std::string& spec) {
    std::vector<std::string> out;
    bool me = false;
    std::stringstream ss(spec);
    for (std::string item; std::getline(ss, item, ',');) {
        if (item == "ME") {
            if (me) return Status::error("-D: ME given twice in '" + spec + "'");
            me = true;
            out.push_back(item);
        } else if (item.rfind("RND", 0) == 0) {
            int n = 1;
            if (item.size() > 3) {
                if (item[3] != ':' || item.size() == 4 ||
                    item.find_first_not_of("0123456789", 4) != std::string::npos ||
                    item.size() > 8 || (n = std::stoi(item.substr(4))) < 1 || n > 128)
                    return Status::error("-D: bad decoy '" + item + "' (RND or RND:1..128)");
            }
            auto r = random_public_ipv4(n);
            out.insert(out.end(), r.begin(), r.end());
        } else {
            in_addr a{};
            if (inet_pton(AF_INET, item.c_str(), &a) != 1)
                return Status::error("-D: bad decoy '" + item +
                                     "' (an IPv4 address, ME or RND[:N])");
            out.push_back(item);
        }
    }
    if (out.empty() || (out.size() == 1 && me))
        return Status::error("-D: no decoy in '" + spec + "'");
    if (out.size() > 128) return Status::error("-D: more than 128 decoys in '" + spec + "'");
    return out;
}

namespace {

// Resolves a host name to its addresses of the wanted family, in resolver order (the
// first only unless `all`).
Result<std::vector<std::string>> resolve(const std::string& name, bool ipv6, bool all) {
    if (never_resolves(name)) return Status::error("failed to resolve '" + name + "'");
    addrinfo hints{};
    hints.ai_family = ipv6 ? AF_INET6 : AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(name.c_str(), nullptr, &hints, &res);
    if (rc != 0 || !res) return Status::error("failed to resolve '" + name + "'");
    std::vector<std::string> out;
    for (addrinfo* ai = res; ai && (all || out.empty()); ai = ai->ai_next) {
        char buf[INET6_ADDRSTRLEN] = {};
        if (ipv6)
            inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, buf,
                      sizeof buf);
        else
            inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, buf,
                      sizeof buf);
        if (std::find(out.begin(), out.end(), buf) == out.end()) out.emplace_back(buf);
    }
    freeaddrinfo(res);
    return out;
}

// Parses one expression. `ipv6` is -6; for excludes (`any_family`) both families parse.
Result<TargetSpec> parse_spec(const std::string& tok, bool ipv6, bool any_family,
                              const std::string& resolved, bool resolve_all) {
    TargetSpec s;
    std::string host = tok;
    int prefix = -1;
    if (auto slash = tok.find('/'); slash != std::string::npos) {
        host = tok.substr(0, slash);
        if (!parse_uint(tok.substr(slash + 1), 128, prefix)) return invalid(tok);
    }
    if (host.empty()) return invalid(tok);

    if (host.find(':') != std::string::npos) {  // IPv6 literal
        in6_addr a6;
        if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) return invalid(tok);
        if (!ipv6 && !any_family) return Status::error("IPv6 target '" + tok + "' requires -6");
        if (prefix > 128) return invalid(tok);
        s.kind = TargetSpec::V6Cidr;
        std::memcpy(s.v6.data(), &a6, 16);
        s.prefix = prefix < 0 ? 128 : prefix;
        return s;
    }

    if (looks_like_v4_range(host)) {
        std::vector<std::string> fields;
        std::stringstream ss(host);
        for (std::string f; std::getline(ss, f, '.');)
            fields.push_back(f);
        if (fields.size() != 4 || host.back() == '.') return invalid(tok);
        for (int i = 0; i < 4; ++i)
            if (!parse_octet(fields[i], s.octets[i])) return invalid(tok);
        if (ipv6 && !any_family)
            return Status::error("failed to resolve '" + tok + "': an IPv4 address under -6");
        bool plain = true;
        for (const auto& o : s.octets)
            plain = plain && o.count() == 1;
        if (!plain) {
            if (prefix >= 0) return invalid(tok);  // ranges and netmask do not combine
            s.kind = TargetSpec::V4Octets;
            return s;
        }
        if (prefix > 32) return invalid(tok);
        s.kind = TargetSpec::V4Cidr;
        for (int i = 0; i < 4; ++i) {
            int v = 0;
            while (!s.octets[i].test(v))
                ++v;
            s.v4 = (s.v4 << 8) | std::uint32_t(v);
        }
        s.prefix = prefix < 0 ? 32 : prefix;
        return s;
    }

    if (!valid_hostname(host)) return invalid(tok);
    std::vector<std::string> addrs;
    if (resolved.empty()) {
        auto r = resolve(host, ipv6, prefix < 0);
        if (!r) return r.status();
        addrs = std::move(*r);
    } else {  // replayed from a journal: one address, or --resolve-all's list
        std::stringstream ss(resolved);
        for (std::string a; std::getline(ss, a, ',');)
            addrs.push_back(a);
    }
    if (addrs.empty()) return Status::error("failed to resolve '" + host + "'");
    if (addrs.size() > 1 && prefix < 0 && resolve_all) {
        TargetSpec r;
        r.kind = TargetSpec::Names;
        for (const auto& a : addrs) {  // each must be an address of the scan's family
            auto one = parse_spec(a, ipv6, false, {}, false);
            if (!one || one->count() != 1) return invalid(tok);
            r.resolved += (r.resolved.empty() ? "" : ",") + a;
        }
        r.addresses = std::move(addrs);
        r.targetname = host;
        return r;
    }
    const std::string& addr = addrs.front();
    auto parsed =
        parse_spec(addr + (prefix >= 0 ? "/" + std::to_string(prefix) : ""), ipv6, true, {}, false);
    if (!parsed) return invalid(tok);  // e.g. a /33 after a v4 name
    TargetSpec r = *parsed;
    r.resolved = addr;
    if (r.count() == 1) {
        r.targetname = host;
        r.other_addresses.assign(addrs.begin() + 1, addrs.end());
        // Journaled with the others, so a resumed scan prints "Other addresses" too.
        for (const auto& other : r.other_addresses)
            r.resolved += "," + other;
    }
    return r;
}

}  // namespace

std::uint64_t TargetSpec::count() const {
    if (kind == Names) return addresses.size();
    if (kind == V4Octets) {
        std::uint64_t n = 1;
        for (const auto& o : octets)
            n *= o.count();
        return n;
    }
    int bits = (kind == V4Cidr ? 32 : 128) - prefix;
    return bits >= 63 ? (std::uint64_t(1) << 63) : (std::uint64_t(1) << bits);
}

bool TargetSpec::contains_v4(std::uint32_t a) const {
    if (kind == V4Octets) {
        for (int i = 0; i < 4; ++i)
            if (!octets[i].test((a >> (24 - 8 * i)) & 0xff)) return false;
        return true;
    }
    if (kind != V4Cidr) return false;
    std::uint32_t mask = prefix == 0 ? 0 : ~std::uint32_t(0) << (32 - prefix);
    return (a & mask) == (v4 & mask);
}

bool TargetSpec::contains_v6(const std::array<std::uint8_t, 16>& a) const {
    if (kind != V6Cidr) return false;
    for (int bit = 0; bit < prefix; bit += 8) {
        int n = std::min(8, prefix - bit);
        std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - n));
        if ((a[bit / 8] & mask) != (v6[bit / 8] & mask)) return false;
    }
    return true;
}

Result<TargetSpec> parse_target_spec(const std::string& tok, bool ipv6, bool any_family,
                                     const std::string& resolved, bool resolve_all) {
    return parse_spec(tok, ipv6, any_family, resolved, resolve_all);
}

void split_spec_line(std::string line, std::vector<std::string>& out) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream ls(line);
    for (std::string tok; ls >> tok;)
        out.push_back(tok);
}

Status open_spec_file(const std::string& path, const std::string& what, std::ifstream& f) {
    f.open(path);
    if (!f)
        return Status::error("cannot read " + what + " file '" + path +
                             "': " + std::strerror(errno));
    return Status::ok();
}

Status read_spec_file(const std::string& path, const std::string& what,
                      std::vector<std::string>& out) {
    std::ifstream f;
    std::istream* in = &std::cin;
    if (path != "-") {
        if (auto st = open_spec_file(path, what, f); !st) return st;
        in = &f;
    }
    for (std::string line; std::getline(*in, line);)
        split_spec_line(std::move(line), out);
    if (in->bad()) return Status::error("cannot read " + what + " file '" + path + "'");
    return Status::ok();
}

std::string format_v4(std::uint32_t a) {
    // Hand-rolled: the cursor formats millions of these per second.
    char buf[16];
    char* p = buf;
    for (int i = 3; i >= 0; --i) {
        unsigned o = (a >> (8 * i)) & 0xff;
        if (o >= 100) *p++ = char('0' + o / 100);
        if (o >= 10) *p++ = char('0' + o / 10 % 10);
        *p++ = char('0' + o % 10);
        if (i) *p++ = '.';
    }
    return std::string(buf, p);
}

std::string format_v6(const std::array<std::uint8_t, 16>& a) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(AF_INET6, a.data(), buf, sizeof buf);
    return buf;
}

Result<std::vector<Target>> expand_targets(const std::vector<std::string>& specs,
                                           const std::vector<std::string>& input_files,
                                           const std::vector<std::string>& excludes,
                                           const std::vector<std::string>& exclude_files, bool ipv6,
                                           std::size_t limit) {
    std::vector<std::string> all = specs;
    for (const auto& f : input_files)
        if (auto st = read_spec_file(f, "target", all); !st) return st;
    std::vector<std::string> ex_tokens = excludes;
    for (const auto& f : exclude_files)
        if (auto st = read_spec_file(f, "exclude", ex_tokens); !st) return st;

    std::vector<TargetSpec> ex;
    for (const auto& tok : ex_tokens) {
        auto s = parse_spec(tok, ipv6, true, {}, false);
        if (!s) return s.status();
        ex.push_back(*s);
    }
    auto excluded4 = [&](std::uint32_t a) {
        for (const auto& e : ex)
            if (e.contains_v4(a)) return true;
        return false;
    };
    auto excluded6 = [&](const std::array<std::uint8_t, 16>& a) {
        for (const auto& e : ex)
            if (e.contains_v6(a)) return true;
        return false;
    };

    std::vector<Target> out;
    std::unordered_set<std::string> seen;  // raw address bytes
    auto too_many = [&](const std::string& tok) {
        return Status::error("target expansion exceeds " + std::to_string(limit) + " hosts: '" +
                             tok + "'");
    };
    auto add4 = [&](std::uint32_t a, const std::string& name) {
        if (excluded4(a)) return;
        std::string key(reinterpret_cast<const char*>(&a), 4);
        if (!seen.insert(key).second) return;
        out.push_back(Target{format_v4(a), false, name, {}});
    };

    for (const auto& tok : all) {
        auto r = parse_spec(tok, ipv6, false, {}, false);
        if (!r) return r.status();
        const TargetSpec& s = *r;
        std::uint64_t n = s.count();
        // Checked before expanding so that a huge block fails fast instead of allocating;
        // conservative when the block overlaps hosts already listed.
        if (n > limit - std::min<std::size_t>(limit, out.size())) return too_many(tok);
        if (s.kind == TargetSpec::V4Octets) {
            for (int a = 0; a < 256; ++a) {
                if (!s.octets[0].test(a)) continue;
                for (int b = 0; b < 256; ++b) {
                    if (!s.octets[1].test(b)) continue;
                    for (int c = 0; c < 256; ++c) {
                        if (!s.octets[2].test(c)) continue;
                        for (int d = 0; d < 256; ++d)
                            if (s.octets[3].test(d))
                                add4(std::uint32_t(a) << 24 | std::uint32_t(b) << 16 |
                                         std::uint32_t(c) << 8 | std::uint32_t(d),
                                     "");
                    }
                }
            }
        } else if (s.kind == TargetSpec::V4Cidr) {
            std::uint32_t mask = s.prefix == 0 ? 0 : ~std::uint32_t(0) << (32 - s.prefix);
            std::uint32_t first = s.v4 & mask;
            for (std::uint64_t i = 0; i < n; ++i)
                add4(first + std::uint32_t(i), s.targetname);
        } else {
            std::array<std::uint8_t, 16> a = s.v6;
            for (int bit = s.prefix; bit < 128; ++bit)  // network-align
                a[bit / 8] &= static_cast<std::uint8_t>(~(0x80 >> (bit % 8)));
            for (std::uint64_t i = 0; i < n; ++i) {
                if (!excluded6(a)) {
                    std::string key(reinterpret_cast<const char*>(a.data()), 16);
                    if (seen.insert(key).second) {
                        out.push_back(Target{format_v6(a), true, s.targetname, {}});
                    }
                }
                for (int k = 15; k >= 0 && ++a[k] == 0; --k) {  // 128-bit increment
                }
            }
        }
    }
    return out;
}

}  // namespace common
