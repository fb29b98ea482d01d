// The RocksDB store: journal, group leases, exactly-once host commits, persistence across
// close/reopen and across a SIGKILL in the middle of writing.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/store/store.h"
#include "test/support/temp.h"

using coordinator::store::CommitOutcome;
using coordinator::store::Group;
using coordinator::store::GroupState;
using coordinator::store::JournalFlag;
using coordinator::store::Store;
using test_support::TempDir;

namespace {

std::unique_ptr<Store> open_ok(const std::string& dir, bool create = true) {
    auto s = Store::open(dir, create);
    INFO("error: ", (s ? std::string() : s.message()));
    REQUIRE(s.is_ok());
    return std::move(*s);
}

Group make_group(std::uint64_t id, std::vector<std::uint64_t> hosts) {
    Group g;
    g.id = id;
    g.hosts = std::move(hosts);
    return g;
}

// What the crash child writes for host i: recognisable, and long enough to span pages.
std::string host_bytes(std::uint64_t i) {
    std::string s = "host-" + std::to_string(i) + ":";
    s.append(300, char('a' + i % 26));
    s += '\0';  // encoded results are binary
    s += "end";
    return s;
}

constexpr std::uint64_t kHostsPerGroup = 10;

}  // namespace

TEST_CASE("open, create, lock, close") {
    TempDir d("nsefleet-store");
    std::string dir = d.path + "/state";
    auto missing = Store::open(dir, false);
    REQUIRE_FALSE(missing.is_ok());
    CHECK(missing.message().find("store: cannot open '" + dir + "'") == 0);

    auto s = open_ok(dir);
    auto again = Store::open(dir, true);  // RocksDB's LOCK: one coordinator per directory
    REQUIRE_FALSE(again.is_ok());
    CHECK(again.message().find("cannot open") != std::string::npos);

    REQUIRE(s->close().is_ok());
    REQUIRE(s->close().is_ok());  // idempotent
    auto after = s->commit_host(1, "x");
    REQUIRE_FALSE(after.is_ok());
    CHECK(after.message() == "store: closed");
    CHECK_FALSE(s->journal().is_ok());
    open_ok(dir, false);  // now free again, and it exists
}

TEST_CASE("journal: defaults, atomic group planning, persistence") {
    TempDir d("nsefleet-store");
    {
        auto s = open_ok(d.path);
        auto j = s->journal();
        REQUIRE(j.is_ok());
        CHECK(j->options.empty());
        CHECK(j->cursor.empty());
        CHECK(j->next_group_id == 0);
        CHECK_FALSE(j->prerule_done);

        std::string blob("opts\0with nul", 13);
        REQUIRE(s->set_options(blob).is_ok());
        REQUIRE(s->set_flag(JournalFlag::prerule_done, true).is_ok());
        REQUIRE(s->plan_group(make_group(0, {0, 1, 2}), "v1 0 3 3").is_ok());
        Group g1 = make_group(1, {});
        g1.range_begin = "v1 0 3 3";
        g1.range_end = "v1 1 0 9";
        g1.state = GroupState::done;  // ignored: a planned group starts queued
        REQUIRE(s->plan_group(g1, "v1 1 0 9").is_ok());
        auto dup = s->plan_group(make_group(1, {7}), "v1 9 9 9");
        REQUIRE_FALSE(dup.is_ok());
        CHECK(dup.message() == "store: group 1 already exists");
        REQUIRE(s->close().is_ok());
    }
    auto s = open_ok(d.path, false);
    auto j = s->journal();
    REQUIRE(j.is_ok());
    CHECK(j->options == std::string("opts\0with nul", 13));
    CHECK(j->cursor == "v1 1 0 9");  // the failed duplicate changed nothing
    CHECK(j->next_group_id == 2);
    CHECK(j->prerule_done);
    CHECK_FALSE(j->postrule_done);
    CHECK_FALSE(j->targets_done);
    auto g1 = s->group(1);
    REQUIRE(g1.is_ok());
    REQUIRE(g1->has_value());
    CHECK((*g1)->state == GroupState::queued);
    CHECK((*g1)->range_begin == "v1 0 3 3");
    CHECK((*g1)->range_end == "v1 1 0 9");
    auto g0 = s->group(0);
    REQUIRE(g0.is_ok());
    REQUIRE(g0->has_value());
    CHECK((*g0)->hosts == std::vector<std::uint64_t>{0, 1, 2});
    auto none = s->group(5);
    REQUIRE(none.is_ok());
    CHECK_FALSE(none->has_value());
    // A planned id below next_group_id does not move it back.
    REQUIRE(s->plan_group(make_group(100, {}), "c100").is_ok());
    REQUIRE(s->plan_group(make_group(50, {}), "c50").is_ok());
    CHECK(s->journal()->next_group_id == 101);
}

