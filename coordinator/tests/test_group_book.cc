// The coordinator's group book against a real store in a temporary directory: planning,
// leases, exactly-once commits, requeues, the ordered-output frontier, script-added hosts,
// and a restart that rebuilds the same book (or fails loudly on a record it cannot read).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/wire/codec.h"
#include "coordinator/group_book.h"
#include "coordinator/store/store.h"
#include "test/support/temp.h"

using coordinator::AddedTargets;
using coordinator::GroupBook;
using coordinator::store::Store;
namespace wire = common::wire;

namespace {

std::unique_ptr<Store> open_store(const std::string& dir) {
    auto s = Store::open(dir, true);
    REQUIRE_MESSAGE(s.is_ok(), s.message());
    return std::move(*s);
}

common::TargetSources forty() {
    common::TargetSources src;
    src.specs = {"192.0.2.1-40"};  // never contacted: the book only plans
    return src;
}

GroupBook open_book(Store& store, std::size_t group_size = 16) {
    auto j = store.journal();
    REQUIRE(j.is_ok());
    auto b = GroupBook::open(store, forty(), group_size);
    REQUIRE_MESSAGE(b.is_ok(), b.message());
    auto st = b->restore(*j);
    REQUIRE_MESSAGE(st.is_ok(), st.message());
    return std::move(*b);
}

wire::Lease lease(GroupBook& book, std::uint64_t worker, double deadline = 1e12) {
    auto l = book.lease_next(worker, deadline);
    REQUIRE(l.is_ok());
    REQUIRE(l->has_value());
    return **l;
}

GroupBook::Commit commit(GroupBook& book, const wire::Lease& l, std::size_t i) {
    auto r = book.commit(l.group_id, l.hosts.at(i), "result of " + l.hosts.at(i).address);
    REQUIRE(r.is_ok());
    return *r;
}

}  // namespace

TEST_CASE("group book: plans lazily, leases, commits once, advances the frontier") {
    test_support::TempDir dir("nsefleet-book");
    auto store = open_store(dir.path);
    GroupBook book = open_book(*store);
    CHECK(book.frontier() == 0);

    REQUIRE(book.plan(2).is_ok());
    CHECK(book.queued() == 2);
    CHECK(book.hosts_total() == 32);
    CHECK_FALSE(book.targets_done());
    REQUIRE(book.plan(4).is_ok());  // 16 + 16 + 8, then the cursor is exhausted
    CHECK(book.queued() == 3);
    CHECK(book.hosts_total() == 40);
    CHECK(book.targets_done());

    wire::Lease a = lease(book, 7);
    CHECK(a.group_id == 0);
    CHECK(a.attempt == 1);
    REQUIRE(a.hosts.size() == 16);
    CHECK(a.hosts.front().address == "192.0.2.1");
    CHECK(a.hosts.front().index == 0);
    CHECK(book.held_by(0, 7) == GroupBook::Held::yes);
    CHECK(book.held_by(0, 8) == GroupBook::Held::no);
    CHECK(book.leases_of(7) == std::vector<std::uint64_t>{0});

    // Out of order: the frontier waits for host 0.
    CHECK(commit(book, a, 1) == GroupBook::Commit::committed);
    CHECK(book.frontier() == 0);
    CHECK(commit(book, a, 0) == GroupBook::Commit::committed);
    CHECK(book.frontier() == 2);
    CHECK(commit(book, a, 0) == GroupBook::Commit::duplicate);
    CHECK(book.hosts_done() == 2);

    // A host that is not in the group, or a group that was never planned.
    wire::LeaseHost stranger{3, "198.51.100.9", false, "", {}};
    CHECK(*book.commit(0, stranger, "x") == GroupBook::Commit::not_in_group);
    CHECK(*book.commit(99, a.hosts[2], "x") == GroupBook::Commit::unknown_group);

    for (std::size_t i = 2; i < a.hosts.size(); ++i)
        CHECK(commit(book, a, i) == GroupBook::Commit::committed);
    CHECK(book.groups_done() == 1);
    CHECK(book.held_by(0, 7) == GroupBook::Held::done);
    CHECK(*book.commit(0, a.hosts[0], "late copy") == GroupBook::Commit::finished_group);
    CHECK(book.frontier() == 16);
    CHECK(book.hosts_done() == 16);
}

