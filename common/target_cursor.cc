#include "common/target_cursor.h"

#include <arpa/inet.h>

#include <array>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <unordered_set>

namespace common {

namespace {

// nmap's words for a target that does not resolve (the scan goes on without it).
void warn_unresolved(const TargetSources& src, const std::string& tok, const Status& why) {
    if (why.message().find("under -6") != std::string::npos)
        src.on_unresolved("Warning: Hostname " + tok +
                          " resolves, but not to any IPv6 address. Try scanning without -6");
    src.on_unresolved("Failed to resolve \"" + tok + "\".");
}

}  // namespace

namespace {

constexpr std::uint64_t kNoSpec = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint64_t kRandomRejectLimit = 1u << 20;

Status too_many(std::uint64_t limit, const std::string& tok) {
    return Status::error("target expansion exceeds " + std::to_string(limit) + " hosts: '" + tok +
                         "'");
}

std::uint32_t v4_network(const TargetSpec& s) {
    std::uint32_t mask = s.prefix == 0 ? 0 : ~std::uint32_t(0) << (32 - s.prefix);
    return s.v4 & mask;
}

std::array<std::uint8_t, 16> v6_network(const TargetSpec& s) {
    std::array<std::uint8_t, 16> a = s.v6;
    for (int bit = s.prefix; bit < 128; ++bit)
        a[bit / 8] &= static_cast<std::uint8_t>(~(0x80 >> (bit % 8)));
    return a;
}

// base + off as 128-bit big-endian arithmetic.
std::array<std::uint8_t, 16> v6_add(std::array<std::uint8_t, 16> a, std::uint64_t off) {
    unsigned carry = 0;
    for (int k = 15; k >= 0 && (off || carry); --k) {
        unsigned sum = unsigned(a[k]) + unsigned(off & 0xff) + carry;
        a[k] = static_cast<std::uint8_t>(sum);
        carry = sum >> 8;
        off >>= 8;
    }
    return a;
}

// Draw number k of the -iR 0 sequence for `seed` (splitmix64 of a Weyl sequence: a pure
// function of k, so a restored cursor needs no generator state).
std::uint32_t random_draw(std::uint64_t seed, std::uint64_t k) {
    std::uint64_t z = seed + (k + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return std::uint32_t((z ^ (z >> 31)) >> 32);
}

struct V6Hash {
    std::size_t operator()(const std::array<std::uint8_t, 16>& a) const {
        std::string_view v(reinterpret_cast<const char*>(a.data()), a.size());
        return std::hash<std::string_view>{}(v);
    }
};

}  // namespace

std::string CursorPosition::encode() const {
    std::string s =
        "v1 " + std::to_string(spec) + " " + std::to_string(offset) + " " + std::to_string(index);
    if (!resolved.empty()) s += " " + resolved;
    return s;
}

Result<CursorPosition> CursorPosition::decode(std::string_view text) {
    auto bad = Status::error("bad cursor position '" + std::string(text) + "'");
    std::istringstream in{std::string(text)};
    std::string tag, a, b, c, r, extra;
    if (!(in >> tag >> a >> b >> c) || tag != "v1") return bad;
    in >> r >> extra;
    if (!extra.empty()) return bad;
    CursorPosition p;
    for (auto [str, dst] : {std::pair{&a, &p.spec}, {&b, &p.offset}, {&c, &p.index}}) {
        if (str->empty() || str->size() > 20 ||
            str->find_first_not_of("0123456789") != std::string::npos)
            return bad;
        try {
            *dst = std::stoull(*str);
        } catch (const std::out_of_range&) {
            return bad;
        }
    }
    p.resolved = r;
    return p;
}

struct TargetCursor::Impl {
    TargetSources src;
    std::vector<TargetSpec> cli;  // parsed command-line specs
    std::vector<TargetSpec> ex;

    // -iL token stream: tokens of the current line not yet handed out.
    std::size_t file_no = 0;
    std::ifstream file;
    std::istream* in = nullptr;
    std::vector<std::string> line_tokens;
    std::size_t line_pos = 0;
    bool stdin_touched = false;

    // The walk.
    std::uint64_t spec_idx = 0;
    bool entered = false;  // `cur` holds the parsed spec at spec_idx
    bool random = false;   // the spec at spec_idx is -iR 0's endless random source
    TargetSpec cur;
    std::uint64_t cur_count = 0;
    std::uint64_t offset = 0;
    std::uint64_t index = 0;
    bool finished = false;
    // Octet-range digits of `cur`, for offset -> address.
    std::array<std::vector<std::uint8_t>, 4> digits;
    // A journaled resolution to reuse for one spec (restore()).
    std::uint64_t override_spec = kNoSpec;
    std::string override_resolved;

