#include "worker/scan/reverse_dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <asio.hpp>
#include <chrono>
#include <map>
#include <mutex>

namespace worker {

namespace {

// Per query: nmap's resolver gives a silent server about this long before it gives up.
constexpr int kTimeoutMs = 1500;
constexpr int kTries = 2;

bool library_ready() {
    static std::once_flag once;
    static int rc = ARES_SUCCESS;
    std::call_once(once, [] { rc = ares_library_init(ARES_LIB_INIT_ALL); });
    return rc == ARES_SUCCESS;
}

}  // namespace

struct ReverseDns::Impl : std::enable_shared_from_this<Impl> {
    Impl(asio::io_context& io, const common::ScanOptions& opts) : io(io), opts(opts), timer(io) {}
    ~Impl() {
        if (channel) ares_destroy(channel);
    }

    // One socket c-ares asked us to watch.
    struct Watch {
        explicit Watch(asio::io_context& io, int fd) : sd(io, fd) {}
        asio::posix::stream_descriptor sd;
        bool want_read = false, want_write = false;
        bool reading = false, writing = false;
        bool closed = false;
    };

    asio::io_context& io;
    const common::ScanOptions& opts;
    asio::steady_timer timer;
    ares_channel channel = nullptr;
    std::map<int, std::shared_ptr<Watch>> watches;
    std::size_t pending = 0;
    std::function<void()> done;
    bool finished = false;

    static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
        static_cast<Impl*>(data)->sock_state(fd, readable, writable);
    }

    void sock_state(int fd, int readable, int writable) {
        auto it = watches.find(fd);
        if (!readable && !writable) {
            if (it != watches.end()) {
                it->second->closed = true;
                it->second->sd.release();  // c-ares closes its own socket
                watches.erase(it);
            }
            return;
        }
        if (it == watches.end()) it = watches.emplace(fd, std::make_shared<Watch>(io, fd)).first;
        auto w = it->second;
        w->want_read = readable;
        w->want_write = writable;
        arm(w, fd);
    }

    void arm(const std::shared_ptr<Watch>& w, int fd) {
        if (w->want_read && !w->reading) wait(w, fd, false);
        if (w->want_write && !w->writing) wait(w, fd, true);
    }

    // One readiness wait on `fd`; when it fires, c-ares does its I/O and the watch is re-armed
    // for what c-ares still wants.
    void wait(const std::shared_ptr<Watch>& w, int fd, bool write) {
        bool Watch::*busy = write ? &Watch::writing : &Watch::reading;
        (*w).*busy = true;
        auto kind = write ? asio::posix::descriptor_base::wait_write
                          : asio::posix::descriptor_base::wait_read;
        w->sd.async_wait(
            kind, [self = shared_from_this(), w, fd, write, busy](const asio::error_code& ec) {
                (*w).*busy = false;
                if (ec || w->closed || self->finished) return;
                ares_process_fd(self->channel, write ? ARES_SOCKET_BAD : fd,
                                write ? fd : ARES_SOCKET_BAD);
                if (!w->closed) self->arm(w, fd);
                self->reschedule();
            });
    }

