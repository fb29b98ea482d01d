// OutputSink::open, the fan-out sink, the file abstraction and helpers shared by the formats.
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <random>
#include <set>

#include "coordinator/output.h"
#include "coordinator/output/writers.h"

namespace coordinator {

namespace output {

// ---- OutFile

bool is_sink_device(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 &&
           (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

bool is_regular_or_absent(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode);
}

common::Result<OutFile> OutFile::create(const std::string& path, bool append) {
    OutFile f;
    f.label_ = path;
    f.append_ = append;
    if (!is_regular_or_absent(path)) {
        f.direct_ = true;
        f.file_ = std::fopen(path.c_str(), append ? "a" : "w");
    } else {
        f.part_ = path + ".part";
        f.file_ = std::fopen(f.part_.c_str(), "w");
    }
    if (!f.file_)
        return common::Status::error("cannot create output file '" + path +
                                     "': " + std::strerror(errno));
    return f;
}

OutFile OutFile::stream(std::ostream& os, std::string label) {
    OutFile f;
    f.os_ = &os;
    f.label_ = std::move(label);
    return f;
}

OutFile::OutFile(OutFile&& o) noexcept { *this = std::move(o); }

OutFile& OutFile::operator=(OutFile&& o) noexcept {
    if (this != &o) {
        if (file_) std::fclose(file_);
        file_ = std::exchange(o.file_, nullptr);
        os_ = std::exchange(o.os_, nullptr);
        label_ = std::move(o.label_);
        part_ = std::move(o.part_);
        failed_ = o.failed_;
        append_ = o.append_;
        direct_ = o.direct_;
        skid_ = o.skid_;
        skid_state_ = o.skid_state_;
    }
    return *this;
}

void OutFile::discard() {
    if (file_) {
        std::fclose(file_);
        file_ = nullptr;
        if (!direct_) std::remove(part_.c_str());
    }
    os_ = nullptr;
}

OutFile::~OutFile() {
    if (file_) std::fclose(file_);
}

void OutFile::set_skid(std::uint64_t seed) {
    skid_ = true;
    skid_state_ = seed;
}

std::string skid_text(std::string_view text, std::uint64_t& state) {
    std::string out(text);
    for (char& c : out) {
        if (!std::isalpha(static_cast<unsigned char>(c))) continue;
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;  // an LCG is plenty
        unsigned roll = unsigned(state >> 33) % 100;
        char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (roll < 30) {
            switch (lower) {
            case 'a': c = '4'; continue;
            case 'e': c = '3'; continue;
            case 'i': c = roll < 15 ? '1' : '!'; continue;
            case 'o': c = '0'; continue;
            case 's': c = roll < 15 ? '$' : 'z'; continue;
            case 'z': c = 'Z'; continue;
            default: break;
            }
        }
        if (roll >= 70)
            c = std::isupper(static_cast<unsigned char>(c))
                    ? lower
                    : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return out;
}

void OutFile::write(std::string_view s) {
    std::string skid;
    if (skid_) s = skid = skid_text(s, skid_state_);
    if (file_) {
        if (std::fwrite(s.data(), 1, s.size(), file_) != s.size()) failed_ = true;
    } else if (os_) {
        os_->write(s.data(), static_cast<std::streamsize>(s.size()));
    }
}

void OutFile::flush() {
    if (file_) {
        if (std::fflush(file_) != 0) failed_ = true;
    } else if (os_) {
        os_->flush();
    }
}

common::Status OutFile::commit() {
    if (os_) {
        os_->flush();
        const bool bad = os_->fail();
        os_ = nullptr;
        if (bad) return common::Status::error("error writing output to " + label_);
        return common::Status::ok();
    }
    if (!file_) return common::Status::ok();  // already committed
    const bool write_err = failed_ || std::ferror(file_) || std::fflush(file_) != 0;
    const bool close_err = std::fclose(file_) != 0;
    file_ = nullptr;
    if (write_err || close_err)
        return common::Status::error("error writing output file '" + label_ + "'" +
                                     (direct_ ? "" : " (partial data left in '" + part_ + "')"));
    if (direct_) return common::Status::ok();
    if (append_) return append_part();
    if (std::rename(part_.c_str(), label_.c_str()) != 0)
        return common::Status::error("cannot rename '" + part_ + "' to '" + label_ +
                                     "': " + std::strerror(errno));
    return common::Status::ok();
}

// --append-output: the finished report goes after what the file already holds.
common::Status OutFile::append_part() {
    FILE* in = std::fopen(part_.c_str(), "rb");
    FILE* out = in ? std::fopen(label_.c_str(), "ab") : nullptr;
    bool ok = in && out;
    char buf[65536];
    std::size_t n;
    while (ok && (n = std::fread(buf, 1, sizeof buf, in)) > 0)
        ok = std::fwrite(buf, 1, n, out) == n;
    ok = ok && !std::ferror(in);
    if (in) std::fclose(in);
    if (out && std::fclose(out) != 0) ok = false;
    if (!ok)
        return common::Status::error("cannot append to output file '" + label_ +
                                     "' (report left in '" + part_ + "')");
    std::remove(part_.c_str());
    return common::Status::ok();
}

// ---- helpers

namespace {

// Rank of a state in nmap's listing order; unknown names sort after, alphabetically.
int state_rank(const std::string& s) {
    static const char* const order[] = {"closed",        "filtered",   "closed|filtered",
                                        "open|filtered", "unfiltered", "open"};
    for (int i = 0; i < 6; ++i)
        if (s == order[i]) return i;
    return 6;
}

bool maybe_open(const std::string& state) {
    return state == "open" || state == "open|filtered" || state == "unfiltered";
}

}  // namespace

PortView split_ports(const std::vector<common::PortResult>& ports, bool open_only, int verbose,
                     int debugging) {
    std::map<std::string, std::size_t> per_state;
    for (const auto& p : ports)
        ++per_state[p.state];
    std::size_t max_per_state = 25;
    if (verbose > 0 || debugging > 0)
        max_per_state *=
            static_cast<std::size_t>(std::max(0, verbose) + 3 * std::max(0, debugging));
    std::set<std::string> ignored_states;
    if (debugging <= 2) {
        for (const auto& [state, n] : per_state) {
            if (maybe_open(state)) continue;
            if (open_only || n > max_per_state) ignored_states.insert(state);
        }
    }

    PortView view;
    for (const auto& p : ports) {
        if (!ignored_states.count(p.state)) {
            view.shown.push_back(&p);
            continue;
        }
        auto it = std::find_if(
            view.ignored.begin(), view.ignored.end(),
            [&](const IgnoredGroup& g) { return g.state == p.state && g.protocol == p.protocol; });
        if (it == view.ignored.end()) {
            view.ignored.push_back(IgnoredGroup{p.state, p.protocol, 0, {}});
            it = view.ignored.end() - 1;
        }
        ++it->count;
        ++view.ignored_total;
        auto r = std::find_if(it->reasons.begin(), it->reasons.end(),
                              [&](const auto& e) { return e.first == p.reason; });
        if (r == it->reasons.end()) {
            it->reasons.push_back({p.reason, {}});
            r = it->reasons.end() - 1;
        }
        r->second.push_back(p.number);
    }
    std::stable_sort(view.ignored.begin(), view.ignored.end(),
                     [](const IgnoredGroup& a, const IgnoredGroup& b) {
                         const int ra = state_rank(a.state), rb = state_rank(b.state);
                         if (ra != rb) return ra < rb;
                         if (a.state != b.state) return a.state < b.state;
                         return a.protocol < b.protocol;
                     });
    return view;
}

bool host_reported(const common::HostResult& h, bool open_only, int verbose) {
    if (h.status == "unknown") return true;  // -sL: every target is listed
    if (h.status != "up") return verbose > 0;
    if (open_only && !h.timed_out && !h.ports.empty()) {
        return std::any_of(h.ports.begin(), h.ports.end(),
                           [](const common::PortResult& p) { return maybe_open(p.state); });
    }
    return true;
}

std::string display_name(const common::HostResult& h) {
    std::string name = !h.targetname.empty() ? h.targetname : h.hostname;
    if (name.empty() || name == h.address) return h.address;
    return name + " (" + h.address + ")";
}

std::string grep_name(const common::HostResult& h) {
    return !h.hostname.empty() ? h.hostname : h.targetname == h.address ? "" : h.targetname;
}

std::string compress_ports(std::vector<std::uint16_t> ports) {
    std::sort(ports.begin(), ports.end());
    ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
    std::string out;
    for (std::size_t i = 0; i < ports.size();) {
        std::size_t j = i;
        while (j + 1 < ports.size() && ports[j + 1] == ports[j] + 1)
            ++j;
        if (!out.empty()) out += ',';
        out += std::to_string(ports[i]);
        if (j > i) out += "-" + std::to_string(ports[j]);
        i = j + 1;
    }
    return out;
}

std::string done_summary(const common::RunInfo& run) {
    char secs[64];
    std::snprintf(secs, sizeof secs, "%.2f", std::max(0.0, run.end - run.start));
    return std::to_string(run.hosts_total) +
           (run.hosts_total == 1 ? " IP address (" : " IP addresses (") +
           std::to_string(run.hosts_up) + (run.hosts_up == 1 ? " host up)" : " hosts up)") +
           " scanned in " + secs + " seconds";
}

std::string ctime_string(double epoch) {
    const std::time_t t = static_cast<std::time_t>(epoch);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a %b %e %H:%M:%S %Y", &tm);
    return buf;
}

std::string two_sig_digits(double v) {
    if (!(v > 0) || !std::isfinite(v)) return "0.0";
    // Round to two significant digits first, so 0.000999 becomes 0.0010, not 0.00100.
    char e[32];
    std::snprintf(e, sizeof e, "%.1e", v);
    const double rounded = std::strtod(e, nullptr);
    const int exp10 = static_cast<int>(std::floor(std::log10(rounded) + 1e-9));
    const int decimals = std::max(0, 1 - exp10);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, rounded);
    return buf;
}

std::vector<const common::ScriptResult*> sorted_scripts(
    const std::vector<common::ScriptResult>& v) {
    std::vector<const common::ScriptResult*> out;
    out.reserve(v.size());
    for (const auto& r : v)
        out.push_back(&r);
    std::stable_sort(
        out.begin(), out.end(),
        [](const common::ScriptResult* a, const common::ScriptResult* b) { return a->id < b->id; });
    return out;
}

std::string version_text(const common::ServiceInfo& s) {
    std::string out = s.product;
    if (!s.version.empty()) out += (out.empty() ? "" : " ") + s.version;
    if (!s.extrainfo.empty()) out += (out.empty() ? "(" : " (") + s.extrainfo + ")";
    return out;
}

// ---- the fan-out sink

namespace {

class MultiSink final : public OutputSink {
public:
    explicit MultiSink(std::vector<std::unique_ptr<Writer>> w) : writers_(std::move(w)) {}
    void begin(const common::RunInfo& run) override {
        for (auto& w : writers_)
            w->begin(run);
    }
    void prescan(const std::vector<common::ScriptResult>& results) override {
        for (auto& w : writers_)
            w->prescan(results);
    }
    void host_finished(const common::HostResult& h) override {
        for (auto& w : writers_)
            if (w->streams()) w->host(h);
    }
    void host(const common::HostResult& h) override {
        for (auto& w : writers_)
            if (!w->streams()) w->host(h);
    }
    common::Status finish(const common::RunInfo& run) override {
        // Finish every writer even when one fails; report the first failure.
        common::Status first = common::Status::ok();
        for (auto& w : writers_) {
            common::Status s = w->finish(run);
            if (!s && first) first = std::move(s);
        }
        return first;
    }

private:
    std::vector<std::unique_ptr<Writer>> writers_;
};

}  // namespace
}  // namespace output

namespace {

// The report paths the options name, in -oN, -oX, -oG, -oJ, -oS order (open()'s writers
// follow it); "" when not asked, "-" for stdout.
std::array<const std::string*, 5> report_paths(const common::ScanOptions& o) {
    return {&o.out_normal, &o.out_xml, &o.out_grepable, &o.out_json, &o.out_skid};
}

}  // namespace

int reports_on_stdout(const common::ScanOptions& opts) {
    int n = 0;
    for (const auto* path : report_paths(opts))
        n += *path == "-";
    return n;
}

common::Result<std::unique_ptr<OutputSink>> OutputSink::open(const common::ScanOptions& opts) {
    using namespace output;
    const auto reqs = report_paths(opts);
    const int to_stdout = reports_on_stdout(opts);
    std::set<std::string> seen;
    for (const auto* path : reqs) {
        if (path->empty() || *path == "-") continue;
        if (!seen.insert(*path).second && !is_sink_device(*path)) {
            // Two reports in one file would overwrite each other; /dev/null takes both.
            return common::Status::error("output file '" + *path + "' is requested twice");
        }
    }
    if (to_stdout > 1)
        return common::Status::error("only one output format can be written to stdout ('-')");

    WriterOptions wo;
    // nmap: -vv and -d show reasons and when each host was scanned.
    wo.reason = opts.reason || opts.verbosity >= 2 || opts.debugging > 0;
    wo.scanned_at = opts.verbosity >= 2 || opts.debugging > 0;
    wo.version_scan = opts.version_scan;
    wo.stylesheet = opts.stylesheet;
    std::vector<std::unique_ptr<Writer>> writers;
    if (to_stdout == 0)
        writers.push_back(make_normal_writer(OutFile::stream(std::cout, "stdout"), true, wo));

    // Create every file before any writer, so a failure can remove what was created.
    std::vector<std::pair<std::size_t, OutFile>> files;
    for (std::size_t i = 0; i < std::size(reqs); ++i) {
        const std::string& path = *reqs[i];
        if (path.empty()) continue;
        if (path == "-") {
            files.emplace_back(i, OutFile::stream(std::cout, "stdout"));
            continue;
        }
        auto r = OutFile::create(path, opts.append_output);
        if (!r) {
            for (auto& f : files)
                f.second.discard();
            return r.status();
        }
        files.emplace_back(i, std::move(r.value()));
    }
    for (auto& [i, f] : files) {
        switch (i) {
        case 0: writers.push_back(make_normal_writer(std::move(f), false, wo)); break;
        case 1: writers.push_back(make_xml_writer(std::move(f), wo)); break;
        case 4:
            f.set_skid(std::random_device{}());
            writers.push_back(make_normal_writer(std::move(f), false, wo));
            break;
        case 2: writers.push_back(make_grepable_writer(std::move(f))); break;
        default: writers.push_back(make_ndjson_writer(std::move(f))); break;
        }
    }
    return std::unique_ptr<OutputSink>(std::make_unique<MultiSink>(std::move(writers)));
}

}  // namespace coordinator

namespace coordinator {

std::string services_text(const std::vector<std::uint16_t>& ports) {
    return output::compress_ports(ports);
}

}  // namespace coordinator
