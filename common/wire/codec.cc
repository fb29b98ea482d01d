// MessagePack encoding of the fleet messages (layout documented in docs/protocol.md).
// Every struct is a positional array; optional values are arrays of 0 or 1 element; a
// common::Value is nil/bool/int/float/str, or an array of entries for a table.
#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include "common/wire/codec.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <msgpack.hpp>
#include <new>
#include <optional>
#include <string>
#include <type_traits>

namespace common::wire {

// Trip-wire: a field added to these structs must be added to the codec (and the protocol
// version bumped). Update the sizes below together with put()/get() of the struct.
static_assert(sizeof(common::ScanOptions) == 1152,
              "ScanOptions changed: update common/wire/codec.cc and docs/protocol.md");
static_assert(sizeof(common::HostResult) == 432,
              "HostResult changed: update common/wire/codec.cc and docs/protocol.md");
static_assert(sizeof(common::PortResult) == 488,
              "PortResult changed: update common/wire/codec.cc and docs/protocol.md");

namespace {

// ---------------------------------------------------------------- encoding

// Output buffer for msgpack::packer: appends straight into a std::string.
struct StringBuffer {
    std::string out;
    void write(const char* p, std::size_t n) { out.append(p, n); }
};
// msgpack-c keeps a handle on its buffer; so do we, to write float64 ourselves.
struct Packer : msgpack::packer<StringBuffer> {
    explicit Packer(StringBuffer& b) : msgpack::packer<StringBuffer>(b), buf(b) {}
    StringBuffer& buf;
};

// Always a MessagePack float64: msgpack-c's pack_double writes integral doubles (1.0) as
// integers, which would turn a Lua float into an integer on the other side.
void put_double(Packer& pk, double v) {
    std::uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    char out[9];
    out[0] = static_cast<char>(0xcb);
    for (int i = 0; i < 8; ++i)
        out[1 + i] = static_cast<char>(bits >> (56 - 8 * i));
    pk.buf.write(out, sizeof out);
}

void put(Packer& pk, const std::string& s) {
    pk.pack_str(static_cast<std::uint32_t>(s.size()))
        .pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}
void put(Packer& pk, bool b) { b ? pk.pack_true() : pk.pack_false(); }
void put(Packer& pk, std::uint64_t v) { pk.pack_uint64(v); }
void put(Packer& pk, std::uint32_t v) { pk.pack_uint32(v); }
void put(Packer& pk, int v) { pk.pack_int64(v); }
void put(Packer& pk, double v) { put_double(pk, v); }

template <typename E>
requires std::is_enum_v<E>
void put(Packer& pk, E e) { pk.pack_uint64(static_cast<std::uint64_t>(e)); }

// Declared up front so the container templates below find every overload.
void put(Packer& pk, const common::Value& v);
void put(Packer& pk, const common::Entry& e);
void put(Packer& pk, const common::ScriptResult& s);
void put(Packer& pk, const common::ServiceInfo& s);
void put(Packer& pk, const common::PortResult& p);
void put(Packer& pk, const common::HostResult& h);
void put(Packer& pk, const common::PortSpec& p);
void put(Packer& pk, const common::TimingProfile& t);
void put(Packer& pk, const common::DiscoveryProbes& d);
void put(Packer& pk, const common::PacketOptions& p);
void put(Packer& pk, const common::ScanOptions& o);
void put(Packer& pk, const LeaseHost& h);
void put(Packer& pk, const Owner& o);
void put(Packer& pk, const WorkerStatus& w);

template <typename T>
void put(Packer& pk, const std::vector<T>& v) {
    pk.pack_array(static_cast<std::uint32_t>(v.size()));
    for (const auto& x : v)
        put(pk, x);
}

template <typename T>
void put(Packer& pk, const std::optional<T>& v) {
    pk.pack_array(v ? 1 : 0);
    if (v) put(pk, *v);
}

// Writes `n`, then each field: a struct is a positional array.
template <typename... F>
void fields(Packer& pk, const F&... f) {
    pk.pack_array(static_cast<std::uint32_t>(sizeof...(F)));
    (put(pk, f), ...);
}

void put(Packer& pk, const common::Entry& e) {
    // [key, value]: a string key, an integer key for an array item with its index (sparse,
    // zero and negative keys round-trip), or nil for an item without one (append order).
    pk.pack_array(2);
    if (!e.indexed)
        put(pk, e.key);
    else if (auto i = common::item_index(e))
        pk.pack_int64(*i);
    else if (auto f = common::item_float(e))
        put_double(pk, *f);  // a float key (t[1.5])
    else
        pk.pack_nil();
    put(pk, e.value);
}

void put(Packer& pk, const common::Value& v) {
    std::visit(
        [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>)
                pk.pack_nil();
            else if constexpr (std::is_same_v<T, bool>)
                put(pk, x);
            else if constexpr (std::is_same_v<T, std::int64_t>)
                pk.pack_int64(x);
            else if constexpr (std::is_same_v<T, double>)
                put_double(pk, x);
            else if constexpr (std::is_same_v<T, std::string>)
                put(pk, x);
            else
                put(pk, x.entries);
        },
        v.v);
}

void put(Packer& pk, const common::ScriptResult& s) { fields(pk, s.id, s.output, s.structured); }

void put(Packer& pk, const common::ServiceInfo& s) {
    fields(pk, s.name, s.method, s.conf, s.product, s.version, s.extrainfo, s.hostname, s.ostype,
           s.devicetype, s.tunnel, s.servicefp, s.cpe);
}

void put(Packer& pk, const common::PortResult& p) {
    fields(pk, static_cast<std::uint32_t>(p.number), p.protocol, p.state, p.reason, p.reason_ttl,
           p.service, p.scripts);
}

void put(Packer& pk, const common::HostResult& h) {
    fields(pk, static_cast<std::uint64_t>(h.index), h.address, h.ipv6, h.targetname, h.hostname,
           h.status, h.reason, h.reason_ttl, h.srtt, h.interface, h.interface_mtu,
           h.directly_connected, h.source_address, h.mac_address, h.source_mac, h.timed_out,
           h.start_time, h.end_time, h.ports, h.hostscripts, h.lost_results, h.other_addresses);
}

void put(Packer& pk, const common::PortSpec& p) {
    fields(pk, static_cast<std::uint32_t>(p.number),
           static_cast<std::uint32_t>(static_cast<unsigned char>(p.proto)));
}

void put(Packer& pk, const common::TimingProfile& t) {
    fields(pk, t.level, t.connect_timeout, t.max_retries, t.max_parallel_connects, t.scan_delay,
           t.min_rtt_timeout, t.max_rtt_timeout, t.max_scan_delay, t.min_rate, t.max_rate,
           t.min_parallelism, t.max_retries_set);
}

void put(Packer& pk, const common::DiscoveryProbes& d) {
    fields(pk, d.syn, d.ack, d.udp, d.echo, d.timestamp, d.netmask, d.arp);
}

void put(Packer& pk, const common::PacketOptions& p) {
    fields(pk, p.ttl, p.source_port, p.data_length, p.badsum, p.mtu, p.decoys, p.spoof_mac);
}

void put(Packer& pk, const common::ScanOptions& o) {
    fields(pk, o.command_line, o.targets, o.input_files, o.excludes, o.exclude_files, o.port_spec,
           o.fast, o.top_ports, o.ports, o.connect_scan, o.syn_scan, o.udp_scan, o.skip_discovery,
           o.ping_only, o.no_dns, o.ipv6, o.iface, o.source, o.scripts, o.default_scripts,
           o.script_args, o.script_args_file, o.script_timeout, o.host_timeout, o.max_parallelism,
           o.timing, o.verbosity, o.debugging, o.stats_every, o.out_normal, o.out_xml,
           o.out_grepable, o.out_json, o.open_only, o.reason, o.min_hostgroup, o.max_hostgroup,
           o.datadir, o.workers, o.engine_memory_mb, o.help, o.version_scan, o.version_intensity,
           o.version_trace, o.version_all_ports, o.aggressive, o.dns_all, o.system_dns,
           o.dns_servers, o.default_scan, o.script_trace, o.discovery, o.list_scan,
           o.random_targets, o.resolve_all, o.packet_trace, o.privileged, o.unprivileged, o.packet,
           o.out_skid, o.append_output, o.stylesheet, o.warnings, o.accepted, o.iflist,
           o.exclude_ports, o.servicedb, o.versiondb);
}

void put(Packer& pk, const LeaseHost& h) {
    fields(pk, h.index, h.address, h.ipv6, h.targetname, h.other_addresses);
}
void put(Packer& pk, const Owner& o) { fields(pk, o.engine, o.id); }
void put(Packer& pk, const WorkerStatus& w) {
    fields(pk, w.worker_id, w.name, w.engines, w.leases, w.last_seen);
}

// Message bodies.
void body(Packer& pk, const Hello& m) {
    fields(pk, m.protocol, m.name, m.engines, m.pid, m.capabilities);
}
void body(Packer& pk, const Welcome& m) {
    fields(pk, m.worker_id, m.scan_id, m.heartbeat_ms, m.lease_ms, m.options);
}
void body(Packer& pk, const Heartbeat& m) { fields(pk, m.now, m.leases, m.engines_busy); }
void body(Packer& pk, const RequestWork& m) { fields(pk, m.slots); }
void body(Packer& pk, const Lease& m) { fields(pk, m.group_id, m.attempt, m.deadline, m.hosts); }
void body(Packer& pk, const NoWork& m) { fields(pk, m.retry_ms, m.scan_done); }
void body(Packer& pk, const LeaseRenewed& m) { fields(pk, m.group_ids, m.deadline); }
void body(Packer& pk, const LeaseLost& m) { fields(pk, m.group_id, m.reason); }
void body(Packer& pk, const HostResult& m) { fields(pk, m.group_id, m.host); }
void body(Packer& pk, const GroupDone& m) { fields(pk, m.group_id, m.hosts, m.elapsed); }
void body(Packer& pk, const RunPhase& m) { fields(pk, m.phase_id, m.phase); }
void body(Packer& pk, const PhaseResult& m) {
    fields(pk, m.phase_id, m.phase, m.scripts, m.registry, m.error);
}
void body(Packer& pk, const SharedOp& m) {
    fields(pk, m.request_id, m.op, m.key, m.who, m.value, m.since, m.lease, m.part);
}
void body(Packer& pk, const SharedReply& m) {
    fields(pk, m.request_id, m.ok, m.owner, m.value, m.version, m.snapshot, m.deltas, m.part,
           m.parts, m.targets_added, m.targets_pending);
}
void body(Packer& pk, const SharedNotify& m) { fields(pk, m.request_id, m.event, m.key, m.who); }
void body(Packer& pk, const StatusQuery& m) { fields(pk, m.workers); }
void body(Packer& pk, const StatusReply& m) {
    fields(pk, m.scan_id, m.state, m.hosts_total, m.hosts_done, m.groups_pending, m.groups_leased,
           m.groups_done, m.targets_exhausted, m.workers);
}
void body(Packer& pk, const Error& m) { fields(pk, m.code, m.text, m.in_reply_to); }
void body(Packer& pk, const Bye& m) { fields(pk, m.reason); }
void body(Packer& pk, const AddTargets& m) { fields(pk, m.targets); }

// ---------------------------------------------------------------- structural pre-scan

// A decode failure inside this file; caught in decode() and never thrown past it.
struct Bad {
    ErrorCode code;
    std::string what;
};

[[noreturn]] void bad(std::string what, ErrorCode code = ErrorCode::Malformed) {
    throw Bad{code, std::move(what)};
}

// Walks the bytes once, before msgpack-c allocates anything. msgpack-c reserves memory for
// a container's declared element count as soon as it reads the header, so a 5-byte frame
// claiming 2^32 elements (or a chain of them) would cost gigabytes. Here every element a
// container promises must fit in the bytes that are left (each element is at least one
// byte), which bounds the total allocation by the frame size. Also rejects what this
// protocol never produces (maps, bin, ext), truncation and trailing bytes.
void prescan(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t pos = 0;
    std::vector<std::uint64_t> stack{1};  // elements still expected per open container
    std::uint64_t pending = 1;            // sum of stack

    auto need = [&](std::size_t k) {
        if (n - pos < k) bad("truncated frame");
    };
    auto be = [&](std::size_t k) {  // big-endian unsigned of k bytes at pos
        need(k);
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < k; ++i)
            v = (v << 8) | p[pos + i];
        pos += k;
        return v;
    };
    auto open = [&](std::uint64_t k) {
        if (k == 0) return;
        if (stack.size() >= kMaxDepth) bad("nesting too deep");
        if (pending + k > n - pos) bad("container larger than the frame");
        stack.push_back(k);
        pending += k;
    };

