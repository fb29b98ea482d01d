// Placeholder until the fleet worker lands.
#include "worker/fleet_worker.h"

#include <cstdio>

namespace worker {

int run_worker(const std::vector<std::string>&) {
    std::fprintf(stderr, "nsefleet: 'worker' is not available in this build yet\n");
    return 2;
}

}  // namespace worker
