#pragma once
// The fleet's coordinator (a process of its own, or the heart of `nsefleet scan`): one
// thread, one ROUTER socket, the RocksDB store as the source of truth. Workers pull host
// groups (leases, GroupBook), stream host results (committed exactly once per host index)
// and use it as the fleet's mutex/condvar/registry service (SharedService).
// docs/protocol.md is the wire contract; docs/fleet.md says how to run a fleet; the command
// entry points are in coordinator/commands.h.
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/options.h"
#include "common/target_cursor.h"
#include "common/transport/transport.h"

namespace coordinator {

struct CoordinatorConfig {
    std::string listen, state, key_file, allow_dir;
    bool resume = false, insecure = false;
    bool plan_only = false;  // benchmarks: GroupDone alone completes a group (sink workers)
    double lease_timeout = 10;
    std::vector<std::string> scan_args;  // nmap-style options and targets (parsed here)

    // In-process use by `nsefleet scan`:
    std::optional<common::ScanOptions> options;         // already parsed (scan_args unused)
    std::optional<common::transport::Context> context;  // shared with the workers (inproc://)
    std::size_t group_size = 0;        // hosts per group; 0: 16 (both within --min/--max-hostgroup)
    bool quiet = false;                // no informational log lines on stderr
    bool fleet_debug = false;          // with quiet: the log lines after all (--fleet-debug)
    bool finish_on_interrupt = false;  // SIGINT/SIGTERM: write what is done (exit 130), no resume
    // Polled by the main loop: a non-empty answer ends the scan with that error (the
    // in-process workers failed to start, e.g. a bad --script).
    std::function<std::string()> halted;
};

// The target specs of a scan, as the cursor walks them. `random_seed` draws -iR 0's endless
// addresses (the coordinator derives it from the journaled scan id, so a resume continues
// the same sequence).
common::TargetSources target_sources(const common::ScanOptions& o, std::uint64_t random_seed = 0);

// Runs a coordinator until the scan is done, interrupted or failed. Returns the exit code;
// errors are printed as one line on stderr.
int run_coordinator(CoordinatorConfig cfg);

}  // namespace coordinator