    while (!stack.empty()) {
        if (stack.back() == 0) {
            stack.pop_back();
            continue;
        }
        --stack.back();
        --pending;
        need(1);
        const unsigned b = p[pos++];
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) continue;
        if (b >= 0x90 && b <= 0x9f) {
            open(b & 0x0f);
        } else if (b >= 0xa0 && b <= 0xbf) {
            need(b & 0x1f);
            pos += b & 0x1f;
        } else if (b == 0xca) {
            need(4), pos += 4;
        } else if (b == 0xcb) {
            need(8), pos += 8;
        } else if (b >= 0xcc && b <= 0xcf) {
            std::size_t k = std::size_t{1} << (b - 0xcc);
            need(k), pos += k;
        } else if (b >= 0xd0 && b <= 0xd3) {
            std::size_t k = std::size_t{1} << (b - 0xd0);
            need(k), pos += k;
        } else if (b >= 0xd9 && b <= 0xdb) {
            std::uint64_t len = be(std::size_t{1} << (b - 0xd9));
            if (len > n - pos) bad("truncated frame");
            pos += len;
        } else if (b == 0xdc || b == 0xdd) {
            open(be(b == 0xdc ? 2 : 4));
        } else {
            bad("unexpected MessagePack type in frame");  // map, bin, ext, 0xc1
        }
    }
    if (pos != n) bad("trailing bytes after message");
}

