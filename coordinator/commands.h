#pragma once
// Command entry points around the coordinator: `nsefleet coordinator`, `nsefleet status` and
// `nsefleet keygen`. Each parses its own arguments and returns the process exit code
// (2: usage); errors are printed as one line on stderr.
#include <string>
#include <vector>

namespace coordinator {

// `nsefleet coordinator --listen tcp://ADDR:PORT --state DIR [--resume] [--key F --allow DIR |
// --insecure] [--lease-timeout T] [--plan-only] [scan options] targets...`.
int run_coordinator(const std::vector<std::string>& args);

// `nsefleet status --connect tcp://ADDR:PORT [--key F --server-key F | --insecure]
// [--timeout T]`: prints the coordinator's progress.
int run_status(const std::vector<std::string>& args);

// `nsefleet keygen PREFIX`: writes PREFIX.key (mode 0600) and PREFIX.pub.
int run_keygen(const std::vector<std::string>& args);

// `nsefleet scan --script-help SCRIPTS [--datadir DIR]`: each selected script's categories,
// NSEDoc address and description, as nmap prints them; no scan.
int run_script_help(const std::string& scripts, const std::string& datadir);

// `nsefleet scan --iflist`: interfaces and routes as nmap's --iflist lays them out; no scan.
int run_iflist();

}  // namespace coordinator
