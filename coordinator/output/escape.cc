#include "coordinator/output/escape.h"

#include <cmath>
#include <cstdio>
#include <variant>

namespace coordinator::output {

namespace {

const char kHexUpper[] = "0123456789ABCDEF";
const char kHexLower[] = "0123456789abcdef";

void append_hex_escape(std::string& out, unsigned char c) {
    out += "\\x";
    out += kHexUpper[c >> 4];
    out += kHexUpper[c & 0xF];
}

bool printable(unsigned char c) { return c >= 0x20 && c <= 0x7E; }

// Length of the valid UTF-8 sequence starting at s[i], or 0 if the byte does not start one.
// Rejects overlong forms, surrogates and code points above U+10FFFF.
std::size_t utf8_seq_len(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    std::size_t n;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (i + n > s.size()) return 0;
    if (b(i + 1) < lo || b(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k)
        if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
    return n;
}

}  // namespace

std::string screen_safe(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        if (c == '\t' || c == '\n' || printable(c))
            out += static_cast<char>(c);
        else
            append_hex_escape(out, c);
    }
    return out;
}

std::string protect_xml(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        if (c == '\t' || c == '\r' || c == '\n' || printable(c))
            out += static_cast<char>(c);
        else
            append_hex_escape(out, c);
    }
    return out;
}

std::string xml_escape(std::string_view s) {
    const std::string p = protect_xml(s);
    std::string out;
    out.reserve(p.size() + 16);
    for (unsigned char c : p) {
        switch (c) {
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '&': out += "&amp;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&apos;"; break;
        default:
            if (c < 0x20) {
                // Only tab, CR and LF survive protect_xml; numeric references keep them
                // intact through attribute-value normalisation.
                out += "&#x";
                if (c >= 0x10) out += kHexLower[c >> 4];
                out += kHexLower[c & 0xF];
                out += ';';
            } else {
                out += static_cast<char>(c);
            }
        }
    }
    return out;
}

std::string xml_escape_args(std::string_view s) {
    std::string out;
    bool prev_dash = false;
    for (char c : s) {
        if (c == '-' && prev_dash) {
            out += "&#45;";
        } else {
            out += xml_escape(std::string_view(&c, 1));
        }
        prev_dash = (c == '-');
    }
    return out;
}

std::string json_string(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    std::size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20 || c == 0x7F) {
                    out += "\\u00";
                    out += kHexLower[c >> 4];
                    out += kHexLower[c & 0xF];
                } else {
                    out += static_cast<char>(c);
                }
            }
            ++i;
            continue;
        }
        const std::size_t n = utf8_seq_len(s, i);
        if (n > 0) {
            out.append(s.substr(i, n));
            i += n;
        } else {
            out += "\\u00";
            out += kHexLower[c >> 4];
            out += kHexLower[c & 0xF];
            ++i;
        }
    }
    out += '"';
    return out;
}

std::string script_block(std::string_view id, std::string_view text) {
    if (text.empty()) return {};
    std::string safe = screen_safe(text);
    if (!safe.empty() && safe.back() == '\n')
        safe.pop_back();  // one trailing newline: no extra line
    // Split into lines; the first carries the id.
    std::string out;
    std::size_t start = 0;
    bool first = true;
    while (true) {
        const std::size_t nl = safe.find('\n', start);
        const bool last = (nl == std::string::npos);
        out += last ? "|_" : "| ";
        if (first) {
            out += id;
            out += ": ";
            first = false;
        }
        out.append(safe, start, last ? std::string::npos : nl - start);
        out += '\n';
        if (last) break;
        start = nl + 1;
    }
    return out;
}

std::string scalar_text(const common::Value& v) {
    return std::visit(
        [](const auto& x) -> std::string {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
                return "nil";
            } else if constexpr (std::is_same_v<T, bool>) {
                return x ? "true" : "false";
            } else if constexpr (std::is_same_v<T, std::int64_t>) {
                return std::to_string(x);
            } else if constexpr (std::is_same_v<T, double>) {
                if (std::isnan(x)) return std::signbit(x) ? "-nan" : "nan";
                if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
                char buf[64];
                std::snprintf(buf, sizeof buf, "%.14g", x);
                std::string r = buf;
                // Lua 5.4 marks floats that look like integers with ".0".
                if (r.find_first_of(".eEn") == std::string::npos) r += ".0";
                return r;
            } else if constexpr (std::is_same_v<T, std::string>) {
                return x;
            } else {
                return "";
            }
        },
        v.v);
}

}  // namespace coordinator::output
