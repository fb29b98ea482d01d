#include "worker/fleet/args.h"

#include <cstdlib>

#include "common/options.h"

namespace worker::fleet {

const char* const kUsage =
    "usage: nsefleet worker --connect tcp://ADDR:PORT [--engines N]\n"
    "                       [--key FILE.key --server-key FILE.pub | --insecure]\n"
    "                       [--name NAME] [--datadir DIR] [--coordinator-timeout TIME]\n"
    "                       [--reply-timeout TIME] [--sink] [-v]\n"
    "  --sink  acknowledge every lease at once without scanning (coordinator benchmarks;\n"
    "          pair with `nsefleet coordinator --plan-only`)\n";

common::Result<Args> parse_args(const std::vector<std::string>& args) {
    Args a;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& s = args[i];
        auto value = [&](const char* what) -> common::Result<std::string> {
            if (i + 1 >= args.size()) return common::Status::error(s + " needs " + what);
            return args[++i];
        };
        auto time_value = [&](double& out) -> common::Status {
            auto v = value("a time");
            if (!v) return v.status();
            auto t = common::parse_time_spec(*v);
            if (!t || *t <= 0)
                return common::Status::error("invalid time for " + s + ": '" + *v + "'");
            out = *t;
            return common::Status::ok();
        };
        if (s == "--connect") {
            auto v = value("an endpoint");
            if (!v) return v.status();
            a.connect = *v;
        } else if (s == "--engines") {
            auto v = value("a number");
            if (!v) return v.status();
            char* end = nullptr;
            long n = std::strtol(v->c_str(), &end, 10);
            if (v->empty() || *end || n < 1 || n > 1024)
                return common::Status::error("invalid --engines '" + *v +
                                             "' (1..1024)");  // < 2^kEngineBits
            a.engines = static_cast<unsigned>(n);
        } else if (s == "--key" || s == "--server-key" || s == "--name" || s == "--datadir") {
            auto v = value("an argument");
            if (!v) return v.status();
            (s == "--key"          ? a.key
             : s == "--server-key" ? a.server_key
             : s == "--name"       ? a.name
                                   : a.datadir) = *v;
        } else if (s == "--insecure") {
            a.insecure = true;
        } else if (s == "--sink") {
            a.sink = true;
        } else if (s == "--coordinator-timeout") {
            if (auto st = time_value(a.coordinator_timeout); !st) return st;
        } else if (s == "--reply-timeout") {
            if (auto st = time_value(a.reply_timeout); !st) return st;
        } else if (s == "-v") {
            ++a.verbose;
        } else {
            return common::Status::error("unknown worker option '" + s + "'");
        }
    }
    if (a.connect.empty()) return common::Status::error("--connect ENDPOINT is required");
    if (!a.key.empty() && a.insecure)
        return common::Status::error("--key and --insecure exclude each other");
    if (!a.key.empty() != !a.server_key.empty())
        return common::Status::error("--key and --server-key go together");
    return a;
}

}  // namespace worker::fleet
