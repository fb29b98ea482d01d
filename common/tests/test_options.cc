#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/options.h"

using common::parse_scan_args;
using common::parse_time_spec;
using common::ScanOptions;

namespace {

ScanOptions ok(std::vector<std::string> args) {
    auto r = parse_scan_args(args);
    INFO("error: ", (r ? std::string() : r.message()));
    REQUIRE(r.is_ok());
    return *r;
}

// The error message, which must name `token`.
std::string err(std::vector<std::string> args, const std::string& token) {
    auto r = parse_scan_args(args);
    REQUIRE_FALSE(r.is_ok());
    INFO("message: ", r.message());
    CHECK(r.message().find(token) != std::string::npos);
    CHECK(r.message().find('\n') == std::string::npos);
    return r.message();
}

}  // namespace

TEST_CASE("parse_time_spec accepts nmap time syntax") {
    struct {
        const char* in;
        double want;
    } cases[] = {{"30", 30},   {"30s", 30},  {"500ms", 0.5}, {"5m", 300},
                 {"2h", 7200}, {"1.5", 1.5}, {"0", 0},       {".5s", 0.5}};
    for (auto& c : cases) {
        auto r = parse_time_spec(c.in);
        INFO(c.in);
        REQUIRE(r.is_ok());
        CHECK(*r == doctest::Approx(c.want));
    }
    for (const char* bad : {"", "-5", "5x", "s", "1.2.3", "5 s", "ms", "1e3", "inf"}) {
        auto r = parse_time_spec(bad);
        INFO(bad);
        CHECK_FALSE(r.is_ok());
        if (*bad) CHECK(r.message().find(std::string("'") + bad + "'") != std::string::npos);
    }
}

TEST_CASE("targets, command line and defaults") {
    auto o = ok({"127.0.0.1", "localhost", "127.0.1.0/24"});
    CHECK(o.targets == std::vector<std::string>{"127.0.0.1", "localhost", "127.0.1.0/24"});
    CHECK(o.command_line == "nsefleet scan 127.0.0.1 localhost 127.0.1.0/24");
    CHECK(o.timing.level == 3);
    CHECK(o.timing.connect_timeout == doctest::Approx(1.0));
    CHECK(o.timing.max_retries == 2);
    CHECK(o.timing.max_parallel_connects == 512);
    CHECK(o.script_timeout == 0);
    CHECK(o.host_timeout == 0);
    CHECK(o.connect_scan);
    CHECK_FALSE(o.scripts_requested());
    CHECK_FALSE(o.help);

    err({}, "no targets specified");
    err({"-sT", "-Pn"}, "no targets specified");
    auto il = ok({"-iL", "hosts.txt"});
    CHECK(il.targets.empty());
    CHECK(il.input_files == std::vector<std::string>{"hosts.txt"});
    CHECK(ok({"-iLlist"}).input_files == std::vector<std::string>{"list"});
    // "--" ends options.
    CHECK(ok({"--", "-x"}).targets == std::vector<std::string>{"-x"});
}

TEST_CASE("excludes") {
    auto o = ok({"--exclude", "127.0.0.2, 127.0.0.3,,", "--exclude=127.0.0.9", "--excludefile",
                 "ex.txt", "--excludefile=ex2.txt", "t"});
    CHECK(o.excludes == std::vector<std::string>{"127.0.0.2", "127.0.0.3", "127.0.0.9"});
    CHECK(o.exclude_files == std::vector<std::string>{"ex.txt", "ex2.txt"});
    err({"t", "--exclude"}, "--exclude");
    err({"t", "--exclude", ","}, "--exclude");
}

