// XML output (-oX): nmap's layout, valid against nmap.dtd and readable by ndiff.
#include <algorithm>
#include <cctype>
#include <cstdio>

#include "coordinator/output/escape.h"
#include "coordinator/output/writers.h"

namespace coordinator::output {

namespace {

std::string attr(const char* name, const std::string& value) {
    return std::string(" ") + name + "=\"" + xml_escape(value) + "\"";
}

std::string attr_if(const char* name, const std::string& value) {
    return value.empty() ? std::string() : attr(name, value);
}

std::string epoch_str(double t) { return std::to_string(static_cast<long long>(t)); }

// Number of ports in a services list such as "1-40,18081" or "T:22,U:53".
std::size_t count_services(const std::string& s) {
    std::size_t total = 0;
    std::size_t i = 0;
    while (i < s.size()) {
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) {
            ++i;
            continue;
        }
        std::size_t j = i;
        long a = 0;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j])))
            a = a * 10 + (s[j++] - '0');
        long b = a;
        if (j < s.size() && s[j] == '-' && j + 1 < s.size() &&
            std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
            b = 0;
            ++j;
            while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j])))
                b = b * 10 + (s[j++] - '0');
        }
        if (b >= a) total += static_cast<std::size_t>(b - a + 1);
        i = j;
    }
    return total;
}

// Children of a structured value (docs/runtime-contract.md "XML output"): indexed items
// first, then keyed entries.
void write_children(std::string& out, const common::Table& t) {
    auto one = [&](const common::Entry& e) {
        const std::string key = e.indexed ? std::string() : attr("key", e.key);
        if (e.value.is_table()) {
            out += "<table" + key + ">\n";
            write_children(out, e.value.table());
            out += "</table>\n";
        } else {
            out += "<elem" + key + ">" + xml_escape(scalar_text(e.value)) + "</elem>\n";
        }
    };
    for (const auto& e : t.entries)
        if (e.indexed) one(e);
    for (const auto& e : t.entries)
        if (!e.indexed) one(e);
}

std::string script_xml(const common::ScriptResult& r) {
    std::string out = "<script" + attr("id", r.id) + attr("output", r.output);
    if (!r.structured) return out + "/>";
    out += ">";
    if (r.structured->is_table())
        write_children(out, r.structured->table());
    else
        out += xml_escape(scalar_text(*r.structured));
    return out + "</script>";
}

std::string scripts_xml(const std::vector<common::ScriptResult>& v) {
    std::string out;
    for (const auto* r : sorted_scripts(v))
        out += script_xml(*r);
    return out;
}

std::string host_state(const std::string& s) {
    return (s == "up" || s == "down" || s == "skipped") ? s : "unknown";
}

std::string or_unknown(const std::string& s) { return s.empty() ? "unknown" : s; }

class XmlWriter final : public Writer {
public:
    XmlWriter(OutFile out, WriterOptions o) : out_(std::move(out)), opt_(std::move(o)) {}

    void begin(const common::RunInfo& run) override {
        run_ = run;
        const std::string args = xml_escape_args(run.args);
        std::string out =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<!DOCTYPE nmaprun>\n" +
            (opt_.stylesheet.empty() ? std::string()
                                     : "<?xml-stylesheet href=\"" + xml_escape(opt_.stylesheet) +
                                           "\" type=\"text/xsl\"?>\n") +
            "<!-- nsefleet " + xml_escape_args(run.version) + " scan initiated " +
            ctime_string(run.start) + " as: " + args +
            " -->\n"
            "<nmaprun scanner=\"nmap\" args=\"" +
            args + "\"" + attr("start", epoch_str(run.start)) +
            attr("startstr", ctime_string(run.start)) + attr("version", run.version) +
            " xmloutputversion=\"1.05\">\n";
        for (const auto& si : run.scaninfo)
            out += "<scaninfo" + attr("type", si.type) + attr("protocol", si.protocol) +
                   attr("numservices", std::to_string(count_services(si.services))) +
                   attr("services", si.services) + "/>\n";
        out += "<verbose level=\"" + std::to_string(run.verbose) + "\"/>\n";
        out += "<debugging level=\"" + std::to_string(run.debugging) + "\"/>\n";
        out_.write(out);
        out_.flush();
    }

    void prescan(const std::vector<common::ScriptResult>& results) override {
        if (results.empty()) return;  // the DTD wants at least one <script>
        out_.write("<prescript>" + scripts_xml(results) + "</prescript>");
        out_.flush();
    }

