#pragma once
// The merged nmap.registry of a shared state, indexed: a delta (nse/registry_delta.h)
// applies in time proportional to its own size (times the log of the tables it touches),
// never the registry's, and reports each path it changed so a store can keep the registry
// entry by entry.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/value.h"

namespace nse {

class RegistryTree {
public:
    // A key of a table: (indexed, key text), as in common::Entry.
    using Key = std::pair<bool, std::string>;
    using Path = std::vector<Key>;

    // One changed path. `cleared`: what was there was a table, so everything under the path
    // is gone (before `kind` applies).
    struct Change {
        enum Kind { scalar, table, erased } kind = scalar;
        Path path;
        common::Value value;  // the scalar (kind == scalar)
        bool cleared = false;
    };

    RegistryTree();
    ~RegistryTree();
    RegistryTree(RegistryTree&&) noexcept;
    RegistryTree& operator=(RegistryTree&&) noexcept;

    // Applies `delta` (a table; anything else changes nothing); appends take the next free
    // positions. `stamp` (the merge's version, increasing) marks every node the delta sets
    // whole: a scalar written, a table created or put over a scalar. Returns the changes, in
    // order.
    std::vector<Change> apply(const common::Value& delta, std::uint64_t stamp = 0);
    // What is still current of `delta`, applied earlier with `stamp`, for an engine at
    // version `since`: its entries minus those a later merge overwrote (a node, or a table
    // above it, set again with a higher stamp, or gone). An engine that published a later
    // write itself must not take the older one back: applying the results of every delta
    // since its version, in order, leaves it with the merged registry's values. nullopt when
    // no delta can: the delta re-created a table where the engine may still hold what was
    // there before the key was erased or overwritten (it needs the whole registry).
    std::optional<common::Value> current_part(const common::Value& delta, std::uint64_t stamp,
                                              std::uint64_t since) const;
    // Sets one path (restoring from a store): a table, or a scalar. Missing parents become
    // tables. false (nothing set) for an empty path or a parent that is a scalar.
    bool set(const Path& path, const common::Value* scalar);

    // The whole registry as a table Value, entries in insertion order.
    common::Value snapshot() const;
    std::size_t size() const;  // entries, all levels

    struct Node;  // defined in registry_tree.cc

private:
    void apply_into(Node& dst, const common::Table& delta, Path& path, std::vector<Change>& out,
                    std::uint64_t stamp);
    std::unique_ptr<Node> root_;
    std::uint64_t order_ = 0;  // insertion counter (snapshot order)
    std::size_t size_ = 0;
};

}  // namespace nse
