#include "common/options.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>

#include "common/targets.h"

namespace common {

namespace {

std::string trim(const std::string& s) {
    const char* ws = " \t\r\n";
    auto b = s.find_first_not_of(ws);
    if (b == std::string::npos) return "";
    auto e = s.find_last_not_of(ws);
    return s.substr(b, e - b + 1);
}

// Splits on every comma, trims each piece and drops empty ones.
std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        auto comma = s.find(',', start);
        if (comma == std::string::npos) comma = s.size();
        auto item = trim(s.substr(start, comma - start));
        if (!item.empty()) out.push_back(item);
        start = comma + 1;
    }
    return out;
}

// Non-negative decimal integer, the whole string, within int range.
bool parse_int(const std::string& s, int& out) {
    if (s.empty()) return false;
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v < 0) return false;
    out = v;
    return true;
}

// "22,80,1000-1010" (-PS and friends) into `out`; false when malformed.
bool parse_probe_ports(const std::string& spec, std::vector<int>& out) {
    for (const auto& item : split_commas(spec)) {
        auto dash = item.find('-');
        int lo, hi;
        if (dash == std::string::npos) {
            if (!parse_int(item, lo)) return false;
            hi = lo;
        } else if (!parse_int(item.substr(0, dash), lo) || !parse_int(item.substr(dash + 1), hi)) {
            return false;
        }
        if (lo > hi || hi > 65535) return false;
        for (int p = lo; p <= hi; ++p)
            if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    }
    return !out.empty();
}

// A positive decimal number (rates), the whole string.
bool parse_positive(const std::string& s, double& out) {
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !std::isfinite(v) || v <= 0) return false;
    out = v;
    return true;
}

Status bad_value(const std::string& flag, const std::string& v) {
    return Status::error("invalid value for " + flag + ": '" + v + "'");
}

void apply_timing(TimingProfile& t, int level) {
    // Roughly nmap's templates; T0/T1 delays are shortened so they stay usable.
    static const TimingProfile table[6] = {
        {0, 5.0, 2, 1, 5.0},      // paranoid
        {1, 3.0, 2, 1, 1.0},      // sneaky
        {2, 1.0, 2, 10, 0.4},     // polite
        {3, 1.0, 2, 512, 0.0},    // normal
        {4, 0.5, 1, 1024, 0.0},   // aggressive
        {5, 0.25, 1, 2048, 0.0},  // insane
    };
    t = table[level];
}

// "-T4", "-Tinsane", ... → level, or -1.
int timing_level(const std::string& v) {
    static const char* names[] = {"paranoid", "sneaky", "polite", "normal", "aggressive", "insane"};
    if (v.size() == 1 && v[0] >= '0' && v[0] <= '5') return v[0] - '0';
    for (int i = 0; i < 6; ++i)
        if (v == names[i]) return i;
    return -1;
}

// "-v", "-vv", "-v3" style counters (letter c). Returns false when malformed.
bool parse_level(const std::string& arg, char c, int& out) {
    std::string rest = arg.substr(2);
    if (rest.empty()) {
        out += 1;
        return true;
    }
    if (rest.find_first_not_of(c) == std::string::npos) {
        out += 1 + static_cast<int>(rest.size());
        return true;
    }
    int n;
    if (!parse_int(rest, n)) return false;
    out = n;
    return true;
}

// "5", "0.5": a rate as nmap prints it in its messages.
std::string number_text(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

}  // namespace

Result<double> parse_time_spec(const std::string& s) {
    std::size_t i = 0;
    bool digits = false;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])))
        ++i, digits = true;
    if (i < s.size() && s[i] == '.') {
        ++i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])))
            ++i, digits = true;
    }
    if (!digits) return Status::error("invalid time specification: '" + s + "'");
    double v = std::strtod(s.substr(0, i).c_str(), nullptr);
    std::string unit = s.substr(i);
    double mult;
    if (unit.empty() || unit == "s")
        mult = 1;
    else if (unit == "ms")
        mult = 0.001;
    else if (unit == "m")
        mult = 60;
    else if (unit == "h")
        mult = 3600;
    else
        return Status::error("invalid time specification: '" + s + "'");
    v *= mult;
    if (!std::isfinite(v)) return Status::error("invalid time specification: '" + s + "'");
    return v;
}

