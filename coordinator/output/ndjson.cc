// NDJSON output (-oJ): one JSON object per line, one line per reported host, written and
// flushed as each host arrives; pre/post-scan results get their own lines.
//
// Lines:
//   {"type":"prescript","scripts":[SCRIPT...]}                       (only when there are some)
//   {"type":"host","address":..,"ipv6":..,"targetname":..,"hostname":..,"status":..,
//    "reason":..,"srtt":..,"timed_out":..,"start_time":..,"end_time":..,
//    "ports":[{"port":..,"protocol":..,"state":..,"reason":..,"reason_ttl":..,
//              "service":{"name":..,"method":..,"conf":..,...},"scripts":[SCRIPT...]}],
//    "extraports":[{"state":..,"protocol":..,"count":..,"reasons":{"conn-refused":40}}],
//    "hostscripts":[SCRIPT...]}
//   {"type":"postscript","scripts":[SCRIPT...]}                      (only when there are some)
//   SCRIPT = {"id":..,"output":<raw text>,"data":<structured value, when present>}
// Ports follow the same listing/collapse rule as normal output; hosts the same reporting rule.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "coordinator/output/escape.h"
#include "coordinator/output/writers.h"

namespace coordinator::output {

namespace {

std::string json_value(const common::Value& v);

std::string json_table(const common::Table& t) {
    const bool array_only = std::all_of(t.entries.begin(), t.entries.end(),
                                        [](const common::Entry& e) { return e.indexed; });
    std::string out;
    if (array_only) {
        out = "[";
        for (std::size_t i = 0; i < t.entries.size(); ++i)
            out += (i ? "," : "") + json_value(t.entries[i].value);
        return out + "]";
    }
    // Mixed or keyed: array items get their 1-based position among items as key, first.
    out = "{";
    bool first = true;
    std::size_t index = 0;
    for (const auto& e : t.entries) {
        if (!e.indexed) continue;
        out +=
            (first ? "" : ",") + json_string(std::to_string(++index)) + ":" + json_value(e.value);
        first = false;
    }
    for (const auto& e : t.entries) {
        if (e.indexed) continue;
        out += (first ? "" : ",") + json_string(e.key) + ":" + json_value(e.value);
        first = false;
    }
    return out + "}";
}

std::string json_number(double d) {
    if (!std::isfinite(d)) return "null";
    // Shortest form that reads back as the same double (0.00042, not 0.00042000000000000002).
    char buf[64];
    for (int prec = 15; prec <= 17; ++prec) {
        std::snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (std::strtod(buf, nullptr) == d) break;
    }
    return buf;
}

std::string json_value(const common::Value& v) {
    if (v.is_table()) return json_table(v.table());
    if (v.is_nil()) return "null";
    if (auto b = std::get_if<bool>(&v.v)) return *b ? "true" : "false";
    if (auto i = std::get_if<std::int64_t>(&v.v)) return std::to_string(*i);
    if (auto d = std::get_if<double>(&v.v)) return json_number(*d);
    return json_string(std::get<std::string>(v.v));
}

std::string json_scripts(const std::vector<common::ScriptResult>& v) {
    std::string out = "[";
    bool first = true;
    for (const auto* r : sorted_scripts(v)) {
        out += first ? "{" : ",{";
        first = false;
        out += "\"id\":" + json_string(r->id) + ",\"output\":" + json_string(r->output);
        if (r->structured) out += ",\"data\":" + json_value(*r->structured);
        out += "}";
    }
    return out + "]";
}

std::string json_service(const common::ServiceInfo& s) {
    std::string out = "{\"name\":" + json_string(s.name) + ",\"method\":" + json_string(s.method) +
                      ",\"conf\":" + std::to_string(s.conf);
    auto opt = [&](const char* k, const std::string& val) {
        if (!val.empty()) out += std::string(",\"") + k + "\":" + json_string(val);
    };
    opt("product", s.product);
    opt("version", s.version);
    opt("extrainfo", s.extrainfo);
    opt("hostname", s.hostname);
    opt("ostype", s.ostype);
    opt("devicetype", s.devicetype);
    opt("tunnel", s.tunnel);
    opt("servicefp", s.servicefp);
    if (!s.cpe.empty()) {
        out += ",\"cpe\":[";
        for (std::size_t i = 0; i < s.cpe.size(); ++i)
            out += (i ? "," : "") + json_string(s.cpe[i]);
        out += "]";
    }
    return out + "}";
}

class NdjsonWriter final : public Writer {
    bool streams() const override { return true; }

public:
    explicit NdjsonWriter(OutFile out) : out_(std::move(out)) {}

