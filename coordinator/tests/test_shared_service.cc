// coordinator::SharedService: the registry kept in the store entry by entry survives a
// restart exactly (integer, sparse, 0, negative and string keys, escapes, nesting,
// removals), and ops a worker may not send are refused.
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "common/wire/codec.h"
#include "common/wire/messages.h"
#include "coordinator/shared_service.h"
#include "coordinator/store/store.h"
#include "nse/registry_delta.h"
#include "test/support/temp.h"
#include "test/support/values.h"

namespace {

using common::Entry;
using common::Table;
using common::Value;
using coordinator::SharedService;
namespace wire = common::wire;

using test_support::at;
using test_support::kv;
using test_support::str;
using test_support::table;
Entry append(Value v) { return test_support::item(std::move(v)); }

std::unique_ptr<coordinator::store::Store> open(const std::string& dir) {
    auto s = coordinator::store::Store::open(dir, true);
    REQUIRE(s.is_ok());
    return std::move(*s);
}

void ignore(std::uint64_t, const wire::Message&) {}

}  // namespace

TEST_CASE("shared service: the registry is stored per entry and restored exactly") {
    test_support::TempDir dir;
    Value before;
    std::uint64_t version = 0;
    {
        auto store = open(dir.path);
        SharedService svc(*store, ignore);
        REQUIRE(svc.restore().is_ok());
        double f = 2.5;
        Value fv;
        fv.v = f;
        std::vector<Value> deltas = {
            table({kv("list", table({append(str("a")), append(str("b"))}))}),
            table({kv("ports", table({at(21, str("ftp")), at(0, str("zero")), at(-7, str("neg")),
                                      at(11211, str("memcached"))}))}),
            table({kv(std::string("nul\0and\1one", 11), str("escaped")), kv("num", fv),
                   Entry{true, common::float_key_text(0.5), str("float key")}}),
            table({kv("list", table({append(table({kv("nested", str("x"))}))}))}),
            table({kv("gone", str("soon"))}),
            table({kv("gone", Value{}), kv("ports", table({at(0, Value{})}))}),
            table({kv("flip", table({kv("inner", str("i"))}))}),
            table({kv("flip", str("now a scalar"))}),
        };
        for (std::size_t i = 0; i < deltas.size(); ++i)
            REQUIRE(svc.merge(deltas[i], 4097 + i % 2).is_ok());
        before = svc.snapshot();
        version = deltas.size();
        REQUIRE(store->close().is_ok());
    }
    auto store = open(dir.path);
    SharedService svc(*store, ignore);
    REQUIRE(svc.restore().is_ok());
    Value after = svc.snapshot();
    // Same entries; a table's order is insertion order before and key order after.
    auto flat = [](const Value& v) {
        std::vector<std::string> out;
        std::function<void(const Value&, std::string)> walk = [&](const Value& x,
                                                                  std::string path) {
            if (!x.is_table()) {
                out.push_back(path + "=" + wire::encode_value(x));
                return;
            }
            out.push_back(path + "{}");
            for (const auto& e : x.table().entries)
                walk(e.value, path + (e.indexed ? "[" + e.key + "]" : "." + e.key));
        };
        walk(v, "");
        std::sort(out.begin(), out.end());
        return out;
    };
    CHECK(flat(after) == flat(before));
    CHECK(flat(after).size() == 14);
    // The version survives: an engine that saw every merge gets nothing to apply.
    wire::SharedOp op;
    op.op = wire::SharedOpKind::RegistryChanges;
    op.who = {4097, 0};
    op.since = version;
    std::vector<wire::Message> sent;
    SharedService svc2(*store, [&](std::uint64_t, const wire::Message& m) { sent.push_back(m); });
    REQUIRE(svc2.restore().is_ok());
    REQUIRE(svc2.handle(1, op).is_ok());
    REQUIRE(sent.size() == 1);
    auto& r = std::get<wire::SharedReply>(sent[0]);
    CHECK(r.version == version);
    CHECK_FALSE(r.snapshot);
    CHECK(r.deltas.empty());
    // A list continues after the restored items.
    REQUIRE(svc2.merge(table({kv("list", table({append(str("c"))}))}), 4097).is_ok());
    bool third = false;
    Value now = svc2.snapshot();
    for (const auto& e : now.table().entries)
        if (e.key == "list")
            for (const auto& item : e.value.table().entries)
                third = third || (item.key == "4" && std::get<std::string>(item.value.v) == "c");
    CHECK(third);
}

