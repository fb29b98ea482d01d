#pragma once
// `nsefleet scan`: a coordinator and one worker engine per core in one process.
#include "common/options.h"

namespace coordinator {

// Runs the whole scan and writes every requested output. Returns the process exit code;
// errors are printed as one line on stderr.
int run_embedded(common::ScanOptions opts);

}  // namespace coordinator
