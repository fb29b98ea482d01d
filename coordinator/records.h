#pragma once
// The coordinator's own records in the store (merged registry, phase results, script-added
// targets) are encoded wire messages; this reads one back by key.
#include <string>
#include <utility>

#include "common/status.h"
#include "common/wire/codec.h"
#include "coordinator/store/store.h"

namespace coordinator {

// Reads record `key` into `out` (left as is when there is none). A store failure or a record
// that does not decode as M is an error naming the key: a resume never skips state silently.
template <class M>
common::Status read_record(const store::Store& store, const std::string& key, M& out) {
    auto b = store.record(key);
    if (!b)
        return common::Status::error("state: cannot read '" + key + "': " + b.status().message());
    if (!*b) return common::Status::ok();
    auto m = common::wire::decode_as<M>(**b, "state: record '" + key + "'");
    if (!m) return m.status();
    out = std::move(*m);
    return common::Status::ok();
}

}  // namespace coordinator
