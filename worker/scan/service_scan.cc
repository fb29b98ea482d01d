#include "worker/scan/service_scan.h"

#include <algorithm>
#include <asio.hpp>
#include <asio/ssl.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>

#include "common/clock.h"
#include "nse/governor.h"

namespace worker {

namespace {

using Clock = std::chrono::steady_clock;
using asio::ip::tcp;
using asio::ip::udp;
using common::VersionMatch;

// nmap keeps at most this much of one response for matching.
constexpr std::size_t kMaxResponse = 64 * 1024;
// Hard matches report full confidence; a connection closed before any data, tcpwrapped.
constexpr int kProbedConfidence = 10;
constexpr int kWrappedConfidence = 8;

// The fingerprint's V= field names the probe database's release (nmap-common's), and P= the
// platform, as nmap's submission form expects them.
constexpr const char* kFingerprintVersion = "7.93";
#if defined(__x86_64__)
constexpr const char* kPlatform = "x86_64-pc-linux-gnu";
#elif defined(__aarch64__)
constexpr const char* kPlatform = "aarch64-unknown-linux-gnu";
#else
constexpr const char* kPlatform = "unknown-linux-gnu";
#endif

std::string fingerprint_escape(const std::string& data) {
    std::string out;
    for (unsigned char c : data) {
        switch (c) {
        case '\0': out += "\\0"; break;
        case '\r': out += "\\r"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        case '"': out += "\\\""; break;
        case '\\':
        case '(':
        case ')':
        case '.':
            out += '\\';
            out += static_cast<char>(c);
            break;
        default:
            if (c > ' ' && c < 0x7f) {
                out += static_cast<char>(c);
            } else {
                char hex[8];
                std::snprintf(hex, sizeof hex, "\\x%02x", c);
                out += hex;
            }
        }
    }
    return out;
}

double now_seconds() {
    return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

}  // namespace

struct ServiceScanner::Impl : std::enable_shared_from_this<Impl> {
    Impl(asio::io_context& io, const common::ScanOptions& opts,
         std::shared_ptr<const common::ServiceProbes> probes,
         std::function<void(const std::string&)> log)
        : io(io),
          opts(opts),
          probes(std::move(probes)),
          log(std::move(log)),
          governor(governor_config(opts)),
          tls(asio::ssl::context::tls_client) {
        tls.set_verify_mode(asio::ssl::verify_none);
    }

    static nse::GovernorConfig governor_config(const common::ScanOptions& o) {
        nse::GovernorConfig c;
        if (o.max_parallelism > 0) {
            c.initial = o.max_parallelism;
            c.fixed = true;
        } else if (o.timing.level >= 4) {
            c.initial = 128;
        }
        return c;
    }

    // One port's walk through its probe plan.
    struct Job : std::enable_shared_from_this<Job> {
        Job(Impl& sc, common::HostResult& h, common::PortResult& p)
            : sc(sc), host(h), port(p), timer(sc.io) {}
        Impl& sc;
        common::HostResult& host;
        common::PortResult& port;
        std::uint64_t tid = 0;
        bool udp = false;
        bool ssl = false;
        bool wrapped = false;
        bool got_data = false;  // any probe got an answer (UDP: the port is open)
        std::vector<std::size_t> plan;
        std::size_t next = 0;
        std::string soft;
        std::optional<VersionMatch> soft_match, hard;
        std::vector<std::pair<std::string, std::string>> answers;  // (probe, response)
        // The probe in flight: its connection lives as long as a handler holds it, and
        // handlers of an earlier probe (another generation) find it over.
        struct Conn {
            explicit Conn(asio::io_context& io) : sock(io) {}
            tcp::socket sock;
            std::unique_ptr<asio::ssl::stream<tcp::socket&>> stream;
            std::unique_ptr<udp::socket> dgram;
        };
        std::size_t probe = 0;
        std::shared_ptr<Conn> conn;
        std::uint64_t gen = 0;
        bool connected = false;
        asio::steady_timer timer;
        std::string response;
        char buf[4096];
        Clock::time_point connected_at;
        bool over = false;      // the probe in flight has ended (timer vs. I/O)
        bool finished = false;  // the port is done (or its host timed out)
        bool holds_slot = false;

        std::string where() const {
            return host.address + ":" + std::to_string(port.number) + " (" + port.protocol + ")";
        }
    };

    asio::io_context& io;
    const common::ScanOptions& opts;
    std::shared_ptr<const common::ServiceProbes> probes;
    std::function<void(const std::string&)> log;
    nse::Governor governor;
    asio::ssl::context tls;
    std::function<void()> done;
    std::size_t remaining = 0;
    std::vector<std::unique_ptr<asio::steady_timer>> host_timers;
    std::uint64_t next_tid = 1;

