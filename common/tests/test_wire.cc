// The fleet message codec: exact round trips, and hostile input that must fail cleanly.
#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <msgpack.hpp>
#include <random>
#include <string>
#include <vector>

#include "common/wire/codec.h"
#include "common/wire/registry_parts.h"
#include "nse/registry_delta.h"

using namespace common::wire;
using common::Entry;
using common::Table;
using common::Value;

namespace {

Value str(std::string s) { return Value{std::move(s)}; }
Value num(std::int64_t i) { return Value{i}; }
Value flt(double d) { return Value{d}; }

Value table(std::vector<Entry> entries) { return Value{Table{std::move(entries)}}; }
Entry item(Value v) { return Entry{true, "", std::move(v)}; }
Entry field(std::string k, Value v) { return Entry{false, std::move(k), std::move(v)}; }

// Deep equality that tells NaN from NaN by bits and -0.0 from 0.0.
bool same(const Value& a, const Value& b) {
    if (a.v.index() != b.v.index()) return false;
    if (auto* d = std::get_if<double>(&a.v)) {
        double e = std::get<double>(b.v);
        return std::memcmp(d, &e, sizeof e) == 0;
    }
    if (a.is_table()) {
        const auto &x = a.table().entries, &y = b.table().entries;
        if (x.size() != y.size()) return false;
        for (std::size_t i = 0; i < x.size(); ++i)
            if (x[i].indexed != y[i].indexed || x[i].key != y[i].key ||
                !same(x[i].value, y[i].value))
                return false;
        return true;
    }
    if (auto* x = std::get_if<bool>(&a.v)) return *x == std::get<bool>(b.v);
    if (auto* x = std::get_if<std::int64_t>(&a.v)) return *x == std::get<std::int64_t>(b.v);
    if (auto* x = std::get_if<std::string>(&a.v)) return *x == std::get<std::string>(b.v);
    return true;  // nil
}

bool same(const std::optional<Value>& a, const std::optional<Value>& b) {
    return a.has_value() == b.has_value() && (!a || same(*a, *b));
}

bool same(const std::vector<common::ScriptResult>& a, const std::vector<common::ScriptResult>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].id != b[i].id || a[i].output != b[i].output ||
            !same(a[i].structured, b[i].structured))
            return false;
    return true;
}

bool same(const common::HostResult& a, const common::HostResult& b) {
    if (a.index != b.index || a.address != b.address || a.ipv6 != b.ipv6 ||
        a.targetname != b.targetname || a.hostname != b.hostname || a.status != b.status ||
        a.reason != b.reason || a.reason_ttl != b.reason_ttl || a.srtt != b.srtt ||
        a.interface != b.interface || a.interface_mtu != b.interface_mtu ||
        a.directly_connected != b.directly_connected || a.source_address != b.source_address ||
        a.mac_address != b.mac_address || a.source_mac != b.source_mac ||
        a.timed_out != b.timed_out || a.start_time != b.start_time || a.end_time != b.end_time ||
        a.ports.size() != b.ports.size() || !same(a.hostscripts, b.hostscripts))
        return false;
    for (std::size_t i = 0; i < a.ports.size(); ++i) {
        const auto &p = a.ports[i], &q = b.ports[i];
        const auto &s = p.service, &t = q.service;
        if (p.number != q.number || p.protocol != q.protocol || p.state != q.state ||
            p.reason != q.reason || p.reason_ttl != q.reason_ttl || !same(p.scripts, q.scripts) ||
            s.name != t.name || s.method != t.method || s.conf != t.conf ||
            s.product != t.product || s.version != t.version || s.extrainfo != t.extrainfo ||
            s.hostname != t.hostname || s.ostype != t.ostype || s.devicetype != t.devicetype ||
            s.tunnel != t.tunnel || s.servicefp != t.servicefp || s.cpe != t.cpe)
            return false;
    }
    return true;
}