TEST_CASE("group book: a lost worker's leases go back first; a failing group ends the scan") {
    test_support::TempDir dir("nsefleet-book");
    auto store = open_store(dir.path);
    GroupBook book = open_book(*store);
    REQUIRE(book.plan(3).is_ok());
    wire::Lease a = lease(book, 1);
    wire::Lease b = lease(book, 2);
    CHECK(b.group_id == 1);
    auto gone = book.requeue_worker(1);
    REQUIRE(gone.is_ok());
    CHECK(*gone == std::vector<std::uint64_t>{0});
    CHECK(book.held_by(0, 1) == GroupBook::Held::no);
    // Requeued groups are leased again before later ones, with the attempt counted.
    wire::Lease again = lease(book, 3);
    CHECK(again.group_id == 0);
    CHECK(again.attempt == 2);
    CHECK(*book.group_done(0, 1, 3) == GroupBook::Done::not_holder);  // no longer its lease

    // GroupDone with hosts missing: requeued, until the third time.
    CHECK(*book.group_done(0, 3, 3) == GroupBook::Done::requeued);
    for (int i = 0; i < 1; ++i) {
        wire::Lease l = lease(book, 3);
        CHECK(l.group_id == 0);
        CHECK(*book.group_done(0, 3, 3) == GroupBook::Done::requeued);
    }
    lease(book, 3);
    CHECK(*book.group_done(0, 3, 3) == GroupBook::Done::failing);

    // Expired leases come back in group order.
    auto exp = book.requeue_expired(2e12);
    REQUIRE(exp.is_ok());
    CHECK(exp->size() == 2);
    CHECK(lease(book, 4).group_id == 0);
    CHECK(lease(book, 4).group_id == 1);
    (void)a;
}

TEST_CASE("group book: a restart rebuilds the book from the store") {
    test_support::TempDir dir("nsefleet-book");
    {
        auto store = open_store(dir.path);
        GroupBook book = open_book(*store);
        REQUIRE(book.plan(2).is_ok());
        wire::Lease a = lease(book, 1);
        for (std::size_t i = 0; i < a.hosts.size(); ++i)
            commit(book, a, i);
        wire::Lease b = lease(book, 1);
        for (std::size_t i = 0; i < 3; ++i)
            commit(book, b, i);
        // A script added hosts: journaled at once, planned before the cursor's next group.
        auto r = book.added().add({{0, "203.0.113.5", false, "extra.example", {}},
                                   {0, "203.0.113.5", false, "", {}},
                                   {0, "", false, "", {}},
                                   {0, "203.0.113.6", false, "", {}}});
        REQUIRE(r.is_ok());
        CHECK(r->fresh == 2);
        REQUIRE(book.plan(1).is_ok());
        CHECK(book.queued() == 1);  // the added hosts' group; the cursor is not walked further
        CHECK(book.hosts_total() == 34);
        REQUIRE(store->close().is_ok());
    }
    auto store = open_store(dir.path);
    GroupBook book = open_book(*store);
    CHECK(book.hosts_done() == 19);
    CHECK(book.groups_done() == 1);
    CHECK(book.hosts_total() == 34);
    CHECK(book.frontier() == 19);    // hosts 16..18 of group 1 are committed already
    wire::Lease b = lease(book, 9);  // the old lease is void: group 1 is queued again
    CHECK(b.group_id == 1);
    CHECK(b.attempt == 2);
    CHECK(b.hosts.front().address == "192.0.2.17");
    CHECK(commit(book, b, 0) == GroupBook::Commit::duplicate);
    wire::Lease added = lease(book, 9);
    CHECK(added.group_id == 2);
    REQUIRE(added.hosts.size() == 2);
    CHECK(added.hosts[0].index == AddedTargets::kBase);
    CHECK(added.hosts[0].targetname == "extra.example");
    CHECK(added.hosts[1].address == "203.0.113.6");
    // The cursor resumes where it stopped: the next group starts at host 32.
    REQUIRE(book.plan(4).is_ok());
    wire::Lease c = lease(book, 9);
    CHECK(c.hosts.front().index == 32);
    CHECK(c.hosts.size() == 8);
    CHECK(book.targets_done());
}

TEST_CASE("group book: resume fails loudly on a record it cannot read") {
    test_support::TempDir dir("nsefleet-book");
    auto store = open_store(dir.path);
    REQUIRE(store->put_record("added/0001000000000000", "not a record").is_ok());
    auto j = store->journal();
    REQUIRE(j.is_ok());
    auto b = GroupBook::open(*store, forty(), 16);
    REQUIRE(b.is_ok());
    auto st = b->restore(*j);
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.message().find("added/0001000000000000") != std::string::npos);
}
