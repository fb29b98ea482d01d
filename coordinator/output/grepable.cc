// Grepable output (-oG): one "Host:" line for the status and one for the ports.
#include <algorithm>

#include "coordinator/output/escape.h"
#include "coordinator/output/writers.h"

namespace coordinator::output {

namespace {

// Fields are '/'-separated and entries ','-separated: nmap replaces '/' by '|' inside fields;
// commas are kept (as nmap does), control bytes made visible.
std::string field(const std::string& s) {
    std::string out = screen_safe(s);
    std::replace(out.begin(), out.end(), '/', '|');
    std::replace(out.begin(), out.end(), '\n', ' ');
    std::replace(out.begin(), out.end(), '\t', ' ');
    return out;
}

class GrepableWriter final : public Writer {
public:
    explicit GrepableWriter(OutFile out) : out_(std::move(out)) {}

    void begin(const common::RunInfo& run) override {
        run_ = run;
        out_.write("# Nmap-compatible nsefleet " + run.version + " scan initiated " +
                   ctime_string(run.start) + " as: " + field_line(run.args) + "\n");
        out_.flush();
    }

    void prescan(const std::vector<common::ScriptResult>&) override {}

    void host(const common::HostResult& h) override {
        if (!host_reported(h, run_.open_only, run_.verbose)) return;
        const std::string who = "Host: " + h.address + " (" + field(grep_name(h)) + ")\t";
        if (h.status != "up") {
            out_.write(who + (h.status == "unknown" ? "Status: Unknown\n" : "Status: Down\n"));
            out_.flush();
            return;
        }
        std::string out = who + "Status: Up\n";
        if (h.timed_out) {
            out += who + "Status: Timeout\n";
        } else if (!h.ports.empty()) {
            const PortView view =
                split_ports(h.ports, run_.open_only, run_.verbose, run_.debugging);
            out += who + "Ports: ";
            bool first = true;
            for (const auto* p : view.shown) {
                if (!first) out += ", ";
                first = false;
                std::string svc = field(p->service.name);
                if (p->service.tunnel == "ssl" && !svc.empty()) svc = "ssl|" + svc;
                // port/state/protocol/owner/service/rpc info/version/
                out += std::to_string(p->number) + "/" + p->state + "/" + p->protocol + "//" + svc +
                       "//" + field(version_text(p->service)) + "/";
            }
            if (!view.ignored.empty()) {
                // nmap names a single ignored state: report the largest.
                std::string best;
                std::size_t best_n = 0;
                for (std::size_t i = 0; i < view.ignored.size(); ++i) {
                    std::size_t n = 0;
                    for (const auto& g : view.ignored)
                        if (g.state == view.ignored[i].state) n += g.count;
                    if (n > best_n) best = view.ignored[i].state, best_n = n;
                }
                out += "\tIgnored State: " + best + " (" + std::to_string(best_n) + ")";
            }
            out += "\n";
        }
        out_.write(out);
        out_.flush();
    }

    common::Status finish(const common::RunInfo& run) override {
        out_.write("# Nmap done at " + ctime_string(run.end) + " -- " + done_summary(run) + "\n");
        return out_.commit();
    }

private:
    static std::string field_line(const std::string& s) {
        std::string out = screen_safe(s);
        std::replace(out.begin(), out.end(), '\n', ' ');
        return out;
    }

    OutFile out_;
    common::RunInfo run_;
};

}  // namespace

std::unique_ptr<Writer> make_grepable_writer(OutFile out) {
    return std::make_unique<GrepableWriter>(std::move(out));
}

}  // namespace coordinator::output
