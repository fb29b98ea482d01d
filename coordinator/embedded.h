#pragma once
// `nsefleet scan`: the fleet's coordinator and an in-process worker in one process.
#include <string>

#include "common/options.h"

namespace coordinator {

struct EmbeddedState {
    std::string dir;      // --state DIR; empty: a temporary directory, removed at the end
    bool resume = false;  // --resume (with --state): continue the scan journaled there
    // --resume with nothing else: the options come from the journal alone.
    bool journal_options = false;
    bool fleet_debug = false;  // --fleet-debug: the coordinator's and workers' own log lines
};

// Runs the whole scan and writes every requested output. Returns the process exit code;
// errors are printed as one line on stderr.
int run_embedded(common::ScanOptions opts, const EmbeddedState& state = {});

}  // namespace coordinator
