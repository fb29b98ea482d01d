// TargetCursor: same hosts and errors as expand_targets, lazily, with exact resume.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "common/target_cursor.h"
#include "common/targets.h"
#include "test/support/temp.h"

using common::CursorPosition;
using common::IndexedTarget;
using common::TargetCursor;
using common::TargetSources;
using test_support::TempFile;

namespace {

using Strings = std::vector<std::string>;

TargetCursor open_ok(const TargetSources& src) {
    auto c = TargetCursor::open(src);
    INFO("error: ", (c ? std::string() : c.message()));
    REQUIRE(c.is_ok());
    return std::move(*c);
}

// Walks to the end in batches of `batch`, checking indexes are 0, 1, 2, ...
std::vector<IndexedTarget> drain(TargetCursor& c, std::size_t batch, std::uint64_t first = 0) {
    std::vector<IndexedTarget> all;
    for (int guard = 0; guard < 1000000; ++guard) {
        auto r = c.next(batch);
        INFO("error: ", (r ? std::string() : r.message()));
        REQUIRE(r.is_ok());
        CHECK(r->size() <= batch);
        if (r->empty()) break;
        for (auto& t : *r) {
            CHECK(t.index == first + all.size());
            all.push_back(std::move(t));
        }
    }
    CHECK(c.done());
    return all;
}

Strings addrs(const std::vector<IndexedTarget>& ts) {
    Strings out;
    for (const auto& t : ts)
        out.push_back(t.target.address);
    return out;
}

// Long-form key including targetname, to compare with expand_targets.
Strings keys(const std::vector<IndexedTarget>& ts) {
    Strings out;
    for (const auto& t : ts)
        out.push_back(t.target.address + "|" + t.target.targetname + (t.target.ipv6 ? "|6" : "|4"));
    return out;
}
Strings keys(const std::vector<common::Target>& ts) {
    Strings out;
    for (const auto& t : ts)
        out.push_back(t.address + "|" + t.targetname + (t.ipv6 ? "|6" : "|4"));
    return out;
}

// Every split point: walk k hosts, save, restore into a fresh cursor, walk the rest.
void check_resume_everywhere(const TargetSources& src) {
    auto ref_c = open_ok(src);
    auto ref = drain(ref_c, 7);
    for (std::size_t k = 0; k <= ref.size(); ++k) {
        CAPTURE(k);
        auto a = open_ok(src);
        std::vector<IndexedTarget> got;
        while (got.size() < k) {
            auto r = a.next(k - got.size());
            REQUIRE(r.is_ok());
            REQUIRE_FALSE(r->empty());
            for (auto& t : *r)
                got.push_back(std::move(t));
        }
        // Through the serialised form, as the journal stores it.
        auto pos = CursorPosition::decode(a.position().encode());
        REQUIRE(pos.is_ok());
        CHECK(*pos == a.position());
        auto b = open_ok(src);
        auto st = b.restore(*pos);
        INFO("restore: ", st.message());
        REQUIRE(st.is_ok());
        CHECK(b.position().index == k);
        auto rest = drain(b, 3, k);
        for (auto& t : rest)
            got.push_back(std::move(t));
        CHECK(keys(got) == keys(ref));
    }
}

}  // namespace

TEST_CASE("cursor yields expand_targets' list, in batches of any size") {
    TempFile il("# list\n127.0.0.9 127.0.0.3\nlocalhost\n127.0.2.0/30 # four\n");
    TempFile ex("127.0.2.1\n");
    TargetSources src;
    src.specs = {"127.0.0.3", "127.0.1-2.1-3", "127.0.0.1-4", "127.0.0.8/29", "localhost"};
    src.input_files = {il.path};
    src.excludes = {"127.0.0.12-13", "127.0.1.2"};
    src.exclude_files = {ex.path};
    auto expected =
        common::expand_targets(src.specs, src.input_files, src.excludes, src.exclude_files, false);
    REQUIRE(expected.is_ok());
    REQUIRE(expected->size() > 10);
    for (std::size_t batch : {1, 2, 5, 64, 100000}) {
        CAPTURE(batch);
        auto c = open_ok(src);
        CHECK(keys(drain(c, batch)) == keys(*expected));
    }
}

