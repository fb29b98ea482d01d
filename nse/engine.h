#pragma once
// One NSE engine: a lua_State, an event loop and a script scheduler, driven by one thread.
#include <memory>
#include <string>
#include <vector>

#include "common/datafiles.h"
#include "common/result.h"
#include "common/status.h"
#include "nse/embedder.h"

namespace asio {
class io_context;
}

namespace nse {

struct EngineConfig {
    std::uint64_t engine_id = 1;
    std::vector<std::string> scripts;  // --script items (already split on commas)
    bool default_scripts = false;      // -sC
    std::string script_args;           // --script-args text
    std::string script_args_file;      // --script-args-file path
    double script_timeout = 0;         // seconds, 0 = none
    double host_timeout = 0;           // seconds, 0 = none
    int verbosity = 0, debugging = 0, timing_level = 3;
    int version_intensity = 7;  // --version-intensity (nmap.version_intensity())
    bool script_trace = false;  // --script-trace
    bool packet_trace = false;  // --packet-trace (nmap's NSOCK lines for script sockets)
    int max_threads = 0;        // concurrent script threads (0 = 4096)
    int socket_slots = 0;       // --max-parallelism: fixed script-socket slots (0 = adaptive)
    int socket_min = 0;         // --min-parallelism: the adaptive window's floor (0 = by -T)
    bool announce = false;      // prints "NSE: Loaded N scripts for scanning." (-v, -d)
    std::size_t memory_limit = 1024u << 20;  // bytes for the whole lua_State
    std::string datadir;                     // --datadir
    bool ipv6 = false;
    std::string iface;  // -e
};

class Engine {
public:
    // Creates the Lua state, loads the nselib driver pieces and selects the scripts.
    // Errors (unknown script, script syntax error, bad script args) carry one line naming
    // the bad token.
    static common::Result<std::unique_ptr<Engine>> create(const EngineConfig& cfg,
                                                          Embedder& embedder, SharedState& shared);
    virtual ~Engine() = default;

    virtual bool has_scripts() const = 0;
    virtual bool has_prerule() const = 0;
    virtual bool has_postrule() const = 0;
    // The ids of the selected scripts, in selection order.
    virtual std::vector<std::string> script_ids() const = 0;
    // --script-help text for the selected scripts (nmap's layout).
    virtual std::string script_help() = 0;

    // Runs the pre-scan / post-scan phase; results are appended to `out`.
    virtual common::Status run_prerule(std::vector<common::ScriptResult>& out) = 0;
    virtual common::Status run_postrule(std::vector<common::ScriptResult>& out) = 0;
    // Runs hostrule/portrule scripts on a group of hosts. Scripts may change port states and
    // services; results land in the hosts' ports and hostscripts.
    virtual common::Status run_scan(std::vector<common::HostResult>& hosts) = 0;

    // nmap.registry and the fleet's (docs/fleet.md "The shared registry"): publish sends
    // this engine's changes since the last exchange to the shared state; refresh publishes,
    // then takes in what other engines published since, in place.
    virtual void registry_publish() = 0;
    virtual void registry_refresh() = 0;

    virtual asio::io_context& io() = 0;
};

}  // namespace nse