    // Dedup memory (the first dedup_window distinct hosts), with a v4 range to skip lookups.
    std::unordered_set<std::uint32_t> seen4;
    std::unordered_set<std::array<std::uint8_t, 16>, V6Hash> seen6;
    std::uint32_t seen4_min = ~std::uint32_t(0), seen4_max = 0;

    std::size_t seen_count() const { return seen4.size() + seen6.size(); }

    bool excluded4(std::uint32_t a) const {
        for (const auto& e : ex)
            if (e.contains_v4(a)) return true;
        return false;
    }
    bool excluded6(const std::array<std::uint8_t, 16>& a) const {
        for (const auto& e : ex)
            if (e.contains_v6(a)) return true;
        return false;
    }
    // True when `a` repeats a remembered host; remembers it while the window has room.
    bool dup4(std::uint32_t a) {
        if (src.dedup_window == 0) return false;
        if (seen_count() < src.dedup_window) {
            if (!seen4.insert(a).second) return true;
            seen4_min = std::min(seen4_min, a);
            seen4_max = std::max(seen4_max, a);
            return false;
        }
        return a >= seen4_min && a <= seen4_max && seen4.count(a);
    }
    bool dup6(const std::array<std::uint8_t, 16>& a) {
        if (src.dedup_window == 0) return false;
        if (seen_count() < src.dedup_window) return !seen6.insert(a).second;
        return !seen6.empty() && seen6.count(a);
    }

    void reset() {
        file.close();
        file.clear();
        in = nullptr;
        file_no = 0;
        line_tokens.clear();
        line_pos = 0;
        spec_idx = 0;
        entered = false;
        random = false;
        offset = index = 0;
        finished = false;
        override_spec = kNoSpec;
        override_resolved.clear();
        seen4.clear();
        seen6.clear();
        seen4_min = ~std::uint32_t(0);
        seen4_max = 0;
    }

    // Next -iL token, or false at the end of the last file.
    Result<bool> next_file_token(std::string& tok) {
        while (line_pos == line_tokens.size()) {
            if (!in) {
                if (file_no >= src.input_files.size()) return false;
                const std::string& path = src.input_files[file_no];
                if (path == "-") {
                    in = &std::cin;
                    stdin_touched = true;
                } else {
                    file.clear();
                    if (auto st = open_spec_file(path, "target", file); !st) return st;
                    in = &file;
                }
            }
            line_tokens.clear();
            line_pos = 0;
            std::string line;
            if (std::getline(*in, line)) {
                split_spec_line(std::move(line), line_tokens);
                continue;
            }
            if (in->bad())
                return Status::error("cannot read target file '" + src.input_files[file_no] + "'");
            if (in == &file) file.close();
            in = nullptr;
            ++file_no;
        }
        tok = line_tokens[line_pos++];  // copied: unread_token() may need it again
        return true;
    }
    // Puts back the token just read, so a bad token fails again instead of being skipped.
    void unread_token() { --line_pos; }

    // Parses the spec at spec_idx into `cur`; false when there are no more specs.
    Result<bool> enter() {
        std::string tok;
        const std::string* resolved = spec_idx == override_spec ? &override_resolved : nullptr;
        if (spec_idx < cli.size()) {
            cur = cli[spec_idx];
            if (resolved && !resolved->empty() && cur.resolved != *resolved) {
                auto r = parse_target_spec(src.specs[spec_idx], src.ipv6, false, *resolved,
                                           src.resolve_all);
                if (!r) return r.status();
                cur = *r;
            }
        } else {
            auto got = next_file_token(tok);
            if (!got) return got.status();
            if (!*got && src.random_endless && !src.ipv6) {  // the spec after the last token
                cur = TargetSpec::none();
                cur_count = std::numeric_limits<std::uint64_t>::max();
                random = entered = true;
                return true;
            }
            if (!*got) return false;
            auto r =
                parse_target_spec(tok, src.ipv6, false, resolved ? *resolved : "", src.resolve_all);
            if (!r && src.on_unresolved && unresolved_name(r.status())) {
                warn_unresolved(src, tok, r.status());
                r = TargetSpec::none();
            }
            if (!r || r->count() > src.spec_limit) {
                unread_token();
                return r ? too_many(src.spec_limit, tok) : r.status();
            }
            cur = std::move(*r);
        }
        cur_count = cur.count();
        if (cur.kind == TargetSpec::V4Octets)
            for (int i = 0; i < 4; ++i) {
                digits[i].clear();
                for (int v = 0; v < 256; ++v)
                    if (cur.octets[i].test(v)) digits[i].push_back(std::uint8_t(v));
            }
        entered = true;
        return true;
    }