TEST_CASE("octet ranges, CIDR of both families, order") {
    TargetSources src;
    src.specs = {"127.0.1-3.1-254"};
    auto c = open_ok(src);
    auto all = drain(c, 500);
    REQUIRE(all.size() == 3 * 254);
    CHECK(all[0].target.address == "127.0.1.1");
    CHECK(all[253].target.address == "127.0.1.254");
    CHECK(all[254].target.address == "127.0.2.1");
    CHECK(all.back().target.address == "127.0.3.254");

    TargetSources v6;
    v6.ipv6 = true;
    v6.specs = {"fe80::1:ff/120", "::1"};
    v6.excludes = {"fe80::1:80/121"};
    auto c6 = open_ok(v6);
    auto a6 = drain(c6, 10);
    REQUIRE(a6.size() == 129);
    CHECK(a6.front().target.address == "fe80::1:0");
    CHECK(a6[127].target.address == "fe80::1:7f");
    CHECK(a6.back().target.address == "::1");
    CHECK(a6.back().target.ipv6);
}

TEST_CASE("huge blocks are walked lazily and resumed by offset") {
    TargetSources src;
    src.specs = {"0.0.0.0/0", "127.0.0.1"};
    src.excludes = {"0.0.0.0/8"};
    auto c = open_ok(src);
    auto first = c.next(2);
    REQUIRE(first.is_ok());
    CHECK(addrs(*first) == Strings{"1.0.0.0", "1.0.0.1"});
    CHECK(c.position().offset == (std::uint64_t(1) << 24) + 2);

    // Jump near the end of the /0: only the last hosts are walked.
    auto tail = open_ok(src);
    CursorPosition pos;
    pos.spec = 0;
    pos.offset = (std::uint64_t(1) << 32) - 3;
    pos.index = 123456789;
    // Dedup replay stops when its window fills (after 65536 hosts), then jumps.
    REQUIRE(tail.restore(pos).is_ok());
    auto rest = drain(tail, 10, 123456789);
    // The dedup window holds 1.0.0.0-1.0.255.255, so 127.0.0.1 is still new.
    CHECK(addrs(rest) ==
          Strings{"255.255.255.253", "255.255.255.254", "255.255.255.255", "127.0.0.1"});

    TargetSources v6;
    v6.ipv6 = true;
    v6.specs = {"2001:db8::/96"};
    auto c6 = open_ok(v6);
    CursorPosition p6;
    p6.offset = p6.index = (std::uint64_t(1) << 32) - 1;
    REQUIRE(c6.restore(p6).is_ok());
    CHECK(addrs(drain(c6, 5, p6.index)) == Strings{"2001:db8::ffff:ffff"});
    // An index behind what the replay already emitted cannot be right.
    p6.index = 5;
    auto bad = open_ok(v6);
    CHECK_FALSE(bad.restore(p6).is_ok());
}

TEST_CASE("size cap: errors name the token, like expand_targets") {
    TargetSources v6;
    v6.ipv6 = true;
    v6.specs = {"::/64"};
    auto r = TargetCursor::open(v6);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.message() == "target expansion exceeds 4294967296 hosts: '::/64'");
    TargetSources small;
    small.specs = {"127.0.0.0/23"};
    small.spec_limit = 256;
    auto s = TargetCursor::open(small);
    REQUIRE_FALSE(s.is_ok());
    CHECK(s.message().find("'127.0.0.0/23'") != std::string::npos);
}

