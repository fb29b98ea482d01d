#pragma once
// The fleet's worker process: engines that take host groups from a coordinator.
#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "common/transport/transport.h"

namespace worker {

// `nsefleet worker --connect tcp://ADDR:PORT [--engines N] [--key F --server-key F.pub |
// --insecure]`. Returns the process exit code.
int run_worker(const std::vector<std::string>& args);

// Raises the open-files limit to its hard maximum: every script socket is a descriptor.
void raise_fd_limit();

// A worker inside the `nsefleet scan` process: connects to `endpoint` (inproc://) on the
// coordinator's context and runs until `stop` is set (after the coordinator returned). A
// failed start (bad --script, ...) is reported in *fatal_out and the worker exits.
struct LocalWorker {
    common::transport::Context context;
    std::string endpoint;
    std::string name;  // in the coordinator's progress line
    unsigned engines = 1;
    int verbose = 0;  // > 0: the worker's log lines too
    const std::atomic<bool>* stop = nullptr;
    std::string* fatal_out = nullptr;
};
int run_local_worker(const LocalWorker& lw);

}  // namespace worker
