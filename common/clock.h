#pragma once
// Wall-clock time as the reports and the wire carry it: seconds since the Unix epoch, with
// the fraction. (Intervals use std::chrono::steady_clock instead.)
#include <chrono>
#include <ctime>
#include <string>

namespace common {

inline double epoch_now() {
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}

// `epoch` in local time with strftime's `fmt` ("%H:%M" for nmap's "at 10:02" lines).
inline std::string local_time_text(double epoch, const char* fmt) {
    std::time_t t = static_cast<std::time_t>(epoch);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[64];
    return std::string(buf, std::strftime(buf, sizeof buf, fmt, &tm));
}

}  // namespace common
