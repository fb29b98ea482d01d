#pragma once
// The fleet's coordinator process and the small commands around it.
#include <string>
#include <vector>

namespace coordinator {

// `nsefleet coordinator --listen tcp://ADDR:PORT --state DIR [--resume] [--key F --allow DIR |
// --insecure] [scan options] targets...`. Returns the process exit code.
int run_coordinator(const std::vector<std::string>& args);

// `nsefleet status --connect tcp://ADDR:PORT [...]`: prints the coordinator's progress.
int run_status(const std::vector<std::string>& args);

// `nsefleet keygen PREFIX`: writes PREFIX.key (mode 0600) and PREFIX.pub.
int run_keygen(const std::vector<std::string>& args);

}  // namespace coordinator
