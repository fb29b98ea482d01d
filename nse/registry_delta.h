#pragma once
// How nmap.registry changes travel between engines: as deltas, never as whole snapshots, so
// two engines' writes to the same tables both arrive (docs/fleet.md "The shared registry").
//
// A delta is a table Value whose entries say what changed, key by key:
//  - a keyed entry (string key, or an integer key: `indexed` with the number as key text)
//    sets that key; a nil value removes it; a table value is itself a delta, applied to the
//    table already there (or to a new empty one);
//  - an `indexed` entry without key text appends its value to the table's sequence (after
//    the last item 1..n present where the delta is applied), in delta order. This is what
//    `table.insert(t, v)` becomes, so items appended by different engines all arrive, each
//    once, in each engine's own order.
// Snapshots (what the coordinator hands an engine) are plain tables: every key explicit.
#include "common/value.h"

namespace nse {

// The changes that turn `base` into `cur` (both tables; a non-table counts as empty).
// Integer keys that continue base's sequence 1..n without a gap become appends; every other
// difference is keyed; keys only in `base` get a nil entry (removal). Empty when equal.
common::Value registry_diff(const common::Value& base, const common::Value& cur);

// Applies a delta to `dst` in place (appends get the next free position, as key text).
void registry_apply(common::Value& dst, const common::Value& delta);

// Length of the sequence 1..n present in `t` (the border Lua's `#` would find first).
long long sequence_length(const common::Table& t);

}  // namespace nse
