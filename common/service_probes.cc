#include "common/service_probes.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

namespace common {

struct ServiceProbes::Match {
    bool soft = false;
    std::string service;
    pcre2_code* re = nullptr;
    // Templates: product, version, extrainfo, hostname, ostype, devicetype.
    std::string p, v, i, h, o, d;
    std::vector<std::string> cpe;
    int line = 0;
    ~Match() { pcre2_code_free(re); }
};

namespace {

using Match = ServiceProbes::Match;

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    return s;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// A probe string's C-like escapes: \\ \0 \a \b \f \n \r \t \v \xHH.
std::optional<std::string> unescape(std::string_view s) {
    std::string out;
    for (std::size_t k = 0; k < s.size(); ++k) {
        if (s[k] != '\\') {
            out += s[k];
            continue;
        }
        if (++k >= s.size()) return std::nullopt;
        switch (s[k]) {
        case '0': out += '\0'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': {
            if (k + 2 >= s.size()) return std::nullopt;
            int a = hex_digit(s[k + 1]), b = hex_digit(s[k + 2]);
            if (a < 0 || b < 0) return std::nullopt;
            out += static_cast<char>(a * 16 + b);
            k += 2;
            break;
        }
        default: out += s[k];
        }
    }
    return out;
}

// "21,23,1040-1043" (with T:/U: prefixes when `protocols` is set, as in Exclude).
bool parse_ports(std::string_view list, std::vector<std::pair<bool, PortRange>>& out,
                 bool protocols) {
    bool udp = false, both = true;
    std::size_t pos = 0;
    while (pos <= list.size()) {
        std::size_t comma = list.find(',', pos);
        std::string_view item = trim(list.substr(
            pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
        pos = comma == std::string_view::npos ? list.size() + 1 : comma + 1;
        if (item.empty()) return false;
        if (protocols && item.size() > 2 && item[1] == ':') {
            char p = static_cast<char>(std::toupper(static_cast<unsigned char>(item[0])));
            if (p != 'T' && p != 'U') return false;
            udp = p == 'U';
            both = false;
            item.remove_prefix(2);
        }
        auto number = [](std::string_view s, std::uint16_t& v) {
            if (s.empty() || s.size() > 5) return false;
            unsigned n = 0;
            for (char c : s) {
                if (c < '0' || c > '9') return false;
                n = n * 10 + static_cast<unsigned>(c - '0');
            }
            if (n > 65535) return false;
            v = static_cast<std::uint16_t>(n);
            return true;
        };
        PortRange r;
        auto dash = item.find('-');
        if (dash == std::string_view::npos) {
            if (!number(item, r.lo)) return false;
            r.hi = r.lo;
        } else if (!number(item.substr(0, dash), r.lo) || !number(item.substr(dash + 1), r.hi) ||
                   r.lo > r.hi) {
            return false;
        }
        if (both) {
            out.emplace_back(false, r);
            out.emplace_back(true, r);
        } else {
            out.emplace_back(udp, r);
        }
    }
    return true;
}

bool parse_port_ranges(std::string_view list, std::vector<PortRange>& out) {
    std::vector<std::pair<bool, PortRange>> tmp;
    if (!parse_ports(list, tmp, false)) return false;
    for (const auto& [udp, r] : tmp)
        if (!udp) out.push_back(r);
    return true;
}

// Reads "<delim>text<delim>" at s[pos] (pos at the delimiter); pos ends after the closing one.
std::optional<std::string_view> delimited(std::string_view s, std::size_t& pos) {
    if (pos >= s.size()) return std::nullopt;
    char d = s[pos];
    std::size_t end = s.find(d, pos + 1);
    if (end == std::string_view::npos) return std::nullopt;
    auto out = s.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    return out;
}

struct MatchData {
    pcre2_match_data* md = pcre2_match_data_create(64, nullptr);
    pcre2_match_context* mc = pcre2_match_context_create(nullptr);
    pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, nullptr);
    MatchData() { pcre2_jit_stack_assign(mc, nullptr, stack); }
    ~MatchData() {
        pcre2_jit_stack_free(stack);
        pcre2_match_context_free(mc);
        pcre2_match_data_free(md);
    }
};

// Runs `m` on `subject`; on success returns the capture groups (0 = whole match).
std::optional<std::vector<std::string>> run(const Match& m, std::string_view subject) {
    thread_local MatchData data;
    int rc = pcre2_match(m.re, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0,
                         data.md, data.mc);
    if (rc <= 0) return std::nullopt;  // no match, or an error (limits): no match either
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    std::vector<std::string> groups;
    for (int g = 0; g < rc; ++g) {
        if (ov[2 * g] == PCRE2_UNSET)
            groups.emplace_back();
        else
            groups.emplace_back(subject.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]));
    }
    return groups;
}