// ---------------------------------------------------------------- decoding

using Obj = msgpack::object;

// The elements of an array with exactly `count` elements.
const Obj* arr(const Obj& o, std::uint32_t count, const char* what) {
    if (o.type != msgpack::type::ARRAY) bad(std::string(what) + ": expected an array");
    if (o.via.array.size != count)
        bad(std::string(what) + ": expected " + std::to_string(count) + " fields, got " +
            std::to_string(o.via.array.size));
    return o.via.array.ptr;
}

std::uint64_t get_u(const Obj& o, std::uint64_t max) {
    if (o.type != msgpack::type::POSITIVE_INTEGER) bad("expected an unsigned integer");
    if (o.via.u64 > max) bad("integer out of range");
    return o.via.u64;
}

std::int64_t get_i(const Obj& o, std::int64_t lo, std::int64_t hi) {
    std::int64_t v;
    if (o.type == msgpack::type::POSITIVE_INTEGER) {
        if (o.via.u64 > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            bad("integer out of range");
        v = static_cast<std::int64_t>(o.via.u64);
    } else if (o.type == msgpack::type::NEGATIVE_INTEGER) {
        v = o.via.i64;
    } else {
        bad("expected an integer");
    }
    if (v < lo || v > hi) bad("integer out of range");
    return v;
}

void get(const Obj& o, std::string& s) {
    if (o.type != msgpack::type::STR) bad("expected a string");
    s.assign(o.via.str.ptr, o.via.str.size);
}
void get(const Obj& o, bool& b) {
    if (o.type != msgpack::type::BOOLEAN) bad("expected a boolean");
    b = o.via.boolean;
}
void get(const Obj& o, std::uint64_t& v) {
    v = get_u(o, std::numeric_limits<std::uint64_t>::max());
}
void get(const Obj& o, std::uint32_t& v) {
    v = static_cast<std::uint32_t>(get_u(o, std::numeric_limits<std::uint32_t>::max()));
}
void get(const Obj& o, int& v) {
    v = static_cast<int>(
        get_i(o, std::numeric_limits<int>::min(), std::numeric_limits<int>::max()));
}
void get(const Obj& o, double& v) {
    if (o.type != msgpack::type::FLOAT64 && o.type != msgpack::type::FLOAT32)
        bad("expected a float");
    v = o.via.f64;
}

// Enums with their valid wire range [lo, hi].
template <typename E>
void get_enum(const Obj& o, E& e, E lo, E hi) {
    auto v = get_u(o, std::numeric_limits<std::uint64_t>::max());
    if (v < static_cast<std::uint64_t>(lo) || v > static_cast<std::uint64_t>(hi))
        bad("enum value out of range");
    e = static_cast<E>(v);
}
void get(const Obj& o, Phase& e) { get_enum(o, e, Phase::Prerule, Phase::Postrule); }
void get(const Obj& o, SharedOpKind& e) {
    get_enum(o, e, SharedOpKind::MutexLock, SharedOpKind::TargetCounts);
}
void get(const Obj& o, SharedEvent& e) { get_enum(o, e, SharedEvent::Granted, SharedEvent::Woken); }
void get(const Obj& o, ErrorCode& e) { get_enum(o, e, ErrorCode::None, ErrorCode::Internal); }

void get(const Obj& o, common::Value& v);
void get(const Obj& o, common::Entry& e);
void get(const Obj& o, common::ScriptResult& s);
void get(const Obj& o, common::ServiceInfo& s);
void get(const Obj& o, common::PortResult& p);
void get(const Obj& o, common::HostResult& h);
void get(const Obj& o, common::PortSpec& p);
void get(const Obj& o, common::TimingProfile& t);
void get(const Obj& o, common::DiscoveryProbes& d);
void get(const Obj& o, common::PacketOptions& p);
void get(const Obj& o, common::ScanOptions& s);
void get(const Obj& o, LeaseHost& h);
void get(const Obj& o, Owner& w);
void get(const Obj& o, WorkerStatus& w);

template <typename T>
void get(const Obj& o, std::vector<T>& v) {
    if (o.type != msgpack::type::ARRAY) bad("expected an array");
    v.clear();
    v.resize(o.via.array.size);
    for (std::uint32_t i = 0; i < o.via.array.size; ++i)
        get(o.via.array.ptr[i], v[i]);
}

template <typename T>
void get(const Obj& o, std::optional<T>& v) {
    if (o.type != msgpack::type::ARRAY || o.via.array.size > 1) bad("expected an optional");
    v.reset();
    if (o.via.array.size == 1) get(o.via.array.ptr[0], v.emplace());
}

// Reads the fields of a positional array in order.
template <typename... F>
void read_fields(const Obj& o, const char* what, F&... f) {
    const Obj* e = arr(o, sizeof...(F), what);
    std::size_t i = 0;
    (get(e[i++], f), ...);
}

void get(const Obj& o, common::Entry& e) {
    const Obj* f = arr(o, 2, "table entry");
    if (f[0].type == msgpack::type::NIL) {
        e.indexed = true;
        e.key.clear();
    } else if (f[0].type == msgpack::type::POSITIVE_INTEGER) {
        e.indexed = true;
        e.key = std::to_string(f[0].via.u64);
    } else if (f[0].type == msgpack::type::NEGATIVE_INTEGER) {
        e.indexed = true;
        e.key = std::to_string(f[0].via.i64);
    } else if (f[0].type == msgpack::type::FLOAT64 || f[0].type == msgpack::type::FLOAT32) {
        e.indexed = true;
        e.key = common::float_key_text(f[0].via.f64);
    } else {
        e.indexed = false;
        get(f[0], e.key);
    }
    get(f[1], e.value);
}

void get(const Obj& o, common::Value& v) {
    switch (o.type) {
    case msgpack::type::NIL: v.v = std::monostate{}; return;
    case msgpack::type::BOOLEAN: v.v = o.via.boolean; return;
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER:
        v.v = get_i(o, std::numeric_limits<std::int64_t>::min(),
                    std::numeric_limits<std::int64_t>::max());
        return;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: v.v = o.via.f64; return;
    case msgpack::type::STR: v.v = std::string(o.via.str.ptr, o.via.str.size); return;
    case msgpack::type::ARRAY: {
        common::Table t;
        get(o, t.entries);
        v.v = std::move(t);
        return;
    }
    default: bad("unexpected type in a value");
    }
}

void get(const Obj& o, common::ScriptResult& s) {
    read_fields(o, "script result", s.id, s.output, s.structured);
}

void get(const Obj& o, common::ServiceInfo& s) {
    read_fields(o, "service", s.name, s.method, s.conf, s.product, s.version, s.extrainfo,
                s.hostname, s.ostype, s.devicetype, s.tunnel, s.servicefp, s.cpe);
}

void get(const Obj& o, common::PortResult& p) {
    std::uint32_t number = 0;
    read_fields(o, "port", number, p.protocol, p.state, p.reason, p.reason_ttl, p.service,
                p.scripts);
    if (number > 65535) bad("port number out of range");
    p.number = static_cast<std::uint16_t>(number);
}

void get(const Obj& o, common::HostResult& h) {
    std::uint64_t index = 0;
    read_fields(o, "host", index, h.address, h.ipv6, h.targetname, h.hostname, h.status, h.reason,
                h.reason_ttl, h.srtt, h.interface, h.interface_mtu, h.directly_connected,
                h.source_address, h.mac_address, h.source_mac, h.timed_out, h.start_time,
                h.end_time, h.ports, h.hostscripts, h.lost_results, h.other_addresses);
    h.index = static_cast<std::size_t>(index);
}

void get(const Obj& o, common::PortSpec& p) {
    std::uint32_t number = 0, proto = 0;
    read_fields(o, "port spec", number, proto);
    if (number > 65535) bad("port number out of range");
    if (proto != 't' && proto != 'u') bad("port protocol must be 't' or 'u'");
    p.number = static_cast<std::uint16_t>(number);
    p.proto = static_cast<char>(proto);
}

void get(const Obj& o, common::TimingProfile& t) {
    read_fields(o, "timing", t.level, t.connect_timeout, t.max_retries, t.max_parallel_connects,
                t.scan_delay, t.min_rtt_timeout, t.max_rtt_timeout, t.max_scan_delay, t.min_rate,
                t.max_rate, t.min_parallelism, t.max_retries_set);
}

void get(const Obj& o, common::DiscoveryProbes& d) {
    read_fields(o, "discovery probes", d.syn, d.ack, d.udp, d.echo, d.timestamp, d.netmask, d.arp);
}

void get(const Obj& o, common::PacketOptions& p) {
    read_fields(o, "packet options", p.ttl, p.source_port, p.data_length, p.badsum, p.mtu, p.decoys,
                p.spoof_mac);
}

void get(const Obj& o, common::ScanOptions& s) {
    read_fields(o, "scan options", s.command_line, s.targets, s.input_files, s.excludes,
                s.exclude_files, s.port_spec, s.fast, s.top_ports, s.ports, s.connect_scan,
                s.syn_scan, s.udp_scan, s.skip_discovery, s.ping_only, s.no_dns, s.ipv6, s.iface,
                s.source, s.scripts, s.default_scripts, s.script_args, s.script_args_file,
                s.script_timeout, s.host_timeout, s.max_parallelism, s.timing, s.verbosity,
                s.debugging, s.stats_every, s.out_normal, s.out_xml, s.out_grepable, s.out_json,
                s.open_only, s.reason, s.min_hostgroup, s.max_hostgroup, s.datadir, s.workers,
                s.engine_memory_mb, s.help, s.version_scan, s.version_intensity, s.version_trace,
                s.version_all_ports, s.aggressive, s.dns_all, s.system_dns, s.dns_servers,
                s.default_scan, s.script_trace, s.discovery, s.list_scan, s.random_targets,
                s.resolve_all, s.packet_trace, s.privileged, s.unprivileged, s.packet, s.out_skid,
                s.append_output, s.stylesheet, s.warnings, s.accepted, s.iflist, s.exclude_ports,
                s.servicedb, s.versiondb);
}

void get(const Obj& o, LeaseHost& h) {
    read_fields(o, "lease host", h.index, h.address, h.ipv6, h.targetname, h.other_addresses);
}
void get(const Obj& o, Owner& w) { read_fields(o, "owner", w.engine, w.id); }
void get(const Obj& o, WorkerStatus& w) {
    read_fields(o, "worker status", w.worker_id, w.name, w.engines, w.leases, w.last_seen);
}

void get_body(const Obj& o, Hello& m) {
    read_fields(o, "Hello", m.protocol, m.name, m.engines, m.pid, m.capabilities);
}
void get_body(const Obj& o, Welcome& m) {
    read_fields(o, "Welcome", m.worker_id, m.scan_id, m.heartbeat_ms, m.lease_ms, m.options);
}
void get_body(const Obj& o, Heartbeat& m) {
    read_fields(o, "Heartbeat", m.now, m.leases, m.engines_busy);
}
void get_body(const Obj& o, RequestWork& m) { read_fields(o, "RequestWork", m.slots); }
void get_body(const Obj& o, Lease& m) {
    read_fields(o, "Lease", m.group_id, m.attempt, m.deadline, m.hosts);
}
void get_body(const Obj& o, NoWork& m) { read_fields(o, "NoWork", m.retry_ms, m.scan_done); }
void get_body(const Obj& o, LeaseRenewed& m) {
    read_fields(o, "LeaseRenewed", m.group_ids, m.deadline);
}
void get_body(const Obj& o, LeaseLost& m) { read_fields(o, "LeaseLost", m.group_id, m.reason); }
void get_body(const Obj& o, HostResult& m) { read_fields(o, "HostResult", m.group_id, m.host); }
void get_body(const Obj& o, GroupDone& m) {
    read_fields(o, "GroupDone", m.group_id, m.hosts, m.elapsed);
}
void get_body(const Obj& o, RunPhase& m) { read_fields(o, "RunPhase", m.phase_id, m.phase); }
void get_body(const Obj& o, PhaseResult& m) {
    read_fields(o, "PhaseResult", m.phase_id, m.phase, m.scripts, m.registry, m.error);
}
void get_body(const Obj& o, SharedOp& m) {
    read_fields(o, "SharedOp", m.request_id, m.op, m.key, m.who, m.value, m.since, m.lease, m.part);
}
void get_body(const Obj& o, SharedReply& m) {
    read_fields(o, "SharedReply", m.request_id, m.ok, m.owner, m.value, m.version, m.snapshot,
                m.deltas, m.part, m.parts, m.targets_added, m.targets_pending);
}
void get_body(const Obj& o, SharedNotify& m) {
    read_fields(o, "SharedNotify", m.request_id, m.event, m.key, m.who);
}
void get_body(const Obj& o, StatusQuery& m) { read_fields(o, "StatusQuery", m.workers); }
void get_body(const Obj& o, StatusReply& m) {
    read_fields(o, "StatusReply", m.scan_id, m.state, m.hosts_total, m.hosts_done, m.groups_pending,
                m.groups_leased, m.groups_done, m.targets_exhausted, m.workers);
}
void get_body(const Obj& o, Error& m) { read_fields(o, "Error", m.code, m.text, m.in_reply_to); }
void get_body(const Obj& o, Bye& m) { read_fields(o, "Bye", m.reason); }
void get_body(const Obj& o, AddTargets& m) { read_fields(o, "AddTargets", m.targets); }

// Decodes the body of the variant alternative whose kType is `t`.
template <std::size_t I = 0>
Message body_of(MsgType t, const Obj& o) {
    if constexpr (I == std::variant_size_v<Message>) {
        bad("unknown message type " + std::to_string(static_cast<unsigned>(t)),
            ErrorCode::UnknownType);
    } else {
        using M = std::variant_alternative_t<I, Message>;
        if (M::kType != t) return body_of<I + 1>(t, o);
        M m;
        get_body(o, m);
        return Message(std::in_place_index<I>, std::move(m));
    }
}

}  // namespace