    void host(const common::HostResult& h) override {
        if (!host_reported(h, run_.open_only, run_.verbose)) return;
        std::string out = "<host";
        if (h.start_time > 0) out += attr("starttime", epoch_str(h.start_time));
        if (h.end_time > 0) out += attr("endtime", epoch_str(h.end_time));
        if (h.timed_out) out += " timedout=\"true\"";
        out += "><status" + attr("state", host_state(h.status)) +
               attr("reason", or_unknown(h.reason)) +
               attr("reason_ttl", std::to_string(h.reason_ttl)) + "/>\n";
        out += "<address" + attr("addr", h.address) +
               (h.ipv6 ? " addrtype=\"ipv6\"" : " addrtype=\"ipv4\"") + "/>\n";
        out += "<hostnames>\n";
        if (!h.targetname.empty() && h.targetname != h.address)
            out += "<hostname" + attr("name", h.targetname) + " type=\"user\"/>\n";
        if (!h.hostname.empty())
            out += "<hostname" + attr("name", h.hostname) + " type=\"PTR\"/>\n";
        out += "</hostnames>\n";
        if (h.status == "up" && !h.timed_out) {
            if (!h.ports.empty()) out += ports_xml(h);
            if (!h.hostscripts.empty())
                out += "<hostscript>" + scripts_xml(h.hostscripts) + "</hostscript>";
        }
        if (h.srtt > 0) {
            // Only the smoothed RTT is measured; the variance is reported as the RTT itself
            // (a conservative estimate) and the timeout as nmap derives it, at least 100ms.
            const long long srtt = static_cast<long long>(h.srtt * 1e6 + 0.5);
            const long long to = std::max(100000LL, srtt + 4 * srtt);
            out += "<times srtt=\"" + std::to_string(srtt) + "\" rttvar=\"" + std::to_string(srtt) +
                   "\" to=\"" + std::to_string(to) + "\"/>\n";
        }
        out += "</host>\n";
        out_.write(out);
        out_.flush();
    }

    common::Status finish(const common::RunInfo& run) override {
        std::string out;
        if (!run.postscripts.empty())
            out += "<postscript>" + scripts_xml(run.postscripts) + "</postscript>";
        char elapsed[64];
        std::snprintf(elapsed, sizeof elapsed, "%.2f", std::max(0.0, run.end - run.start));
        const std::string timestr = ctime_string(run.end);
        out += "<runstats><finished" + attr("time", epoch_str(run.end)) + attr("timestr", timestr) +
               attr("summary", "Nmap done at " + timestr + "; " + done_summary(run)) +
               attr("elapsed", elapsed) + " exit=\"success\"/><hosts up=\"" +
               std::to_string(run.hosts_up) + "\" down=\"" + std::to_string(run.hosts_down) +
               "\" total=\"" + std::to_string(run.hosts_total) +
               "\"/>\n"
               "</runstats>\n</nmaprun>\n";
        out_.write(out);
        return out_.commit();
    }

private:
    std::string ports_xml(const common::HostResult& h) const {
        const PortView view = split_ports(h.ports, run_.open_only, run_.verbose, run_.debugging);
        std::string out = "<ports>";
        // One <extraports> per state; its reasons are split by protocol.
        for (std::size_t i = 0; i < view.ignored.size();) {
            std::size_t j = i, count = 0;
            while (j < view.ignored.size() && view.ignored[j].state == view.ignored[i].state)
                count += view.ignored[j++].count;
            out += "<extraports" + attr("state", view.ignored[i].state) +
                   attr("count", std::to_string(count)) + ">\n";
            for (std::size_t k = i; k < j; ++k) {
                const auto& g = view.ignored[k];
                for (const auto& [reason, ports] : g.reasons)
                    out += "<extrareasons" + attr("reason", or_unknown(reason)) +
                           attr("count", std::to_string(ports.size())) + attr("proto", g.protocol) +
                           attr("ports", compress_ports(ports)) + "/>\n";
            }
            out += "</extraports>\n";
            i = j;
        }
        for (const auto* p : view.shown) {
            out += "<port" + attr("protocol", p->protocol) +
                   attr("portid", std::to_string(p->number)) + ">";
            out += "<state" + attr("state", p->state) + attr("reason", or_unknown(p->reason)) +
                   attr("reason_ttl", std::to_string(p->reason_ttl)) + "/>";
            out += service_xml(p->service);
            out += scripts_xml(p->scripts);
            out += "</port>\n";
        }
        return out + "</ports>\n";
    }

    static std::string service_xml(const common::ServiceInfo& s) {
        const bool any = !s.name.empty() || !s.product.empty() || !s.version.empty() ||
                         !s.extrainfo.empty() || !s.cpe.empty();
        if (!any) return {};
        const int conf = std::clamp(s.conf, 0, 10);
        std::string out = "<service" + attr("name", s.name.empty() ? "unknown" : s.name) +
                          attr_if("product", s.product) + attr_if("version", s.version) +
                          attr_if("extrainfo", s.extrainfo) + attr_if("hostname", s.hostname) +
                          attr_if("ostype", s.ostype) + attr_if("devicetype", s.devicetype) +
                          (s.tunnel == "ssl" ? " tunnel=\"ssl\"" : "") +
                          attr("method", s.method == "probed" ? "probed" : "table") +
                          attr("conf", std::to_string(conf)) + attr_if("servicefp", s.servicefp);
        if (s.cpe.empty()) return out + "/>";
        out += ">";
        for (const auto& c : s.cpe)
            out += "<cpe>" + xml_escape(c) + "</cpe>";
        return out + "</service>";
    }

    OutFile out_;
    WriterOptions opt_;
    common::RunInfo run_;
};

}  // namespace

std::unique_ptr<Writer> make_xml_writer(OutFile out, WriterOptions o) {
    return std::make_unique<XmlWriter>(std::move(out), std::move(o));
}

}  // namespace coordinator::output