// A value exercising every kind, the integer and float edges, binary bytes, nesting.
Value rich_value() {
    std::string bin("a\0b\xff\x80\n", 6);
    return table({
        field("int_min", num(std::numeric_limits<std::int64_t>::min())),
        field("int_max", num(std::numeric_limits<std::int64_t>::max())),
        field("zero", num(0)),
        field("neg", num(-1)),
        field("one_float", flt(1.0)),  // must stay a float, not become an integer
        field("neg_zero", flt(-0.0)),
        field("nan", flt(std::numeric_limits<double>::quiet_NaN())),
        field("inf", flt(-std::numeric_limits<double>::infinity())),
        field("tiny", flt(std::numeric_limits<double>::denorm_min())),
        field("bin", str(bin)),
        field("", str("empty key")),
        field("nil", Value{}),
        field("t", Value{true}),
        field("f", Value{false}),
        item(str("first")),
        item(table({})),
        item(table({item(num(1)), item(table({field("deep", table({item(str(""))}))}))})),
        field("last", str(std::string(300, 'x'))),
    });
}

common::HostResult rich_host() {
    common::HostResult h;
    h.index = 123456789012ull;
    h.address = "2001:db8::1";
    h.ipv6 = true;
    h.targetname = "example.test";
    h.hostname = "ptr.example.test";
    h.status = "up";
    h.reason = "syn-ack";
    h.reason_ttl = 64;
    h.srtt = 0.000123;
    h.interface = "lo";
    h.interface_mtu = 65536;
    h.directly_connected = true;
    h.source_address = "127.0.0.1";
    h.mac_address = "02:00:00:00:00:01";
    h.source_mac = "02:00:00:00:00:02";
    h.timed_out = true;
    h.start_time = 1700000000.25;
    h.end_time = 1700000001.5;
    for (int i = 0; i < 3; ++i) {
        common::PortResult p;
        p.number = static_cast<std::uint16_t>(i == 2 ? 65535 : 20 + i);
        p.protocol = i == 1 ? "udp" : "tcp";
        p.state = "open";
        p.reason = "syn-ack";
        p.reason_ttl = -1;
        p.service.name = "http";
        p.service.method = "probed";
        p.service.conf = 10;
        p.service.product = "nginx";
        p.service.version = "1.22";
        p.service.extrainfo = "Debian";
        p.service.hostname = "h";
        p.service.ostype = "Linux";
        p.service.devicetype = "general";
        p.service.tunnel = "ssl";
        p.service.servicefp = "SF:...";
        p.service.cpe = {"cpe:/a:nginx:nginx:1.22", "cpe:/o:linux:linux_kernel"};
        p.scripts.push_back({"http-title", "Site doesn't have a title.", std::nullopt});
        p.scripts.push_back({"ssl-cert", "Subject: ...", rich_value()});
        p.scripts.push_back({"nil-structured", "x", Value{}});  // present but nil
        h.ports.push_back(p);
    }
    h.hostscripts.push_back({"smb-os-discovery", "OS: x", table({field("os", str("x"))})});
    return h;
}

common::ScanOptions rich_options() {
    common::ScanOptions o;
    o.command_line = "nsefleet coordinator -p 80 --script default 127.0.0.1";
    o.targets = {"127.0.0.1", "127.0.1.0/24"};
    o.input_files = {"a.txt"};
    o.excludes = {"127.0.1.7"};
    o.exclude_files = {"ex.txt"};
    o.port_spec = "80,U:53";
    o.fast = true;
    o.top_ports = 100;
    o.ports = {{80, 't'}, {53, 'u'}};
    o.connect_scan = false;
    o.syn_scan = true;
    o.udp_scan = true;
    o.skip_discovery = true;
    o.ping_only = true;
    o.no_dns = true;
    o.ipv6 = true;
    o.iface = "veth0";
    o.source = "198.51.100.1";
    o.scripts = {"default", "http-*"};
    o.default_scripts = true;
    o.script_args = "a=1,b={c=2}";
    o.script_args_file = "args.txt";
    o.script_timeout = 30.5;
    o.host_timeout = 900;
    o.max_parallelism = 77;
    o.timing = {5, 0.25, 7, 1000, 0.5};
    o.verbosity = 2;
    o.debugging = 1;
    o.stats_every = 5;
    o.out_normal = "-";
    o.out_xml = "o.xml";
    o.out_grepable = "o.gnmap";
    o.out_json = "o.ndjson";
    o.open_only = true;
    o.reason = true;
    o.min_hostgroup = 4;
    o.max_hostgroup = 64;
    o.datadir = "/usr/share/nmap";
    o.workers = 3;
    o.engine_memory_mb = 512;
    o.help = true;
    return o;
}