VersionMatch fill(const Match& m, const std::vector<std::string>& groups,
                  const std::string& probe) {
    VersionMatch r;
    r.soft = m.soft;
    r.service = m.service;
    r.product = fill_version_template(m.p, groups);
    r.version = fill_version_template(m.v, groups);
    r.extrainfo = fill_version_template(m.i, groups);
    r.hostname = fill_version_template(m.h, groups);
    r.ostype = fill_version_template(m.o, groups);
    r.devicetype = fill_version_template(m.d, groups);
    // One CPE per part (application, hardware, OS), as nmap keeps them: a later one of the same
    // part replaces an earlier.
    std::string parts[3];
    for (const auto& c : m.cpe) {
        auto v = fill_version_template(c, groups, true);
        auto at = std::string("aho").find(v.empty() ? '?' : v[0]);
        if (at != std::string::npos) parts[at] = "cpe:/" + v;
    }
    for (auto& c : parts)
        if (!c.empty()) r.cpe.push_back(std::move(c));
    r.probe = probe;
    r.line = m.line;
    return r;
}

// "match SERVICE m|re|flags [p/../ v/../ ... cpe:/../a]" after the directive word.
Result<std::shared_ptr<Match>> parse_match(std::string_view rest, bool soft, int line) {
    auto m = std::make_shared<Match>();
    m->soft = soft;
    m->line = line;
    rest = trim(rest);
    auto sp = rest.find_first_of(" \t");
    if (sp == std::string_view::npos) return Status::error("match line without a pattern");
    m->service = std::string(rest.substr(0, sp));
    rest = trim(rest.substr(sp));
    if (rest.size() < 3 || rest[0] != 'm') return Status::error("pattern must start with m");
    std::size_t pos = 1;
    auto re = delimited(rest, pos);
    if (!re) return Status::error("unterminated pattern");
    std::uint32_t options = 0;
    while (pos < rest.size() && !std::isspace(static_cast<unsigned char>(rest[pos]))) {
        if (rest[pos] == 'i')
            options |= PCRE2_CASELESS;
        else if (rest[pos] == 's')
            options |= PCRE2_DOTALL;
        else
            return Status::error(std::string("unknown pattern flag '") + rest[pos] + "'");
        ++pos;
    }
    int err = 0;
    PCRE2_SIZE off = 0;
    m->re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re->data()), re->size(), options, &err, &off,
                          nullptr);
    if (!m->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return Status::error("bad pattern at offset " + std::to_string(off) + ": " +
                             reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(m->re, PCRE2_JIT_COMPLETE);  // no JIT: the interpreter matches the same
    // Version fields.
    while (true) {
        while (pos < rest.size() && std::isspace(static_cast<unsigned char>(rest[pos])))
            ++pos;
        if (pos >= rest.size()) break;
        if (rest.substr(pos, 4) == "cpe:") {
            pos += 4;
            auto v = delimited(rest, pos);
            if (!v) return Status::error("unterminated cpe: field");
            if (pos < rest.size() && rest[pos] == 'a') ++pos;
            m->cpe.emplace_back(*v);
            continue;
        }
        char f = rest[pos++];
        auto v = delimited(rest, pos);
        if (!v) return Status::error(std::string("unterminated version field '") + f + "'");
        switch (f) {
        case 'p': m->p = *v; break;
        case 'v': m->v = *v; break;
        case 'i': m->i = *v; break;
        case 'h': m->h = *v; break;
        case 'o': m->o = *v; break;
        case 'd': m->d = *v; break;
        default: return Status::error(std::string("unknown version field '") + f + "'");
        }
    }
    return m;
}

}  // namespace