TEST_CASE("errors match expand_targets") {
    for (Strings specs :
         {Strings{"127.0.0.1", "10.0.0.0/33"}, Strings{"127.0.0.256"}, Strings{"127.0.0.1-2/24"},
          Strings{"bad name!"}, Strings{"::1"}, Strings{"nosuch.invalid"}}) {
        CAPTURE(specs[0]);
        auto want = common::expand_targets(specs, {}, {}, {}, false);
        REQUIRE_FALSE(want.is_ok());
        TargetSources src;
        src.specs = specs;
        auto got = TargetCursor::open(src);
        REQUIRE_FALSE(got.is_ok());
        CHECK(got.message() == want.message());
    }
    TargetSources ex;
    ex.specs = {"127.0.0.1"};
    ex.excludes = {"10.0.0.0/33"};
    auto e = TargetCursor::open(ex);
    REQUIRE_FALSE(e.is_ok());
    CHECK(e.message() == "invalid target specification: '10.0.0.0/33'");
    TargetSources missing;
    missing.input_files = {"/nonexistent/nsefleet-targets"};
    auto m = TargetCursor::open(missing);
    REQUIRE_FALSE(m.is_ok());
    CHECK(m.message() ==
          "cannot read target file '/nonexistent/nsefleet-targets': No such file or directory");
}

TEST_CASE("-iL errors surface lazily and do not skip hosts") {
    TempFile bad("127.0.0.1\n127.0.0.2 127.0.0.300\n127.0.0.4\n");
    TargetSources src;
    src.input_files = {bad.path};
    auto c = open_ok(src);  // the bad line is not read yet
    auto first = c.next(2);
    REQUIRE(first.is_ok());
    CHECK(addrs(*first) == Strings{"127.0.0.1", "127.0.0.2"});
    auto err = c.next(2);
    REQUIRE_FALSE(err.is_ok());
    CHECK(err.message() == "invalid target specification: '127.0.0.300'");
    CHECK(c.position().spec == 2);
    CHECK(c.position().index == 2);
    CHECK_FALSE(c.next(1).is_ok());  // fails again rather than skipping
    CHECK(c.position().spec == 2);
}

TEST_CASE("duplicates: dropped inside the dedup window, scanned again past it") {
    TargetSources src;
    src.specs = {"127.0.0.1-6", "127.0.0.2", "127.0.0.6", "127.0.0.1-2"};
    src.dedup_window = 4;  // remembers 127.0.0.1-4
    auto c = open_ok(src);
    CHECK(addrs(drain(c, 100)) == Strings{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4",
                                          "127.0.0.5", "127.0.0.6", "127.0.0.6"});
    src.dedup_window = 0;  // nmap's own behaviour: every repeat scanned
    auto n = open_ok(src);
    CHECK(drain(n, 100).size() == 10);
    src.dedup_window = 1 << 16;  // default: a small scan is fully de-duplicated
    auto d = open_ok(src);
    CHECK(drain(d, 100).size() == 6);
}

TEST_CASE("resume at every position is exact") {
    TempFile il("127.0.0.9 127.0.0.3\n\n# c\nlocalhost 127.0.2.0/30\n127.0.0.1,3,5\n");
    TargetSources src;
    src.specs = {"127.0.0.3", "127.0.1.1-3", "127.0.0.1-4"};
    src.input_files = {il.path, il.path};
    src.excludes = {"127.0.2.2"};
    SUBCASE("default window") { check_resume_everywhere(src); }
    SUBCASE("small window: replay stops early, then jumps") {
        src.dedup_window = 5;
        check_resume_everywhere(src);
    }
    SUBCASE("no dedup") {
        src.dedup_window = 0;
        check_resume_everywhere(src);
    }
}

TEST_CASE("a journaled name resolution is reused on resume") {
    TempFile il("localhost/30\n");
    TargetSources src;
    src.input_files = {il.path};
    auto c = open_ok(src);
    REQUIRE(c.next(1).is_ok());
    auto pos = c.position();
    CHECK(pos.resolved == "127.0.0.1");
    CHECK(pos.encode() == "v1 0 1 1 127.0.0.1");
    // Pretend the name resolved elsewhere when the scan began.
    pos.resolved = "127.0.5.1";
    auto b = open_ok(src);
    REQUIRE(b.restore(pos).is_ok());
    CHECK(addrs(drain(b, 10, 1)) == Strings{"127.0.5.1", "127.0.5.2", "127.0.5.3"});
}