MsgType type_of(const Message& m) {
    return std::visit([](const auto& x) { return std::decay_t<decltype(x)>::kType; }, m);
}

const char* type_name(MsgType t) {
    switch (t) {
    case MsgType::Hello: return "Hello";
    case MsgType::Welcome: return "Welcome";
    case MsgType::Heartbeat: return "Heartbeat";
    case MsgType::RequestWork: return "RequestWork";
    case MsgType::Lease: return "Lease";
    case MsgType::NoWork: return "NoWork";
    case MsgType::LeaseRenewed: return "LeaseRenewed";
    case MsgType::LeaseLost: return "LeaseLost";
    case MsgType::HostResult: return "HostResult";
    case MsgType::GroupDone: return "GroupDone";
    case MsgType::RunPhase: return "RunPhase";
    case MsgType::PhaseResult: return "PhaseResult";
    case MsgType::SharedOp: return "SharedOp";
    case MsgType::SharedReply: return "SharedReply";
    case MsgType::SharedNotify: return "SharedNotify";
    case MsgType::StatusQuery: return "StatusQuery";
    case MsgType::StatusReply: return "StatusReply";
    case MsgType::Error: return "Error";
    case MsgType::Bye: return "Bye";
    case MsgType::AddTargets: return "AddTargets";
    }
    return "unknown";
}