bool ServiceProbes::Probe::registered(std::uint16_t port, bool ssl) const {
    const auto& list = ssl ? sslports : ports;
    return std::any_of(list.begin(), list.end(),
                       [&](const PortRange& r) { return r.contains(port); });
}

bool ServiceProbes::Probe::can_match(const std::string& service) const {
    return std::any_of(matches.begin(), matches.end(),
                       [&](const auto& m) { return m->service == service; });
}

Result<std::shared_ptr<const ServiceProbes>> ServiceProbes::parse(std::string_view text,
                                                                  const std::string& name) {
    auto sp = std::make_shared<ServiceProbes>();
    std::vector<std::pair<std::size_t, std::string>> fallback_names;  // (probe, list)
    int line_no = 0;
    std::size_t pos = 0;
    auto fail = [&](const std::string& what) {
        return Status::error(name + ":" + std::to_string(line_no) + ": " + what);
    };
    while (pos < text.size()) {
        std::size_t nl = text.find('\n', pos);
        std::string_view line =
            text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        ++line_no;
        line = trim(line);
        if (line.empty() || line[0] == '#') continue;
        auto sp_at = line.find_first_of(" \t");
        std::string_view word = line.substr(0, sp_at);
        std::string_view rest = sp_at == std::string_view::npos ? "" : trim(line.substr(sp_at));
        if (word == "Exclude") {
            if (!sp->probes_.empty()) return fail("Exclude must come before the first Probe");
            if (!parse_ports(rest, sp->excludes_, true)) return fail("bad Exclude port list");
            continue;
        }
        if (word == "Probe") {
            Probe p;
            p.line = line_no;
            auto a = rest.find_first_of(" \t");
            if (a == std::string_view::npos) return fail("Probe needs a protocol, name and string");
            auto proto = rest.substr(0, a);
            if (proto == "UDP")
                p.udp = true;
            else if (proto != "TCP")
                return fail("Probe protocol must be TCP or UDP");
            rest = trim(rest.substr(a));
            auto b = rest.find_first_of(" \t");
            if (b == std::string_view::npos) return fail("Probe needs a name and a string");
            p.name = std::string(rest.substr(0, b));
            rest = trim(rest.substr(b));
            if (rest.size() < 2 || rest[0] != 'q') return fail("Probe string must be q|...|");
            std::size_t at = 1;
            auto raw = delimited(rest, at);
            if (!raw) return fail("unterminated Probe string");
            auto payload = unescape(*raw);
            if (!payload) return fail("bad escape in Probe string");
            p.payload = std::move(*payload);
            auto tail = trim(rest.substr(at));
            if (!tail.empty() && tail != "no-payload")
                return fail("unexpected text after Probe string");
            if (!p.udp && p.payload.empty() && !sp->null_) sp->null_ = sp->probes_.size();
            sp->probes_.push_back(std::move(p));
            continue;
        }
        if (sp->probes_.empty()) return fail("'" + std::string(word) + "' before the first Probe");
        Probe& p = sp->probes_.back();
        auto number = [&](int& dst, int lo, int hi) {
            std::string s(rest);
            char* end = nullptr;
            long v = std::strtol(s.c_str(), &end, 10);
            if (s.empty() || *end != '\0' || v < lo || v > hi) return false;
            dst = static_cast<int>(v);
            return true;
        };
        if (word == "match" || word == "softmatch") {
            auto m = parse_match(rest, word == "softmatch", line_no);
            if (!m) return fail(m.status().message());
            p.matches.push_back(std::move(*m));
        } else if (word == "ports") {
            if (!parse_port_ranges(rest, p.ports)) return fail("bad ports list");
        } else if (word == "sslports") {
            if (!parse_port_ranges(rest, p.sslports)) return fail("bad sslports list");
        } else if (word == "rarity") {
            if (!number(p.rarity, 1, 9)) return fail("rarity must be 1 to 9");
        } else if (word == "totalwaitms") {
            if (!number(p.totalwaitms, 1, 3600000)) return fail("bad totalwaitms");
        } else if (word == "tcpwrappedms") {
            if (!number(p.tcpwrappedms, 1, 3600000)) return fail("bad tcpwrappedms");
        } else if (word == "fallback") {
            fallback_names.emplace_back(sp->probes_.size() - 1, std::string(rest));
        } else {
            return fail("unknown directive '" + std::string(word) + "'");
        }
    }
    if (sp->probes_.empty()) return Status::error(name + ": no Probe");
    // Fallbacks name probes anywhere in the file: the same protocol's first, else the other's
    // (a TCP DNS probe falls back to the UDP one's lines).
    for (const auto& [idx, list] : fallback_names) {
        std::stringstream ss(list);
        std::string item;
        while (std::getline(ss, item, ',')) {
            auto n = std::string(trim(item));
            auto named = [&](bool same) {
                return std::find_if(sp->probes_.begin(), sp->probes_.end(), [&](const Probe& q) {
                    return q.name == n && (!same || q.udp == sp->probes_[idx].udp);
                });
            };
            auto it = named(true);
            if (it == sp->probes_.end()) it = named(false);
            if (it == sp->probes_.end()) {
                line_no = sp->probes_[idx].line;
                return fail("fallback names an unknown probe '" + n + "'");
            }
            sp->probes_[idx].fallbacks.push_back(
                static_cast<std::size_t>(it - sp->probes_.begin()));
        }
    }
    return std::shared_ptr<const ServiceProbes>(std::move(sp));
}