TEST_CASE("restore rejects positions that do not fit, and stdin lists") {
    TargetSources src;
    src.specs = {"127.0.0.1-3", "127.0.0.9"};
    auto c = open_ok(src);
    auto end = drain(c, 10);
    REQUIRE(end.size() == 4);
    CHECK(c.position().encode() == "v1 2 0 4");
    auto b = open_ok(src);
    REQUIRE(b.restore(c.position()).is_ok());  // the end is a valid position
    CHECK(drain(b, 10, 4).empty());
    for (auto text : {"v1 3 0 4", "v1 0 7 0", "v1 1 0 2", "v1 0 1 5"}) {
        CAPTURE(text);
        auto pos = CursorPosition::decode(text);
        REQUIRE(pos.is_ok());
        auto x = open_ok(src);
        auto st = x.restore(*pos);
        REQUIRE_FALSE(st.is_ok());
        CHECK(st.message().find("does not match the targets") != std::string::npos);
    }
    for (auto text :
         {"", "v2 0 0 0", "v1 0 0", "v1 a 0 0", "v1 0 0 0 x y", "v1 0 0 99999999999999999999"}) {
        CAPTURE(text);
        CHECK_FALSE(CursorPosition::decode(text).is_ok());
    }
    TargetSources in;
    in.specs = {"127.0.0.1"};
    in.input_files = {"-"};
    auto s = open_ok(in);
    CursorPosition p;
    p.spec = 1;
    auto st = s.restore(p);
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.message() == "cannot resume a target list read from stdin");
}

TEST_CASE("a /16 with excludes walks every other host exactly once") {
    TargetSources src;
    src.specs = {"127.0.0.0/16"};
    src.excludes = {"127.0.0-255.0-127", "127.0.255.255"};
    auto c = open_ok(src);
    auto all = drain(c, 4096);
    REQUIRE(all.size() == 256 * 128 - 1);
    CHECK(all.front().target.address == "127.0.0.128");
    CHECK(all.back().target.address == "127.0.255.254");
}

// Timing: ./unit_common -tc='bench*' --no-skip (run alone so VmHWM is this walk's peak).
TEST_CASE("bench: walk 127.0.0.0/8 with a 1-host exclude" * doctest::skip()) {
    TargetSources src;
    src.specs = {"127.0.0.0/8"};
    src.excludes = {"127.0.0.1"};
    auto c = open_ok(src);
    auto t0 = std::chrono::steady_clock::now();
    std::uint64_t n = 0;
    std::string last;
    while (true) {
        auto r = c.next(4096);
        REQUIRE(r.is_ok());
        if (r->empty()) break;
        n += r->size();
        last = r->back().target.address;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(n == (std::uint64_t(1) << 24) - 1);
    CHECK(last == "127.255.255.255");
    std::ifstream status("/proc/self/status");
    std::string line, hwm;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) hwm = line;
    MESSAGE(n << " hosts in " << secs << " s = " << (n / secs / 1e6) << " M hosts/s; " << hwm);
}

TEST_CASE("--resolve-all: each address of a name, with the name; resumed from the journal") {
    // A name's addresses as journaled when the scan began (no resolver is asked: a name
    // under .invalid never resolves).
    auto spec = common::parse_target_spec("multi.test.invalid", false, false,
                                          "127.0.0.10,127.0.0.11,127.0.0.12", true);
    REQUIRE(spec.is_ok());
    CHECK(spec->kind == common::TargetSpec::Names);
    CHECK(spec->count() == 3);
    CHECK(spec->targetname == "multi.test.invalid");
    CHECK(spec->resolved == "127.0.0.10,127.0.0.11,127.0.0.12");
    // One address: the usual single host; an address of the other family: refused.
    auto one = common::parse_target_spec("one.invalid", false, false, "127.0.0.10", true);
    REQUIRE(one.is_ok());
    CHECK(one->kind == common::TargetSpec::V4Cidr);
    CHECK_FALSE(common::parse_target_spec("x.invalid", false, false, "127.0.0.1,::1", true));

    TempFile il("multi.test.invalid 10.9.9.9 127.0.0.11\n");
    TargetSources src;
    src.input_files = {il.path};
    src.resolve_all = true;
    src.on_unresolved = [](const std::string&) {};
    CursorPosition pos;
    pos.spec = 0;
    pos.offset = 1;
    pos.index = 1;
    pos.resolved = "127.0.0.10,127.0.0.11,127.0.0.12";
    auto c = open_ok(src);
    REQUIRE(c.restore(*CursorPosition::decode(pos.encode())).is_ok());
    // The rest of the name's addresses, then the other tokens; 127.0.0.11 is not scanned
    // twice (the name gave it already).
    CHECK(keys(drain(c, 2, 1)) == Strings{"127.0.0.11|multi.test.invalid|4",
                                          "127.0.0.12|multi.test.invalid|4", "10.9.9.9||4"});
}

