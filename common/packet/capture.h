#pragma once
// Live packet capture on an Asio loop: the one place nsefleet opens libpcap handles. A handle
// is opened non-blocking in immediate mode and its selectable descriptor is watched by the
// caller's io_context, so no thread ever blocks on a read. Used by nmap.new_socket's
// pcap_open/pcap_receive (nse/lib/socket.cc) and by the raw port scanner
// (worker/scan/raw_scan.cc). Frames come out as captured; common/packet/link_layer.h finds
// their layer-3 start.
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

struct pcap;  // libpcap's handle (pcap_t), kept out of this header

namespace packet {

struct CaptureOptions {
    int snaplen = 262144;  // bytes kept of each frame
    bool promisc = false;
    int buffer_size = 0;              // kernel buffer in bytes; 0: libpcap's default
    bool inbound_only = false;        // best effort: frames this host sends are not seen
    std::string filter;               // BPF expression; "" captures everything
    bool filter_best_effort = false;  // true: a filter that fails to compile is ignored
};

// One captured frame. `data` is valid only during the callback that receives it.
struct Frame {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;  // captured bytes (at most the snaplen)
    double time = 0;       // capture time, seconds since the epoch
};

class Capture : public std::enable_shared_from_this<Capture> {
public:
    using FrameFn = std::function<void(const Frame&)>;
    // After each batch of frames read on one readiness event: ok, or the capture failed (the
    // device went away, a read error). After a failure the capture is no longer watched.
    using BatchFn = std::function<void(const common::Status&)>;

    // Opens `device` and applies `opts`. Errors carry libpcap's own text (no device, no
    // permission, a filter that does not compile, no selectable descriptor).
    [[nodiscard]] static common::Result<std::shared_ptr<Capture>> open(asio::io_context& io,
                                                                       const std::string& device,
                                                                       const CaptureOptions& opts);

    ~Capture();
    Capture(const Capture&) = delete;
    Capture& operator=(const Capture&) = delete;

    // Starts watching the descriptor: on each readiness, reads at most `max_frames` frames
    // (calling on_frame for each), then calls on_batch. Handlers run on the io_context's
    // thread and never after stop() or destruction. Call once.
    void start(FrameFn on_frame, BatchFn on_batch, std::size_t max_frames = 16384);

    // Reads, without waiting, what is already captured (at most `max_frames`), through the
    // on_frame given to start(); for callers that also poll on a timer. Returns an error when
    // the read failed (on_batch is not called).
    common::Status poll(std::size_t max_frames = 16384);

    // Stops watching; pending waits end without calling the handlers.
    void stop();

    // The handle's link type: a DLT_* value of <pcap/dlt.h>.
    int linktype() const { return linktype_; }
    const std::string& device() const { return device_; }

    // Sends one whole link-layer frame on the device.
    [[nodiscard]] common::Status inject(const std::uint8_t* frame, std::size_t size);

private:
    Capture(asio::io_context& io, pcap* handle, std::string device);
    void watch();
    // Frames read, or -1 on a read failure.
    long read(std::size_t max_frames);

    pcap* handle_;
    asio::posix::stream_descriptor desc_;
    std::string device_;
    int linktype_ = 0;
    bool stopped_ = true;
    std::size_t max_frames_ = 16384;
    FrameFn on_frame_;
    BatchFn on_batch_;
};

}  // namespace packet