TEST_CASE("port flags") {
    CHECK(ok({"-p", "22,80", "t"}).port_spec == "22,80");
    CHECK(ok({"-p22", "t"}).port_spec == "22");
    CHECK(ok({"-p-", "t"}).port_spec == "-");
    CHECK(ok({"-p", "T:80,U:53", "t"}).port_spec == "T:80,U:53");
    CHECK(ok({"-F", "t"}).fast);
    CHECK(ok({"--top-ports", "20", "t"}).top_ports == 20);
    CHECK(ok({"--top-ports=5", "t"}).top_ports == 5);
    err({"t", "--top-ports", "x"}, "'x'");
    err({"t", "--top-ports", "0"}, "--top-ports");
    err({"t", "--top-ports", "-3"}, "'-3'");
    err({"t", "-p"}, "-p");
}

TEST_CASE("scan kinds and simple switches") {
    auto o = ok({"-sT", "-Pn", "-n", "-6", "--open", "--reason", "::1"});
    CHECK(o.connect_scan);
    CHECK(o.skip_discovery);
    CHECK(o.no_dns);
    CHECK(o.ipv6);
    CHECK(o.open_only);
    CHECK(o.reason);
    CHECK(ok({"-sn", "t"}).ping_only);
    CHECK(ok({"-sC", "t"}).default_scripts);
    CHECK(ok({"-sC", "t"}).scripts_requested());
    auto both = ok({"-sCT", "t"});
    CHECK(both.default_scripts);
    CHECK(both.connect_scan);
    err({"t", "-sX"}, "-sX");
    err({"t", "-sQ"}, "'-sQ'");
    err({"t", "--bogus"}, "unknown option '--bogus'");
    err({"t", "--bogus=1"}, "'--bogus=1'");
    err({"t", "-Z"}, "'-Z'");
    err({"t", "--open=1"}, "--open=1");
}

TEST_CASE("script options") {
    auto o = ok(
        {"--script", "http-title, ssh-hostkey,,", "--script=banner", "--script", "default", "t"});
    CHECK(o.scripts == std::vector<std::string>{"http-title", "ssh-hostkey", "banner", "default"});
    CHECK(o.scripts_requested());
    auto a = ok({"--script-args", "user=a", "--script-args=pass=b", "t"});
    CHECK(a.script_args == "user=a,pass=b");
    CHECK(ok({"--script-args-file", "args.txt", "t"}).script_args_file == "args.txt");
    CHECK(ok({"--script-args-file=f2", "t"}).script_args_file == "f2");
    CHECK(ok({"--script-timeout", "30s", "t"}).script_timeout == doctest::Approx(30));
    CHECK(ok({"--script-timeout=2m", "t"}).script_timeout == doctest::Approx(120));
    CHECK(ok({"--host-timeout", "500ms", "t"}).host_timeout == doctest::Approx(0.5));
    err({"t", "--script-timeout", "5x"}, "'5x'");
    err({"t", "--host-timeout=-1"}, "'-1'");
    err({"t", "--script"}, "--script");
    err({"t", "--script", " , "}, "--script");
}

TEST_CASE("timing templates") {
    auto t0 = ok({"-T0", "t"}).timing;
    CHECK(t0.level == 0);
    CHECK(t0.scan_delay == doctest::Approx(5.0));
    CHECK(t0.max_parallel_connects == 1);
    auto t1 = ok({"-Tsneaky", "t"}).timing;
    CHECK(t1.level == 1);
    CHECK(t1.scan_delay == doctest::Approx(1.0));
    CHECK(ok({"-Tpolite", "t"}).timing.level == 2);
    auto t3 = ok({"-T4", "-Tnormal", "t"}).timing;  // last one wins
    CHECK(t3.level == 3);
    CHECK(t3.connect_timeout == doctest::Approx(1.0));
    CHECK(t3.max_retries == 2);
    CHECK(t3.max_parallel_connects == 512);
    auto t4 = ok({"-Taggressive", "t"}).timing;
    CHECK(t4.level == 4);
    CHECK(t4.connect_timeout == doctest::Approx(0.5));
    CHECK(t4.max_retries == 1);
    CHECK(t4.max_parallel_connects == 1024);
    auto o5 = ok({"-T5", "t"});
    CHECK(o5.timing.connect_timeout == doctest::Approx(0.25));
    CHECK(o5.timing.max_parallel_connects == 2048);
    CHECK(o5.script_timeout == doctest::Approx(600));
    CHECK(o5.host_timeout == doctest::Approx(900));
    CHECK(ok({"-Tinsane", "t"}).timing.level == 5);
    // Explicit timeouts win over -T5 whatever the order.
    auto e5 = ok({"--script-timeout", "10", "-T5", "--host-timeout", "20", "t"});
    CHECK(e5.script_timeout == doctest::Approx(10));
    CHECK(e5.host_timeout == doctest::Approx(20));
    CHECK(ok({"-T4", "t"}).script_timeout == 0);
    err({"t", "-T9"}, "'-T9'");
    err({"t", "-Tfast"}, "'-Tfast'");
    err({"t", "-T"}, "-T");
}