Result<std::shared_ptr<const ServiceProbes>> ServiceProbes::load(const std::string& path) {
    static std::mutex mu;
    static std::map<std::string, std::shared_ptr<const ServiceProbes>> cache;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(path); it != cache.end()) return it->second;
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::error("cannot read " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    auto parsed = parse(ss.str(), path);
    if (parsed) cache[path] = *parsed;
    return parsed;
}

bool ServiceProbes::excluded(std::uint16_t port, bool udp) const {
    return std::any_of(excludes_.begin(), excludes_.end(),
                       [&](const auto& e) { return e.first == udp && e.second.contains(port); });
}

std::vector<std::size_t> ServiceProbes::plan(std::uint16_t port, bool udp, bool ssl,
                                             int intensity) const {
    std::vector<std::size_t> first, rest;
    for (std::size_t k = 0; k < probes_.size(); ++k) {
        const Probe& p = probes_[k];
        if (p.udp != udp || (null_ && k == *null_)) continue;
        if (p.registered(port, ssl))
            first.push_back(k);
        else if (p.rarity <= intensity)
            rest.push_back(k);
    }
    first.insert(first.end(), rest.begin(), rest.end());
    return first;
}

std::optional<VersionMatch> ServiceProbes::match(std::size_t probe, std::string_view response,
                                                 const std::string& soft) const {
    if (probe >= probes_.size()) return std::nullopt;
    std::vector<std::size_t> order = {probe};
    for (auto f : probes_[probe].fallbacks)
        if (std::find(order.begin(), order.end(), f) == order.end()) order.push_back(f);
    if (!probes_[probe].udp && null_ &&
        std::find(order.begin(), order.end(), *null_) == order.end())
        order.push_back(*null_);
    std::optional<VersionMatch> first_soft;
    for (auto k : order) {
        for (const auto& m : probes_[k].matches) {
            if (!soft.empty() && (m->soft || m->service != soft)) continue;
            if (m->soft && first_soft) continue;
            auto groups = run(*m, response);
            if (!groups) continue;
            auto r = fill(*m, *groups, probes_[k].name);
            if (!m->soft) return r;
            first_soft = std::move(r);
        }
    }
    return first_soft;
}