std::string encode(const Message& m, std::uint64_t seq) {
    StringBuffer buf;
    Packer pk(buf);
    pk.pack_array(5);
    pk.pack_str(static_cast<std::uint32_t>(kMagic.size()))
        .pack_str_body(kMagic.data(), static_cast<std::uint32_t>(kMagic.size()));
    pk.pack_uint32(kProtocolVersion);
    pk.pack_uint32(static_cast<std::uint32_t>(type_of(m)));
    pk.pack_uint64(seq);
    std::visit([&](const auto& x) { body(pk, x); }, m);
    return std::move(buf.out);
}

namespace {

// A MessagePack unsigned integer at `p` (positive fixint, uint8..uint64); advances `p`.
std::optional<std::uint64_t> peek_uint(const unsigned char*& p, const unsigned char* end) {
    if (p >= end) return std::nullopt;
    unsigned tag = *p++;
    if (tag <= 0x7f) return tag;
    std::size_t n = tag == 0xcc ? 1 : tag == 0xcd ? 2 : tag == 0xce ? 4 : tag == 0xcf ? 8 : 0;
    if (n == 0 || static_cast<std::size_t>(end - p) < n) return std::nullopt;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i)
        v = (v << 8) | *p++;
    return v;
}

}  // namespace

std::string encode_value(const common::Value& v) {
    StringBuffer buf;
    Packer pk(buf);
    put(pk, v);
    return std::move(buf.out);
}