    int intensity() const { return opts.version_intensity; }
    void trace(const std::string& line) {
        if (opts.version_trace && log) log(line + "\n");
    }

    void start(std::vector<common::HostResult>& hosts, std::function<void()> on_done) {
        done = std::move(on_done);
        std::vector<std::shared_ptr<Job>> jobs;
        for (auto& h : hosts) {
            if (h.status != "up") continue;
            for (auto& p : h.ports) {
                bool udp = p.protocol == "udp";
                if (p.protocol != "tcp" && !udp) continue;
                if (p.state != "open" && !(udp && p.state == "open|filtered")) continue;
                if (!opts.version_all_ports && probes->excluded(p.number, udp)) continue;
                auto j = std::make_shared<Job>(*this, h, p);
                j->udp = udp;
                j->tid = next_tid++;
                jobs.push_back(std::move(j));
            }
        }
        remaining = jobs.size();
        if (jobs.empty()) {
            asio::post(io, [self = shared_from_this()] { self->done(); });
            return;
        }
        if (opts.host_timeout > 0) watch_host_timeouts(jobs);
        for (auto& j : jobs)
            if (!j->finished) begin(j);
    }

    // --host-timeout covers version detection too: a host whose time (counted from the start
    // of its scan) runs out stops probing and is reported timed out, as nmap skips it.
    void watch_host_timeouts(const std::vector<std::shared_ptr<Job>>& jobs) {
        std::map<common::HostResult*, std::vector<std::shared_ptr<Job>>> by_host;
        for (const auto& j : jobs)
            by_host[&j->host].push_back(j);
        for (auto& [host, list] : by_host) {
            double left = host->start_time + opts.host_timeout - common::epoch_now();
            auto expire = [this, host, list] {
                host->timed_out = true;
                for (const auto& j : list)
                    end_job(j);
            };
            if (left <= 0) {
                expire();
                continue;
            }
            auto& t = host_timers.emplace_back(std::make_unique<asio::steady_timer>(io));
            t->expires_after(
                std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(left)));
            t->async_wait([expire](const asio::error_code& ec) {
                if (!ec) expire();
            });
        }
    }

    void begin(const std::shared_ptr<Job>& j) {
        j->plan = probes->plan(j->port.number, j->udp, j->ssl, intensity());
        j->next = 0;
        if (!j->udp && probes->null_probe())
            run_probe(j, *probes->null_probe());
        else
            next_probe(j);
    }

    void next_probe(const std::shared_ptr<Job>& j) {
        while (j->next < j->plan.size()) {
            std::size_t k = j->plan[j->next++];
            if (!j->soft.empty() && !probes->probes()[k].can_match(j->soft)) continue;
            run_probe(j, k);
            return;
        }
        end_job(j);
    }

    void run_probe(const std::shared_ptr<Job>& j, std::size_t k) {
        j->probe = k;
        j->response.clear();
        j->over = false;
        j->connected = false;
        ++j->gen;
        auto go = [this, j] { send_probe(j); };
        if (governor.acquire(j->tid, false, now_seconds(), [this, go] { asio::post(io, go); }) == 0)
            go();
    }

    // True when a handler of generation `gen` comes too late: its probe has ended.
    static bool stale(const std::shared_ptr<Job>& j, std::uint64_t gen) {
        return j->over || gen != j->gen;
    }

    void send_probe(const std::shared_ptr<Job>& j) {
        if (j->finished) {  // a slot granted after the host timed out goes straight back
            governor.abandon(j->tid, now_seconds());
            return;
        }
        j->holds_slot = true;
        const auto& p = probes->probes()[j->probe];
        trace("Service scan sending probe " + p.name + " to " + j->where());
        asio::error_code ec;
        auto addr = asio::ip::make_address(j->host.address, ec);
        if (ec) return probe_failed(j);
        auto c = j->conn = std::make_shared<Job::Conn>(io);
        auto gen = j->gen;
        if (j->udp) {
            c->dgram = std::make_unique<udp::socket>(io);
            c->dgram->open(addr.is_v6() ? udp::v6() : udp::v4(), ec);
            if (!ec) c->dgram->connect(udp::endpoint(addr, j->port.number), ec);
            if (!ec) c->dgram->send(asio::buffer(p.payload), 0, ec);
            if (ec) return probe_failed(j);
            j->connected = true;
            arm_timer(j, p.totalwaitms / 1000.0);
            read_more(j);
            return;
        }
        auto started = Clock::now();
        arm_timer(j, std::max(2.0, opts.timing.connect_timeout * 4));  // the connect's budget
        c->sock.async_connect(tcp::endpoint(addr, j->port.number),
                              [this, j, c, gen, started](const asio::error_code& e) {
                                  if (stale(j, gen)) return;
                                  double rtt =
                                      std::chrono::duration<double>(Clock::now() - started).count();
                                  if (e) {
                                      governor.feedback(nse::Signal::timeout, rtt, now_seconds());
                                      return probe_failed(j);
                                  }
                                  governor.feedback(nse::Signal::connected, rtt, now_seconds());
                                  j->connected = true;
                                  j->connected_at = Clock::now();
                                  if (j->ssl) return handshake(j);
                                  write_payload(j);
                              });
    }

