#pragma once
// The fleet's worker process: engines that take host groups from a coordinator.
#include <string>
#include <vector>

namespace worker {

// `nsefleet worker --connect tcp://ADDR:PORT [--engines N] [--key F --server-key F.pub |
// --insecure]`. Returns the process exit code.
int run_worker(const std::vector<std::string>& args);

}  // namespace worker
