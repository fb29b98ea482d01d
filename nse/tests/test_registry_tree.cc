// nse::RegistryTree: the indexed merged registry against registry_apply (the reference),
// the changed paths it reports, and restoring it path by path.
#include <doctest/doctest.h>

#include <string>

#include "nse/registry_delta.h"
#include "nse/registry_tree.h"
#include "test/support/values.h"

namespace {

using common::Entry;
using common::Table;
using common::Value;
using nse::RegistryTree;

using test_support::at;
using test_support::kv;
using test_support::num;
using test_support::str;
using test_support::table;
Entry append(Value v) { return test_support::item(std::move(v)); }
Entry drop(std::string k) { return Entry{false, std::move(k), {}}; }

// Same entries (order-free, recursively).
bool same(const Value& a, const Value& b) {
    if (a.is_table() != b.is_table()) return false;
    if (!a.is_table()) {
        if (a.v.index() != b.v.index()) return false;
        if (auto* s = std::get_if<std::string>(&a.v)) return *s == std::get<std::string>(b.v);
        if (auto* n = std::get_if<std::int64_t>(&a.v)) return *n == std::get<std::int64_t>(b.v);
        return a.is_nil();
    }
    const auto& x = a.table().entries;
    const auto& y = b.table().entries;
    if (x.size() != y.size()) return false;
    for (const auto& e : x) {
        bool found = false;
        for (const auto& f : y)
            if (f.indexed == e.indexed && f.key == e.key) found = same(e.value, f.value);
        if (!found) return false;
    }
    return true;
}

}  // namespace

TEST_CASE("registry tree: merges like registry_apply, in insertion order") {
    std::vector<Value> deltas = {
        table({kv("list", table({append(str("a")), append(str("b"))})), kv("n", num(1))}),
        table({kv("list", table({append(str("c"))})),
               kv("sparse", table({at(21, str("ftp")), at(0, str("zero")), at(-3, str("neg"))}))}),
        table({kv("list", table({at(2, Value{})})), kv("n", table({kv("now", str("table"))}))}),
        table({kv("list", table({append(str("d"))})), drop("sparse")}),
        table({kv("n", num(5)), kv("list", table({append(str("e"))}))}),
    };
    RegistryTree tree;
    Value ref;
    ref.v = Table{};
    for (const auto& d : deltas) {
        tree.apply(d);
        nse::registry_apply(ref, d);
        CHECK(same(tree.snapshot(), ref));
    }
    // Removing item 2 moved the border back to 1: "d" refilled 2, "e" went after 3 (the
    // positions checked against the reference above).
    Value snap = tree.snapshot();
    REQUIRE(snap.table().entries.size() == 2);
    CHECK(snap.table().entries[0].key == "list");  // first inserted first
    CHECK(snap.table().entries[1].key == "n");
}

TEST_CASE("registry tree: reports each changed path") {
    RegistryTree tree;
    auto c = tree.apply(table({kv("ssh", table({append(str("key1"))}))}));
    REQUIRE(c.size() == 2);
    CHECK(c[0].kind == RegistryTree::Change::table);
    CHECK(c[0].path == RegistryTree::Path{{false, "ssh"}});
    CHECK(c[1].kind == RegistryTree::Change::scalar);
    CHECK(c[1].path == RegistryTree::Path{{false, "ssh"}, {true, "1"}});
    // A scalar over a table clears what was under it.
    c = tree.apply(table({kv("ssh", str("off"))}));
    REQUIRE(c.size() == 1);
    CHECK(c[0].cleared);
    CHECK(tree.size() == 1);
    c = tree.apply(table({drop("ssh"), drop("absent")}));
    REQUIRE(c.size() == 1);
    CHECK(c[0].kind == RegistryTree::Change::erased);
    CHECK(tree.size() == 0);
    CHECK(tree.apply(str("not a table")).empty());
}

TEST_CASE("registry tree: restored path by path it equals the original") {
    RegistryTree a;
    a.apply(table({kv("x", table({at(1, str("one")), at(7, str("seven")), kv("s", num(3)),
                                  kv("empty", table({}))}))}));
    RegistryTree b;
    RegistryTree::Path x{{false, "x"}};
    CHECK(b.set(x, nullptr));
    auto one = str("one"), seven = str("seven"), three = num(3);
    CHECK(b.set({{false, "x"}, {true, "1"}}, &one));
    CHECK(b.set({{false, "x"}, {true, "7"}}, &seven));
    CHECK(b.set({{false, "x"}, {false, "s"}}, &three));
    CHECK(b.set({{false, "x"}, {false, "empty"}}, nullptr));
    CHECK_FALSE(b.set({{false, "x"}, {false, "s"}, {false, "under a scalar"}}, &one));
    CHECK(same(a.snapshot(), b.snapshot()));
    // Appends continue after the restored sequence.
    a.apply(table({kv("x", table({append(str("two"))}))}));
    b.apply(table({kv("x", table({append(str("two"))}))}));
    CHECK(same(a.snapshot(), b.snapshot()));
}