    void handshake(const std::shared_ptr<Job>& j) {
        auto c = j->conn;
        auto gen = j->gen;
        c->stream = std::make_unique<asio::ssl::stream<tcp::socket&>>(c->sock, tls);
        c->stream->async_handshake(asio::ssl::stream_base::client,
                                   [this, j, c, gen](const asio::error_code& e) {
                                       if (stale(j, gen)) return;
                                       if (e) return probe_failed(j);
                                       write_payload(j);
                                   });
    }

    void write_payload(const std::shared_ptr<Job>& j) {
        const auto& p = probes->probes()[j->probe];
        auto c = j->conn;
        auto gen = j->gen;
        arm_timer(j, p.totalwaitms / 1000.0);
        if (p.payload.empty()) return read_more(j);
        auto after = [this, j, c, gen](const asio::error_code& e, std::size_t) {
            if (stale(j, gen)) return;
            if (e) return probe_ended(j, true);
            read_more(j);
        };
        if (c->stream)
            asio::async_write(*c->stream, asio::buffer(p.payload), after);
        else
            asio::async_write(c->sock, asio::buffer(p.payload), after);
    }

    void arm_timer(const std::shared_ptr<Job>& j, double seconds) {
        auto gen = j->gen;
        j->timer.expires_after(
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)));
        j->timer.async_wait([this, j, gen, seconds](const asio::error_code& e) {
            if (e || stale(j, gen)) return;
            if (!j->connected) {
                governor.feedback(nse::Signal::timeout, seconds, now_seconds());
                return probe_failed(j);
            }
            probe_ended(j, false);
        });
    }

    static double seconds_since(const std::shared_ptr<Job>& j) {
        return std::chrono::duration<double>(Clock::now() - j->connected_at).count();
    }

    void read_more(const std::shared_ptr<Job>& j) {
        auto c = j->conn;
        auto gen = j->gen;
        auto got = [this, j, c, gen](const asio::error_code& e, std::size_t n) {
            if (stale(j, gen)) return;
            if (n) {
                j->response.append(j->buf, std::min(n, kMaxResponse - j->response.size()));
                j->got_data = true;
                auto m = probes->match(j->probe, j->response, j->soft);
                if (m && !m->soft) {
                    j->hard = std::move(*m);
                    return probe_ended(j, true);
                }
            }
            if (e) {
                // A refused UDP probe (ICMP port unreachable): the port is closed.
                if (j->udp && e == asio::error::connection_refused) j->port.state = "closed";
                return probe_ended(j, true);
            }
            if (j->response.size() >= kMaxResponse) return probe_ended(j, true);
            read_more(j);
        };
        if (c->dgram)
            c->dgram->async_receive(asio::buffer(j->buf), got);
        else if (c->stream)
            c->stream->async_read_some(asio::buffer(j->buf), got);
        else
            c->sock.async_read_some(asio::buffer(j->buf), got);
    }

    // Ends the probe in flight: its connection closes (pending handlers see it over) and the
    // slot goes back to the governor.
    void close(const std::shared_ptr<Job>& j) {
        j->over = true;
        j->timer.cancel();
        if (auto c = j->conn) {
            asio::error_code ec;
            c->sock.close(ec);
            if (c->dgram) c->dgram->close(ec);
        }
        if (j->holds_slot) {
            j->holds_slot = false;
            governor.release(j->tid, now_seconds());
        }
    }

    // The connection could not be made (refused, timed out, TLS failed): stop probing.
    void probe_failed(const std::shared_ptr<Job>& j) {
        close(j);
        end_job(j);
    }

    // The probe's time ran out (`closed` false) or its connection ended or it matched.
    void probe_ended(const std::shared_ptr<Job>& j, bool closed) {
        const auto& p = probes->probes()[j->probe];
        bool is_null = probes->null_probe() && j->probe == *probes->null_probe();
        double open_for = seconds_since(j);
        close(j);
        if (!j->response.empty()) j->answers.emplace_back(p.name, j->response);
        if (!j->hard && !j->response.empty()) {
            auto m = probes->match(j->probe, j->response, j->soft);
            if (m && !m->soft)
                j->hard = std::move(*m);
            else if (m && j->soft.empty()) {
                j->soft = m->service;
                j->soft_match = std::move(*m);
                trace("Service scan soft match (Probe " + p.name + " matched with " +
                      j->soft_match->probe + " line " + std::to_string(j->soft_match->line) +
                      "): " + j->host.address + ":" + std::to_string(j->port.number) + " is " +
                      j->soft);
            }
        }
        if (j->hard) {
            if (j->hard->service == "ssl" && !j->ssl && !j->udp) {
                trace("Service scan hard match (Probe " + p.name + " matched with " +
                      j->hard->probe + " line " + std::to_string(j->hard->line) +
                      "): " + j->host.address + ":" + std::to_string(j->port.number) + " is ssl");
                // A TLS service: probe again inside the tunnel.
                j->ssl = true;
                j->hard.reset();
                j->soft.clear();
                j->soft_match.reset();
                return begin(j);
            }
            trace("Service scan match (Probe " + p.name + " matched with " + j->hard->probe +
                  " line " + std::to_string(j->hard->line) + "): " + j->host.address + ":" +
                  std::to_string(j->port.number) + " is " + (j->ssl ? "SSL/" : "") +
                  j->hard->service + ".  Version: |" + j->hard->product + "|" + j->hard->version +
                  "|" + j->hard->extrainfo + "|");
            return end_job(j);
        }
        // A connection closed at once, without a byte, on the NULL probe: tcpwrapped.
        if (is_null && !j->ssl && closed && j->response.empty() && !j->got_data &&
            open_for * 1000 < p.tcpwrappedms) {
            j->wrapped = true;
            return end_job(j);
        }
        if (j->udp && j->port.state == "closed") return end_job(j);
        next_probe(j);
    }

    // nmap's service fingerprint of a port that answered but matched nothing: the scan's
    // facts, then each probe's answer (length in hex, bytes escaped), for nmap's submission form.
    std::string fingerprint(const Job& j) const {
        std::time_t t = std::time(nullptr);
        std::tm tm{};
        localtime_r(&t, &tm);
        char head[160];
        std::snprintf(head, sizeof head, "SF-Port%u-%s:V=%s%%I=%d%s%%D=%d/%d%%Time=%lX%%P=%s",
                      static_cast<unsigned>(j.port.number), j.udp ? "UDP" : "TCP",
                      kFingerprintVersion, intensity(), j.ssl ? "%T=SSL" : "", tm.tm_mon + 1,
                      tm.tm_mday, static_cast<unsigned long>(t), kPlatform);
        std::string out = head;
        for (const auto& [probe, data] : j.answers) {
            char len[16];
            std::snprintf(len, sizeof len, "%zX", data.size());
            out += "%r(" + probe + "," + len + ",\"" + fingerprint_escape(data) + "\")";
        }
        return out + ";";
    }

    void end_job(const std::shared_ptr<Job>& j) {
        if (j->finished) return;
        j->finished = true;
        close(j);
        governor.abandon(j->tid, now_seconds());
        auto& s = j->port.service;
        const VersionMatch* m = j->hard ? &*j->hard : j->soft_match ? &*j->soft_match : nullptr;
        if (m) {
            s.name = m->service;
            s.product = m->product;
            s.version = m->version;
            s.extrainfo = m->extrainfo;
            s.hostname = m->hostname;
            s.ostype = m->ostype;
            s.devicetype = m->devicetype;
            s.cpe = m->cpe;
            s.method = "probed";
            s.conf = kProbedConfidence;
        } else if (j->wrapped) {
            s = common::ServiceInfo{};
            s.name = "tcpwrapped";
            s.method = "probed";
            s.conf = kWrappedConfidence;
        } else if (!j->answers.empty()) {
            s.servicefp = fingerprint(*j);
        }
        if (j->ssl) s.tunnel = "ssl";
        if (j->udp && j->got_data && j->port.state == "open|filtered") {
            j->port.state = "open";
            j->port.reason = "udp-response";
        }
        if (--remaining == 0) {
            for (auto& t : host_timers)
                t->cancel();
            asio::post(io, [self = shared_from_this()] { self->done(); });
        }
    }
};

ServiceScanner::ServiceScanner(asio::io_context& io, const common::ScanOptions& opts,
                               std::shared_ptr<const common::ServiceProbes> probes,
                               std::function<void(const std::string&)> log)
    : impl_(std::make_shared<Impl>(io, opts, std::move(probes), std::move(log))) {}

ServiceScanner::~ServiceScanner() = default;

void ServiceScanner::start(std::vector<common::HostResult>& hosts, std::function<void()> done) {
    impl_->start(hosts, std::move(done));
}

}  // namespace worker