TEST_CASE("group leases: lease, renew, complete, requeue") {
    TempDir d("nsefleet-store");
    auto s = open_ok(d.path);
    for (std::uint64_t id = 0; id < 4; ++id)
        REQUIRE(s->plan_group(make_group(id, {id}), "c").is_ok());

    CHECK(*s->lease_group(0, "w1", 1000) == true);
    CHECK(*s->lease_group(0, "w2", 1000) == false);  // taken
    CHECK(*s->lease_group(1, "w1", 5000) == true);
    CHECK(*s->lease_group(2, "w2", 1000) == true);
    auto unknown = s->lease_group(99, "w1", 1);
    REQUIRE_FALSE(unknown.is_ok());
    CHECK(unknown.message() == "store: no group 99");

    CHECK(*s->renew_lease(0, "w2", 9000) == false);  // not w2's
    CHECK(*s->renew_lease(0, "w1", 2000) == true);
    CHECK((*s->group(0))->deadline_ms == 2000);

    CHECK(*s->complete_group(2) == true);
    CHECK(*s->complete_group(2) == false);  // already done
    CHECK(*s->lease_group(2, "w1", 1) == false);

    // Deadlines: 0 at 2000, 1 at 5000.
    CHECK(*s->requeue_expired(1999) == 0);
    CHECK(*s->requeue_expired(2000) == 1);
    auto g0 = *s->group(0);
    CHECK(g0->state == GroupState::queued);
    CHECK(g0->lease_owner.empty());
    CHECK(*s->lease_group(0, "w3", 100) == true);
    CHECK((*s->group(0))->attempts == 2);

    CHECK(*s->requeue_owner("w1") == 1);  // group 1
    auto queued = s->groups(GroupState::queued);
    REQUIRE(queued.is_ok());
    REQUIRE(queued->size() == 2);
    CHECK((*queued)[0].id == 1);
    CHECK((*queued)[1].id == 3);
    CHECK(s->groups(GroupState::leased)->size() == 1);
    CHECK(s->groups()->size() == 4);
    // A restarted coordinator voids every lease.
    CHECK(*s->requeue_expired(INT64_MAX) == 1);
    CHECK(s->groups(GroupState::leased)->empty());
}

TEST_CASE("commit_host is exactly once, also under concurrency") {
    TempDir d("nsefleet-store");
    auto s = open_ok(d.path);
    auto first = s->commit_host(7, host_bytes(7));
    REQUIRE(first.is_ok());
    CHECK_FALSE(first->already_committed);
    auto second = s->commit_host(7, "different");
    REQUIRE(second.is_ok());
    CHECK(second->already_committed);
    CHECK(**s->result(7) == host_bytes(7));
    CHECK_FALSE(s->result(8)->has_value());

    // Four "workers" race over the same 2000 hosts: each host is won exactly once.
    std::atomic<int> wins{0}, losses{0}, errors{0};
    std::vector<std::thread> ts;
    for (int w = 0; w < 4; ++w)
        ts.emplace_back([&, w] {
            for (std::uint64_t i = 1000; i < 3000; ++i) {
                auto r = s->commit_host(i, "w" + std::to_string(w));
                if (!r)
                    ++errors;
                else if (r->already_committed)
                    ++losses;
                else
                    ++wins;
            }
        });
    for (auto& t : ts)
        t.join();
    CHECK(errors == 0);
    CHECK(wins == 2000);
    CHECK(losses == 3 * 2000);
    CHECK(*s->count_results() == 2001);
}

TEST_CASE("results iterate in index order") {
    TempDir d("nsefleet-store");
    auto s = open_ok(d.path);
    std::vector<std::uint64_t> order = {300, 2, 1ull << 40, 256, 0, 255, 65536, 1};
    for (auto i : order)
        REQUIRE(s->commit_host(i, host_bytes(i)).is_ok());
    std::vector<std::uint64_t> seen;
    REQUIRE(s->for_each_result([&](std::uint64_t i, std::string_view v) {
                 CHECK(v == host_bytes(i));
                 seen.push_back(i);
                 return true;
             }).is_ok());
    CHECK(seen == std::vector<std::uint64_t>{0, 1, 2, 255, 256, 300, 65536, 1ull << 40});
    seen.clear();
    REQUIRE(s->for_each_result([&](std::uint64_t i, std::string_view) {
                 seen.push_back(i);
                 return seen.size() < 3;  // stop early
             }).is_ok());
    CHECK(seen.size() == 3);
    seen.clear();
    REQUIRE(s->for_each_result(
                 [&](std::uint64_t i, std::string_view) {
                     seen.push_back(i);
                     return true;
                 },
                 256)
                .is_ok());
    CHECK(seen == std::vector<std::uint64_t>{256, 300, 65536, 1ull << 40});
}

