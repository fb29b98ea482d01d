#pragma once
// Every message of the fleet protocol (coordinator <-> worker), as plain structs.
// Encoding lives in common/wire/codec.h, transport in common/transport/: these structs know
// neither. docs/protocol.md describes each message, its fields and when it is sent.
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/options.h"
#include "common/result.h"
#include "common/value.h"

namespace common::wire {

// Bumped on any change to the envelope or to the field layout of any message.
inline constexpr std::uint32_t kProtocolVersion = 7;

// Engine ids are worker_id * 2^12 + n (n = 1..engines, or its version twin below): fleet-unique
// because worker ids are, and below 2^63 for the coordinator's worker ids (epoch seconds * 2^20 +
// counter). The coordinator takes a SharedOp only for engines of the worker that sends it.
inline constexpr unsigned kEngineBits = 12;
inline constexpr std::uint64_t worker_of_engine(std::uint64_t engine) {
    return engine >> kEngineBits;
}
inline constexpr std::uint64_t engine_index(std::uint64_t engine) {
    return engine & ((std::uint64_t{1} << kEngineBits) - 1);
}
// An engine's version-phase twin (the `version` scripts -sV runs before the script scan, in
// a Lua state of their own) is an engine of its own for the shared state: index + this bit.
// Engines per worker stay <= 1024, below it.
inline constexpr std::uint64_t kVersionTwin = std::uint64_t{1} << (kEngineBits - 1);
inline constexpr std::uint64_t version_twin(std::uint64_t engine) { return engine | kVersionTwin; }
// Default cap on one encoded message (receivers drop larger frames unread).
inline constexpr std::size_t kDefaultMaxMessageBytes = 16u << 20;

// Wire numbers of the message types. Stable within a protocol version; never reused.
enum class MsgType : std::uint8_t {
    Hello = 1,
    Welcome = 2,
    Heartbeat = 3,
    RequestWork = 4,
    Lease = 5,
    NoWork = 6,
    LeaseRenewed = 7,
    LeaseLost = 8,
    HostResult = 9,
    GroupDone = 10,
    RunPhase = 11,
    PhaseResult = 12,
    SharedOp = 13,
    SharedReply = 14,
    SharedNotify = 15,
    StatusQuery = 16,
    StatusReply = 17,
    Error = 18,
    Bye = 19,
    AddTargets = 20,
};

// Error codes carried by Error (and reported by decode): callers branch on these, never on
// the text.
enum class ErrorCode : std::uint32_t {
    None = 0,
    Malformed = 1,      // not a valid envelope or body
    TooLarge = 2,       // frame above the receiver's size limit
    BadVersion = 3,     // envelope protocol version not supported
    UnknownType = 4,    // message type number not known
    NotAuthorized = 5,  // peer not admitted (or not yet said Hello)
    UnknownLease = 6,   // group id not leased to this worker (expired, reassigned)
    BadState = 7,       // message not valid now (e.g. RequestWork after Bye)
    Internal = 8,       // the sender failed (store error, ...)
};

// Worker -> coordinator, first message on a connection.
struct Hello {
    static constexpr MsgType kType = MsgType::Hello;
    std::uint32_t protocol = kProtocolVersion;  // highest version the worker speaks
    std::string name;                           // worker's host name or --name, for logs
    std::uint32_t engines = 1;                  // engines (parallel host groups) it runs
    std::uint32_t pid = 0;
    std::vector<std::string> capabilities;  // e.g. "connect-scan", "ipv6"
    bool operator==(const Hello&) const = default;
};

// Coordinator -> worker: accepted; carries the scan options once for the whole scan.
struct Welcome {
    static constexpr MsgType kType = MsgType::Welcome;
    std::uint64_t worker_id = 0;        // fleet-unique; also the high part of engine ids
    std::string scan_id;                // identifies the scan (state dir journal)
    std::uint32_t heartbeat_ms = 1000;  // worker sends Heartbeat at least this often
    std::uint32_t lease_ms = 30000;     // lease duration; renewed by heartbeats
    common::ScanOptions options;        // everything the worker needs to run a group
};

// Both ways: "I am alive". A worker lists the groups it is working on, which renews them.
struct Heartbeat {
    static constexpr MsgType kType = MsgType::Heartbeat;
    double now = 0;                     // sender's wall clock (epoch seconds), for logs
    std::vector<std::uint64_t> leases;  // group ids in progress (worker -> coordinator)
    std::uint32_t engines_busy = 0;
    bool operator==(const Heartbeat&) const = default;
};

// Worker -> coordinator: "give me up to `slots` groups" (workers pull work).
struct RequestWork {
    static constexpr MsgType kType = MsgType::RequestWork;
    std::uint32_t slots = 1;
    bool operator==(const RequestWork&) const = default;
};

// One target of a leased group.
struct LeaseHost {
    std::uint64_t index = 0;  // position in target order (HostResult::index)
    std::string address;      // numeric
    bool ipv6 = false;
    std::string targetname;                    // name typed by the user, if any
    std::vector<std::string> other_addresses;  // the name's other addresses, not scanned
    bool operator==(const LeaseHost&) const = default;
};

// Coordinator -> worker: one host group, owned by the worker until `deadline`.
struct Lease {
    static constexpr MsgType kType = MsgType::Lease;
    std::uint64_t group_id = 0;
    std::uint32_t attempt = 1;  // 1 first time, >1 when re-leased after a loss
    double deadline = 0;        // coordinator's epoch seconds
    std::vector<LeaseHost> hosts;
    bool operator==(const Lease&) const = default;
};

// Coordinator -> worker: nothing to hand out now.
struct NoWork {
    static constexpr MsgType kType = MsgType::NoWork;
    std::uint32_t retry_ms = 500;  // ask again after this long
    bool scan_done = false;        // no more work ever: the worker may say Bye
    bool operator==(const NoWork&) const = default;
};

// Coordinator -> worker: these leases now run until `deadline`.
struct LeaseRenewed {
    static constexpr MsgType kType = MsgType::LeaseRenewed;
    std::vector<std::uint64_t> group_ids;
    double deadline = 0;
    bool operator==(const LeaseRenewed&) const = default;
};

// Coordinator -> worker: the lease is gone (expired, scan aborted): stop working on it.
struct LeaseLost {
    static constexpr MsgType kType = MsgType::LeaseLost;
    std::uint64_t group_id = 0;
    std::string reason;
    bool operator==(const LeaseLost&) const = default;
};

// Worker -> coordinator: one finished host of a leased group.
struct HostResult {
    static constexpr MsgType kType = MsgType::HostResult;
    std::uint64_t group_id = 0;
    common::HostResult host;
};

// Worker -> coordinator: every host of the group has been sent.
struct GroupDone {
    static constexpr MsgType kType = MsgType::GroupDone;
    std::uint64_t group_id = 0;
    std::uint32_t hosts = 0;  // HostResults sent for this group (a check)
    double elapsed = 0;       // seconds the group took
    bool operator==(const GroupDone&) const = default;
};

enum class Phase : std::uint8_t { Prerule = 1, Postrule = 2 };

// Coordinator -> worker: run the prerule or postrule scripts once.
struct RunPhase {
    static constexpr MsgType kType = MsgType::RunPhase;
    std::uint64_t phase_id = 0;
    Phase phase = Phase::Prerule;
    // The registry is not carried: the phase fetches it (RegistryChanges, in parts if large).
};

// Worker -> coordinator: outcome of a RunPhase.
struct PhaseResult {
    static constexpr MsgType kType = MsgType::PhaseResult;
    std::uint64_t phase_id = 0;
    Phase phase = Phase::Prerule;
    std::vector<common::ScriptResult> scripts;
    common::Value registry;  // registry after the phase, to merge
    std::string error;       // non-empty when the phase could not run at all
};

// Fleet-wide identity of a script thread (nse::Owner on the wire).
struct Owner {
    std::uint64_t engine = 0;
    std::uint64_t id = 0;
    bool operator==(const Owner&) const = default;
};

// The shared-state operations of nse::SharedState.
enum class SharedOpKind : std::uint8_t {
    MutexLock = 1,     // queue for the lock; SharedNotify(Granted) when owned
    MutexTrylock = 2,  // SharedReply.ok = acquired
    MutexUnlock = 3,   // SharedReply.ok = was the owner
    MutexAbandon = 4,  // owner died: release or leave the queue; no reply needed
    MutexOwner = 5,    // SharedReply.owner
    CondWait = 6,      // SharedNotify(Woken) on signal/broadcast
    CondSignal = 7,
    CondBroadcast = 8,
    CondCancel = 9,
    RegistryMerge = 10,    // value = delta published by engine who.engine; acknowledged
    RegistryChanges = 11,  // since = version the engine has; SharedReply: version, deltas/value
    TargetCounts = 12      // SharedReply.targets_added/pending: nmap.add_targets, fleet-wide
};

// Worker -> coordinator: one shared-state operation.
struct SharedOp {
    static constexpr MsgType kType = MsgType::SharedOp;
    std::uint64_t request_id = 0;  // echoed in SharedReply/SharedNotify
    SharedOpKind op = SharedOpKind::MutexLock;
    std::string key;
    Owner who;
    common::Value value;      // RegistryMerge only
    std::uint64_t since = 0;  // RegistryChanges only
    std::uint64_t lease = 0;  // the group `who` works for (0: a phase); its locks end with it
    // RegistryChanges: 0 asks for the changes; k > 0 for part k of a registry the answer to
    // the last ask of this engine cut in parts.
    std::uint32_t part = 0;
};

// Coordinator -> worker: answer to a SharedOp that has one.
struct SharedReply {
    static constexpr MsgType kType = MsgType::SharedReply;
    std::uint64_t request_id = 0;
    bool ok = false;
    std::optional<Owner> owner;  // MutexOwner
    // RegistryChanges: the version reached, and either the whole registry (snapshot, in
    // value) or the deltas other engines published since.
    common::Value value;
    std::uint64_t version = 0;
    bool snapshot = false;
    std::vector<common::Value> deltas;
    // A registry too large for one message comes as `parts` snapshot parts (deltas that
    // build it from empty, registry_parts.h); this is part number `part` (0-based).
    std::uint32_t part = 0, parts = 1;
    // TargetCounts: hosts scripts added over the scan, and those not in a host group yet.
    std::uint64_t targets_added = 0, targets_pending = 0;
};

enum class SharedEvent : std::uint8_t { Granted = 1, Woken = 2 };

// Coordinator -> worker: a queued lock was granted or a condvar waiter woken.
struct SharedNotify {
    static constexpr MsgType kType = MsgType::SharedNotify;
    std::uint64_t request_id = 0;  // of the MutexLock / CondWait
    SharedEvent event = SharedEvent::Granted;
    std::string key;
    Owner who;
    bool operator==(const SharedNotify&) const = default;
};

// Anyone -> coordinator: how is the scan going?
struct StatusQuery {
    static constexpr MsgType kType = MsgType::StatusQuery;
    bool workers = true;  // include the per-worker list
    bool operator==(const StatusQuery&) const = default;
};

struct WorkerStatus {
    std::uint64_t worker_id = 0;
    std::string name;
    std::uint32_t engines = 0;
    std::vector<std::uint64_t> leases;
    double last_seen = 0;  // coordinator's epoch seconds
    bool operator==(const WorkerStatus&) const = default;
};

struct StatusReply {
    static constexpr MsgType kType = MsgType::StatusReply;
    std::string scan_id;
    std::string state;  // "prerule", "scanning", "postrule", "done", "failed"
    std::uint64_t hosts_total = 0, hosts_done = 0;
    std::uint64_t groups_pending = 0, groups_leased = 0, groups_done = 0;
    bool targets_exhausted = false;  // all targets expanded (hosts_total is final)
    std::vector<WorkerStatus> workers;
    bool operator==(const StatusReply&) const = default;
};

// Either way: a request could not be honoured. Never answered with another Error.
struct Error {
    static constexpr MsgType kType = MsgType::Error;
    ErrorCode code = ErrorCode::None;
    std::string text;
    std::uint64_t in_reply_to = 0;  // seq of the offending message, 0 if unknown
    bool operator==(const Error&) const = default;
};

// Either way: orderly goodbye. A worker's leases go back to the queue at once.
struct Bye {
    static constexpr MsgType kType = MsgType::Bye;
    std::string reason;
    bool operator==(const Bye&) const = default;
};

// Worker -> coordinator: hosts a script added with nmap.add_targets, already expanded and
// checked against the scan's excludes. The coordinator drops ones it was given before and
// scans the rest in new groups. Sent before the HostResult/PhaseResult of the adding script.
struct AddTargets {
    static constexpr MsgType kType = MsgType::AddTargets;
    std::vector<LeaseHost> targets;  // index is ignored (the coordinator assigns one)
    bool operator==(const AddTargets&) const = default;
};

using Message =
    std::variant<Hello, Welcome, Heartbeat, RequestWork, Lease, NoWork, LeaseRenewed, LeaseLost,
                 HostResult, GroupDone, RunPhase, PhaseResult, SharedOp, SharedReply, SharedNotify,
                 StatusQuery, StatusReply, Error, Bye, AddTargets>;

// Type number of the message held.
MsgType type_of(const Message& m);
// "Hello", "Lease", ...; "unknown" for numbers outside MsgType.
const char* type_name(MsgType t);

}  // namespace common::wire