// Exactly one MessagePack object, pre-scanned (sizes, depth) before msgpack-c allocates;
// its limits are a second fence. Throws Bad / msgpack-c's errors.
msgpack::object_handle unpack_one(std::string_view bytes, const char* what) {
    prescan(bytes);
    msgpack::unpack_limit limit(bytes.size(), 0, bytes.size(), 0, 0, kMaxDepth + 1);
    std::size_t off = 0;
    msgpack::object_handle oh =
        msgpack::unpack(bytes.data(), bytes.size(), off, nullptr, nullptr, limit);
    if (off != bytes.size()) bad(std::string("trailing bytes after ") + what);
    return oh;
}

common::Result<common::Value> decode_value(std::string_view bytes) {
    try {
        msgpack::object_handle oh = unpack_one(bytes, "value");
        common::Value v;
        get(oh.get(), v);
        return v;
    } catch (const Bad& b) {
        return common::Status::error(b.what);
    } catch (const std::exception& e) {
        return common::Status::error(std::string("malformed value: ") + e.what());
    }
}

std::optional<Envelope> peek(std::string_view bytes) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const auto* end = p + bytes.size();
    // [magic, version, type, seq, body]: a fixarray of 5, then "nsf" as a fixstr.
    if (end - p < 5 || p[0] != 0x95 || p[1] != 0xa0 + kMagic.size() ||
        std::string_view(reinterpret_cast<const char*>(p + 2), kMagic.size()) != kMagic)
        return std::nullopt;
    p += 2 + kMagic.size();
    auto version = peek_uint(p, end);
    auto type = peek_uint(p, end);
    auto seq = peek_uint(p, end);
    if (!version || !type || !seq || *version > UINT32_MAX || *type > 255) return std::nullopt;
    return Envelope{static_cast<std::uint32_t>(*version), static_cast<MsgType>(*type), *seq};
}

