#include "common/services.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace common {

namespace {

std::string proto_name(char p) { return p == 'u' ? "udp" : "tcp"; }

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// Case-insensitive glob with '*' and '?', as used for -p service patterns.
bool glob_match(const char* pat, const char* s) {
    for (; *pat; ++pat, ++s) {
        if (*pat == '*') {
            for (const char* t = s;; ++t) {
                if (glob_match(pat + 1, t)) return true;
                if (!*t) return false;
            }
        }
        if (!*s) return false;
        if (*pat != '?' && std::tolower(static_cast<unsigned char>(*pat)) !=
                               std::tolower(static_cast<unsigned char>(*s)))
            return false;
    }
    return *s == '\0';
}

bool parse_port(const std::string& s, int& out) {
    if (s.empty() || s.size() > 5) return false;
    int v = 0;
    for (char c : s) {
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
        v = v * 10 + (c - '0');
    }
    if (v > 65535) return false;
    out = v;
    return true;
}

Status invalid(const std::string& tok) {
    return Status::error("invalid port specification: '" + tok + "'");
}

}  // namespace

Result<Services> Services::load(const std::string& path) {
    std::ifstream f(path);
    if (!f)
        return Status::error("cannot read services file '" + path + "': " + std::strerror(errno));
    Services s;
    for (std::string line; std::getline(f, line);) {
        if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
        std::istringstream ls(line);
        std::string name, portproto, freq;
        if (!(ls >> name >> portproto)) continue;
        ls >> freq;
        auto slash = portproto.find('/');
        int port;
        if (slash == std::string::npos || !parse_port(portproto.substr(0, slash), port)) continue;
        std::string proto = portproto.substr(slash + 1);
        double fr = freq.empty() ? 0.0 : std::strtod(freq.c_str(), nullptr);
        auto key = std::make_pair(proto, static_cast<std::uint16_t>(port));
        // A repeated port keeps its first name, as the file lists the preferred one first.
        s.entries_.emplace(key, std::make_pair(name, fr));
    }
    if (f.bad()) return Status::error("cannot read services file '" + path + "'");
    return s;
}

std::string Services::name(std::uint16_t port, const std::string& proto) const {
    auto it = entries_.find({proto, port});
    return it == entries_.end() ? "" : it->second.first;
}

std::vector<PortSpec> Services::top(int n, char proto) const {
    std::string p = proto_name(proto);
    std::vector<std::pair<double, std::uint16_t>> v;
    for (const auto& [key, val] : entries_)
        if (key.first == p) v.emplace_back(val.second, key.second);
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::vector<PortSpec> out;
    for (std::size_t i = 0; i < v.size() && static_cast<int>(i) < n; ++i)
        out.push_back(PortSpec{v[i].second, proto});
    return out;
}

std::vector<std::uint16_t> Services::ports_matching(const std::string& pattern, char proto) const {
    std::string p = proto_name(proto);
    std::vector<std::uint16_t> out;
    for (const auto& [key, val] : entries_)  // map order: ascending port within a protocol
        if (key.first == p && glob_match(pattern.c_str(), val.first.c_str()))
            out.push_back(key.second);
    return out;
}

