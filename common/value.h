#pragma once
// A plain data tree that crosses layer and thread boundaries: structured script output,
// registry snapshots. Order of table entries is kept as produced (NSE output order).
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace common {

struct Value;

// One entry of a table: `key` empty and `indexed` true for array items.
struct Entry;

struct Table {
    std::vector<Entry> entries;
};

struct Value {
    // nil, boolean, integer, float, string, table
    std::variant<std::monostate, bool, std::int64_t, double, std::string, Table> v;

    bool is_nil() const { return std::holds_alternative<std::monostate>(v); }
    bool is_table() const { return std::holds_alternative<Table>(v); }
    const Table& table() const { return std::get<Table>(v); }
    Table& table() { return std::get<Table>(v); }
};

struct Entry {
    bool indexed = false;  // array item (no key attribute in XML)
    std::string key;       // string key when !indexed
    Value value;
};

// The integer key of an array item, from its key text ("21", "-3"); nullopt for a string key,
// an item without a number (structured output, a registry append) or text that is not one.
inline std::optional<std::int64_t> item_index(const Entry& e) {
    if (!e.indexed || e.key.empty()) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(e.key.c_str(), &end, 10);
    if (errno != 0 || !end || *end != '\0') return std::nullopt;
    return static_cast<std::int64_t>(v);
}

// A float key (t[1.5]) is an item whose key text is the number's shortest exact form
// ("%.17g"); these give it and read it back (nullopt for text that is not one, and for an
// integer key, which item_index reads).
inline std::string float_key_text(double d) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    return buf;
}
inline std::optional<double> item_float(const Entry& e) {
    if (!e.indexed || e.key.empty() || item_index(e)) return std::nullopt;
    char* end = nullptr;
    double d = std::strtod(e.key.c_str(), &end);
    if (!end || *end != '\0') return std::nullopt;
    return d;
}

}  // namespace common