common::Result<Decoded> decode(std::string_view bytes, std::size_t max_bytes, ErrorCode* why) {
    auto fail = [&](ErrorCode code, const std::string& text) -> common::Result<Decoded> {
        if (why) *why = code;
        return common::Status::error(text);
    };
    if (why) *why = ErrorCode::None;
    if (bytes.size() > max_bytes)
        return fail(ErrorCode::TooLarge, "message of " + std::to_string(bytes.size()) +
                                             " bytes exceeds the limit of " +
                                             std::to_string(max_bytes));
    try {
        msgpack::object_handle oh = unpack_one(bytes, "message");
        const Obj* env = arr(oh.get(), 5, "envelope");
        if (env[0].type != msgpack::type::STR ||
            std::string_view(env[0].via.str.ptr, env[0].via.str.size) != kMagic)
            bad("not an nsefleet message (bad magic)");
        Decoded d;
        get(env[1], d.envelope.version);
        if (d.envelope.version != kProtocolVersion)
            bad("unsupported protocol version " + std::to_string(d.envelope.version) +
                    " (this side speaks " + std::to_string(kProtocolVersion) + ")",
                ErrorCode::BadVersion);
        std::uint32_t type = 0;
        get(env[2], type);
        if (type > 255) bad("unknown message type " + std::to_string(type), ErrorCode::UnknownType);
        d.envelope.type = static_cast<MsgType>(type);
        get(env[3], d.envelope.seq);
        d.message = body_of(d.envelope.type, env[4]);
        return d;
    } catch (const Bad& b) {
        return fail(b.code, b.what);
    } catch (const std::bad_alloc&) {
        return fail(ErrorCode::TooLarge, "out of memory decoding message");
    } catch (const std::exception& e) {  // msgpack-c parse errors (insufficient_bytes, ...)
        return fail(ErrorCode::Malformed, std::string("malformed message: ") + e.what());
    }
}

}  // namespace common::wire