// One non-default sample of every message type.
std::vector<Message> samples() {
    std::vector<Message> v;
    v.push_back(Hello{kProtocolVersion, "worker-a", 4, 4242, {"connect-scan", "ipv6"}});
    v.push_back(Welcome{77, "scan-1", 250, 5000, rich_options()});
    v.push_back(Heartbeat{1700000000.125, {1, 2, 18446744073709551615ull}, 3});
    v.push_back(RequestWork{2});
    v.push_back(
        Lease{9,
              2,
              1700000030.0,
              {{0, "127.0.0.1", false, "", {}}, {1, "::1", true, "localhost", {"127.0.0.1"}}}});
    v.push_back(NoWork{750, true});
    v.push_back(LeaseRenewed{{9, 10}, 1700000060.0});
    v.push_back(LeaseLost{9, "expired"});
    v.push_back(HostResult{9, rich_host()});
    v.push_back(GroupDone{9, 2, 1.75});
    v.push_back(RunPhase{3, Phase::Postrule});
    v.push_back(PhaseResult{3,
                            Phase::Prerule,
                            {{"broadcast-x", "out", rich_value()}, {"y", "", std::nullopt}},
                            rich_value(),
                            "boom"});
    v.push_back(SharedOp{11, SharedOpKind::RegistryMerge, "key", {5, 6}, rich_value(), 0, 0});
    v.push_back(SharedOp{12, SharedOpKind::RegistryChanges, "", {7, 8}, Value{}, 42, 9, 3});
    v.push_back(SharedReply{11, true, Owner{5, 6}, rich_value(), 0, true, {}, 2, 7, 3, 1});
    v.push_back(SharedReply{
        12, false, std::nullopt, Value{}, 9, false, {rich_value(), Value{}}, 0, 1, 0, 0});
    v.push_back(SharedNotify{13, SharedEvent::Woken, "cv", {1, 2}});
    v.push_back(StatusQuery{false});
    v.push_back(StatusReply{"scan-1",
                            "scanning",
                            256,
                            100,
                            3,
                            2,
                            10,
                            true,
                            {{1, "a", 2, {4, 5}, 1700000000.5}, {2, "b", 1, {}, 0}}});
    v.push_back(Error{ErrorCode::UnknownLease, "group 9 is not yours", 44});
    v.push_back(Bye{"done"});
    v.push_back(AddTargets{{{0, "127.0.0.8", false, "", {}}, {0, "::1", true, "localhost", {}}}});
    return v;
}

// Builds a raw envelope with msgpack-c directly, to craft frames the encoder never makes.
template <typename F>
std::string raw(F&& fill) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    fill(pk);
    return std::string(buf.data(), buf.size());
}

void envelope_head(msgpack::packer<msgpack::sbuffer>& pk, std::uint32_t version,
                   std::uint32_t type) {
    pk.pack_array(5);
    pk.pack(std::string("nsf"));
    pk.pack_uint32(version);
    pk.pack_uint32(type);
    pk.pack_uint64(1);
}

ErrorCode decode_error(const std::string& bytes, std::size_t max = kDefaultMaxMessageBytes) {
    ErrorCode why = ErrorCode::None;
    auto r = decode(bytes, max, &why);
    REQUIRE_FALSE(r.is_ok());
    CHECK_FALSE(r.message().empty());
    return why;
}

}  // namespace

