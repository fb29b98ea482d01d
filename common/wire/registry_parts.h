#pragma once
// Registry tables larger than one fleet message travel in parts: a snapshot the coordinator
// hands an engine, a delta an engine publishes (nse/registry_delta.h semantics). The parts
// are deltas themselves; applied one after the other they give what applying the whole
// does, so the registry's size is bounded by memory and disk, not by a frame.
#include <cstddef>
#include <vector>

#include "common/status.h"
#include "common/value.h"
#include "common/wire/messages.h"

namespace common::wire {

// What one part may take: half a message, so the reply around it always fits.
inline constexpr std::size_t kRegistryPartBytes = kDefaultMaxMessageBytes / 2;

// Cuts `delta` (a table) into deltas of at most about `max_bytes` encoded each, entries in
// their order; a table entry too large for one part is itself cut, each part naming it
// (merging into it). One part when it fits. Fails when a single scalar (with its key path)
// is larger than a whole message (one that fits goes alone in a part of its own), or when an
// appended table is larger than `max_bytes` (cut, it would arrive as several items).
common::Result<std::vector<common::Value>> split_delta(const common::Value& delta,
                                                       std::size_t max_bytes);

// Adds the next part of a cut *snapshot* (explicit keys only) to what the earlier parts
// built, in time linear in the part (registry_apply would look every key up).
void join_snapshot_part(common::Value& whole, common::Value part);

}  // namespace common::wire