TEST_CASE("shared service: a worker acts only for its own engines, with bounded keys") {
    wire::SharedOp op;
    op.op = wire::SharedOpKind::MutexLock;
    op.key = "s:k";
    op.who = {(7u << wire::kEngineBits) | 2, 1};
    CHECK(SharedService::refusal(7, 2, op).empty());
    CHECK_FALSE(SharedService::refusal(7, 1, op).empty());  // it has one engine
    CHECK_FALSE(SharedService::refusal(8, 2, op).empty());  // another worker's engine
    // An engine's version-phase twin acts for itself; a twin of an engine it lacks does not.
    op.who.engine = wire::version_twin((7u << wire::kEngineBits) | 2);
    CHECK(SharedService::refusal(7, 2, op).empty());
    CHECK_FALSE(SharedService::refusal(7, 1, op).empty());
    CHECK_FALSE(SharedService::refusal(7, 2, op).empty() ==
                SharedService::refusal(8, 2, op).empty());
    op.who.engine = wire::version_twin(7u << wire::kEngineBits);  // twin of index 0
    CHECK_FALSE(SharedService::refusal(7, 2, op).empty());
    op.who.engine = 7u << wire::kEngineBits;  // engine index 0
    CHECK_FALSE(SharedService::refusal(7, 2, op).empty());
    op.op = wire::SharedOpKind::CondBroadcast;  // names no owner
    CHECK(SharedService::refusal(7, 2, op).empty());
    op.key = std::string(nse::kMaxSharedKeyBytes + 1, 'x');
    CHECK_FALSE(SharedService::refusal(7, 2, op).empty());
}

TEST_CASE("shared service: a registry over the message cap travels in parts") {
    test_support::TempDir dir;
    auto store = open(dir.path);
    std::vector<wire::Message> sent;
    SharedService svc(*store, [&](std::uint64_t, const wire::Message& m) { sent.push_back(m); });
    REQUIRE(svc.restore().is_ok());
    const std::string mib(1 << 20, 'k');
    const std::size_t n = wire::kDefaultMaxMessageBytes / mib.size() + 2;
    for (std::size_t i = 0; i < n; ++i)
        REQUIRE(svc.merge(table({kv("t", table({kv("key" + std::to_string(i), str(mib))}))}), 4097)
                    .is_ok());
    wire::SharedOp op;
    op.op = wire::SharedOpKind::RegistryChanges;
    op.who = {4098, 0};
    op.since = 0;  // a new engine: the whole registry
    REQUIRE(svc.handle(1, op).is_ok());
    REQUIRE(sent.size() == 1);
    auto r = std::get<wire::SharedReply>(sent[0]);
    REQUIRE(r.ok);
    CHECK(r.snapshot);
    CHECK(r.version == n);
    REQUIRE(r.parts > 1);
    Value whole = r.value;
    for (std::uint32_t k = 1; k < r.parts; ++k) {
        op.part = k;
        REQUIRE(svc.handle(1, op).is_ok());
        const auto& m = sent.back();
        CHECK(wire::encode(m).size() <= wire::kDefaultMaxMessageBytes);
        const auto& p = std::get<wire::SharedReply>(m);
        REQUIRE(p.ok);
        CHECK(p.part == k);
        CHECK(p.version == n);
        nse::registry_apply(whole, p.value);
    }
    CHECK(nse::registry_diff(svc.snapshot(), whole).table().entries.empty());
    CHECK(nse::registry_diff(whole, svc.snapshot()).table().entries.empty());
    // Served: asking again for a part is refused; so is a part nobody cut.
    op.part = 1;
    REQUIRE(svc.handle(1, op).is_ok());
    CHECK_FALSE(std::get<wire::SharedReply>(sent.back()).ok);
    // Deltas too many for one message: the whole registry in parts instead.
    op.part = 0;
    op.since = 1;
    REQUIRE(svc.handle(1, op).is_ok());
    r = std::get<wire::SharedReply>(sent.back());
    CHECK(r.ok);
    CHECK(r.snapshot);
    CHECK(r.parts > 1);
    // A few versions behind: the deltas fit, and come.
    op.since = n - 2;
    REQUIRE(svc.handle(1, op).is_ok());
    const auto& r2 = std::get<wire::SharedReply>(sent.back());
    CHECK(r2.ok);
    CHECK(r2.parts == 1);
    CHECK(r2.deltas.size() == 2);
    // One value larger than a message cannot travel: refused, with the version.
    REQUIRE(
        svc.merge(table({kv("blob", str(std::string(wire::kDefaultMaxMessageBytes, 'z')))}), 4097)
            .is_ok());
    op.since = 0;
    REQUIRE(svc.handle(1, op).is_ok());
    CHECK_FALSE(std::get<wire::SharedReply>(sent.back()).ok);
    CHECK(std::get<wire::SharedReply>(sent.back()).version == n + 1);
}