TEST_CASE("wire: every message type round-trips byte-exactly") {
    auto all = samples();
    // Every variant alternative is covered.
    std::vector<bool> seen(std::variant_size_v<Message>, false);
    for (const auto& m : all)
        seen[m.index()] = true;
    for (std::size_t i = 0; i < seen.size(); ++i)
        CHECK_MESSAGE(seen[i], "no sample for alternative ", i);

    std::uint64_t seq = 1000;
    for (const auto& m : all) {
        INFO("type ", std::string(type_name(type_of(m))));
        std::string bytes = encode(m, ++seq);
        ErrorCode why = ErrorCode::Malformed;
        auto d = decode(bytes, kDefaultMaxMessageBytes, &why);
        REQUIRE_MESSAGE(d.is_ok(), d.message());
        CHECK(why == ErrorCode::None);
        CHECK(d->envelope.version == kProtocolVersion);
        CHECK(d->envelope.seq == seq);
        CHECK(d->envelope.type == type_of(m));
        CHECK(d->message.index() == m.index());
        // Every field is encoded, so an identical re-encoding means every field survived.
        CHECK(encode(d->message, seq) == bytes);
    }
}

TEST_CASE("wire: field-level equality for comparable messages, Value and HostResult") {
    auto check = [](const auto& m) {
        auto d = decode(encode(m, 1));
        REQUIRE(d.is_ok());
        using M = std::decay_t<decltype(m)>;
        REQUIRE(std::holds_alternative<M>(d->message));
        CHECK(std::get<M>(d->message) == m);
    };
    for (const auto& m : samples()) {
        std::visit(
            [&](const auto& x) {
                if constexpr (std::equality_comparable<std::decay_t<decltype(x)>>) check(x);
            },
            m);
    }

    HostResult hr{5, rich_host()};
    auto d = decode(encode(hr));
    REQUIRE(d.is_ok());
    const auto& back = std::get<HostResult>(d->message);
    CHECK(back.group_id == 5);
    CHECK(same(back.host, hr.host));
    // Float stays float, int stays int, NaN and -0.0 keep their bits, binary bytes kept.
    const auto& sv = *back.host.ports[0].scripts[1].structured;
    CHECK(same(sv, rich_value()));
    CHECK(std::holds_alternative<double>(sv.table().entries[4].value.v));
    CHECK(std::signbit(std::get<double>(sv.table().entries[5].value.v)));
    CHECK(std::isnan(std::get<double>(sv.table().entries[6].value.v)));
    CHECK(std::get<std::string>(sv.table().entries[9].value.v).size() == 6);
    CHECK(back.host.ports[0].scripts[2].structured.has_value());
    CHECK(back.host.ports[0].scripts[2].structured->is_nil());
    CHECK_FALSE(back.host.ports[0].scripts[0].structured.has_value());
    CHECK(back.host.ports[2].number == 65535);

    Welcome w{1, "s", 1, 2, rich_options()};
    auto dw = decode(encode(w));
    REQUIRE(dw.is_ok());
    const auto& o = std::get<Welcome>(dw->message).options;
    const auto ro = rich_options();
    CHECK(o.ports == ro.ports);
    CHECK(o.scripts == ro.scripts);
    CHECK(o.script_args == ro.script_args);
    CHECK(o.timing.level == 5);
    CHECK(o.timing.scan_delay == 0.5);
    CHECK(o.engine_memory_mb == 512);
    CHECK(o.syn_scan);
    CHECK(o.udp_scan);
    CHECK(!o.connect_scan);
    CHECK(o.iface == "veth0");
    CHECK(o.source == "198.51.100.1");
    CHECK(o.help);
}

