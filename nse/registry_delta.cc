#include "nse/registry_delta.h"

#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <variant>

namespace nse {

namespace {

// Entries of a table by identity (indexed flag + key text): one map for lookups.
std::map<std::pair<bool, std::string>, const common::Entry*> by_key(const common::Table& t) {
    std::map<std::pair<bool, std::string>, const common::Entry*> m;
    for (const auto& e : t.entries)
        m[{e.indexed, e.key}] = &e;
    return m;
}

const common::Table& empty_table() {
    static const common::Table t;
    return t;
}

bool equal(const common::Value& a, const common::Value& b);

bool equal_tables(const common::Table& a, const common::Table& b) {
    if (a.entries.size() != b.entries.size()) return false;
    auto mb = by_key(b);
    for (const auto& e : a.entries) {
        auto it = mb.find({e.indexed, e.key});
        if (it == mb.end() || !equal(e.value, it->second->value)) return false;
    }
    return true;
}

bool equal(const common::Value& a, const common::Value& b) {
    if (a.v.index() != b.v.index()) return false;
    return std::visit(
        [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            const T& y = std::get<T>(b.v);
            if constexpr (std::is_same_v<T, common::Table>)
                return equal_tables(x, y);
            else if constexpr (std::is_same_v<T, double>)
                return x == y || (std::isnan(x) && std::isnan(y));
            else if constexpr (std::is_same_v<T, std::monostate>)
                return true;
            else
                return x == y;
        },
        a.v);
}

common::Table diff_tables(const common::Table& base, const common::Table& cur) {
    common::Table out;
    auto mb = by_key(base);
    auto mc = by_key(cur);
    // Appends: cur's items n+1 .. n+m, the run that continues base's sequence 1..n.
    const long long n = sequence_length(base);
    long long m = 0;
    while (mc.count({true, std::to_string(n + m + 1)}))
        ++m;
    for (const auto& e : cur.entries) {
        if (auto k = common::item_index(e); k && *k > n && *k <= n + m)
            continue;  // an append: written below, in order
        auto it = mb.find({e.indexed, e.key});
        common::Entry d;
        d.indexed = e.indexed;
        d.key = e.key;
        if (it == mb.end()) {
            d.value = e.value.is_table() ? registry_diff(common::Value{}, e.value) : e.value;
        } else if (e.value.is_table() && it->second->value.is_table()) {
            d.value = registry_diff(it->second->value, e.value);
            if (d.value.table().entries.empty()) continue;
        } else if (equal(e.value, it->second->value)) {
            continue;
        } else if (e.value.is_table()) {
            // A scalar became a table: built from empty (apply replaces the non-table).
            d.value = registry_diff(common::Value{}, e.value);
        } else {
            d.value = e.value;
        }
        out.entries.push_back(std::move(d));
    }
    for (const auto& e : base.entries)
        if (!mc.count({e.indexed, e.key})) {
            common::Entry d;
            d.indexed = e.indexed;
            d.key = e.key;  // value nil: removed
            out.entries.push_back(std::move(d));
        }
    for (long long k = n + 1; k <= n + m; ++k) {
        const common::Entry* e = mc.at({true, std::to_string(k)});
        common::Entry d;
        d.indexed = true;  // no key text: an append
        d.value = e->value.is_table() ? registry_diff(common::Value{}, e->value) : e->value;
        out.entries.push_back(std::move(d));
    }
    return out;
}

common::Entry* find(common::Table& t, bool indexed, const std::string& key) {
    for (auto& e : t.entries)
        if (e.indexed == indexed && e.key == key) return &e;
    return nullptr;
}

}  // namespace

long long sequence_length(const common::Table& t) {
    std::set<long long> keys;
    for (const auto& e : t.entries)
        if (auto k = common::item_index(e); k && *k >= 1) keys.insert(*k);
    long long n = 0;
    while (keys.count(n + 1))
        ++n;
    return n;
}

common::Value registry_diff(const common::Value& base, const common::Value& cur) {
    const common::Table& b = base.is_table() ? base.table() : empty_table();
    const common::Table& c = cur.is_table() ? cur.table() : empty_table();
    common::Value out;
    out.v = diff_tables(b, c);
    return out;
}

void registry_apply(common::Value& dst, const common::Value& delta) {
    if (!delta.is_table()) {
        dst = delta;
        return;
    }
    if (!dst.is_table()) dst.v = common::Table{};
    auto& t = dst.table();
    long long next = -1;  // next append position, computed on the first append
    for (const auto& e : delta.table().entries) {
        if (e.indexed && e.key.empty()) {
            if (next < 0) next = sequence_length(t) + 1;
            common::Entry n;
            n.indexed = true;
            n.key = std::to_string(next++);
            registry_apply(n.value, e.value);
            t.entries.push_back(std::move(n));
            continue;
        }
        common::Entry* have = find(t, e.indexed, e.key);
        if (e.value.is_nil()) {
            if (have) t.entries.erase(t.entries.begin() + (have - t.entries.data()));
            next = -1;
            continue;
        }
        if (!have) {
            t.entries.push_back(common::Entry{e.indexed, e.key, {}});
            have = &t.entries.back();
            next = -1;
        }
        registry_apply(have->value, e.value);
    }
}

}  // namespace nse
