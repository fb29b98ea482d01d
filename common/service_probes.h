#pragma once
// nmap-service-probes: the probes and match lines of service and version detection (-sV),
// parsed once per process and matched with PCRE2 (JIT where available). The file format is
// nmap's, as its reference guide documents it: Exclude, Probe, match, softmatch, ports,
// sslports, rarity, fallback, totalwaitms, tcpwrappedms.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace common {

// What one match or softmatch line says about a response (templates already filled).
struct VersionMatch {
    bool soft = false;
    std::string service;
    std::string product, version, extrainfo, hostname, ostype, devicetype;
    std::vector<std::string> cpe;
    std::string probe;  // the probe whose line matched (fallbacks: not the probe sent)
    int line = 0;       // line of the match in the file
};

struct PortRange {
    std::uint16_t lo = 0, hi = 0;
    bool contains(std::uint16_t p) const { return p >= lo && p <= hi; }
};

class ServiceProbes {
public:
    struct Match;  // a compiled match line (service_probes.cc)
    struct Probe {
        std::string name;
        bool udp = false;
        std::string payload;
        int rarity = 5;  // nmap's default for a probe without `rarity`
        int totalwaitms = 5000;
        int tcpwrappedms = 3000;
        std::vector<PortRange> ports, sslports;
        std::vector<std::size_t> fallbacks;  // probe indices, resolved after parsing
        std::vector<std::shared_ptr<const Match>> matches;
        int line = 0;
        bool registered(std::uint16_t port, bool ssl) const;
        bool can_match(const std::string& service) const;
    };

    // Parses the file's text; `name` is used in error messages ("NAME:LINE: what"). Every
    // regular expression is compiled here, so a bad one is reported with its line.
    static Result<std::shared_ptr<const ServiceProbes>> parse(std::string_view text,
                                                              const std::string& name);
    // Reads and parses a file; the same path is parsed once per process and then shared.
    static Result<std::shared_ptr<const ServiceProbes>> load(const std::string& path);

    const std::vector<Probe>& probes() const { return probes_; }
    // The TCP probe with an empty payload that is sent first, or nullopt.
    std::optional<std::size_t> null_probe() const { return null_; }
    // Exclude directive: ports never probed.
    bool excluded(std::uint16_t port, bool udp) const;
    // Probes for a port after the NULL probe: those registered for it (`ports`, or `sslports`
    // inside TLS) in file order, then the others whose rarity is at most `intensity`.
    std::vector<std::size_t> plan(std::uint16_t port, bool udp, bool ssl, int intensity) const;
    // Tests a response to probe `probe`: its own lines, then its fallbacks' and (TCP) the NULL
    // probe's. Returns the first hard match, else the first softmatch. After a softmatch
    // (`soft` = its service) only lines of that service count.
    std::optional<VersionMatch> match(std::size_t probe, std::string_view response,
                                      const std::string& soft = "") const;

private:
    std::vector<Probe> probes_;
    std::optional<std::size_t> null_;
    std::vector<std::pair<bool, PortRange>> excludes_;  // (udp, range)
};

// Fills a version template ("$1", "$P(2)", "$SUBST(1,\"_\",\".\")", "$I(1,\">\")") from the
// capture groups of a match (group 0 is the whole match). Unknown groups expand to "". In a
// CPE template (`cpe`) the text taken from the response is lower-cased and every character
// other than a-z, 0-9, '-', '.', '_' and '~' is percent-encoded ("+" -> "%2B"), as nmap does.
std::string fill_version_template(std::string_view tmpl, const std::vector<std::string>& groups,
                                  bool cpe = false);

}  // namespace common