TEST_CASE("verbosity and debugging") {
    CHECK(ok({"-v", "t"}).verbosity == 1);
    CHECK(ok({"-vv", "t"}).verbosity == 2);
    CHECK(ok({"-v", "-vv", "t"}).verbosity == 3);
    CHECK(ok({"-v3", "t"}).verbosity == 3);
    CHECK(ok({"-d", "t"}).debugging == 1);
    CHECK(ok({"-dd", "t"}).debugging == 2);
    CHECK(ok({"-d3", "t"}).debugging == 3);
    CHECK(ok({"t"}).verbosity == 0);
    err({"t", "-vx"}, "'-vx'");
    err({"t", "-d2x"}, "'-d2x'");
}

TEST_CASE("output options") {
    auto o = ok({"-oN", "a.nmap", "-oX", "-", "-oG", "g.txt", "-oJ", "j.json", "t"});
    CHECK(o.out_normal == "a.nmap");
    CHECK(o.out_xml == "-");
    CHECK(o.out_grepable == "g.txt");
    CHECK(o.out_json == "j.json");
    auto a = ok({"-oA", "base", "t"});
    CHECK(a.out_normal == "base.nmap");
    CHECK(a.out_xml == "base.xml");
    CHECK(a.out_grepable == "base.gnmap");
    CHECK(a.out_json.empty());
    CHECK(ok({"-oNfile.txt", "t"}).out_normal == "file.txt");
    err({"t", "-oX"}, "-oX");
    err({"t", "-oA", "-"}, "-oA");
}

TEST_CASE("performance and misc options") {
    auto o = ok({"--min-hostgroup", "4", "--max-hostgroup=16", "--datadir", "/tmp/d",
                 "--max-parallelism", "8", "--stats-every", "10s", "--workers=3", "t"});
    CHECK(o.min_hostgroup == 4);
    CHECK(o.max_hostgroup == 16);
    CHECK(o.datadir == "/tmp/d");
    CHECK(o.max_parallelism == 8);
    CHECK(o.stats_every == doctest::Approx(10));
    CHECK(o.workers == 3);
    CHECK(ok({"--datadir=/x", "t"}).datadir == "/x");
    err({"t", "--max-hostgroup", "x"}, "invalid value for --max-hostgroup: 'x'");
    err({"t", "--min-hostgroup=1.5"}, "'1.5'");
    err({"t", "--workers", "many"}, "'many'");
    err({"t", "--max-parallelism", "0"}, "--max-parallelism");
    err({"t", "--stats-every", "soon"}, "'soon'");
    err({"t", "--min-hostgroup", "10", "--max-hostgroup", "2"}, "--min-hostgroup");
    err({"t", "--datadir"}, "--datadir");
    err({"t", "--workers", "99999999999"}, "'99999999999'");
}

