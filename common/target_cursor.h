#pragma once
// Lazy target expansion: walks the hosts of nmap target specs in input order without
// materialising them, so a coordinator can plan 127.0.0.0/8 (or 0.0.0.0/0) in constant
// memory and resume from a journaled position after a restart.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "common/targets.h"

namespace common {

// What to walk: the same inputs as expand_targets.
struct TargetSources {
    std::vector<std::string> specs;          // command-line specs, walked first
    std::vector<std::string> input_files;    // -iL files ("-" is stdin), read line by line
    std::vector<std::string> excludes;       // --exclude specs
    std::vector<std::string> exclude_files;  // --excludefile files (read whole, at open)
    bool ipv6 = false;                       // -6
    bool resolve_all = false;                // --resolve-all: every address of a name
    // -iR 0: once specs and -iL tokens are walked, random public IPv4 addresses without end
    // (random_target_candidate, not excluded). They are drawn from `random_seed` by their
    // draw number, so a journaled position continues the same sequence after a restart.
    bool random_endless = false;
    std::uint64_t random_seed = 0;
    // One spec naming more hosts than this is an error (same message as expand_targets).
    // 2^32 admits 0.0.0.0/0 and an IPv6 /96; ::/64 is refused.
    std::uint64_t spec_limit = std::uint64_t(1) << 32;
    // Duplicate suppression (see TargetCursor): the first `dedup_window` distinct hosts
    // emitted are remembered; a later host equal to one of them is dropped. 0 disables it.
    std::size_t dedup_window = std::size_t(1) << 16;
    // As nmap: a host name that does not resolve is a warning ("Failed to resolve "x".")
    // given to this callback, and the walk goes on without it. Unset: an error.
    std::function<void(const std::string&)> on_unresolved;
};

// Where a walk stands. Small and serialisable so the coordinator can journal it.
struct CursorPosition {
    std::uint64_t spec = 0;    // token index: command-line specs, then -iL tokens in order
    std::uint64_t offset = 0;  // host offset inside that spec (before exclusion)
    std::uint64_t index = 0;   // global index the next emitted host gets
    std::string resolved;      // address(es, ','-joined) the current spec's name resolved to

    bool operator==(const CursorPosition&) const = default;
    // Compact text form "v1 spec offset index [resolved]".
    std::string encode() const;
    // Errors: "bad cursor position '...'" on anything encode() did not produce.
    static Result<CursorPosition> decode(std::string_view text);
};

struct IndexedTarget {
    std::uint64_t index = 0;  // 0, 1, 2, ... in walk order: the host's place in the output
    Target target;
};

// Iterates hosts in nmap order: specs in input order, inside a spec in address order
// (octet ranges odometer-style, last octet fastest; CIDR blocks network-aligned).
//
// Memory is O(1) per spec: only the spec being walked is parsed; -iL files are read one line
// at a time; excludes are matched (CIDR/range membership), never expanded.
//
// Duplicates: nmap itself scans a host as often as the specs name it. expand_targets drops
// repeats (first wins), and so does the cursor while the scan is small: the first
// `dedup_window` distinct hosts are remembered and any later repeat of one of them is
// dropped. Past the window, hosts are no longer remembered, so a repeat of a host emitted
// after the window is scanned again (as nmap would). For scans of at most `dedup_window`
// hosts the cursor yields exactly expand_targets' list.
//
// Errors in -iL lines surface lazily, from the next() call that reaches them; command-line
// specs and excludes are all checked by open().
class TargetCursor {
public:
    // Parses excludes and command-line specs (resolving names once), opens -iL files.
    // Errors: any expand_targets error (bad token, resolution, unreadable file, too big).
    static Result<TargetCursor> open(TargetSources sources);

    TargetCursor(TargetCursor&&) noexcept;
    TargetCursor& operator=(TargetCursor&&) noexcept;
    ~TargetCursor();

    // Up to n more hosts, each with its global index; empty once the walk is done.
    // Errors: a bad or unresolvable -iL token, an unreadable -iL file. The position then
    // stays on the bad token, so the call fails again rather than skipping hosts.
    Result<std::vector<IndexedTarget>> next(std::size_t n);

    bool done() const;
    // The position after the last host returned; restore() of it continues right after.
    CursorPosition position() const;

    // Moves to `pos` (from position() of a cursor over the same sources). The dedup memory
    // is rebuilt by replaying the walk up to the window; cost is bounded by the window and
    // the hosts skipped, not by the position. Errors: the position does not fit the sources
    // ("cursor position ... does not match the targets"), -iL errors while skipping, and
    // restoring into an -iL file read from stdin (it cannot be re-read).
    Status restore(const CursorPosition& pos);

private:
    struct Impl;
    explicit TargetCursor(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace common