    // Token index reached without parsing (restore's fast skip); false if the stream ends.
    Result<bool> skip_to(std::uint64_t spec) {
        while (spec_idx < spec) {
            if (spec_idx >= cli.size()) {
                std::string tok;
                auto got = next_file_token(tok);
                if (!got) return got.status();
                if (!*got) return false;
            }
            ++spec_idx;
        }
        return true;
    }

    std::uint32_t octets_at(std::uint64_t off) const {
        std::uint32_t a = 0;
        std::uint64_t rest = off;
        std::uint32_t parts[4];
        for (int i = 3; i >= 0; --i) {
            std::size_t n = digits[i].size();
            parts[i] = digits[i][rest % n];
            rest /= n;
        }
        for (int i = 0; i < 4; ++i)
            a = a << 8 | parts[i];
        return a;
    }

    // Walks up to `n` emitted hosts into `out` (or only counts them when out is null).
    // Stops early at `stop` (spec, offset) and, with `until_window_full`, once the dedup
    // memory is full. Returns the number emitted.
    Result<std::size_t> advance(std::size_t n, std::vector<IndexedTarget>* out,
                                const CursorPosition* stop, bool until_window_full) {
        std::size_t emitted = 0;
        auto at_stop = [&] {
            return (stop && spec_idx == stop->spec && offset == stop->offset) ||
                   (until_window_full && seen_count() >= src.dedup_window);
        };
        while (emitted < n && !finished && !at_stop()) {
            if (!entered) {
                auto r = enter();
                if (!r) return r.status();
                if (!*r) {
                    finished = true;
                    break;
                }
            }
            std::uint64_t end = cur_count;
            if (stop && spec_idx == stop->spec) end = std::min(end, stop->offset);
            auto emit = [&](auto&& make) {
                if (out) out->push_back(IndexedTarget{index, make()});
                ++index;
                ++emitted;
            };
            if (random) {
                // Excludes may cover (nearly) every address: a bounded run of rejected draws
                // is an error, not an endless loop.
                std::uint64_t rejected = 0;
                while (offset < end && emitted < n && !at_stop()) {
                    std::uint32_t a = random_draw(src.random_seed, offset++);
                    if (!random_target_candidate(a) || excluded4(a) || dup4(a)) {
                        if (++rejected == kRandomRejectLimit)
                            return Status::error(
                                "-iR: no random address left outside the excluded ones");
                        continue;
                    }
                    rejected = 0;
                    emit([&] { return Target{format_v4(a), false, {}, {}}; });
                }
                continue;  // never finishes
            }
            switch (cur.kind) {
            case TargetSpec::V4Cidr: {
                std::uint32_t base = v4_network(cur);
                while (offset < end && emitted < n && !at_stop()) {
                    std::uint32_t a = base + std::uint32_t(offset++);
                    if (excluded4(a) || dup4(a)) continue;
                    emit([&] {
                        return Target{format_v4(a), false, cur.targetname, cur.other_addresses};
                    });
                }
                break;
            }
            case TargetSpec::V4Octets:
                while (offset < end && emitted < n && !at_stop()) {
                    std::uint32_t a = octets_at(offset++);
                    if (excluded4(a) || dup4(a)) continue;
                    emit([&] { return Target{format_v4(a), false, cur.targetname, {}}; });
                }
                break;
            case TargetSpec::Names:  // --resolve-all: each address of the name
                while (offset < end && emitted < n && !at_stop()) {
                    const std::string& text = cur.addresses[offset++];
                    std::array<std::uint8_t, 16> a6{};
                    if (inet_pton(AF_INET6, text.c_str(), a6.data()) == 1) {
                        if (excluded6(a6) || dup6(a6)) continue;
                        emit([&] { return Target{text, true, cur.targetname, {}}; });
                        continue;
                    }
                    in_addr a4{};
                    if (inet_pton(AF_INET, text.c_str(), &a4) != 1) continue;
                    std::uint32_t a = ntohl(a4.s_addr);
                    if (excluded4(a) || dup4(a)) continue;
                    emit([&] { return Target{text, false, cur.targetname, {}}; });
                }
                break;
            case TargetSpec::V6Cidr: {
                auto base = v6_network(cur);
                while (offset < end && emitted < n && !at_stop()) {
                    auto a = v6_add(base, offset++);
                    if (excluded6(a) || dup6(a)) continue;
                    emit([&] {
                        return Target{format_v6(a), true, cur.targetname, cur.other_addresses};
                    });
                }
                break;
            }
            }
            if (offset == cur_count) {
                entered = false;
                ++spec_idx;
                offset = 0;
            }
        }
        return emitted;
    }
};

TargetCursor::TargetCursor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TargetCursor::TargetCursor(TargetCursor&&) noexcept = default;
TargetCursor& TargetCursor::operator=(TargetCursor&&) noexcept = default;
TargetCursor::~TargetCursor() = default;

Result<TargetCursor> TargetCursor::open(TargetSources sources) {
    auto impl = std::make_unique<Impl>();
    impl->src = std::move(sources);
    const TargetSources& src = impl->src;
    // Same order of checks as expand_targets: files first, then excludes, then specs.
    for (const auto& f : src.input_files) {
        if (f == "-") continue;
        std::ifstream probe;
        if (auto st = open_spec_file(f, "target", probe); !st) return st;
    }
    std::vector<std::string> ex_tokens = src.excludes;
    for (const auto& f : src.exclude_files)
        if (auto st = read_spec_file(f, "exclude", ex_tokens); !st) return st;
    for (const auto& tok : ex_tokens) {
        auto s = parse_target_spec(tok, src.ipv6, true);
        if (!s) return s.status();
        impl->ex.push_back(std::move(*s));
    }
    for (const auto& tok : src.specs) {
        auto s = parse_target_spec(tok, src.ipv6, false, {}, src.resolve_all);
        if (!s && src.on_unresolved && unresolved_name(s.status())) {
            warn_unresolved(src, tok, s.status());
            s = TargetSpec::none();  // keeps the token numbering of journaled positions
        }
        if (!s) return s.status();
        if (s->count() > src.spec_limit) return too_many(src.spec_limit, tok);
        impl->cli.push_back(std::move(*s));
    }
    return TargetCursor(std::move(impl));
}

Result<std::vector<IndexedTarget>> TargetCursor::next(std::size_t n) {
    std::vector<IndexedTarget> out;
    out.reserve(std::min<std::size_t>(n, 4096));
    auto r = impl_->advance(n, &out, nullptr, false);
    if (!r) return r.status();
    return out;
}

bool TargetCursor::done() const { return impl_->finished; }

CursorPosition TargetCursor::position() const {
    CursorPosition p;
    p.spec = impl_->spec_idx;
    p.offset = impl_->offset;
    p.index = impl_->index;
    if (impl_->entered) p.resolved = impl_->cur.resolved;
    return p;
}

Status TargetCursor::restore(const CursorPosition& pos) {
    Impl& m = *impl_;
    bool has_stdin = false;
    for (const auto& f : m.src.input_files)
        has_stdin = has_stdin || f == "-";
    if (has_stdin && (m.stdin_touched || pos.spec >= m.cli.size()))
        return Status::error("cannot resume a target list read from stdin");
    auto mismatch = [&] {
        return Status::error("cursor position '" + pos.encode() + "' does not match the targets");
    };
    m.reset();
    m.override_spec = pos.spec;
    m.override_resolved = pos.resolved;
    // Rebuild the dedup memory by replaying while it still fills up.
    if (m.src.dedup_window > 0) {
        auto r = m.advance(std::numeric_limits<std::size_t>::max(), nullptr, &pos, true);
        if (!r) return r.status();
        if (m.spec_idx == pos.spec && m.offset == pos.offset)
            return m.index == pos.index ? Status::ok() : mismatch();
        if (m.finished) return mismatch();
        if (m.spec_idx > pos.spec || (m.spec_idx == pos.spec && m.offset > pos.offset))
            return mismatch();
    }
    // Past the window nothing more is remembered: jump straight to the position.
    if (m.spec_idx < pos.spec) {
        if (m.entered) {  // its token is already consumed
            m.entered = false;
            ++m.spec_idx;
        }
        m.offset = 0;
        auto r = m.skip_to(pos.spec);
        if (!r) return r.status();
        if (!*r) return mismatch();
    }
    if (pos.offset > 0) {
        if (!m.entered) {
            auto r = m.enter();
            if (!r) return r.status();
            if (!*r || pos.offset >= m.cur_count) return mismatch();
        }
        m.offset = pos.offset;
    }
    if (pos.index < m.index) return mismatch();
    m.index = pos.index;
    return Status::ok();
}

}  // namespace common
