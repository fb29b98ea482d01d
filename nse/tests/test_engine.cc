// The Engine (nse/engine.h) driven the way worker/worker.cc drives it, with a fake Embedder
// that records what the engine reports and owns the clock. Small scripts in NSE's format are
// written to a scratch directory; the stock nselib (nmap-common) supplies stdnse.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "nse/engine.h"
#include "nse/local_shared_state.h"
#include "nse/tests/lua_harness.h"
#include "test/support/temp.h"

using common::HostResult;
using common::PortResult;
using common::ScriptResult;
using test_support::TempDir;

namespace {

// Records terminal output and host_done events; its clock is whatever the test sets.
class FakeEmbedder : public nse::Embedder {
public:
    void write(bool to_stderr, const std::string& text) override {
        (to_stderr ? err : out) += text;
    }
    double now() override { return clock; }
    void host_done(std::size_t position) override { done.push_back(position); }

    std::string out, err;
    double clock = 1'700'000'000.0;
    std::vector<std::size_t> done;
};

// What every test needs: scratch scripts, the fake, one shared state.
struct Fixture {
    TempDir dir{"nsefleet-engine"};
    FakeEmbedder emb;
    nse::LocalSharedState shared;

    // Writes scripts/<id>.nse and returns its path (a --script item).
    std::string script(const std::string& id, const std::string& body) {
        return dir.write(id + ".nse", body);
    }

    std::unique_ptr<nse::Engine> engine(nse::EngineConfig cfg) {
        auto e = nse::Engine::create(cfg, emb, shared);
        INFO("Engine::create: ", (e ? std::string() : e.message()), "\nstderr: ", emb.err);
        REQUIRE(e.is_ok());
        return std::move(*e);
    }
    std::unique_ptr<nse::Engine> engine(std::vector<std::string> scripts, int debugging = 0) {
        nse::EngineConfig cfg;
        cfg.scripts = std::move(scripts);
        cfg.debugging = debugging;
        return engine(cfg);
    }
};

using PortSpec = std::tuple<int, const char*, const char*>;  // number, protocol, state

HostResult make_host(std::size_t index, const std::string& address,
                     const std::vector<PortSpec>& ports) {
    HostResult h;
    h.index = index;
    h.address = address;
    h.status = "up";
    h.reason = "user-set";
    for (const auto& [number, proto, state] : ports) {
        PortResult p;
        p.number = static_cast<std::uint16_t>(number);
        p.protocol = proto;
        p.state = state;
        p.reason = "syn-ack";
        h.ports.push_back(p);
    }
    return h;
}

const PortResult& port_of(const HostResult& h, int number, const char* proto = "tcp") {
    for (const auto& p : h.ports)
        if (p.number == number && p.protocol == proto) return p;
    FAIL("no port " << number << "/" << proto);
    static const PortResult none;  // not reached: FAIL ends the test
    return none;
}

bool have_nselib() { return nse::test::have_stock_file("/usr/share/nmap/nselib/stdnse.lua"); }

// Every script needs these fields; `rules` supplies the rule functions and `action`.
std::string nse_script(const std::string& rules) {
    return "description = [[test script]]\n"
           "categories = {\"safe\"}\n"
           "local stdnse = require \"stdnse\"\n" +
           rules;
}

}  // namespace