TEST_CASE("registry and locks") {
    TempDir d("nsefleet-store");
    {
        auto s = open_ok(d.path);
        REQUIRE(s->put_registry("ssh/keys/127.0.0.1", "k1").is_ok());
        REQUIRE(s->put_registry("ssh/keys/127.0.0.2", "k2").is_ok());
        REQUIRE(s->put_registry("ssh/other", "o").is_ok());
        REQUIRE(s->put_registry("sshz", "z").is_ok());
        REQUIRE(s->put_registry("ssh/keys/127.0.0.1", "k1b").is_ok());  // overwrite
        REQUIRE(s->erase_registry("ssh/other").is_ok());
        CHECK(*s->try_lock("m1", "w1") == true);
        CHECK(*s->try_lock("m1", "w1") == true);  // held already
        CHECK(*s->try_lock("m1", "w2") == false);
        CHECK(*s->try_lock("m2", "w1") == true);
        CHECK(*s->try_lock("m3", "w2") == true);
        REQUIRE(s->close().is_ok());
    }
    auto s = open_ok(d.path);
    CHECK(**s->registry("ssh/keys/127.0.0.1") == "k1b");
    CHECK_FALSE(s->registry("ssh/other")->has_value());
    std::vector<std::string> keys;
    REQUIRE(s->for_each_registry("ssh/", [&](std::string_view k, std::string_view) {
                 keys.emplace_back(k);
                 return true;
             }).is_ok());
    CHECK(keys == std::vector<std::string>{"ssh/keys/127.0.0.1", "ssh/keys/127.0.0.2"});
    CHECK(*s->unlock("m1", "w2") == false);
    CHECK(*s->unlock("m1", "w1") == true);
    CHECK(*s->try_lock("m1", "w2") == true);
    CHECK(*s->release_locks("w1") == 1);  // m2
    CHECK(*s->release_locks("w2") == 2);  // m1, m3
    CHECK(*s->try_lock("m3", "w9") == true);
}

// The crash child: plays a coordinator + worker loop on NSEFLEET_STORE_DIR and reports each
// acknowledged step on fd NSEFLEET_STORE_FD ("C index", "D group") until it is killed.
// Run by the next test case through /proc/self/exe; skipped otherwise.
TEST_CASE("store crash child" * doctest::skip()) {
    const char* dir = std::getenv("NSEFLEET_STORE_DIR");
    const char* fdv = std::getenv("NSEFLEET_STORE_FD");
    if (!dir || !fdv) return;
    int fd = std::atoi(fdv);
    auto say = [&](const std::string& line) {
        std::string l = line + "\n";
        if (write(fd, l.data(), l.size()) != ssize_t(l.size())) _exit(3);
    };
    auto s = Store::open(dir, true);
    if (!s) _exit(2);
    Store& st = **s;
    if (!st.requeue_expired(INT64_MAX)) _exit(2);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (int round = 0; round < 5000 && std::chrono::steady_clock::now() < deadline; ++round) {
        auto queued = st.groups(GroupState::queued);
        if (!queued) _exit(2);
        Group g;
        if (!queued->empty()) {
            g = queued->front();
        } else {
            auto j = st.journal();
            if (!j) _exit(2);
            g.id = j->next_group_id;
            for (std::uint64_t k = 0; k < kHostsPerGroup; ++k)
                g.hosts.push_back(g.id * kHostsPerGroup + k);
            if (!st.plan_group(g, "g" + std::to_string(g.id + 1))) _exit(2);
        }
        auto leased = st.lease_group(g.id, "child", 1);
        if (!leased || !*leased) _exit(2);
        for (auto h : g.hosts) {
            auto r = st.commit_host(h, host_bytes(h));
            if (!r) _exit(2);
            say((r->already_committed ? "A " : "C ") + std::to_string(h));
        }
        auto done = st.complete_group(g.id);
        if (!done || !*done) _exit(2);
        say("D " + std::to_string(g.id));
    }
    _exit(0);
}