    void reschedule() {
        if (finished || pending == 0) return;
        timeval buf{};
        timeval* tv = ares_timeout(channel, nullptr, &buf);
        auto wait = tv ? std::chrono::seconds(tv->tv_sec) + std::chrono::microseconds(tv->tv_usec)
                       : std::chrono::microseconds(std::chrono::milliseconds(kTimeoutMs));
        timer.expires_after(wait);
        timer.async_wait([self = shared_from_this()](const asio::error_code& ec) {
            if (ec || self->finished) return;
            ares_process_fd(self->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            self->reschedule();
        });
    }

    struct Query {
        Impl* impl;
        common::HostResult* host;
    };

    static void on_answer(void* arg, int status, int, hostent* h) {
        std::unique_ptr<Query> q(static_cast<Query*>(arg));
        if (status == ARES_SUCCESS && h && h->h_name) q->host->hostname = h->h_name;
        if (status == ARES_EDESTRUCTION) return;  // the resolver is going away
        q->impl->answered();
    }

    void answered() {
        if (--pending == 0) finish();
    }

    void finish() {
        if (finished) return;
        finished = true;
        timer.cancel();
        asio::post(io, [self = shared_from_this()] { self->done(); });
    }

    static bool wanted(const common::ScanOptions& o, const common::HostResult& h) {
        return !o.no_dns && (o.dns_all || o.list_scan || h.status == "up");
    }

    void start(std::vector<common::HostResult>& hosts, std::function<void()> on_done,
               const std::function<void(const std::string&)>& warn) {
        done = std::move(on_done);
        std::vector<common::HostResult*> todo;
        for (auto& h : hosts)
            if (wanted(opts, h) && h.hostname.empty()) todo.push_back(&h);
        if (todo.empty()) return finish();
        if (opts.system_dns) {
            // The system resolver blocks: one name at a time, as nmap's --system-dns.
            for (auto* h : todo)
                system_lookup(*h);
            return finish();
        }
        if (!library_ready() || !open_channel(warn)) return finish();
        pending = todo.size();
        for (auto* h : todo) {
            in6_addr a6{};
            in_addr a4{};
            auto* q = new Query{this, h};
            if (inet_pton(AF_INET, h->address.c_str(), &a4) == 1)
                ares_gethostbyaddr(channel, &a4, sizeof a4, AF_INET, on_answer, q);
            else if (inet_pton(AF_INET6, h->address.c_str(), &a6) == 1)
                ares_gethostbyaddr(channel, &a6, sizeof a6, AF_INET6, on_answer, q);
            else
                on_answer(q, ARES_EBADSTR, 0, nullptr);
        }
        reschedule();
    }

    bool open_channel(const std::function<void(const std::string&)>& warn) {
        ares_options o{};
        o.sock_state_cb = &Impl::on_sock_state;
        o.sock_state_cb_data = this;
        o.timeout = kTimeoutMs;
        o.tries = kTries;
        int rc = ares_init_options(&channel, &o,
                                   ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
        if (rc != ARES_SUCCESS) {
            channel = nullptr;
            if (warn) warn(std::string("WARNING: reverse DNS unavailable: ") + ares_strerror(rc));
            return false;
        }
        if (!opts.dns_servers.empty()) {
            rc = ares_set_servers_ports_csv(channel, opts.dns_servers.c_str());
            if (rc != ARES_SUCCESS) {
                if (warn)
                    warn("WARNING: bad --dns-servers '" + opts.dns_servers +
                         "': " + ares_strerror(rc) + "; no reverse DNS");
                return false;
            }
        }
        return true;
    }

    static void system_lookup(common::HostResult& h) {
        sockaddr_storage ss{};
        socklen_t len = 0;
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        if (inet_pton(AF_INET, h.address.c_str(), &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            len = sizeof *s4;
        } else if (inet_pton(AF_INET6, h.address.c_str(), &s6->sin6_addr) == 1) {
            s6->sin6_family = AF_INET6;
            len = sizeof *s6;
        } else {
            return;
        }
        char name[NI_MAXHOST];
        if (getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, name, sizeof name, nullptr, 0,
                        NI_NAMEREQD) == 0)
            h.hostname = name;
    }
};

ReverseDns::ReverseDns(asio::io_context& io, const common::ScanOptions& opts)
    : impl_(std::make_shared<Impl>(io, opts)) {}

ReverseDns::~ReverseDns() = default;

void ReverseDns::start(std::vector<common::HostResult>& hosts, std::function<void()> done,
                       std::function<void(const std::string&)> warn) {
    impl_->start(hosts, std::move(done), warn);
}

std::size_t ReverseDns::wanted(const common::ScanOptions& opts,
                               const std::vector<common::HostResult>& hosts) {
    std::size_t n = 0;
    for (const auto& h : hosts)
        n += Impl::wanted(opts, h) && h.hostname.empty();
    return n;
}

}  // namespace worker
