#pragma once
// Target specifications as nmap reads them: addresses, names, CIDR, octet ranges.
#include <array>
#include <bitset>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "common/status.h"

namespace common {

struct Target {
    std::string address;  // numeric address ("127.0.1.5", "::1")
    bool ipv6 = false;
    std::string targetname;  // the name the user typed when it was a hostname, else empty
    // The name's other addresses, not scanned (nmap's "Other addresses for ..." line).
    std::vector<std::string> other_addresses;
};

// Expands target specs (plus -iL files, minus --exclude/--excludefile) into the ordered,
// de-duplicated host list. Host names are resolved with getaddrinfo (first address of the
// wanted family). Errors name the bad token: "invalid target specification: '10.0.0.0/33'",
// "failed to resolve 'nosuch.invalid'", "cannot read target file 'x': No such file...".
// An expansion of more than `limit` hosts is an error.
// For scans too big to hold in memory, see common/target_cursor.h (same syntax, lazy).
Result<std::vector<Target>> expand_targets(const std::vector<std::string>& specs,
                                           const std::vector<std::string>& input_files,
                                           const std::vector<std::string>& excludes,
                                           const std::vector<std::string>& exclude_files, bool ipv6,
                                           std::size_t limit = 1u << 24);

// ---- Parsing pieces shared by expand_targets and TargetCursor. With `resolve_all`
// (--resolve-all) a host name that resolves to several addresses names them all (kind
// Names); otherwise its first address.

// One parsed target expression: IPv4 octet ranges or a CIDR block of either family; a plain
// address is a /32 or /128 block. Holds no host list, so any size costs the same.
struct TargetSpec {
    enum Kind { V4Octets, V4Cidr, V6Cidr, Names } kind = V4Cidr;
    std::array<std::bitset<256>, 4> octets;  // V4Octets
    std::uint32_t v4 = 0;                    // V4Cidr, host order, not yet network-aligned
    std::array<std::uint8_t, 16> v6{};       // V6Cidr, not yet network-aligned
    int prefix = 32;
    std::string targetname;  // the host name when the user typed one naming a single host
    std::string resolved;    // the address a host name resolved to; empty for literals
    std::vector<std::string> other_addresses;  // its other addresses, not scanned
    // Names: every address of the name (--resolve-all), in resolver order; `resolved` holds
    // them joined by ','.
    std::vector<std::string> addresses;

    // A spec of no host (a name that did not resolve, skipped with a warning).
    static TargetSpec none() {
        TargetSpec s;
        s.kind = V4Octets;
        return s;
    }
    // Host count, saturated at 2^63.
    std::uint64_t count() const;
    bool contains_v4(std::uint32_t a) const;
    bool contains_v6(const std::array<std::uint8_t, 16>& a) const;
};

// Parses one expression; a host name is resolved with getaddrinfo unless `resolved` gives
// its address (used to replay a journaled resolution). `ipv6` is -6; with `any_family`
// (excludes) both families parse. Errors as documented for expand_targets.
Result<TargetSpec> parse_target_spec(const std::string& tok, bool ipv6, bool any_family,
                                     const std::string& resolved = {}, bool resolve_all = false);

// Appends the tokens of one -iL/--excludefile line ('#' starts a comment).
void split_spec_line(std::string line, std::vector<std::string>& out);

// Opens a spec file ("-" is stdin): on failure, the error expand_targets reports
// ("cannot read target file 'x': No such file or directory"). `what` is "target"/"exclude".
Status open_spec_file(const std::string& path, const std::string& what, std::ifstream& f);

// Reads a whole spec file into tokens.
Status read_spec_file(const std::string& path, const std::string& what,
                      std::vector<std::string>& out);

// Numeric address text, as nmap prints it.
// RFC 6761: a name under .invalid never resolves, so no query is sent for it.
bool never_resolves(const std::string& name);

// True for parse_target_spec's "failed to resolve" error (a name, not a syntax error).
bool unresolved_name(const Status& st);

// True when `a` (host order) is outside the special-purpose blocks (private, loopback,
// link-local, documentation, multicast, reserved) and does not end in .0 or .255: an
// address nmap's -iR may pick.
bool random_target_candidate(std::uint32_t a);

// `n` random IPv4 addresses that pass random_target_candidate, as nmap's -iR picks them.
std::vector<std::string> random_public_ipv4(int n);

// nmap's -D list ("198.51.100.7,ME,RND:3"): IPv4 addresses, "ME" (at most once) and RND[:N]
// expanded to random public addresses. Errors name the bad item.
Result<std::vector<std::string>> parse_decoys(const std::string& spec);

std::string format_v4(std::uint32_t a);
std::string format_v6(const std::array<std::uint8_t, 16>& a);

}  // namespace common