TEST_CASE(
    "wire: registry keys round-trip: strings, integer items with their index, keyless items") {
    common::Table t;
    auto add = [&](bool indexed, std::string key, std::string text) {
        common::Entry e;
        e.indexed = indexed;
        e.key = std::move(key);
        e.value.v = std::move(text);
        t.entries.push_back(std::move(e));
    };
    add(false, "name", "s");
    add(false, "21", "a string key that looks like a number");
    add(true, "21", "sparse");
    add(true, "0", "zero");
    add(true, "-3", "negative");
    add(true, "9007199254740993", "beyond a double's integers");
    add(true, "", "append");
    SharedOp op;
    op.op = SharedOpKind::RegistryMerge;
    op.value.v = t;
    auto d = decode(encode(op, 1));
    REQUIRE(d.is_ok());
    const auto& back = std::get<SharedOp>(d->message).value.table().entries;
    REQUIRE(back.size() == t.entries.size());
    for (std::size_t i = 0; i < back.size(); ++i) {
        CAPTURE(i);
        CHECK(back[i].indexed == t.entries[i].indexed);
        CHECK(back[i].key == t.entries[i].key);
        CHECK(std::get<std::string>(back[i].value.v) ==
              std::get<std::string>(t.entries[i].value.v));
    }
}

TEST_CASE("wire: envelope checks") {
    std::string good = encode(Bye{"x"}, 3);

    SUBCASE("unknown version") {
        auto bytes = raw([](auto& pk) {
            envelope_head(pk, kProtocolVersion + 1, 19);
            pk.pack_array(1);
            pk.pack(std::string("x"));
        });
        CHECK(decode_error(bytes) == ErrorCode::BadVersion);
        auto v0 = raw([](auto& pk) {
            envelope_head(pk, 0, 19);
            pk.pack_array(1);
            pk.pack(std::string("x"));
        });
        CHECK(decode_error(v0) == ErrorCode::BadVersion);
    }
    SUBCASE("unknown type") {
        for (std::uint32_t t : {0u, 21u, 255u, 256u, 100000u}) {
            auto bytes = raw([&](auto& pk) {
                envelope_head(pk, kProtocolVersion, t);
                pk.pack_array(0);
            });
            CHECK(decode_error(bytes) == ErrorCode::UnknownType);
        }
    }
    SUBCASE("bad magic") {
        auto bytes = raw([](auto& pk) {
            pk.pack_array(5);
            pk.pack(std::string("nsg"));
            pk.pack_uint32(kProtocolVersion);
            pk.pack_uint32(19);
            pk.pack_uint64(1);
            pk.pack_array(1);
            pk.pack(std::string("x"));
        });
        CHECK(decode_error(bytes) == ErrorCode::Malformed);
    }
    SUBCASE("oversized frame rejected before parsing") {
        CHECK(decode_error(good, good.size() - 1) == ErrorCode::TooLarge);
        CHECK(decode(good, good.size()).is_ok());
        HostResult big{1, rich_host()};
        big.host.hostscripts.push_back({"x", std::string(200000, 'y'), std::nullopt});
        CHECK(decode_error(encode(big), 100000) == ErrorCode::TooLarge);
    }
    SUBCASE("trailing garbage") {
        CHECK(decode_error(good + '\0') == ErrorCode::Malformed);
        CHECK(decode_error(good + good) == ErrorCode::Malformed);
    }
    SUBCASE("empty input") { CHECK(decode_error("") == ErrorCode::Malformed); }
    SUBCASE("wrong field count and wrong field types") {
        auto extra = raw([](auto& pk) {
            envelope_head(pk, kProtocolVersion, 19);
            pk.pack_array(2);
            pk.pack(std::string("x"));
            pk.pack(std::string("y"));
        });
        CHECK(decode_error(extra) == ErrorCode::Malformed);
        auto wrong = raw([](auto& pk) {
            envelope_head(pk, kProtocolVersion, 19);
            pk.pack_array(1);
            pk.pack_uint32(5);
        });
        CHECK(decode_error(wrong) == ErrorCode::Malformed);
        // RequestWork.slots is uint32: negative and too large are rejected.
        auto neg = raw([](auto& pk) {
            envelope_head(pk, kProtocolVersion, 4);
            pk.pack_array(1);
            pk.pack_int32(-1);
        });
        CHECK(decode_error(neg) == ErrorCode::Malformed);
        auto big = raw([](auto& pk) {
            envelope_head(pk, kProtocolVersion, 4);
            pk.pack_array(1);
            pk.pack_uint64(1ull << 32);
        });
        CHECK(decode_error(big) == ErrorCode::Malformed);
        // Heartbeat.now is a float; an integer is a wrong type.
        auto hb = raw([](auto& pk) {
            envelope_head(pk, kProtocolVersion, 3);
            pk.pack_array(3);
            pk.pack_uint32(1);
            pk.pack_array(0);
            pk.pack_uint32(0);
        });
        CHECK(decode_error(hb) == ErrorCode::Malformed);
        // RunPhase.phase out of the enum's range.
        auto ph = raw([](auto& pk) {
            envelope_head(pk, kProtocolVersion, 11);
            pk.pack_array(3);
            pk.pack_uint32(1);
            pk.pack_uint32(3);
            pk.pack_nil();
        });
        CHECK(decode_error(ph) == ErrorCode::Malformed);
        // A map in a Value (the protocol never sends maps).
        auto mp = raw([](auto& pk) {
            envelope_head(pk, kProtocolVersion, 11);
            pk.pack_array(3);
            pk.pack_uint32(1);
            pk.pack_uint32(1);
            pk.pack_map(0);
        });
        CHECK(decode_error(mp) == ErrorCode::Malformed);
        // A port number above 65535 inside a HostResult.
        common::HostResult h;
        h.ports.emplace_back();
        std::string ok = encode(HostResult{1, h});
        REQUIRE(decode(ok).is_ok());
        // The port's first field is its number: 0x00 (fixint 0) -> 0xce + 4-byte 70000.
        std::string port_marker = std::string("\x97\x00", 2);  // fixarray(7), number 0
        auto at = ok.find(port_marker);
        REQUIRE(at != std::string::npos);
        std::string bad =
            ok.substr(0, at + 1) + std::string("\xce\x00\x01\x11\x70", 5) + ok.substr(at + 2);
        CHECK(decode_error(bad) == ErrorCode::Malformed);
    }
}