Result<ScanOptions> parse_scan_args(const std::vector<std::string>& args) {
    ScanOptions o;
    o.command_line = "nsefleet scan";
    for (const auto& a : args)
        o.command_line += " " + a;

    bool script_timeout_set = false, host_timeout_set = false;
    bool max_rtt_set = false, initial_rtt_set = false, max_scan_delay_set = false;
    int port_selections = 0;  // -p, -F, --top-ports: nmap allows one

    // Long options that take a value; the handler stores it or reports the bad value.
    using Handler = std::function<Status(const std::string& flag, const std::string& v)>;
    auto time_opt = [](double& dst, bool* seen) -> Handler {
        return [&dst, seen](const std::string& flag, const std::string& v) {
            auto t = parse_time_spec(v);
            if (!t) return bad_value(flag, v);
            dst = *t;
            if (seen) *seen = true;
            return Status::ok();
        };
    };
    auto int_opt = [](int& dst, int min) -> Handler {
        return [&dst, min](const std::string& flag, const std::string& v) {
            int n;
            if (!parse_int(v, n) || n < min) return bad_value(flag, v);
            dst = n;
            return Status::ok();
        };
    };
    auto list_opt = [](std::vector<std::string>& dst) -> Handler {
        return [&dst](const std::string& flag, const std::string& v) {
            auto items = split_commas(v);
            if (items.empty()) return bad_value(flag, v);
            dst.insert(dst.end(), items.begin(), items.end());
            return Status::ok();
        };
    };
    auto str_opt = [](std::string& dst) -> Handler {
        return [&dst](const std::string& flag, const std::string& v) {
            if (v.empty()) return bad_value(flag, v);
            dst = v;
            return Status::ok();
        };
    };
    auto rate_opt = [](double& dst) -> Handler {
        return [&dst](const std::string& flag, const std::string& v) {
            if (!parse_positive(v, dst))
                return Status::error("Argument to " + flag +
                                     " must be a positive floating-point number");
            return Status::ok();
        };
    };
    Handler source_port = [&](const std::string&, const std::string& v) {
        int n;
        if (!parse_int(v, n) || n > 65535)
            return Status::error("-g/--source-port must be a port number between 0 and 65535");
        o.packet.source_port = n;
        return Status::ok();
    };
    // Options of nmap for machinery nsefleet does not have: a one-line warning, the scan
    // goes on without them (nothing else changes meaning).
    auto unsupported_value = [&](const std::string& flag, const std::string& what) -> Handler {
        return [&o, flag, what](const std::string&, const std::string&) {
            o.warnings.push_back("WARNING: " + flag + " ignored: " + what +
                                 " is not supported by nsefleet.");
            return Status::ok();
        };
    };
    // ... and options whose absence would change what the scan means: refused.
    auto refused_value = [](const std::string& flag, const std::string& what) -> Handler {
        return [flag, what](const std::string&, const std::string&) {
            return Status::error(flag + ": " + what + " are not supported by nsefleet");
        };
    };
    std::map<std::string, Handler> with_value = {
        {"--exclude", list_opt(o.excludes)},
        {"--excludefile",
         [&](const std::string& f, const std::string& v) {
             if (v.empty()) return bad_value(f, v);
             o.exclude_files.push_back(v);
             return Status::ok();
         }},
        {"--top-ports",
         [&](const std::string& f, const std::string& v) {
             ++port_selections;
             return int_opt(o.top_ports, 1)(f, v);
         }},
        {"--script", list_opt(o.scripts)},
        {"--script-args",
         [&](const std::string&, const std::string& v) {
             if (!o.script_args.empty() && !v.empty()) o.script_args += ",";
             o.script_args += v;
             return Status::ok();
         }},
        {"--script-args-file", str_opt(o.script_args_file)},
        {"--script-timeout", time_opt(o.script_timeout, &script_timeout_set)},
        {"--host-timeout", time_opt(o.host_timeout, &host_timeout_set)},
        {"--min-hostgroup", int_opt(o.min_hostgroup, 1)},
        {"--max-hostgroup", int_opt(o.max_hostgroup, 1)},
        {"--datadir", str_opt(o.datadir)},
        {"--max-parallelism", int_opt(o.max_parallelism, 1)},
        {"--stats-every", time_opt(o.stats_every, nullptr)},
        {"--workers", int_opt(o.workers, 0)},
        {"--engine-memory", int_opt(o.engine_memory_mb, 1)},
        {"--dns-servers", str_opt(o.dns_servers)},
        {"--max-retries",
         [&](const std::string& f, const std::string& v) {
             o.timing.max_retries_set = true;
             return int_opt(o.timing.max_retries, 0)(f, v);
         }},
        {"--min-parallelism", int_opt(o.timing.min_parallelism, 1)},
        {"--min-rtt-timeout", time_opt(o.timing.min_rtt_timeout, nullptr)},
        {"--max-rtt-timeout", time_opt(o.timing.max_rtt_timeout, &max_rtt_set)},
        {"--initial-rtt-timeout", time_opt(o.timing.connect_timeout, &initial_rtt_set)},
        {"--scan-delay", time_opt(o.timing.scan_delay, nullptr)},
        {"--max-scan-delay", time_opt(o.timing.max_scan_delay, &max_scan_delay_set)},
        {"--min-rate", rate_opt(o.timing.min_rate)},
        {"--max-rate", rate_opt(o.timing.max_rate)},
        {"--ttl",
         [&](const std::string&, const std::string& v) {
             int n;
             if (!parse_int(v, n) || n > 255)
                 return Status::error("ttl option must be a number between 0 and 255 (inclusive)");
             o.packet.ttl = n;
             return Status::ok();
         }},
        {"--source-port", source_port},
        {"--data-length",
         [&](const std::string&, const std::string& v) {
             int n;
             if (!parse_int(v, n) || n > 65400)
                 return Status::error("data-length must be between 0 and 65400");
             o.packet.data_length = n;
             return Status::ok();
         }},
        {"--mtu",
         [&](const std::string&, const std::string& v) {
             int n;
             if (!parse_int(v, n) || n <= 0 || n % 8 != 0)
                 return Status::error("Data payload MTU must be >0 and multiple of 8");
             o.packet.mtu = n;
             return Status::ok();
         }},
        {"--spoof-mac", str_opt(o.packet.spoof_mac)},
        {"--stylesheet", str_opt(o.stylesheet)},
        {"--exclude-ports", str_opt(o.exclude_ports)},
        {"--port-ratio",
         [&](const std::string& f, const std::string& v) {
             double r;
             if (!parse_positive(v, r) && v != "0") return bad_value(f, v);
             o.warnings.push_back("WARNING: --port-ratio is not supported; use --top-ports.");
             return Status::ok();
         }},
        {"--nsock-engine",
         [&](const std::string& f, const std::string& v) {
             if (v != "epoll" && v != "poll" && v != "select")
                 return Status::error("Invalid nsock engine " + v + ".");
             (void)f;  // nsefleet's I/O is Asio's epoll reactor whatever is asked
             return Status::ok();
         }},
        {"--max-os-tries", unsupported_value("--max-os-tries", "OS detection")},
        {"--scanflags", refused_value("--scanflags", "custom TCP flag scans")},
        {"--proxies", refused_value("--proxies", "proxy chains")},
        {"--proxy", refused_value("--proxy", "proxy chains")},
        {"--data", refused_value("--data", "custom probe payloads")},
        {"--data-string", refused_value("--data-string", "custom probe payloads")},
        {"--ip-options", refused_value("--ip-options", "IP options")},
        {"--servicedb", str_opt(o.servicedb)},
        {"--versiondb", str_opt(o.versiondb)},
        {"--version-intensity",
         [&](const std::string& f, const std::string& v) {
             int n;
             if (!parse_int(v, n) || n < 0 || n > 9)
                 return Status::error("--version-intensity must be between 0 and 9, not '" + v +
                                      "'");
             o.version_intensity = n;
             (void)f;
             return Status::ok();
         }},
    };
    // Short options that take the next argument as their value.
    std::map<std::string, Handler> short_value = {
        {"-iL",
         [&](const std::string& f, const std::string& v) {
             if (v.empty()) return bad_value(f, v);
             o.input_files.push_back(v);
             return Status::ok();
         }},
        {"-oN", str_opt(o.out_normal)},
        {"-oX", str_opt(o.out_xml)},
        {"-oG", str_opt(o.out_grepable)},
        {"-oJ", str_opt(o.out_json)},
        {"-oA",
         [&](const std::string& f, const std::string& v) {
             if (v.empty() || v == "-") return bad_value(f, v);  // three files cannot share stdout
             o.out_normal = v + ".nmap";
             o.out_xml = v + ".xml";
             o.out_grepable = v + ".gnmap";
             return Status::ok();
         }},
        {"-oS", str_opt(o.out_skid)},
        {"-oM", str_opt(o.out_grepable)},
        {"-g", source_port},
        {"-D", str_opt(o.packet.decoys)},
        {"-iR",
         [&](const std::string&, const std::string& v) {
             int n;
             if (!parse_int(v, n) || n < 0)
                 return Status::error(
                     "ERROR: -iR argument must be the number of random IPs to "
                     "generate (0 for unlimited)");
             o.random_targets = n;
             return Status::ok();
         }},
        {"-e", str_opt(o.iface)},
        {"-S", str_opt(o.source)},
        {"-p",
         [&](const std::string& f, const std::string& v) {
             if (trim(v).empty()) return bad_value(f, v);
             o.port_spec = v;
             ++port_selections;
             return Status::ok();
         }},
    };

    bool only_targets = false;
    bool connect_given = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (only_targets || a.empty() || a[0] != '-' || a == "-") {
            o.targets.push_back(a);
            continue;
        }
        if (a == "--") {
            only_targets = true;
            continue;
        }
        auto next_value = [&](const std::string& flag, std::string& v) -> Status {
            if (i + 1 >= args.size()) return Status::error("option " + flag + " requires a value");
            v = args[++i];
            return Status::ok();
        };

        if (a.rfind("--", 0) == 0) {
            auto eq = a.find('=');
            std::string name = a.substr(0, eq);
            if (auto h = with_value.find(name); h != with_value.end()) {
                std::string v;
                if (eq != std::string::npos)
                    v = a.substr(eq + 1);
                else if (auto st = next_value(name, v); !st)
                    return st;
                if (auto st = h->second(name, v); !st) return st;
                continue;
            }
            if (eq != std::string::npos) return Status::error("unknown option '" + a + "'");
            if (a == "--open")
                o.open_only = true;
            else if (a == "--reason")
                o.reason = true;
            else if (a == "--help")
                o.help = true;
            else if (a == "--version-light")
                o.version_intensity = 2;
            else if (a == "--version-all")
                o.version_intensity = 9;
            else if (a == "--version-trace")
                o.version_trace = true;
            else if (a == "--allports")
                o.version_all_ports = true;
            else if (a == "--system-dns")
                o.system_dns = true;
            else if (a == "--script-trace")
                o.script_trace = true;
            else if (a == "--packet-trace")
                o.packet_trace = true;
            else if (a == "--resolve-all")
                o.resolve_all = true;
            else if (a == "--append-output")
                o.append_output = true;
            else if (a == "--no-stylesheet")
                o.stylesheet.clear();
            else if (a == "--webxml")
                o.stylesheet = "https://svn.nmap.org/nmap/docs/nmap.xsl";
            else if (a == "--badsum")
                o.packet.badsum = true;
            else if (a == "--privileged")
                o.privileged = true;
            else if (a == "--unprivileged")
                o.unprivileged = true;
            else if (a == "--iflist")
                o.iflist = true;
            else if (a == "--traceroute" || a == "--osscan-limit" || a == "--osscan-guess" ||
                     a == "--fuzzy")
                o.warnings.push_back("WARNING: " + a + " ignored: " +
                                     (a == "--traceroute" ? "traceroute" : "OS detection") +
                                     " is not supported by nsefleet.");
            else if (a == "--noninteractive" || a == "--release-memory" || a == "--log-errors" ||
                     a == "--send-eth" || a == "--send-ip" || a == "--disable-arp-ping" ||
                     a == "--discovery-ignore-rst" || a == "--defeat-rst-ratelimit" ||
                     a == "--defeat-icmp-ratelimit" || a == "--adler32" ||
                     a == "--randomize-hosts" || a == "--rH" || a == "--unique" ||
                     a == "--deprecated-xml-osclass" || a == "--script-updatedb")
                o.accepted.push_back(a);  // nmap's meaning holds or has nothing to act on
            else
                return Status::error("unknown option '" + a + "'");
            continue;
        }

        // Short options.
        if (auto h = short_value.find(a); h != short_value.end()) {
            std::string v;
            if (auto st = next_value(a, v); !st) return st;
            if (auto st = h->second(a, v); !st) return st;
            continue;
        }
        if (a.rfind("-p", 0) == 0) {  // attached form: -p22, -p-
            if (auto st = short_value["-p"]("-p", a.substr(2)); !st) return st;
            continue;
        }
        if (a.size() > 3 && (a.rfind("-o", 0) == 0 || a.rfind("-iL", 0) == 0)) {
            std::string flag = a.substr(0, 3);
            if (auto h = short_value.find(flag); h != short_value.end()) {
                if (auto st = h->second(flag, a.substr(3)); !st) return st;
                continue;
            }
        }
        if (a.rfind("-T", 0) == 0) {
            std::string v = a.substr(2);
            std::string given = a;
            if (v.empty()) {  // "-T 4"
                if (auto st = next_value("-T", v); !st) return st;
                given = "-T " + v;
            }
            int lvl = timing_level(v);
            if (lvl < 0)
                return Status::error(
                    "Unknown timing mode (-T argument '" + given +
                    "').  Use either \"Paranoid\", \"Sneaky\", \"Polite\", \"Normal\", "
                    "\"Aggressive\", \"Insane\" or a number from 0 (Paranoid) to 5 (Insane)");
            apply_timing(o.timing, lvl);
            continue;
        }
        if (a.rfind("-P", 0) == 0 && a.size() >= 3) {
            char kind = a[2];
            std::string ports = a.substr(3);
            auto probe_ports = [&](std::vector<int>& dst, const char* dflt) -> Status {
                if (!parse_probe_ports(ports.empty() ? dflt : ports, dst))
                    return Status::error("Bad port list for " + a.substr(0, 3) + ": '" + ports +
                                         "'");
                return Status::ok();
            };
            Status st = Status::ok();
            if (a == "-Pn" || a == "-PN" || a == "-P0")
                o.skip_discovery = true;
            else if (kind == 'S')
                st = probe_ports(o.discovery.syn, "80");
            else if (kind == 'A')
                st = probe_ports(o.discovery.ack, "80");
            else if (kind == 'U')
                st = probe_ports(o.discovery.udp, "40125");
            else if (a == "-PE" || a == "-PI")
                o.discovery.echo = true;
            else if (a == "-PP")
                o.discovery.timestamp = true;
            else if (a == "-PM")
                o.discovery.netmask = true;
            else if (a == "-PR")
                o.discovery.arp = true;
            else if (kind == 'Y' || kind == 'O')
                o.warnings.push_back("WARNING: " + a.substr(0, 3) +
                                     " ignored: " + (kind == 'Y' ? "SCTP" : "IP protocol") +
                                     " ping is not supported by nsefleet.");
            else
                return Status::error("unknown option '" + a + "'");
            if (!st) return st;
            continue;
        }
        if (a == "-f" || a == "-ff" || a == "-fff") {
            o.packet.mtu += 8 * static_cast<int>(a.size() - 1);  // nmap: each -f adds 8
            continue;
        }
        if (a == "-O") {
            o.warnings.push_back("WARNING: -O ignored: OS detection is not supported by nsefleet.");
            continue;
        }
        if (a == "-r") {
            o.accepted.push_back(a);  // nsefleet already scans ports in numeric order
            continue;
        }
        if (a.rfind("-v", 0) == 0) {
            if (!parse_level(a, 'v', o.verbosity))
                return Status::error("unknown option '" + a + "'");
            continue;
        }
        if (a.rfind("-d", 0) == 0) {
            if (!parse_level(a, 'd', o.debugging))
                return Status::error("unknown option '" + a + "'");
            continue;
        }
        if (a.size() > 2 && a.rfind("-s", 0) == 0) {
            // -s takes a set of scan-type letters, as in -sTC or -sCT.
            for (char c : a.substr(2)) {
                if (c == 'T')
                    o.connect_scan = connect_given = true;
                else if (c == 'S')
                    o.syn_scan = true;
                else if (c == 'U')
                    o.udp_scan = true;
                else if (c == 'C')
                    o.default_scripts = true;
                else if (c == 'V')
                    o.version_scan = true;
                else if (c == 'n' || c == 'P')
                    o.ping_only = true;
                else if (c == 'L')
                    o.list_scan = true;
                else if (std::string("AWMNFXIYZO").find(c) != std::string::npos)
                    return Status::error(std::string("-s") + c +
                                         ": scan type not supported by nsefleet (it has -sT, "
                                         "-sS, -sU, -sL, -sn, -sV and -sC)");
                else
                    return Status::error("unknown option '" + a + "'");
            }
            continue;
        }
        if (a == "-A")
            o.aggressive = o.version_scan = o.default_scripts = true;
        else if (a == "-Pn")
            o.skip_discovery = true;
        else if (a == "-n")
            o.no_dns = true;
        else if (a == "-R")
            o.dns_all = true;
        else if (a == "-6")
            o.ipv6 = true;
        else if (a == "-F")
            o.fast = true, ++port_selections;
        else if (a == "-b")
            return Status::error("-b: FTP bounce scans are not supported by nsefleet");
        else if (a == "-h")
            o.help = true;
        else
            return Status::error("unknown option '" + a + "'");
    }

    if (o.help || o.iflist) return o;
    o.verbosity = std::max(o.verbosity, o.debugging);  // as nmap: -d implies -v
    // Conflicts, refused with nmap's words.
    if (port_selections > 1)
        return Status::error("Only 1 -p option allowed, separate multiple ranges with commas.");
    if (o.syn_scan && connect_given)
        return Status::error(
            "You specified more than one type of TCP scan.  Please choose only one of -sA, -b, "
            "-sT, -sF, -sI, -sM, -sN, -sS, -sW, and -sX");
    if ((o.ping_only || o.list_scan) && (o.syn_scan || connect_given || o.udp_scan))
        return Status::error(
            "-sL and -sn (skip port scan) are not valid with any other scan types");
    if ((o.ping_only || o.list_scan) && port_selections > 0)
        return Status::error(
            "You cannot use -F (fast scan) or -p (explicit port selection) when not doing a port "
            "scan");
    if (o.timing.min_rate > 0 && o.timing.max_rate > 0 && o.timing.min_rate > o.timing.max_rate)
        return Status::error(
            "--min-rate=" + number_text(o.timing.min_rate) +
            " must be less than or equal to --max-rate=" + number_text(o.timing.max_rate));
    if (o.privileged && o.unprivileged)
        return Status::error("--privileged and --unprivileged are mutually exclusive");
    if (o.ipv6 && o.random_targets >= 0)
        return Status::error("-iR draws IPv4 addresses; it cannot be used with -6");
    if (o.list_scan) {  // nmap: a list scan sends nothing, whatever else was asked
        o.ping_only = false;
        o.version_scan = o.default_scripts = o.aggressive = false;
        o.scripts.clear();
    }
    // The fine timing options bound the template's values.
    if (max_rtt_set && !initial_rtt_set)
        o.timing.connect_timeout = std::min(o.timing.connect_timeout, o.timing.max_rtt_timeout);
    o.timing.min_rtt_timeout = std::min(o.timing.min_rtt_timeout, o.timing.max_rtt_timeout);
    o.timing.connect_timeout =
        std::clamp(o.timing.connect_timeout, o.timing.min_rtt_timeout,
                   std::max(o.timing.min_rtt_timeout, o.timing.max_rtt_timeout));
    if (max_scan_delay_set)  // else, as nmap, the ceiling rises to a larger --scan-delay
        o.timing.scan_delay = std::min(o.timing.scan_delay, o.timing.max_scan_delay);
    if (o.timing.min_parallelism > o.timing.max_parallel_connects)
        o.timing.max_parallel_connects = o.timing.min_parallelism;
    if (!o.packet.decoys.empty()) {
        if (auto d = parse_decoys(o.packet.decoys); !d) return d.status();
        if (connect_given || o.unprivileged)  // connect() cannot spoof, as in nmap
            o.warnings.push_back(
                "WARNING: -D applies to raw scans (-sS, -sU) only; this "
                "connect scan sends no decoy.");
    }
    if (!o.packet.spoof_mac.empty() && (connect_given || o.unprivileged))
        o.warnings.push_back(
            "WARNING: --spoof-mac applies to raw scans (-sS, -sU) only; this connect scan "
            "sends no frame.");
    // Like nmap: -sS or -sU replaces the default connect scan.
    if (o.syn_scan || o.udp_scan) o.connect_scan = connect_given;
    o.default_scan = !o.syn_scan && !o.udp_scan && !connect_given;
    if (o.no_dns && o.dns_all) o.dns_all = false;  // nmap: the later wins; -n is the safe one
    if (o.timing.level == 5) {
        if (!script_timeout_set) o.script_timeout = 600;
        if (!host_timeout_set) o.host_timeout = 900;
    }
    if (o.min_hostgroup && o.max_hostgroup && o.min_hostgroup > o.max_hostgroup)
        return Status::error("--min-hostgroup (" + std::to_string(o.min_hostgroup) +
                             ") is greater than --max-hostgroup (" +
                             std::to_string(o.max_hostgroup) + ")");
    if (o.workers > 1024)  // each is a thread with its own Lua state
        return Status::error("invalid value for --workers: '" + std::to_string(o.workers) +
                             "' (at most 1024)");
    if (o.targets.empty() && o.input_files.empty() && o.random_targets < 0)
        return Status::error("no targets specified");
    if (o.skip_discovery && !o.list_scan && (o.verbosity > 0 || o.debugging > 0))
        o.warnings.insert(o.warnings.begin(),  // nmap says it first
                          "Host discovery disabled (-Pn). All addresses will be marked 'up' and "
                          "scan times may be slower.");
    return o;
}

