#pragma once
// Wall-clock time as the reports and the wire carry it: seconds since the Unix epoch, with
// the fraction. (Intervals use std::chrono::steady_clock instead.)
#include <chrono>

namespace common {

inline double epoch_now() {
    using namespace std::chrono;
    return duration<double>(system_clock::now().time_since_epoch()).count();
}

}  // namespace common