TEST_CASE("wire: lying container sizes and deep nesting fail fast without huge allocations") {
    // Envelope claims 2^32-1 elements in a 5-byte frame.
    std::string a32("\xdd\xff\xff\xff\xff", 5);
    CHECK(decode_error(a32) == ErrorCode::Malformed);
    // A chain of arrays each claiming 65535 elements.
    std::string chain;
    for (int i = 0; i < 150; ++i)
        chain += std::string("\xdc\xff\xff", 3);
    CHECK(decode_error(chain) == ErrorCode::Malformed);
    // A string claiming 4 GiB.
    CHECK(decode_error(std::string("\xdb\xff\xff\xff\xff"
                                   "abc",
                                   8)) == ErrorCode::Malformed);
    // Nesting far deeper than kMaxDepth (each level a 1-element array), inside a Value.
    auto deep = raw([](auto& pk) {
        envelope_head(pk, kProtocolVersion, 11);
        pk.pack_array(3);
        pk.pack_uint32(1);
        pk.pack_uint32(1);
        for (int i = 0; i < 100000; ++i) {
            pk.pack_array(1);
            pk.pack_array(2);
            pk.pack_nil();
        }
        pk.pack_nil();
    });
    CHECK(decode_error(deep) == ErrorCode::Malformed);
    // Nesting within the limit is fine.
    Value v;
    for (int i = 0; i < 50; ++i)
        v = table({item(std::move(v))});
    CHECK(decode(encode(SharedOp{1, SharedOpKind::RegistryMerge, "", {1, 0}, v})).is_ok());
}

