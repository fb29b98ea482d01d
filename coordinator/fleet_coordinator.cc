// Placeholder until the fleet coordinator lands.
#include "coordinator/fleet_coordinator.h"

#include <cstdio>

namespace coordinator {

namespace {
int not_yet(const char* what) {
    std::fprintf(stderr, "nsefleet: '%s' is not available in this build yet\n", what);
    return 2;
}
}  // namespace

int run_coordinator(const std::vector<std::string>&) { return not_yet("coordinator"); }
int run_status(const std::vector<std::string>&) { return not_yet("status"); }
int run_keygen(const std::vector<std::string>&) { return not_yet("keygen"); }

}  // namespace coordinator