TEST_CASE("a name's other addresses are journaled with it, so a resumed scan reports them") {
    auto spec = common::parse_target_spec("multi.test.invalid", false, false,
                                          "127.0.0.10,127.0.0.11,127.0.0.12", false);
    REQUIRE(spec.is_ok());
    CHECK(spec->count() == 1);
    CHECK(spec->other_addresses == Strings{"127.0.0.11", "127.0.0.12"});
    CHECK(spec->resolved == "127.0.0.10,127.0.0.11,127.0.0.12");
    TempFile il("multi.test.invalid 127.0.0.20\n");
    TargetSources src;
    src.input_files = {il.path};
    src.on_unresolved = [](const std::string&) {};
    CursorPosition pos;  // the name is next, as journaled when its group was planned
    pos.resolved = spec->resolved;
    auto c = open_ok(src);
    REQUIRE(c.restore(*CursorPosition::decode(pos.encode())).is_ok());
    auto got = c.next(2);
    REQUIRE(got.is_ok());
    REQUIRE(got->size() == 2);
    CHECK((*got)[0].target.address == "127.0.0.10");
    CHECK((*got)[0].target.targetname == "multi.test.invalid");
    CHECK((*got)[0].target.other_addresses == Strings{"127.0.0.11", "127.0.0.12"});
}

TEST_CASE("-iR 0: random public addresses without end, after the specs, resumed exactly") {
    TargetSources src;
    src.specs = {"127.0.0.1"};
    src.excludes = {"0.0.0.0/2"};  // a quarter of the space
    src.random_endless = true;
    src.random_seed = 42;
    auto c = open_ok(src);
    auto first = c.next(3000);
    REQUIRE(first.is_ok());
    REQUIRE(first->size() == 3000);
    CHECK((*first)[0].target.address == "127.0.0.1");
    std::set<std::string> seen;
    for (std::size_t i = 1; i < first->size(); ++i) {
        const auto& t = (*first)[i];
        CHECK(t.index == i);
        in_addr a{};
        REQUIRE(inet_pton(AF_INET, t.target.address.c_str(), &a) == 1);
        std::uint32_t host = ntohl(a.s_addr);
        CHECK(common::random_target_candidate(host));
        CHECK(host >= 0x40000000u);  // excluded block respected
        CHECK(seen.insert(t.target.address).second);
    }
    CHECK_FALSE(c.done());
    // A cursor restored at a position continues with the same addresses.
    auto pos = c.position();
    auto more = c.next(500);
    REQUIRE(more.is_ok());
    auto again = open_ok(src);
    REQUIRE(again.restore(pos).is_ok());
    auto replay = again.next(500);
    REQUIRE(replay.is_ok());
    REQUIRE(replay->size() == 500);
    for (std::size_t i = 0; i < 500; ++i) {
        CHECK((*replay)[i].index == (*more)[i].index);
        CHECK((*replay)[i].target.address == (*more)[i].target.address);
    }
    // Another seed, another sequence.
    src.random_seed = 43;
    auto other = open_ok(src);
    auto o = other.next(20);
    REQUIRE(o.is_ok());
    int same = 0;
    for (std::size_t i = 1; i < 20; ++i)
        same += (*o)[i].target.address == (*first)[i].target.address;
    CHECK(same < 3);
}

TEST_CASE("-iR 0 with every address excluded: an error, not an endless walk") {
    TargetSources src;
    src.excludes = {"0.0.0.0/0"};
    src.random_endless = true;
    auto c = open_ok(src);
    auto r = c.next(1);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.message().find("-iR") != std::string::npos);
}