TEST_CASE("a SIGKILL mid-write loses nothing acknowledged; a restart resumes exactly once") {
    TempDir d("nsefleet-store");
    std::set<std::uint64_t> committed, done_groups;
    std::uint64_t duplicates = 0;
    for (int round = 0; round < 3; ++round) {
        CAPTURE(round);
        int p[2];
        REQUIRE(pipe(p) == 0);
        // Built before fork: the child only calls async-signal-safe functions until exec.
        std::vector<std::string> env_s = {"NSEFLEET_STORE_DIR=" + d.path,
                                          "NSEFLEET_STORE_FD=" + std::to_string(p[1])};
        for (char** e = environ; *e; ++e)
            env_s.emplace_back(*e);
        std::vector<char*> envp;
        for (auto& e : env_s)
            envp.push_back(e.data());
        envp.push_back(nullptr);
        int devnull = ::open("/dev/null", O_WRONLY);
        REQUIRE(devnull >= 0);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            dup2(devnull, 1);
            execle("/proc/self/exe", "child", "--no-skip", "-tc=store crash child", nullptr,
                   envp.data());
            _exit(127);
        }
        close(devnull);
        close(p[1]);
        // Read acknowledgements until enough work happened, then kill mid-stream.
        std::string buf;
        std::size_t acks = 0;
        auto parse = [&] {
            std::size_t nl;
            while ((nl = buf.find('\n')) != std::string::npos) {
                std::istringstream line(buf.substr(0, nl));
                buf.erase(0, nl + 1);
                char kind;
                std::uint64_t v;
                line >> kind >> v;
                if (kind == 'C') committed.insert(v);
                if (kind == 'A') {  // committed by a killed round, re-run now
                    committed.insert(v);
                    ++duplicates;
                }
                if (kind == 'D') done_groups.insert(v);
                ++acks;
            }
        };
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        std::size_t want = acks + 800 + 137 * round;  // kill at varying points
        while (acks < want && std::chrono::steady_clock::now() < until) {
            pollfd pf{p[0], POLLIN, 0};
            if (poll(&pf, 1, 200) <= 0) continue;
            char tmp[4096];
            ssize_t n = read(p[0], tmp, sizeof tmp);
            if (n <= 0) break;
            buf.append(tmp, n);
            parse();
        }
        REQUIRE(acks >= want);  // the child made progress
        REQUIRE(kill(pid, SIGKILL) == 0);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        CHECK(WIFSIGNALED(status));
        // What the child wrote before dying was acknowledged too.
        char tmp[4096];
        for (ssize_t n; (n = read(p[0], tmp, sizeof tmp)) > 0;)
            buf.append(tmp, n);
        parse();
        close(p[0]);

        auto s = open_ok(d.path, false);
        for (auto h : committed) {
            auto r = s->result(h);
            REQUIRE(r.is_ok());
            REQUIRE(r->has_value());
            CHECK(**r == host_bytes(h));
        }
        for (auto g : done_groups)
            CHECK((*s->group(g))->state == GroupState::done);
        // Nothing torn: every stored result is whole, every done group has all its hosts.
        std::uint64_t stored = 0;
        REQUIRE(s->for_each_result([&](std::uint64_t i, std::string_view v) {
                     CHECK(v == host_bytes(i));
                     ++stored;
                     return true;
                 }).is_ok());
        CHECK(stored >= committed.size());
        CHECK(stored <= committed.size() + 1);  // at most the host written, not yet reported
        auto groups = s->groups();
        REQUIRE(groups.is_ok());
        for (const auto& g : *groups)
            if (g.state == GroupState::done)
                for (auto h : g.hosts)
                    CHECK(s->result(h)->has_value());
        // Planning was atomic: the cursor matches next_group_id, ids are contiguous.
        auto j = s->journal();
        REQUIRE(j.is_ok());
        CHECK(j->cursor == "g" + std::to_string(j->next_group_id));
        CHECK(groups->size() == j->next_group_id);
        REQUIRE(s->close().is_ok());
    }
    // Restarts re-ran the interrupted groups; hosts already in were not committed twice.
    MESSAGE(committed.size() << " hosts committed, " << done_groups.size() << " groups done, "
                             << duplicates << " re-dispatched hosts refused as already committed");
    CHECK(committed.size() > 2000);
}

// Timing: ./unit_coordinator -tc='bench*' --no-skip
TEST_CASE("bench: commit_host and synced group completion" * doctest::skip()) {
    TempDir d("nsefleet-store");
    auto s = open_ok(d.path);
    const std::uint64_t n = 100000;
    auto t0 = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < n; ++i)
        REQUIRE(s->commit_host(i, host_bytes(i)).is_ok());
    auto t1 = std::chrono::steady_clock::now();
    for (std::uint64_t g = 0; g < 200; ++g) {
        REQUIRE(s->plan_group(make_group(g, {g}), "c").is_ok());
        REQUIRE(*s->lease_group(g, "w", 1) == true);
        REQUIRE(*s->complete_group(g) == true);
    }
    auto t2 = std::chrono::steady_clock::now();
    std::uint64_t seen = 0;
    REQUIRE(
        s->for_each_result([&](std::uint64_t, std::string_view) { return ++seen, true; }).is_ok());
    auto t3 = std::chrono::steady_clock::now();
    auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    CHECK(seen == n);
    double commits = n / secs(t0, t1), completions = 200 / secs(t1, t2), iter = n / secs(t2, t3);
    MESSAGE(commits << " commits/s (" << host_bytes(0).size() << " B); " << completions
                    << " plan+lease+synced completions/s; " << iter << " results/s iterated");
}
