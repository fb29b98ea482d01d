#include "common/packet/capture.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace packet {

namespace {

constexpr int kBatch = 256;  // frames per pcap_dispatch call, then check the budget again

}  // namespace

Capture::Capture(asio::io_context& io, pcap* handle, std::string device)
    : handle_(handle), desc_(io), device_(std::move(device)) {}

Capture::~Capture() {
    if (desc_.is_open()) {
        asio::error_code ec;
        desc_.cancel(ec);
        desc_.release();  // the descriptor belongs to libpcap, which closes it
    }
    pcap_close(handle_);
}

common::Result<std::shared_ptr<Capture>> Capture::open(asio::io_context& io,
                                                       const std::string& device,
                                                       const CaptureOptions& opts) {
    char eb[PCAP_ERRBUF_SIZE] = "";
    pcap_t* p = pcap_create(device.c_str(), eb);
    if (!p) return common::Status::error(eb);
    std::shared_ptr<Capture> c(new Capture(io, p, device));  // owns p from here on
    pcap_set_snaplen(p, opts.snaplen);
    pcap_set_promisc(p, opts.promisc ? 1 : 0);
    pcap_set_immediate_mode(p, 1);  // deliver each frame at once: the loop waits on the fd
    if (opts.buffer_size > 0) pcap_set_buffer_size(p, opts.buffer_size);
    int rc = pcap_activate(p);
    if (rc < 0)
        return common::Status::error(rc == PCAP_ERROR ? pcap_geterr(p) : pcap_statustostr(rc));
    if (opts.inbound_only) pcap_setdirection(p, PCAP_D_IN);  // best effort: lo shows each once
    if (pcap_setnonblock(p, 1, eb) < 0) return common::Status::error(eb);
    if (!opts.filter.empty()) {
        bpf_program prog{};
        if (pcap_compile(p, &prog, opts.filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) < 0) {
            if (!opts.filter_best_effort) return common::Status::error(pcap_geterr(p));
        } else {
            rc = pcap_setfilter(p, &prog);
            pcap_freecode(&prog);
            if (rc < 0 && !opts.filter_best_effort) return common::Status::error(pcap_geterr(p));
        }
    }
    int fd = pcap_get_selectable_fd(p);
    if (fd < 0) return common::Status::error("no selectable descriptor");
    asio::error_code ec;
    c->desc_.assign(fd, ec);
    if (ec) return common::Status::error(ec.message());
    c->linktype_ = pcap_datalink(p);
    return c;
}

void Capture::start(FrameFn on_frame, BatchFn on_batch, std::size_t max_frames) {
    on_frame_ = std::move(on_frame);
    on_batch_ = std::move(on_batch);
    max_frames_ = max_frames;
    stopped_ = false;
    watch();
}

void Capture::stop() {
    stopped_ = true;
    asio::error_code ec;
    desc_.cancel(ec);
}

void Capture::watch() {
    desc_.async_wait(asio::posix::stream_descriptor::wait_read, [weak = weak_from_this()](
                                                                    const asio::error_code& ec) {
        auto self = weak.lock();  // keeps it alive through the handlers
        if (!self || self->stopped_ || ec == asio::error::operation_aborted) return;
        bool failed = ec || self->read(self->max_frames_) < 0;
        if (self->stopped_) return;
        self->on_batch_(failed ? common::Status::error("capture failed on " + self->device_)
                               : common::Status::ok());
        if (!failed && !self->stopped_) self->watch();
    });
}

common::Status Capture::poll(std::size_t max_frames) {
    if (read(max_frames) < 0) return common::Status::error(pcap_geterr(handle_));
    return common::Status::ok();
}

long Capture::read(std::size_t max_frames) {
    auto deliver = [](u_char* user, const pcap_pkthdr* h, const u_char* bytes) {
        auto* self = reinterpret_cast<Capture*>(user);
        if (self->stopped_) {
            pcap_breakloop(self->handle_);  // a handler stopped the capture: deliver no more
            return;
        }
        Frame f;
        f.data = bytes;
        f.size = h->caplen;
        f.time = static_cast<double>(h->ts.tv_sec) + static_cast<double>(h->ts.tv_usec) / 1e6;
        self->on_frame_(f);
    };
    long total = 0;
    while (static_cast<std::size_t>(total) < max_frames && on_frame_) {
        int want = static_cast<int>(std::min<std::size_t>(kBatch, max_frames - total));
        int n = pcap_dispatch(handle_, want, deliver, reinterpret_cast<u_char*>(this));
        if (n == 0 || n == PCAP_ERROR_BREAK) break;
        if (n < 0) return -1;
        total += n;
    }
    return total;
}

common::Status Capture::inject(const std::uint8_t* frame, std::size_t size) {
    if (pcap_inject(handle_, frame, size) == static_cast<int>(size)) return common::Status::ok();
    int e = errno;  // callers tell a full device queue (ENOBUFS, EAGAIN) from a real failure
    common::Status st = common::Status::error(pcap_geterr(handle_));
    errno = e;
    return st;
}

}  // namespace packet