TEST_CASE("help") {
    auto h = ok({"--help"});
    CHECK(h.help);
    CHECK(ok({"-h"}).help);
    auto u = common::scan_usage();
    for (const char* flag : {"-iL",
                             "--exclude",
                             "--excludefile",
                             "-p",
                             "-F",
                             "--top-ports",
                             "-sT",
                             "-Pn",
                             "-sn",
                             "-n",
                             "-6",
                             "--script",
                             "-sC",
                             "--script-args",
                             "--script-args-file",
                             "--script-timeout",
                             "--host-timeout",
                             "-T",
                             "-v",
                             "-d",
                             "-oN",
                             "-oX",
                             "-oG",
                             "-oJ",
                             "-oA",
                             "--min-hostgroup",
                             "max-hostgroup",
                             "--datadir",
                             "--open",
                             "--reason",
                             "--max-parallelism",
                             "--stats-every",
                             "--workers",
                             "--help"}) {
        INFO(flag);
        CHECK(u.find(flag) != std::string::npos);
    }
}

TEST_CASE("service and version detection flags") {
    auto o = ok({"-sV", "t"});
    CHECK(o.version_scan);
    CHECK(o.version_intensity == 7);
    CHECK_FALSE(o.default_scripts);
    auto vc = ok({"-sVC", "t"});
    CHECK(vc.version_scan);
    CHECK(vc.default_scripts);
    auto a = ok({"-A", "t"});
    CHECK(a.version_scan);
    CHECK(a.default_scripts);
    CHECK(a.aggressive);
    CHECK(ok({"-sV", "--version-light", "t"}).version_intensity == 2);
    CHECK(ok({"-sV", "--version-all", "t"}).version_intensity == 9);
    CHECK(ok({"-sV", "--version-intensity", "0", "t"}).version_intensity == 0);
    CHECK(ok({"-sV", "--version-intensity=9", "t"}).version_intensity == 9);
    CHECK(ok({"-sV", "--version-trace", "t"}).version_trace);
    CHECK(ok({"-sV", "--allports", "t"}).version_all_ports);
    err({"-sV", "--version-intensity", "10", "t"}, "--version-intensity must be between 0 and 9");
    err({"-sV", "--version-intensity", "x", "t"}, "'x'");
    err({"-sV", "--version-intensity=-1", "t"}, "'-1'");
}

TEST_CASE("nmap's fine timing options and -T with a space") {
    auto o = ok({"-T",
                 "4",
                 "--max-retries",
                 "5",
                 "--min-rtt-timeout",
                 "200ms",
                 "--max-rtt-timeout",
                 "2s",
                 "--initial-rtt-timeout",
                 "300ms",
                 "--scan-delay",
                 "3s",
                 "--max-scan-delay",
                 "1s",
                 "--min-rate",
                 "100",
                 "--max-rate",
                 "500.5",
                 "--min-parallelism",
                 "20",
                 "x"});
    CHECK(o.timing.level == 4);
    CHECK(o.timing.max_retries == 5);
    CHECK(o.timing.min_rtt_timeout == doctest::Approx(0.2));
    CHECK(o.timing.max_rtt_timeout == doctest::Approx(2));
    CHECK(o.timing.connect_timeout == doctest::Approx(0.3));
    CHECK(o.timing.scan_delay == doctest::Approx(1));  // capped by --max-scan-delay
    CHECK(o.timing.min_rate == doctest::Approx(100));
    CHECK(o.timing.max_rate == doctest::Approx(500.5));
    CHECK(o.timing.min_parallelism == 20);
    // --max-rtt-timeout below the template's initial time-out lowers it.
    CHECK(ok({"--max-rtt-timeout", "250ms", "x"}).timing.connect_timeout == doctest::Approx(0.25));
    err({"--min-rate", "0", "x"}, "--min-rate");
    err({"--max-rate", "-3", "x"}, "--max-rate");
    err({"--min-rate", "5", "--max-rate", "1", "x"}, "--min-rate=5 must be less than");
    err({"-T", "9", "x"}, "Unknown timing mode");
    err({"-T"}, "-T");
}

