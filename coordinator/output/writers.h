#pragma once
// Internal to coordinator/output: the destination abstraction, the per-format writers that
// OutputSink fans out to, and helpers shared by the formats (port collapsing, time strings).
#include <cstdint>
#include <cstdio>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "common/options.h"
#include "common/result.h"
#include "common/status.h"

namespace coordinator::output {

// False for a path that exists and is not a regular file (a device, FIFO or symlink).
bool is_regular_or_absent(const std::string& path);
// True for a device, FIFO or socket (symlinks followed): two reports may share /dev/null.
bool is_sink_device(const std::string& path);

// Where one format goes: a file written as "<path>.part" and renamed to <path> by commit(),
// or a borrowed stream (stdout, or a string stream in tests). A path that exists and is not
// a regular file (/dev/null, a FIFO, /dev/stdout, a symlink) is written in place: a rename
// would replace the device or link with a file. Move-only.
class OutFile {
public:
    // Creates "<path>.part" (or opens <path> itself, see above). Errors name <path>.
    static common::Result<OutFile> create(const std::string& path, bool append = false);
    // Writes to `os`, which must outlive the OutFile; commit() only flushes.
    static OutFile stream(std::ostream& os, std::string label);

    OutFile(OutFile&&) noexcept;
    OutFile& operator=(OutFile&&) noexcept;
    OutFile(const OutFile&) = delete;
    OutFile& operator=(const OutFile&) = delete;
    // An uncommitted file keeps its ".part" name: the final name never holds a truncated report.
    ~OutFile();

    void write(std::string_view s);
    void flush();
    // -oS: from now on, text is written in nmap's "script kiddie" letters (skid_text).
    void set_skid(std::uint64_t seed);
    // Flushes, closes and renames into place. Reports write, close and rename errors (naming
    // the file); later writes are ignored.
    common::Status commit();
    // Closes and deletes the ".part" file without publishing it.
    void discard();
    const std::string& label() const { return label_; }

private:
    OutFile() = default;
    std::FILE* file_ = nullptr;
    std::ostream* os_ = nullptr;
    std::string label_;  // final path, or "stdout"
    std::string part_;   // temporary path when file_ is set
    bool failed_ = false;
    bool append_ = false;  // --append-output: commit appends instead of replacing
    bool direct_ = false;  // written in place (not a regular file): no ".part", no rename
    bool skid_ = false;
    std::uint64_t skid_state_ = 0;
    common::Status append_part();
};

// nmap's -oS text: letters randomly swapped for look-alike digits and signs (a->4, e->3,
// i->1 or !, o->0, s->$ or z, z->Z) or changed in case, driven by `state` (advanced).
// Everything else (digits, punctuation, line breaks) is kept, so addresses and port numbers
// read the same; each character stays one byte, so lines keep their length.
std::string skid_text(std::string_view text, std::uint64_t& state);

// One output format. Same calls, same order as coordinator::OutputSink.
class Writer {
public:
    virtual ~Writer() = default;
    virtual void begin(const common::RunInfo& run) = 0;
    virtual void prescan(const std::vector<common::ScriptResult>& results) = 0;
    virtual void host(const common::HostResult& h) = 0;
    virtual common::Status finish(const common::RunInfo& run) = 0;
    // Streaming formats get hosts as they finish (any order) rather than in target order.
    virtual bool streams() const { return false; }
};

// Per-format options that do not come from RunInfo.
struct WriterOptions {
    bool reason = false;        // --reason: REASON column, "received ..." wording
    bool version_scan = false;  // -sV: VERSION column, "name?" for unidentified services
    bool scanned_at = false;    // -vv/-d: "Scanned at 2026-12-07 10:02:03 UTC for 1s"
    std::string stylesheet = "file:///usr/share/nmap/nmap.xsl";  // XML; "" = none
};

// terminal=true: the interactive form ("Starting ...", "Nmap done: ..."); false: the -oN file
// form ("# ... scan initiated ...", "# Nmap done at ...").
std::unique_ptr<Writer> make_normal_writer(OutFile out, bool terminal, WriterOptions o);
std::unique_ptr<Writer> make_xml_writer(OutFile out, WriterOptions o = {});
std::unique_ptr<Writer> make_grepable_writer(OutFile out);
std::unique_ptr<Writer> make_ndjson_writer(OutFile out);

// ---- shared helpers (sink.cc)

// Ports of one (state, protocol) that the report does not list one by one.
struct IgnoredGroup {
    std::string state, protocol;
    std::size_t count = 0;
    // reason -> ports with that reason, reasons in first-seen order
    std::vector<std::pair<std::string, std::vector<std::uint16_t>>> reasons;
};

struct PortView {
    std::vector<const common::PortResult*> shown;  // listed ports, input order
    std::vector<IgnoredGroup> ignored;             // nmap's state order, then protocol
    std::size_t ignored_total = 0;
};

// nmap's collapse rule: states that may be open are always listed; with --open every other
// state is ignored; otherwise a state is ignored when more than 25 ports (times
// verbose + 3*debugging when either is set) share it; with debugging > 2 nothing is ignored.
PortView split_ports(const std::vector<common::PortResult>& ports, bool open_only, int verbose,
                     int debugging);

// Whether a report shows this host at all: down hosts only when verbose; with --open, hosts
// whose scanned ports include nothing possibly open are left out.
bool host_reported(const common::HostResult& h, bool open_only, int verbose);

// "localhost (127.0.0.1)", or just the address when no name is known.
std::string display_name(const common::HostResult& h);
// The name shown beside the address in grepable output (reverse DNS first), may be empty.
std::string grep_name(const common::HostResult& h);

// "1-40,18081"
std::string compress_ports(std::vector<std::uint16_t> ports);
// "1 IP address (1 host up) scanned in 0.26 seconds"
std::string done_summary(const common::RunInfo& run);
// ctime-style local time without newline: "Sat Nov 21 05:53:20 2026"
std::string ctime_string(double epoch);
// Number with two significant digits, trailing zeros kept: 0.00010, 0.0012, 1.2, 12
std::string two_sig_digits(double v);
// Scripts in output order (by id, then original order), as pointers into `v`.
std::vector<const common::ScriptResult*> sorted_scripts(const std::vector<common::ScriptResult>& v);
// Version column / grepable version text: "product version (extrainfo)".
std::string version_text(const common::ServiceInfo& s);

}  // namespace coordinator::output
