#pragma once
// A plain data tree that crosses layer and thread boundaries: structured script output,
// registry snapshots. Order of table entries is kept as produced (NSE output order).
#include <cstdint>
#include <memory>
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

}  // namespace common