TEST_CASE("host discovery probes and aliases") {
    auto o = ok({"-PS22,80,1000-1002", "-PA", "-PU53", "-PE", "-PP", "-PM", "x"});
    CHECK(o.discovery.syn == std::vector<int>{22, 80, 1000, 1001, 1002});
    CHECK(o.discovery.ack == std::vector<int>{80});
    CHECK(o.discovery.udp == std::vector<int>{53});
    CHECK((o.discovery.echo && o.discovery.timestamp && o.discovery.netmask));
    CHECK(ok({"-PN", "x"}).skip_discovery);
    CHECK(ok({"-P0", "x"}).skip_discovery);
    CHECK(ok({"-sP", "x"}).ping_only);
    CHECK_FALSE(ok({"x"}).discovery.given());
    err({"-PS1-x", "x"}, "-PS");
    err({"-PS70000", "x"}, "-PS");
}

TEST_CASE("nmap's conflicts are refused in nmap's words") {
    err({"-p", "22", "-p", "80", "x"}, "Only 1 -p option allowed");
    err({"-F", "-p", "80", "x"}, "Only 1 -p option allowed");
    err({"--top-ports", "10", "-p22", "x"}, "Only 1 -p option allowed");
    err({"-sn", "-p", "22", "x"}, "You cannot use -F (fast scan) or -p");
    err({"-sL", "-F", "x"}, "You cannot use -F (fast scan) or -p");
    err({"-sn", "-sS", "x"}, "-sL and -sn (skip port scan) are not valid");
    err({"-sT", "-sS", "x"}, "more than one type of TCP scan");
    err({"--privileged", "--unprivileged", "x"}, "--privileged");
    err({"-sA", "x"}, "-sA");
    err({"-b", "ftp.invalid", "x"}, "-b");
}

TEST_CASE("list scan, random targets, output and packet options") {
    auto l = ok({"-sL", "-sV", "--script", "banner", "x"});
    CHECK(l.list_scan);
    CHECK_FALSE(l.version_scan);
    CHECK(l.scripts.empty());
    CHECK(ok({"-iR", "3", "-sL"}).random_targets == 3);
    auto o = ok({"--append-output", "-oS", "s.txt", "--no-stylesheet", "--resolve-all",
                 "--packet-trace", "x"});
    CHECK((o.append_output && o.resolve_all && o.packet_trace));
    CHECK(o.out_skid == "s.txt");
    CHECK(o.stylesheet.empty());
    CHECK(ok({"--webxml", "x"}).stylesheet == "https://svn.nmap.org/nmap/docs/nmap.xsl");
    CHECK(ok({"--stylesheet", "my.xsl", "x"}).stylesheet == "my.xsl");
    auto p = ok({"--ttl", "12", "-g", "53", "--data-length", "20", "--badsum", "-f", "-f", "x"});
    CHECK(p.packet.ttl == 12);
    CHECK(p.packet.source_port == 53);
    CHECK(p.packet.data_length == 20);
    CHECK(p.packet.badsum);
    CHECK(p.packet.mtu == 16);
    CHECK(ok({"--mtu", "24", "x"}).packet.mtu == 24);
    err({"--ttl", "300", "x"}, "ttl option must be a number between 0 and 255");
    err({"--mtu", "7", "x"}, "multiple of 8");
    err({"--data-length", "70000", "x"}, "data-length");
    err({"--source-port", "65536", "x"}, "source-port");
    // Options without machinery here warn, never silently.
    auto w = ok({"-O", "--traceroute", "-sT", "-D", "RND:3", "--spoof-mac", "0", "x"});
    CHECK(w.warnings.size() == 4);  // -D: a connect scan sends no decoy
    CHECK(ok({"-sS", "-D", "198.51.100.7,ME,RND:2", "x"}).warnings.empty());
    CHECK(ok({"-sS", "--spoof-mac", "Apple", "x"}).warnings.empty());  // raw frames carry it
    err({"-D", "ME", "x"}, "-D");
    err({"-D", "198.51.100.7,nope", "x"}, "'nope'");
    err({"-D", "RND:0", "x"}, "'RND:0'");
    for (const auto& m : w.warnings)
        CHECK(m.rfind("WARNING: ", 0) == 0);
    auto a = ok({"--noninteractive", "--privileged", "-r", "x"});
    CHECK(a.privileged);
    CHECK(a.warnings.empty());
}