TEST_CASE("wire: fuzz: truncations, bit flips, byte mutations, random bytes never crash") {
    auto t0 = std::chrono::steady_clock::now();
    std::mt19937_64 rng(20240611);
    std::size_t cases = 0, accepted = 0;

    // Every proper prefix of every sample is rejected.
    for (const auto& m : samples()) {
        std::string bytes = encode(m, 7);
        for (std::size_t n = 0; n < bytes.size(); ++n) {
            auto r = decode(std::string_view(bytes).substr(0, n));
            CHECK_FALSE(r.is_ok());
            ++cases;
        }
    }
    // Bit flips and byte replacements: must not crash; a decode that succeeds must re-encode.
    for (const auto& m : samples()) {
        std::string bytes = encode(m, 7);
        for (int k = 0; k < 600; ++k) {
            std::string b = bytes;
            std::size_t at = rng() % b.size();
            if (k % 2)
                b[at] = static_cast<char>(b[at] ^ (1 << (rng() % 8)));
            else
                b[at] = static_cast<char>(rng());
            auto r = decode(b);
            if (r.is_ok()) {
                ++accepted;
                CHECK(decode(encode(r->message, r->envelope.seq)).is_ok());
            }
            ++cases;
        }
    }
    // Pure random buffers, some starting with a plausible envelope header.
    std::string head = encode(Bye{""}, 0).substr(0, 8);
    for (int k = 0; k < 5000; ++k) {
        std::string b(rng() % 200, '\0');
        for (auto& c : b)
            c = static_cast<char>(rng());
        if (k % 2) b = head + b;
        ErrorCode why;
        auto r = decode(b, 4096, &why);
        if (!r.is_ok()) CHECK(why != ErrorCode::None);
        ++cases;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE(cases, " fuzz cases (", accepted, " mutated frames still valid) in ", secs, " s");
    CHECK(cases > 10000);
    CHECK(secs < 60);
}

TEST_CASE("wire: type names") {
    CHECK(std::string(type_name(MsgType::Lease)) == "Lease");
    CHECK(std::string(type_name(static_cast<MsgType>(200))) == "unknown");
    CHECK(type_of(Message{Bye{}}) == MsgType::Bye);
}

TEST_CASE("wire: peek reads the envelope of a frame without its body") {
    std::string hello = encode(Hello{kProtocolVersion, "w", 2, 1, {}}, 300);
    auto e = peek(hello);
    REQUIRE(e.has_value());
    CHECK(e->type == MsgType::Hello);
    CHECK(e->version == kProtocolVersion);
    CHECK(e->seq == 300);
    SharedOp op;
    op.value.v = std::string(100000, 'x');
    auto big = encode(op, 1ull << 40);
    auto p = peek(std::string_view(big).substr(0, 20));  // the body is not needed
    REQUIRE(p.has_value());
    CHECK(p->type == MsgType::SharedOp);
    CHECK(p->seq == 1ull << 40);
    CHECK_FALSE(peek("").has_value());
    CHECK_FALSE(peek(std::string("\x95\xa3nsx\x04\x01\x01", 8)).has_value());  // bad magic
    CHECK_FALSE(peek(hello.substr(0, 6)).has_value());                         // cut short
}

TEST_CASE("wire: table keys keep their kind (string, integer, float) through a Value") {
    Value t = table({Entry{false, "21", str("text")}, Entry{true, "21", str("int")},
                     Entry{true, "-3", str("neg")}, Entry{true, "0", str("zero")},
                     Entry{true, common::float_key_text(1.5), str("half")},
                     Entry{true, common::float_key_text(-1e300), str("tiny")},
                     Entry{true, "", str("append")}});
    auto back = decode_value(encode_value(t));
    REQUIRE(back.is_ok());
    const auto& e = back->table().entries;
    REQUIRE(e.size() == 7);
    CHECK((!e[0].indexed && e[0].key == "21"));
    CHECK((e[1].indexed && e[1].key == "21"));
    CHECK(e[2].key == "-3");
    CHECK(e[3].key == "0");
    CHECK((e[4].indexed && common::item_float(e[4]) == 1.5));
    CHECK(common::item_float(e[5]) == -1e300);
    CHECK((e[6].indexed && e[6].key.empty()));
    CHECK_FALSE(decode_value(encode_value(t) + "x").is_ok());
}

namespace {

Value big_registry(int hosts) {
    // ssh-hostkey's shape: a table per host of key records, plus scalars and an item list.
    Table reg, keys, list;
    for (int h = 0; h < hosts; ++h) {
        Table host;
        for (int k = 0; k < 3; ++k)
            host.entries.push_back(Entry{true, std::to_string(k + 1),
                                         Value{std::string(700, static_cast<char>('a' + k))}});
        keys.entries.push_back(
            Entry{false, "10.0." + std::to_string(h / 256) + "." + std::to_string(h % 256),
                  Value{std::move(host)}});
        list.entries.push_back(Entry{true, "", Value{std::int64_t{h}}});  // appends
    }
    reg.entries.push_back(Entry{false, "scalar", Value{std::string("x")}});
    reg.entries.push_back(Entry{false, "ssh-hostkey", Value{std::move(keys)}});
    reg.entries.push_back(Entry{false, "list", Value{std::move(list)}});
    reg.entries.push_back(Entry{false, "gone", Value{}});  // a removal
    return Value{std::move(reg)};
}

}  // namespace

TEST_CASE("wire: a registry larger than a part travels in parts that apply to the same") {
    Value whole = big_registry(2000);  // about 4.3 MB
    const std::size_t cap = 256 * 1024;
    auto parts = split_delta(whole, cap);
    REQUIRE(parts);
    CHECK(parts->size() > 10);
    Value start{Table{}};
    start.table().entries.push_back(Entry{false, "gone", Value{std::string("old")}});
    start.table().entries.push_back(Entry{false, "ssh-hostkey", Value{std::string("scalar")}});
    Value by_parts = start, at_once = start;
    for (const auto& p : *parts) {
        CHECK(encode_value(p).size() <= cap);
        nse::registry_apply(by_parts, p);
    }
    nse::registry_apply(at_once, whole);
    CHECK(nse::registry_diff(at_once, by_parts).table().entries.empty());
    CHECK(nse::registry_diff(by_parts, at_once).table().entries.empty());
    // Small: one part, the delta itself.
    auto one = split_delta(big_registry(3), cap);
    REQUIRE(one);
    CHECK(one->size() == 1);
    // A single value larger than a part but not than a message goes in a part of its own.
    Value big{Table{}};
    big.table().entries.push_back(Entry{false, "a", Value{std::string(10, 'a')}});
    big.table().entries.push_back(Entry{false, "blob", Value{std::string(cap * 2, 'z')}});
    big.table().entries.push_back(Entry{false, "b", Value{std::string(10, 'b')}});
    auto alone = split_delta(big, cap);
    REQUIRE(alone);
    CHECK(alone->size() == 3);
    // Larger than a message: an error, not a cut string.
    Value huge{Table{}};
    huge.table().entries.push_back(
        Entry{false, "blob", Value{std::string(kDefaultMaxMessageBytes + 1, 'z')}});
    CHECK_FALSE(split_delta(huge, cap));
    // An appended table larger than a part would arrive as several items: refused.
    Table items;
    for (int i = 0; i < 64; ++i)
        items.entries.push_back(
            Entry{false, "k" + std::to_string(i), Value{std::string(8192, 'x')}});
    Value appended{Table{}};
    appended.table().entries.push_back(Entry{true, "", Value{std::move(items)}});
    CHECK_FALSE(split_delta(appended, cap));
    // A snapshot (explicit keys) cut in parts joins back into itself.
    Value snapshot{Table{}};
    nse::registry_apply(snapshot, whole);
    auto cut = split_delta(snapshot, cap);
    REQUIRE(cut);
    CHECK(cut->size() > 10);
    Value joined{Table{}};
    for (const auto& p : *cut)
        join_snapshot_part(joined, p);
    CHECK(nse::registry_diff(snapshot, joined).table().entries.empty());
    CHECK(nse::registry_diff(joined, snapshot).table().entries.empty());
    CHECK(joined.table().entries.size() == snapshot.table().entries.size());
}
