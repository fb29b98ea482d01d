#pragma once
// The worker process's command line (`nsefleet worker ...`) and its in-process form.
#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/transport/transport.h"
#include "common/wire/messages.h"

namespace worker::fleet {

// Exit codes: 0 scan done or coordinator said Bye; 1 set-up failure (options, data files,
// script selection); 2 usage; 3 coordinator unreachable, silent or refusing us; 130 signal.
constexpr int kExitFailure = 1, kExitUsage = 2, kExitCoordinator = 3, kExitInterrupted = 130;
using common::wire::kEngineBits;

struct Args {
    std::string connect;
    unsigned engines = 0;  // 0 = one per core
    std::string key, server_key, name, datadir;
    bool insecure = false;
    bool sink = false;  // benchmarks: acknowledge leases without scanning
    int verbose = 0;
    double coordinator_timeout = 60;  // seconds of silence before giving up
    double reply_timeout = 10;        // seconds a synchronous shared-state call may wait
    // In-process (`nsefleet scan`): the coordinator's context, a stop flag its owner sets,
    // and where the reason of a failed start goes (printed by the coordinator instead).
    std::optional<common::transport::Context> context;
    const std::atomic<bool>* stop = nullptr;
    std::string* fatal_out = nullptr;
    bool quiet = false;  // informational log lines only with -v
};

extern const char* const kUsage;

// Parses `nsefleet worker` arguments; the error says what is wrong (print kUsage with it).
common::Result<Args> parse_args(const std::vector<std::string>& args);

}  // namespace worker::fleet
