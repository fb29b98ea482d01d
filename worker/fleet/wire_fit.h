#pragma once
// Results that cannot travel: keeps what a worker sends within one fleet message (the frame
// size cap, the decoder's nesting limit), so an oversized script result becomes that
// script's error, never a failed group or a stopped scan.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace worker::fleet {

// Structured outputs nested deeper than this are dropped (their text stays): the envelope
// and the host record take the rest of the decoder's depth limit.
std::size_t max_tree_depth();

// Makes `h` encodable as one HostResult of group `group` within `max_bytes`: trees nested too
// deep lose their structure (text kept); then, while the host is still too large, its largest
// script output is replaced by "ERROR: ..." with the reason. Returns a note per change.
std::vector<std::string> fit_host(common::HostResult& h, std::uint64_t group,
                                  std::size_t max_bytes);

// The same for a prerule/postrule phase's results; `budget` is what they may take in total.
std::vector<std::string> fit_scripts(std::vector<common::ScriptResult>& scripts,
                                     std::size_t budget);

}  // namespace worker::fleet
