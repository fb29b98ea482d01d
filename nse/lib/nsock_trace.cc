#include "nse/lib/nsock_trace.h"

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>

namespace nse::lib::nsock {
namespace {

// Set while the program loads: the time base of the lines.
const auto kStart = std::chrono::steady_clock::now();
std::atomic<long> g_iods{0};
std::atomic<long> g_events{0};
// Reads shorter than this show their bytes on the line, as nmap's do (longer ones only count).
constexpr std::size_t kPreviewBytes = 80;

const char* event_name(Event type) {
    switch (type) {
    case Event::connect: return "CONNECT";
    case Event::ssl_connect: return "SSL-CONNECT";
    case Event::read: return "READ";
    case Event::write: return "WRITE";
    }
    return "EVENT";
}

}  // namespace

long next_iod() { return ++g_iods; }

long next_eid(Event type) { return (++g_events << 3) | static_cast<long>(type); }

std::string line(std::string_view fn, std::string_view text) {
    std::chrono::duration<double> t = std::chrono::steady_clock::now() - kStart;
    char head[64];
    std::snprintf(head, sizeof head, "NSOCK INFO [%.4fs] ", t.count());
    std::string out = head;
    out.append(fn).append("(): ").append(text).append("\n");
    return out;
}

std::string callback(Event type, std::string_view status, long eid, std::string_view peer,
                     const std::error_code& ec, const std::string* data) {
    std::string text = "Callback: ";
    text.append(event_name(type)).append(" ").append(status);
    if (status == "ERROR" && ec)
        text.append(" [")
            .append(ec.message())
            .append(" (")
            .append(std::to_string(ec.value()))
            .append(")]");
    text.append(" for EID ").append(std::to_string(eid)).append(" [").append(peer).append("]");
    if (data && status == "SUCCESS") {
        text.append(" (").append(std::to_string(data->size())).append(" bytes)");
        if (!data->empty() && data->size() < kPreviewBytes) {
            text.append(": ");
            for (std::size_t i = 0; i < data->size(); ++i) {
                auto c = static_cast<unsigned char>((*data)[i]);
                text.push_back(std::isprint(c) ? static_cast<char>(c) : '.');
            }
        }
    }
    return line("nsock_trace_handler_callback", text);
}

}  // namespace nse::lib::nsock
