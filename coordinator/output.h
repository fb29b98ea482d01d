#pragma once
// Output writers: normal (-oN and the terminal), XML (-oX), grepable (-oG), NDJSON (-oJ).
// Files are written beside their final name and renamed into place when complete, so a
// crash never leaves a truncated report; NDJSON is streamed (one line per host, flushed).
#include <memory>
#include <string>
#include <vector>

#include "common/options.h"
#include "common/result.h"
#include "common/status.h"

namespace coordinator {

// How many reports the options send to stdout ("-"); with one, stdout holds that report
// alone (nothing else may be printed there).
int reports_on_stdout(const common::ScanOptions& opts);

// Ascending port numbers in nmap's scaninfo "services" form: "21-23,80,443".
std::string services_text(const std::vector<std::uint16_t>& ports);

class OutputSink {
public:
    // Opens every requested output (errors name the file). Normal output also goes to stdout
    // unless some format already writes to stdout ("-").
    static common::Result<std::unique_ptr<OutputSink>> open(const common::ScanOptions& opts);
    virtual ~OutputSink() = default;

    virtual void begin(const common::RunInfo& run) = 0;
    // Pre-scan script results (called once, possibly with none).
    virtual void prescan(const std::vector<common::ScriptResult>& results) = 0;
    // A host has finished (any order): streaming formats (NDJSON) write it now.
    virtual void host_finished(const common::HostResult& h) = 0;
    // The same host again, now in target order, for the ordered formats.
    virtual void host(const common::HostResult& h) = 0;
    // Post-scan results are in run.postscripts; totals in run. Completes and renames files.
    virtual common::Status finish(const common::RunInfo& run) = 0;
};

}  // namespace coordinator
