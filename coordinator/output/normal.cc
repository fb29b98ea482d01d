// Normal output (the terminal and -oN), laid out the way nmap 7.93 prints it.
#include <algorithm>
#include <cmath>
#include <ctime>

#include "common/clock.h"
#include "coordinator/output/escape.h"
#include "coordinator/output/writers.h"

namespace coordinator::output {

namespace {

// Script blocks for results with text, in output order (results with empty text are omitted,
// docs/runtime-contract.md "From return values to a result").
std::string script_blocks(const std::vector<common::ScriptResult>& v) {
    std::string out;
    for (const auto* r : sorted_scripts(v))
        out += script_block(r->id, r->output);
    return out;
}

// With -sV, an open port whose name only comes from nmap-services reads "http?".
std::string service_column(const common::PortResult& p, bool version_scan) {
    const auto& s = p.service;
    std::string name = s.name.empty() ? "unknown" : s.name;
    if (s.tunnel == "ssl") name = "ssl/" + name;
    if (version_scan && s.method != "probed" && p.state == "open") name += "?";
    return name;
}

// Fingerprints of services that answered but matched nothing, as nmap prints them: the first
// 74 characters, then lines of 71 prefixed "SF:".
std::string fingerprints(const std::vector<const common::PortResult*>& ports) {
    std::vector<std::string> fps;
    for (const auto* p : ports)
        if (!p->service.servicefp.empty()) fps.push_back(p->service.servicefp);
    if (fps.empty()) return "";
    const bool one = fps.size() == 1;
    std::string out = std::to_string(fps.size()) + (one ? " service" : " services") +
                      " unrecognized despite returning data. If you know the service/version, "
                      "please submit the following fingerprint" +
                      (one ? "" : "s") + " at https://nmap.org/cgi-bin/submit.cgi?new-service :\n";
    for (std::size_t i = 0; i < fps.size(); ++i) {
        if (i)
            out += "==============NEXT SERVICE FINGERPRINT (SUBMIT INDIVIDUALLY)==============\n";
        const std::string fp = screen_safe(fps[i]);
        out += fp.substr(0, 74) + "\n";
        for (std::size_t at = 74; at < fp.size(); at += 71)
            out += "SF:" + fp.substr(at, 71) + "\n";
    }
    return out;
}

std::string reason_text(const std::string& reason, int ttl) {
    std::string r = reason.empty() ? "unknown" : reason;
    if (ttl > 0) r += " ttl " + std::to_string(ttl);
    return r;
}

// "Not shown: 40 closed tcp ports (conn-refused), 3 filtered tcp ports (no-response)"
std::string not_shown_line(const PortView& view) {
    std::string out = "Not shown: ";
    bool first = true;
    for (const auto& g : view.ignored) {
        if (!first) out += ", ";
        first = false;
        out += std::to_string(g.count) + " " + g.state + " " + g.protocol +
               (g.count == 1 ? " port" : " ports");
        std::string reasons;
        if (g.reasons.size() == 1) {
            reasons = g.reasons[0].first;
        } else {
            for (const auto& [reason, ports] : g.reasons) {
                if (!reasons.empty()) reasons += ", ";
                reasons +=
                    std::to_string(ports.size()) + " " + (reason.empty() ? "unknown" : reason);
            }
        }
        if (!reasons.empty()) out += " (" + reasons + ")";
    }
    return out + "\n";
}

// nmap's port table: each column padded to its widest cell plus one space, trailing blanks cut.
std::string format_table(const std::vector<std::vector<std::string>>& rows,
                         const std::vector<std::string>& after_row) {
    std::vector<std::size_t> width;
    for (const auto& r : rows) {
        if (width.size() < r.size()) width.resize(r.size(), 0);
        for (std::size_t i = 0; i < r.size(); ++i)
            width[i] = std::max(width[i], r[i].size());
    }
    std::string out;
    for (std::size_t k = 0; k < rows.size(); ++k) {
        std::string line;
        for (std::size_t i = 0; i < rows[k].size(); ++i) {
            if (i > 0) line += ' ';
            line += rows[k][i];
            if (i + 1 < rows[k].size()) line.append(width[i] - rows[k][i].size(), ' ');
        }
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
        out += line + "\n" + after_row[k];
    }
    return out;
}

// "Service Info: Host: x; OS: Linux; CPE: cpe:/o:linux:linux_kernel", or "".
std::string service_info(const std::vector<const common::PortResult*>& ports) {
    std::vector<std::string> hosts, oses, devices, cpes;
    auto add = [](std::vector<std::string>& v, const std::string& s) {
        if (!s.empty() && std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
    };
    for (const auto* p : ports) {
        add(hosts, p->service.hostname);
        add(oses, p->service.ostype);
        add(devices, p->service.devicetype);
        for (const auto& c : p->service.cpe)
            if (c.rfind("cpe:/o", 0) == 0 || c.rfind("cpe:/h", 0) == 0) add(cpes, c);
    }
    std::string out;
    auto part = [&](const char* one, const char* many, const std::vector<std::string>& v) {
        if (v.empty()) return;
        if (!out.empty()) out += "; ";
        out += std::string(v.size() == 1 ? one : many) + ": ";
        for (std::size_t i = 0; i < v.size(); ++i)
            out += (i ? ", " : "") + v[i];
    };
    part("Host", "Hosts", hosts);
    part("OS", "OSs", oses);
    part("Device", "Devices", devices);
    part("CPE", "CPEs", cpes);
    return out.empty() ? out : "Service Info: " + screen_safe(out) + "\n";
}

class NormalWriter final : public Writer {
public:
    NormalWriter(OutFile out, bool terminal, WriterOptions o)
        : out_(std::move(out)), terminal_(terminal), opt_(o) {}

    void begin(const common::RunInfo& run) override {
        run_ = run;
        if (terminal_) {
            const std::time_t t = static_cast<std::time_t>(run.start);
            std::tm tm{};
            localtime_r(&t, &tm);
            char buf[64];
            std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M %Z", &tm);
            out_.write("Starting nsefleet " + run.version + " ( nmap-compatible NSE fleet ) at " +
                       buf + "\n");
        } else {
            out_.write("# Nmap-compatible nsefleet " + run.version + " scan initiated " +
                       ctime_string(run.start) + " as: " + screen_safe(run.args) + "\n");
        }
        out_.flush();
    }

    void prescan(const std::vector<common::ScriptResult>& results) override {
        const std::string blocks = script_blocks(results);
        if (blocks.empty()) return;
        out_.write("Pre-scan script results:\n" + blocks);
        out_.flush();
    }

    void host(const common::HostResult& h) override {
        if (!host_reported(h, run_.open_only, run_.verbose)) return;
        const std::string name = screen_safe(display_name(h));
        std::string out = "Nmap scan report for " + name;
        // nmap: a name's addresses it did not scan, after the "Host is up" line.
        std::string others;
        if (!h.other_addresses.empty()) {
            others = "Other addresses for " + screen_safe(h.targetname) + " (not scanned):";
            for (const auto& a : h.other_addresses)
                others += " " + a;
            others += "\n";
        }
        if (h.status == "unknown") {  // -sL
            out_.write(out + "\n" + others);
            out_.flush();
            return;
        }
        if (h.status != "up") {
            out += " [host down";
            if (opt_.reason) out += ", received " + reason_text(h.reason, h.reason_ttl);
            out_.write(out + "]\n");
            out_.flush();
            return;
        }
        out += "\nHost is up";
        if (opt_.reason) out += ", received " + reason_text(h.reason, h.reason_ttl);
        if (h.srtt > 0) out += " (" + two_sig_digits(h.srtt) + "s latency)";
        out += ".\n" + others;
        if (opt_.scanned_at && h.start_time > 0) {
            out += "Scanned at " + common::local_time_text(h.start_time, "%Y-%m-%d %H:%M:%S %Z") +
                   " for " + std::to_string(std::lround(std::max(0.0, h.end_time - h.start_time))) +
                   "s\n";
        }
        if (h.timed_out) {
            out_.write(out + "Skipping host " + name + " due to host timeout\n");
            out_.flush();
            return;
        }
        if (!h.targetname.empty() && !h.hostname.empty() && h.hostname != h.targetname)
            out += "rDNS record for " + h.address + ": " + screen_safe(h.hostname) + "\n";

        bool blank_after = false;
        if (!h.ports.empty()) {
            blank_after = true;
            const PortView view =
                split_ports(h.ports, run_.open_only, run_.verbose, run_.debugging);
            if (view.shown.empty())
                out += "All " + std::to_string(h.ports.size()) + " scanned ports on " + name +
                       " are in ignored states.\n";
            out += view.ignored.empty() ? "\n" : not_shown_line(view);
            if (!view.shown.empty())
                out += port_table(view.shown) + fingerprints(view.shown) + service_info(view.shown);
        }
        const std::string hs = script_blocks(h.hostscripts);
        if (!hs.empty()) {
            out += "\nHost script results:\n" + hs;
            blank_after = true;
        }
        if (blank_after) out += "\n";
        out_.write(out);
        out_.flush();
    }

    common::Status finish(const common::RunInfo& run) override {
        const std::string blocks = script_blocks(run.postscripts);
        if (!blocks.empty()) out_.write("Post-scan script results:\n" + blocks);
        if (terminal_ && run.lost_results > 0)
            out_.write("WARNING: " + std::to_string(run.lost_results) + " script result" +
                       (run.lost_results == 1 ? "" : "s") +
                       " may be missing: an engine reached its memory limit (--engine-memory; -v "
                       "names the scripts)\n");
        if (opt_.version_scan)
            out_.write(
                "Service detection performed. Please report any incorrect results at "
                "https://nmap.org/submit/ .\n");
        if (terminal_)
            out_.write("Nmap done: " + done_summary(run) + "\n");
        else
            out_.write("# Nmap done at " + ctime_string(run.end) + " -- " + done_summary(run) +
                       "\n");
        return out_.commit();
    }

private:
    std::string port_table(const std::vector<const common::PortResult*>& ports) const {
        // As in nmap: the column belongs to -sV, whatever a script set.
        const bool version_col = opt_.version_scan;
        std::vector<std::vector<std::string>> rows;
        std::vector<std::string> after;
        std::vector<std::string> head = {"PORT", "STATE", "SERVICE"};
        if (opt_.reason) head.push_back("REASON");
        if (version_col) head.push_back("VERSION");
        rows.push_back(head);
        after.emplace_back();
        for (const auto* p : ports) {
            std::vector<std::string> r = {std::to_string(p->number) + "/" + p->protocol, p->state,
                                          screen_safe(service_column(*p, opt_.version_scan))};
            if (opt_.reason) r.push_back(reason_text(p->reason, p->reason_ttl));
            if (version_col) r.push_back(screen_safe(version_text(p->service)));
            rows.push_back(std::move(r));
            after.push_back(script_blocks(p->scripts));
        }
        return format_table(rows, after);
    }

    OutFile out_;
    bool terminal_;
    WriterOptions opt_;
    common::RunInfo run_;
};

}  // namespace

std::unique_ptr<Writer> make_normal_writer(OutFile out, bool terminal, WriterOptions o) {
    return std::make_unique<NormalWriter>(std::move(out), terminal, o);
}

}  // namespace coordinator::output