std::string scan_usage() {
    return R"(Usage: nsefleet scan [Options] {target specification}
TARGET SPECIFICATION:
  Can pass hostnames, IP addresses, networks, etc.
  Ex: localhost, 127.0.0.1, 127.0.0.0/24, 127.0.1-3.1-254, ::1 (with -6)
  -iL <inputfilename>: Input from list of hosts/networks ('-' = stdin)
  --exclude <host1[,host2][,host3],...>: Exclude hosts/networks
  --excludefile <exclude_file>: Exclude list from file
  -iR <num hosts>: Choose random public IPv4 targets (0: without end, until Ctrl-C)
  --exclude-ports <ports>: Ports never scanned (same syntax as -p)
HOST DISCOVERY:
  -sL: List Scan - simply list targets to scan (names by reverse DNS unless -n)
  -sn (also -sP): Ping Scan - disable port scan
  -Pn (also -PN, -P0): Treat all hosts as online -- skip host discovery
  -PS/PA/PU[portlist]: TCP SYN/ACK or UDP discovery to given ports (raw; -PS/-PA
      ports are also what connect() discovery tries without root)
  -PE/PP/PM: ICMP echo, timestamp, and netmask request discovery probes (raw)
  -n/-R: Never do DNS resolution/Always resolve [default: sometimes]
  --dns-servers <serv1[,serv2],...>: Specify custom DNS servers
  --system-dns: Use OS's DNS resolver
  --resolve-all: If hostname resolves to multiple IP addresses, scan all of them
SCAN TECHNIQUES:
  -sS: TCP SYN scan (the default as root; falls back to -sT without raw privileges)
  -sT: TCP connect scan (the default without raw privileges)
  -sU: UDP scan (needs root)
PORT SPECIFICATION AND SCAN ORDER:
  -p <port ranges>: Only scan specified ports
    Ex: -p22; -p1-65535; -p-; -p U:53,T:21-25,80; -p http*
  -F: Fast mode - Scan fewer ports than the default scan (top 100)
  --top-ports <number>: Scan <number> most common ports
SERVICE/VERSION DETECTION:
  -sV: Probe open ports to determine service/version info
  --version-intensity <level>: Set from 0 (light) to 9 (try all probes)
  --version-light: Limit to most likely probes (intensity 2)
  --version-all: Try every single probe (intensity 9)
  --version-trace: Show detailed version scan activity (for debugging)
  --allports: Also probe the ports nmap-service-probes excludes
SCRIPT SCAN:
  -sC: equivalent to --script=default
  --script=<Lua scripts>: <Lua scripts> is a comma separated list of
           directories, script-files or script-categories
  --script-args=<n1=v1,[n2=v2,...]>: provide arguments to scripts
  --script-args-file=filename: provide NSE script args in a file
  --script-timeout <time>: Stop scripts that run longer than <time>
  --script-trace: Show all data sent and received
  --script-help=<Lua scripts>: Show help about scripts (no scan).
TIMING AND PERFORMANCE:
  Options which take <time> are in seconds, or append 'ms' (milliseconds),
  's' (seconds), 'm' (minutes), or 'h' (hours) to the value (e.g. 30m).
  -T<0-5>: Set timing template (higher is faster); also -T<name>:
           paranoid, sneaky, polite, normal, aggressive, insane
  --min-hostgroup/max-hostgroup <size>: Parallel host scan group sizes
  --min-parallelism <numprobes>: Probes (and script sockets) kept in flight at least
  --max-parallelism <numprobes>: Script socket slots per engine (default: adaptive)
  --min-rtt-timeout/max-rtt-timeout/initial-rtt-timeout <time>: Probe round trip time
  --max-retries <tries>: Caps number of port scan probe retransmissions
  --scan-delay/--max-scan-delay <time>: Adjust delay between probes
  --min-rate <number>: Keep enough probes in flight for <number> per second
  --max-rate <number>: Send probes no faster than <number> per second
  --host-timeout <time>: Give up on target after this long
  --stats-every <time>: Print progress at this interval
  --workers <number>: Number of scan engines (default: one per core)
  --engine-memory <MiB>: Memory cap of each engine's Lua state (default 1024)
  --state <dir>: Keep the scan journal in <dir> (default: a temporary directory)
  --resume: With --state, continue the scan journaled there (nothing else needed)
FIREWALL/IDS EVASION AND SPOOFING (raw scans):
  -f; --mtu <val>: fragment packets (-f: 8 data bytes per fragment, -ff: 16)
  -g/--source-port <portnum>: Use given port number
  --data-length <num>: Append random data to sent packets
  --ttl <val>: Set IP time-to-live field
  --badsum: Send packets with a bogus TCP/UDP/ICMP checksum
  -D <decoy1,decoy2[,ME],...>: Cloak a raw scan with decoys (IPv4, ME, RND[:N])
  --spoof-mac <mac address/prefix/vendor name>: Spoof your MAC address (raw scans'
      frames; 0 = random)
OUTPUT:
  -oN/-oX/-oG/-oJ/-oS <file>: Output scan in normal, XML, grepable, JSON or
     s|<rIpt kIddi3 format to the given filename ('-' = stdout)
  -oA <basename>: Output in the three major formats at once
     (<basename>.nmap, <basename>.xml, <basename>.gnmap)
  -v: Increase verbosity level (use -vv, or -v<level>, for more effect)
  -d: Increase debugging level (use -dd, or -d<level>, for more effect)
  --reason: Display the reason a port is in a particular state
  --open: Only show open (or possibly open) ports
  --packet-trace: Show all packets sent and received (CONN lines for -sT)
  --iflist: Print host interfaces and routes
  --append-output: Append to rather than clobber specified output files
  --stylesheet <path/URL>, --webxml, --no-stylesheet: the XML's stylesheet
  --fleet-debug: also the embedded coordinator's and workers' own log lines
MISC:
  -6: Enable IPv6 scanning
  -A: Enable version detection and script scanning (-sV -sC; OS detection and
      traceroute are not supported)
  -e <iface>: Use specified interface (raw scans)
  -S <IP_Address>: Spoof source address (raw scans)
  --datadir <dirname>: Specify custom Nmap data file location
  --servicedb/--versiondb <file>: Use this nmap-services / nmap-service-probes
  --privileged/--unprivileged: Assume raw sockets work / never use them
  -O, --traceroute, --osscan-*: accepted with a warning (not supported)
  -sA/-sW/-sM/-sN/-sF/-sX/-sI/-sY/-sZ/-sO/-b, --scanflags, --proxies, --data*,
  --ip-options: refused (not supported; they would change what the scan means)
  -h, --help: Print this help summary page.
EXAMPLES:
  nsefleet scan -v -sC localhost
  nsefleet scan -p 22,80 --script http-title,ssh-hostkey 127.0.0.1
  nsefleet scan -T4 -F --script "default" -oA out 127.0.0.0/28
All `--option value` forms also accept `--option=value`.
)";
}

}  // namespace common
