#pragma once
// What an engine's nmap.registry changed since its last exchange, found without copying it.
// Lua gives no notice of writes, so every publish must look at every table; but strings are
// immutable and tables have identity, so a shallow copy of each table as last exchanged (its
// "shadow", holding the same Lua strings and child tables) tells what changed by identity
// comparisons alone. Only changed entries are converted to Values: a publish costs a walk
// of the registry's entries, not a copy of its bytes.
#include <lua.hpp>

#include "common/value.h"

namespace nse {

class RegistryShadow {
public:
    // [-0, +0] The shadow of the table at `idx` becomes its current content (after the
    // engine took a whole registry). Also the start: an engine's registry is empty then.
    void reset(lua_State* L, int idx);
    // [-0, +0] The delta (nse/registry_delta.h) from the shadow to the table at `idx`,
    // equal to registry_diff of the two as Values; the shadow then matches the table.
    common::Value diff(lua_State* L, int idx);
    // [-0, +0] The table at `idx` just took `delta` (apply_delta): the shadow follows, so
    // others' changes are never published again as this engine's.
    void applied(lua_State* L, int idx, const common::Value& delta);

private:
    // Applies the last walk's journal (from where an earlier attempt stopped). false when it
    // ran out of memory again; the rest waits for the next call.
    bool finish(lua_State* L);
    static int commit_step(lua_State* L);
    int journal_ = LUA_NOREF;
    lua_Integer journal_size_ = 0, journal_done_ = 0;
    // [-0, +1] The table of shadows (weak keys: a table gone from the registry frees its own).
    void push_shadows(lua_State* L);
    int ref_ = LUA_NOREF;
};

}  // namespace nse
