#include "nse/registry_tree.h"

#include <algorithm>
#include <optional>

namespace nse {

struct RegistryTree::Node {
    bool is_table = false;
    common::Value scalar;     // when !is_table
    std::uint64_t order = 0;  // insertion order among its siblings
    std::uint64_t stamp = 0;  // version of the merge that last set this node whole
    // A table created where something else was (its key erased, or a scalar there) at this
    // version: an engine that has not seen that version may hold older content under the
    // key, which the new table's entries must replace, not join.
    std::uint64_t broke = 0;
    std::map<Key, std::uint64_t> erased;  // keys erased from this table, with the version
    std::map<Key, std::unique_ptr<Node>> kids;
    long long border = 0;  // items 1..border present (sequence_length)
};

namespace {

using Node = RegistryTree::Node;
using Key = RegistryTree::Key;

std::optional<long long> int_key(const Key& k) {
    common::Entry e{k.first, k.second, {}};
    auto i = common::item_index(e);
    if (!i) return std::nullopt;
    return static_cast<long long>(*i);
}

Key item_key(long long n) { return {true, std::to_string(n)}; }

std::size_t count_below(const Node& n) {
    std::size_t c = 0;
    for (const auto& [k, kid] : n.kids)
        c += 1 + count_below(*kid);
    return c;
}

void added(Node& t, const Key& k) {
    auto i = int_key(k);
    if (!i || *i != t.border + 1) return;
    while (t.kids.count(item_key(t.border + 1)))
        ++t.border;
}

void removed(Node& t, const Key& k) {
    auto i = int_key(k);
    if (i && *i >= 1 && *i <= t.border) t.border = *i - 1;
}

common::Value to_value(const Node& n) {
    if (!n.is_table) return n.scalar;
    std::vector<std::pair<std::uint64_t, const std::pair<const Key, std::unique_ptr<Node>>*>> kids;
    kids.reserve(n.kids.size());
    for (const auto& kv : n.kids)
        kids.emplace_back(kv.second->order, &kv);
    std::sort(kids.begin(), kids.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    common::Table t;
    t.entries.reserve(kids.size());
    for (const auto& [order, kv] : kids)
        t.entries.push_back(
            common::Entry{kv->first.first, kv->first.second, to_value(*kv->second)});
    common::Value v;
    v.v = std::move(t);
    return v;
}

}  // namespace

RegistryTree::RegistryTree() : root_(std::make_unique<Node>()) { root_->is_table = true; }
RegistryTree::~RegistryTree() = default;
RegistryTree::RegistryTree(RegistryTree&&) noexcept = default;
RegistryTree& RegistryTree::operator=(RegistryTree&&) noexcept = default;

std::vector<RegistryTree::Change> RegistryTree::apply(const common::Value& delta,
                                                      std::uint64_t stamp) {
    std::vector<Change> out;
    if (!delta.is_table()) return out;
    Path path;
    apply_into(*root_, delta.table(), path, out, stamp);
    return out;
}

namespace {

// current_part for one table level: `node` is the table the delta applied to (nullptr: it
// is gone, or was replaced after `stamp`). Sets `whole` when the receiver, at version
// `since`, may hold content that a table this delta re-created must replace.
common::Table current_of(const Node* node, const common::Table& delta, std::uint64_t stamp,
                         std::uint64_t since, bool& whole) {
    common::Table out;
    for (const auto& e : delta.entries) {
        const bool append = e.indexed && e.key.empty();
        if (append) {
            // The table it went into is still the one it went into: the item stays.
            if (node) out.entries.push_back(e);
            continue;
        }
        const Node* kid = nullptr;
        if (node)
            if (auto it = node->kids.find({e.indexed, e.key}); it != node->kids.end())
                kid = it->second.get();
        if (e.value.is_nil()) {
            // A removal stands unless the key was set again later.
            if (!kid || kid->stamp <= stamp) out.entries.push_back(e);
            continue;
        }
        if (!node || !kid || kid->stamp > stamp) continue;  // overwritten or removed since
        if (!e.value.is_table()) {
            out.entries.push_back(e);
            continue;
        }
        if (!kid->is_table) continue;
        if (kid->stamp == stamp && kid->broke > since) whole = true;
        common::Entry part{e.indexed, e.key, {}};
        part.value.v = current_of(kid, e.value.table(), stamp, since, whole);
        // A table the delta created stays even when all of its entries were overwritten.
        if (!part.value.table().entries.empty() || kid->stamp == stamp)
            out.entries.push_back(std::move(part));
    }
    return out;
}

}  // namespace

std::optional<common::Value> RegistryTree::current_part(const common::Value& delta,
                                                        std::uint64_t stamp,
                                                        std::uint64_t since) const {
    common::Value out;
    bool whole = false;
    out.v = delta.is_table() ? current_of(root_.get(), delta.table(), stamp, since, whole)
                             : common::Table{};
    if (whole) return std::nullopt;
    return out;
}

void RegistryTree::apply_into(Node& dst, const common::Table& delta, Path& path,
                              std::vector<Change>& out, std::uint64_t stamp) {
    // Sets dst[k] to a non-nil value, recording what changed.
    auto put = [&](const Key& k, const common::Value& value) {
        auto& slot = dst.kids[k];
        bool fresh = !slot;
        if (fresh) {
            slot = std::make_unique<Node>();
            slot->order = ++order_;
            ++size_;
            if (auto t = dst.erased.find(k); t != dst.erased.end()) {
                slot->broke = t->second;
                dst.erased.erase(t);
            }
        }
        Node& n = *slot;
        if (value.is_table()) {
            if (!n.is_table) {
                if (!fresh) n.broke = n.stamp;  // over a scalar
                n.is_table = true;
                n.scalar = {};
                n.stamp = stamp;
                out.push_back({Change::table, path, {}, false});
            }
            apply_into(n, value.table(), path, out, stamp);
        } else {
            n.stamp = stamp;
            bool was_table = n.is_table;
            if (was_table) {
                size_ -= count_below(n);
                n.kids.clear();
                n.border = 0;
                n.is_table = false;
            }
            n.scalar = value;
            out.push_back({Change::scalar, path, value, was_table});
        }
        if (fresh) added(dst, k);
    };
    for (const auto& e : delta.entries) {
        Key k = e.indexed && e.key.empty() ? item_key(dst.border + 1) : Key{e.indexed, e.key};
        path.push_back(k);
        if (!e.value.is_nil()) {
            put(k, e.value);
        } else if (auto it = dst.kids.find(k); it != dst.kids.end()) {
            bool was_table = it->second->is_table;
            size_ -= 1 + count_below(*it->second);
            dst.kids.erase(it);
            dst.erased[k] = stamp;
            removed(dst, k);
            out.push_back({Change::erased, path, {}, was_table});
        }
        path.pop_back();
    }
}

bool RegistryTree::set(const Path& path, const common::Value* scalar) {
    if (path.empty()) return false;
    Node* t = root_.get();
    for (std::size_t i = 0; i < path.size(); ++i) {
        if (!t->is_table) return false;
        auto& slot = t->kids[path[i]];
        bool fresh = !slot;
        if (fresh) {
            slot = std::make_unique<Node>();
            slot->order = ++order_;
            slot->is_table = true;
            ++size_;
        }
        Node* n = slot.get();
        if (i + 1 == path.size()) {
            if (scalar && n->is_table) {
                size_ -= count_below(*n);
                n->kids.clear();
                n->border = 0;
            }
            n->is_table = scalar == nullptr;
            n->scalar = scalar ? *scalar : common::Value{};
        }
        if (fresh) added(*t, path[i]);
        t = n;
    }
    return true;
}

common::Value RegistryTree::snapshot() const { return to_value(*root_); }

std::size_t RegistryTree::size() const { return size_; }

}  // namespace nse
