// nsefleet: the Nmap Scripting Engine across a fleet. `nsefleet scan` runs the embedded
// coordinator with local worker engines.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ares.h>
#include <openssl/crypto.h>
#include <pcap/pcap.h>
#include <pcre2.h>

#include <cstdio>
#include <cstring>
#include <lua.hpp>
#include <string>
#include <vector>

#include "common/options.h"
#include "coordinator/commands.h"
#include "coordinator/embedded.h"
#include "worker/fleet_worker.h"

namespace {

void usage(FILE* f) {
    std::fprintf(
        f,
        "Usage: nsefleet scan [options] targets...      one process, one engine per core\n"
        "       nsefleet coordinator --listen tcp://ADDR:PORT --state DIR [options] targets...\n"
        "       nsefleet worker --connect tcp://ADDR:PORT [--engines N]\n"
        "       nsefleet status --connect tcp://ADDR:PORT\n"
        "       nsefleet keygen PREFIX\n"
        "       nsefleet scan --help     (every scan option)\n"
        "       nsefleet --version\n");
}

// `nsefleet --version`, also `-V`/`--version` after any subcommand, as nmap's -V.
int print_version() {
    char pcre[32] = "";
    pcre2_config(PCRE2_CONFIG_VERSION, pcre);
    std::printf(
        "nsefleet version 0.1.0 ( nmap-compatible NSE fleet; nmap 7.93's scripts and data )\n"
        "Compiled with: %s %s pcre2-%s c-ares-%s %s\n"
        "Data files: --datadir, $NSEFLEET_DATADIR, $NMAPDIR, /usr/share/nmap (nmap-common)\n",
        LUA_RELEASE, OpenSSL_version(OPENSSL_VERSION), pcre, ares_version(nullptr),
        pcap_lib_version());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    std::string cmd = argv[1];
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
        usage(stdout);
        std::fputs(common::scan_usage().c_str(), stdout);
        return 0;
    }
    if (cmd == "--version" || cmd == "version" || cmd == "-V") return print_version();
    std::vector<std::string> rest(argv + 2, argv + argc);
    for (const auto& a : rest)
        if (a == "-V" || a == "--version") return print_version();
    if (cmd == "coordinator") return coordinator::run_coordinator(rest);
    if (cmd == "worker") return worker::run_worker(rest);
    if (cmd == "status") return coordinator::run_status(rest);
    if (cmd == "keygen") return coordinator::run_keygen(rest);
    if (cmd != "scan") {
        std::fprintf(stderr, "nsefleet: unknown command '%s' (try 'nsefleet scan --help')\n",
                     cmd.c_str());
        return 2;
    }
    // --state DIR / --resume belong to the embedded coordinator, not to the nmap options.
    std::vector<std::string> args;
    coordinator::EmbeddedState state;
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--resume") {
            state.resume = true;
        } else if (a == "--fleet-debug") {
            state.fleet_debug = true;
        } else if (a == "--state" || a.rfind("--state=", 0) == 0) {
            if (a == "--state" && i + 1 >= argc) {
                std::fprintf(stderr, "nsefleet: --state needs a directory\n");
                return 2;
            }
            state.dir = a == "--state" ? argv[++i] : a.substr(8);
        } else {
            args.push_back(std::move(a));
        }
    }
    if (state.resume && state.dir.empty()) {
        std::fprintf(
            stderr,
            "nsefleet: --resume needs --state DIR (the directory of the interrupted scan)\n");
        return 2;
    }
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a != "--script-help" && a.rfind("--script-help=", 0) != 0) continue;
        std::string list = a.size() > 13 ? a.substr(14) : i + 1 < args.size() ? args[i + 1] : "";
        std::string datadir;
        for (std::size_t k = 0; k + 1 < args.size(); ++k)
            if (args[k] == "--datadir") datadir = args[k + 1];
        return coordinator::run_script_help(list, datadir);
    }
    if (state.resume && args.empty()) {  // nmap's --resume: the journal knows the command line
        state.journal_options = true;
        return coordinator::run_embedded(common::ScanOptions{}, state);
    }
    auto opts = common::parse_scan_args(args);
    if (!opts) {
        std::fprintf(stderr, "nsefleet: %s\n", opts.message().c_str());
        // nmap's exit statuses: 255 for an option it does not know, 1 for a refused value.
        return opts.message().rfind("unknown option", 0) == 0 ? 255 : 1;
    }
    if (opts->help) {
        std::fputs(common::scan_usage().c_str(), stdout);
        return 0;
    }
    if (opts->iflist) return coordinator::run_iflist();
    return coordinator::run_embedded(std::move(*opts), state);
}