std::string fill_version_template(std::string_view t, const std::vector<std::string>& groups,
                                  bool cpe) {
    auto group = [&](int n) -> std::string {
        return n >= 0 && static_cast<std::size_t>(n) < groups.size() ? groups[n] : std::string();
    };
    std::string out;
    std::size_t from = 0;  // start of the text the current substitution added
    auto cpe_escape = [&] {
        if (!cpe) return;
        std::string sub = out.substr(from), esc;
        for (char ch : sub) {
            auto c = static_cast<unsigned char>(std::tolower(static_cast<unsigned char>(ch)));
            if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
                esc += static_cast<char>(c);
            } else {
                char hex[4];
                std::snprintf(hex, sizeof hex, "%%%02X", c);
                esc += hex;
            }
        }
        out.resize(from);
        out += esc;
    };
    std::size_t k = 0;
    // Reads `$NAME(` arguments: a group number then quoted strings, up to ')'.
    auto args = [&](std::size_t at, int& n, std::vector<std::string>& strs) -> std::size_t {
        std::size_t close = t.find(')', at);
        if (close == std::string_view::npos) return 0;
        std::size_t q = at;
        n = 0;
        if (q >= t.size() || !std::isdigit(static_cast<unsigned char>(t[q]))) return 0;
        while (q < close && std::isdigit(static_cast<unsigned char>(t[q])))
            n = n * 10 + (t[q++] - '0');
        while (q < close) {
            if (t[q] == ',' || t[q] == ' ') {
                ++q;
                continue;
            }
            if (t[q] != '"') return 0;
            std::size_t end = t.find('"', q + 1);
            if (end == std::string_view::npos) return 0;
            strs.emplace_back(t.substr(q + 1, end - q - 1));
            q = end + 1;
            close = std::max(close, t.find(')', q));
            if (close == std::string_view::npos) return 0;
        }
        return close + 1;
    };
    while (k < t.size()) {
        if (t[k] != '$') {
            out += t[k++];
            continue;
        }
        from = out.size();
        if (k + 1 < t.size() && std::isdigit(static_cast<unsigned char>(t[k + 1]))) {
            out += group(t[k + 1] - '0');
            cpe_escape();
            k += 2;
            continue;
        }
        int n = 0;
        std::vector<std::string> strs;
        std::size_t next = 0;
        if (t.substr(k, 3) == "$P(" && (next = args(k + 3, n, strs)) && strs.empty()) {
            for (char c : group(n))
                if (std::isprint(static_cast<unsigned char>(c))) out += c;
        } else if (t.substr(k, 7) == "$SUBST(" && (next = args(k + 7, n, strs)) &&
                   strs.size() == 2 && !strs[0].empty()) {
            std::string g = group(n);
            for (std::size_t at = 0; at < g.size();) {
                if (g.compare(at, strs[0].size(), strs[0]) == 0) {
                    out += strs[1];
                    at += strs[0].size();
                } else {
                    out += g[at++];
                }
            }
        } else if (t.substr(k, 3) == "$I(" && (next = args(k + 3, n, strs)) && strs.size() == 1 &&
                   (strs[0] == ">" || strs[0] == "<")) {
            std::string g = group(n);
            if (g.size() <= 8) {
                std::uint64_t v = 0;
                for (std::size_t b = 0; b < g.size(); ++b) {
                    auto byte =
                        static_cast<unsigned char>(strs[0] == ">" ? g[b] : g[g.size() - 1 - b]);
                    v = (v << 8) | byte;
                }
                out += std::to_string(v);
            }
        } else {
            out += '$';
            ++k;
            continue;
        }
        cpe_escape();
        k = next;
    }
    return out;
}

}  // namespace common