    void begin(const common::RunInfo& run) override { run_ = run; }

    void prescan(const std::vector<common::ScriptResult>& results) override {
        if (results.empty()) return;
        out_.write("{\"type\":\"prescript\",\"scripts\":" + json_scripts(results) + "}\n");
        out_.flush();
    }

    void host(const common::HostResult& h) override {
        if (!host_reported(h, run_.open_only, run_.verbose)) return;
        std::string out =
            "{\"type\":\"host\",\"address\":" + json_string(h.address) +
            ",\"ipv6\":" + (h.ipv6 ? "true" : "false") +
            ",\"targetname\":" + json_string(h.targetname) +
            ",\"hostname\":" + json_string(h.hostname) + ",\"status\":" + json_string(h.status) +
            ",\"reason\":" + json_string(h.reason) + ",\"srtt\":" + json_number(h.srtt) +
            ",\"timed_out\":" + (h.timed_out ? "true" : "false") +
            ",\"start_time\":" + json_number(h.start_time) +
            ",\"end_time\":" + json_number(h.end_time);
        // A timed-out host's partial results are dropped, as in the other formats.
        const bool full = h.status == "up" && !h.timed_out;
        out += ",\"ports\":[";
        std::string extra = "[";
        if (full) {
            const PortView view =
                split_ports(h.ports, run_.open_only, run_.verbose, run_.debugging);
            bool first = true;
            for (const auto* p : view.shown) {
                out += first ? "{" : ",{";
                first = false;
                out += "\"port\":" + std::to_string(p->number) +
                       ",\"protocol\":" + json_string(p->protocol) +
                       ",\"state\":" + json_string(p->state) +
                       ",\"reason\":" + json_string(p->reason) +
                       ",\"reason_ttl\":" + std::to_string(p->reason_ttl) +
                       ",\"service\":" + json_service(p->service) +
                       ",\"scripts\":" + json_scripts(p->scripts) + "}";
            }
            for (std::size_t i = 0; i < view.ignored.size(); ++i) {
                const auto& g = view.ignored[i];
                extra += (i ? ",{" : "{");
                extra += "\"state\":" + json_string(g.state) +
                         ",\"protocol\":" + json_string(g.protocol) +
                         ",\"count\":" + std::to_string(g.count) + ",\"reasons\":{";
                for (std::size_t k = 0; k < g.reasons.size(); ++k)
                    extra += (k ? "," : "") + json_string(g.reasons[k].first) + ":" +
                             std::to_string(g.reasons[k].second.size());
                extra += "}}";
            }
        }
        out += "],\"extraports\":" + extra + "]";
        out +=
            ",\"hostscripts\":" + (full ? json_scripts(h.hostscripts) : std::string("[]")) + "}\n";
        out_.write(out);
        out_.flush();
    }

    common::Status finish(const common::RunInfo& run) override {
        if (!run.postscripts.empty())
            out_.write("{\"type\":\"postscript\",\"scripts\":" + json_scripts(run.postscripts) +
                       "}\n");
        return out_.commit();
    }

private:
    OutFile out_;
    common::RunInfo run_;
};

}  // namespace

std::unique_ptr<Writer> make_ndjson_writer(OutFile out) {
    return std::make_unique<NdjsonWriter>(std::move(out));
}

}  // namespace coordinator::output