Result<std::vector<PortSpec>> parse_port_list(const std::string& spec, const Services* services) {
    std::vector<PortSpec> out;
    char proto = 't';
    std::size_t start = 0;
    while (start <= spec.size()) {
        auto comma = spec.find(',', start);
        if (comma == std::string::npos) comma = spec.size();
        std::string tok = trim(spec.substr(start, comma - start));
        start = comma + 1;
        std::string item = tok;
        // A protocol prefix switches the protocol for this and the following items.
        if (item.size() >= 2 && item[1] == ':') {
            char p = static_cast<char>(std::toupper(static_cast<unsigned char>(item[0])));
            if (p == 'T')
                proto = 't';
            else if (p == 'U')
                proto = 'u';
            else
                return invalid(tok);  // S: (SCTP) and P: (protocols) have no scan here
            item = trim(item.substr(2));
        }
        if (item.empty()) {
            if (tok.empty()) continue;  // tolerate "22,,80" and a trailing comma
            return invalid(tok);
        }
        if (std::isalpha(static_cast<unsigned char>(item[0])) || item[0] == '*' || item[0] == '?') {
            // Service name or glob, resolved for the current protocol only.
            std::vector<std::uint16_t> ports;
            if (services) ports = services->ports_matching(item, proto);
            if (ports.empty()) return invalid(tok);
            for (auto p : ports)
                out.push_back(PortSpec{p, proto});
            continue;
        }
        int lo, hi;
        auto dash = item.find('-');
        if (dash == std::string::npos) {
            if (!parse_port(item, lo)) return invalid(tok);
            hi = lo;
        } else {
            std::string a = trim(item.substr(0, dash)), b = trim(item.substr(dash + 1));
            lo = 1;  // an open start begins at 1; 0 only when written
            hi = 65535;
            if (!a.empty() && !parse_port(a, lo)) return invalid(tok);
            if (!b.empty() && !parse_port(b, hi)) return invalid(tok);
            if (lo > hi) return invalid(tok);
        }
        for (int p = lo; p <= hi; ++p)
            out.push_back(PortSpec{static_cast<std::uint16_t>(p), proto});
    }
    if (out.empty()) return invalid(spec);
    auto less = [](const PortSpec& a, const PortSpec& b) {
        return a.proto != b.proto ? a.proto < b.proto : a.number < b.number;
    };
    std::sort(out.begin(), out.end(), less);
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

Status resolve_ports(ScanOptions& opts, const Services& services) {
    opts.ports.clear();
    if (!opts.port_spec.empty()) {
        auto r = parse_port_list(opts.port_spec, &services);
        if (!r) return r.status();
        for (const auto& p : *r)
            if (p.proto == 'u' && !opts.udp_scan)
                return Status::error("UDP ports given in '" + opts.port_spec +
                                     "' but no UDP scan type (-sU) selected");
        opts.ports = std::move(*r);
    } else {
        if (opts.ping_only) return Status::ok();  // -sn: no port scan
        int n = opts.top_ports > 0 ? opts.top_ports : opts.fast ? 100 : 1000;
        opts.ports = services.top(n, 't');
        std::sort(opts.ports.begin(), opts.ports.end(),
                  [](const PortSpec& a, const PortSpec& b) { return a.number < b.number; });
    }
    if (!opts.exclude_ports.empty()) {  // --exclude-ports: same syntax as -p
        auto ex = parse_port_list(opts.exclude_ports, &services);
        if (!ex) return ex.status();
        std::erase_if(opts.ports, [&](const PortSpec& p) {
            return std::find(ex->begin(), ex->end(), p) != ex->end();
        });
    }
    return Status::ok();
}

ProtocolPorts protocol_ports(const ScanOptions& opts, const Services& services) {
    ProtocolPorts pp;
    if (opts.ping_only) return pp;
    const bool tcp = opts.syn_scan || opts.connect_scan || !opts.udp_scan;
    const bool prefixed = opts.port_spec.find(':') != std::string::npos;
    for (const auto& p : opts.ports) {
        if (p.proto == 't' && tcp) pp.tcp.push_back(p.number);
        if (opts.udp_scan && (p.proto == 'u' || (p.proto == 't' && !prefixed)))
            pp.udp.push_back(p.number);
    }
    if (opts.udp_scan && opts.port_spec.empty()) {
        int n = opts.top_ports > 0 ? opts.top_ports : opts.fast ? 100 : 1000;
        pp.udp.clear();
        for (const auto& p : services.top(n, 'u'))
            pp.udp.push_back(p.number);
    }
    for (auto* v : {&pp.tcp, &pp.udp}) {
        std::sort(v->begin(), v->end());
        v->erase(std::unique(v->begin(), v->end()), v->end());
    }
    return pp;
}

}  // namespace common