TEST_CASE("engine: portrule and hostrule results reach the right host and port") {
    if (!have_nselib()) return;
    Fixture f;
    auto port_script = f.script("t-port", nse_script(R"lua(
portrule = function(host, port) return port.protocol == "tcp" end
action = function(host, port)
  return ("%s %s %d/%s %s"):format(SCRIPT_NAME, host.ip, port.number, port.protocol, port.state)
end
)lua"));
    auto host_script = f.script("t-host", nse_script(R"lua(
hostrule = function(host) return true end
action = function(host)
  local out = stdnse.output_table()
  out.ip = host.ip
  out.type = SCRIPT_TYPE
  return out
end
)lua"));
    auto e = f.engine({port_script, host_script});
    CHECK(e->has_scripts());
    CHECK_FALSE(e->has_prerule());
    CHECK_FALSE(e->has_postrule());

    std::vector<HostResult> hosts = {
        make_host(7, "127.0.0.1",
                  {{22, "tcp", "open"},
                   {80, "tcp", "open"},
                   {443, "tcp", "closed"},
                   {53, "udp", "open|filtered"}}),
        make_host(8, "127.0.0.2", {{8080, "tcp", "open"}}),
    };
    auto st = e->run_scan(hosts);
    REQUIRE_MESSAGE(st.is_ok(), st.message());

    const auto& h1 = hosts[0];
    REQUIRE(port_of(h1, 22).scripts.size() == 1);
    CHECK(port_of(h1, 22).scripts[0].id == "t-port");
    CHECK(port_of(h1, 22).scripts[0].output == "t-port 127.0.0.1 22/tcp open");
    CHECK_FALSE(port_of(h1, 22).scripts[0].structured.has_value());
    REQUIRE(port_of(h1, 80).scripts.size() == 1);
    CHECK(port_of(h1, 80).scripts[0].output == "t-port 127.0.0.1 80/tcp open");
    CHECK(port_of(h1, 443).scripts.empty());        // closed: no portrule instance
    CHECK(port_of(h1, 53, "udp").scripts.empty());  // eligible, but the rule said no

    const auto& h2 = hosts[1];
    REQUIRE(port_of(h2, 8080).scripts.size() == 1);
    CHECK(port_of(h2, 8080).scripts[0].output == "t-port 127.0.0.2 8080/tcp open");

    // A table result: text rendered as NSE does, plus the structure.
    for (const auto& h : hosts) {
        REQUIRE(h.hostscripts.size() == 1);
        const ScriptResult& r = h.hostscripts[0];
        CHECK(r.id == "t-host");
        CHECK(r.output == "\n  ip: " + h.address + "\n  type: hostrule");
        REQUIRE(r.structured.has_value());
        REQUIRE(r.structured->is_table());
        const auto& entries = r.structured->table().entries;
        REQUIRE(entries.size() == 2);
        CHECK(entries[0].key == "ip");
        CHECK(std::get<std::string>(entries[0].value.v) == h.address);
        CHECK(entries[1].key == "type");
    }
    // Each host is announced once, by its position in the group, when its threads are done.
    std::vector<std::size_t> done = f.emb.done;
    std::sort(done.begin(), done.end());
    CHECK(done == std::vector<std::size_t>{0, 1});
    CHECK(f.emb.err.empty());
}

TEST_CASE("engine: a failing script becomes an error result, not a crash") {
    if (!have_nselib()) return;
    Fixture f;
    auto boom = f.script("t-boom", nse_script(R"lua(
portrule = function(host, port) return port.number == 80 end
action = function(host, port) error("boom in the action") end
)lua"));
    auto rule_boom = f.script("t-rule-boom", nse_script(R"lua(
hostrule = function(host) error("boom in the rule") end
action = function(host) return "never" end
)lua"));
    auto quiet = f.script("t-try", nse_script(R"lua(
portrule = function(host, port) return port.number == 80 end
action = function(host, port)
  local try = nmap.new_try()
  try(false, "gave up politely")
  return "never"
end
)lua"));
    auto fine = f.script("t-fine", nse_script(R"lua(
portrule = function(host, port) return true end
action = function(host, port) return "fine" end
)lua"));

    SUBCASE("without -d: ERROR result; a new_try failure gives nothing") {
        auto e = f.engine({boom, rule_boom, quiet, fine});
        std::vector<HostResult> hosts = {make_host(0, "127.0.0.1", {{80, "tcp", "open"}})};
        auto st = e->run_scan(hosts);
        REQUIRE_MESSAGE(st.is_ok(), st.message());
        const auto& scripts = port_of(hosts[0], 80).scripts;
        REQUIRE(scripts.size() == 2);  // sorted by id when the host is done
        CHECK(scripts[0].id == "t-boom");
        CHECK(scripts[0].output == "ERROR: Script execution failed (use -d to debug)");
        CHECK(scripts[1].id == "t-fine");
        CHECK(scripts[1].output == "fine");
        REQUIRE(hosts[0].hostscripts.size() == 1);
        CHECK(hosts[0].hostscripts[0].id == "t-rule-boom");
        CHECK(hosts[0].hostscripts[0].output == "ERROR: Script execution failed (use -d to debug)");

        // The engine stays usable: the same scripts run again on another group.
        std::vector<HostResult> again = {make_host(0, "127.0.0.3", {{80, "tcp", "open"}})};
        REQUIRE(e->run_scan(again).is_ok());
        CHECK(port_of(again[0], 80).scripts.size() == 2);
    }
    SUBCASE("with -d: the traceback goes to stderr instead") {
        auto e = f.engine({boom, quiet, fine}, 1);
        std::vector<HostResult> hosts = {make_host(0, "127.0.0.1", {{80, "tcp", "open"}})};
        REQUIRE(e->run_scan(hosts).is_ok());
        const auto& scripts = port_of(hosts[0], 80).scripts;
        REQUIRE(scripts.size() == 1);
        CHECK(scripts[0].id == "t-fine");
        CHECK(f.emb.err.find("t-boom against 127.0.0.1:80 threw an error!") != std::string::npos);
        CHECK(f.emb.err.find("boom in the action") != std::string::npos);
        CHECK(f.emb.err.find("stack traceback") != std::string::npos);
        CHECK(f.emb.err.find("Finished t-try against 127.0.0.1:80. Reason: gave up politely") !=
              std::string::npos);
    }
}

TEST_CASE("engine: nmap.clock and nmap.clock_ms read the embedder's clock") {
    if (!have_nselib()) return;
    Fixture f;
    auto clock = f.script("t-clock", nse_script(R"lua(
prerule = function() return true end
action = function() return ("%.6f %.0f"):format(nmap.clock(), nmap.clock_ms()) end
)lua"));
    auto e = f.engine({clock});
    REQUIRE(e->has_prerule());

    f.emb.clock = 1'700'000'000.25;
    std::vector<ScriptResult> out;
    REQUIRE(e->run_prerule(out).is_ok());
    REQUIRE(out.size() == 1);
    CHECK(out[0].output == "1700000000.250000 1700000000250");

    f.emb.clock = 42.5;  // read at each call, not cached
    out.clear();
    REQUIRE(e->run_prerule(out).is_ok());
    REQUIRE(out.size() == 1);
    CHECK(out[0].output == "42.500000 42500");
}

TEST_CASE("engine: prerule and postrule phases share nmap.registry through the SharedState") {
    if (!have_nselib()) return;
    Fixture f;
    auto phases = f.script("t-phases", nse_script(R"lua(
prerule = function() return true end
postrule = function() return true end
action = function()
  if SCRIPT_TYPE == "prerule" then
    nmap.registry.t_phases = {pre = "ran", engine_args = nmap.registry.args.greeting}
    return "pre"
  end
  local r = nmap.registry.t_phases
  return ("post saw pre=%s args=%s"):format(r and r.pre or "nil", r and r.engine_args or "nil")
end
)lua"));
    auto port_only = f.script("t-port-only", nse_script(R"lua(
portrule = function() return true end
action = function() return "x" end
)lua"));

    nse::EngineConfig cfg;
    cfg.scripts = {phases, port_only};
    cfg.script_args = "greeting=hello";
    cfg.engine_id = 1;
    auto pre_engine = f.engine(cfg);
    CHECK(pre_engine->has_prerule());
    CHECK(pre_engine->has_postrule());

    // As worker/engine_host.cc does around a phase: take the shared registry in, run, publish.
    pre_engine->registry_refresh();
    std::vector<ScriptResult> pre;
    REQUIRE(pre_engine->run_prerule(pre).is_ok());
    pre_engine->registry_publish();
    REQUIRE(pre.size() == 1);  // the portrule-only script has no pre-scan instance
    CHECK(pre[0].id == "t-phases");
    CHECK(pre[0].output == "pre");

    // The exported registry carries the script's table but not the engine's own args.
    common::Value reg = f.shared.registry_snapshot();
    REQUIRE(reg.is_table());
    bool has_table = false, has_args = false;
    for (const auto& e : reg.table().entries) {
        has_table = has_table || e.key == "t_phases";
        has_args = has_args || e.key == "args";
    }
    CHECK(has_table);
    CHECK_FALSE(has_args);

    // Another engine (another worker, say) runs the post-scan phase with the merged registry.
    cfg.engine_id = 2;
    auto post_engine = f.engine(cfg);
    post_engine->registry_refresh();
    std::vector<ScriptResult> post;
    REQUIRE(post_engine->run_postrule(post).is_ok());
    REQUIRE(post.size() == 1);
    CHECK(post[0].output == "post saw pre=ran args=hello");
}

TEST_CASE("engine: stdnse.new_thread workers, nmap.mutex and nmap.condvar in one engine") {
    if (!have_nselib()) return;
    Fixture f;
    auto pool = f.script("t-pool", nse_script(R"lua(
prerule = function() return true end
action = function()
  local mutex = nmap.mutex("t-pool lock")
  local order, inside, most = {}, 0, 0
  local function work(n)
    local done = nmap.condvar("t-pool done")  -- its death broadcasts this condvar
    mutex "lock"
    inside = inside + 1
    if inside > most then most = inside end
    stdnse.sleep(0.02)
    order[#order + 1] = n
    inside = inside - 1
    mutex "done"
    done "signal"
  end
  local done = nmap.condvar("t-pool done")
  local threads, status = {}, {}
  for n = 1, 3 do
    local co, st = stdnse.new_thread(work, n)
    threads[co] = true
    status[n] = st
  end
  local bad, bad_status = stdnse.new_thread(function() error("worker boom") end)
  threads[bad] = true
  while next(threads) do
    for co in pairs(threads) do
      if coroutine.status(co) == "dead" then threads[co] = nil end
    end
    if next(threads) then done "wait" end
  end
  local state, err = bad_status()
  return ("order=%s most=%d first=%s bad=%s:%s"):format(table.concat(order, ","), most,
    status[1](), state, tostring(err):match("worker boom") or tostring(err))
end
)lua"));
    auto e = f.engine({pool});
    std::vector<ScriptResult> out;
    REQUIRE(e->run_prerule(out).is_ok());
    REQUIRE(out.size() == 1);
    // Mutual exclusion, FIFO grants in spawn order, and the failed worker's error kept for
    // its status function (workers never produce results of their own).
    CHECK(out[0].output == "order=1,2,3 most=1 first=dead bad=dead:worker boom");
    CHECK(f.emb.err.empty());
}

TEST_CASE("engine: --script-timeout stops a script that never yields, even inside pcall") {
    if (!have_nselib()) return;
    Fixture f;
    auto spin = f.script("t-spin", nse_script(R"lua(
portrule = function(host, port) return true end
action = function()
  while true do pcall(function() while true do end end) end
end
)lua"));
    auto fine = f.script("t-fine", nse_script(R"lua(
portrule = function(host, port) return true end
action = function() return "fine" end
)lua"));
    nse::EngineConfig cfg;
    cfg.scripts = {spin, fine};
    cfg.script_timeout = 0.2;
    cfg.debugging = 1;
    auto e = f.engine(cfg);
    std::vector<HostResult> hosts = {make_host(0, "127.0.0.1", {{80, "tcp", "open"}})};
    REQUIRE(e->run_scan(hosts).is_ok());
    const auto& scripts = port_of(hosts[0], 80).scripts;
    REQUIRE(scripts.size() == 1);  // the spinning script produced nothing
    CHECK(scripts[0].id == "t-fine");
    CHECK(f.emb.err.find("t-spin against 127.0.0.1:80 timed out") != std::string::npos);
    CHECK(f.emb.done == std::vector<std::size_t>{0});
}

TEST_CASE("engine: selection errors come back from Engine::create with the bad token") {
    if (!have_nselib()) return;
    Fixture f;
    auto no_action = f.script("t-no-action", nse_script("portrule = function() return true end\n"));
    nse::EngineConfig cfg;
    cfg.scripts = {no_action};
    auto e = nse::Engine::create(cfg, f.emb, f.shared);
    REQUIRE_FALSE(e.is_ok());
    CHECK(e.message().find("is missing required field: 'action'") != std::string::npos);

    cfg.scripts = {"t-no-such-script-anywhere"};
    auto missing = nse::Engine::create(cfg, f.emb, f.shared);
    REQUIRE_FALSE(missing.is_ok());
    CHECK(missing.message().find(
              "'t-no-such-script-anywhere' did not match a category, filename, or directory") !=
          std::string::npos);
}
