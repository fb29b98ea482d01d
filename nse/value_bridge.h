#pragma once
// Conversions between Lua values and common::Value (results, registry snapshots).
#include <lua.hpp>

#include "common/value.h"

namespace nse {

// [-0, +0] Converts format.lua's canonical tree ({kind="table", {key=, value=}...} or
// {kind="string", value=}) at `idx` into a Value.
common::Value tree_to_value(lua_State* L, int idx);

// What of a Lua table travels as registry data (registry_to_value and RegistryShadow keep
// exactly this): values of `registry_value_travels` types under keys that are strings or
// numbers, except "args" at the top level (each engine sets its own).
bool registry_value_travels(int lua_type);
bool registry_key_travels(lua_State* L, int k, bool top);  // [-0, +0], builds no text
common::Entry registry_key(lua_State* L, int k);           // [-0, +0] a travelling key

// [-0, +0] Plain data at `idx` (strings, numbers, booleans, nested tables) as a Value.
// Functions, userdata, threads and cycles are skipped; the "args" key of the top level is
// skipped too (each engine sets its own).
common::Value registry_to_value(lua_State* L, int idx);

// [-0, +0] The same for a value below the top level (no key is skipped).
common::Value plain_to_value(lua_State* L, int idx);

// [-0, +1] Pushes the Lua key of a keyed table entry (string, integer or float key; not an
// append, which has no key of its own).
void push_entry_key(lua_State* L, const common::Entry& e);

// [-0, +0] Applies a registry delta (nse/registry_delta.h) to the Lua table at `idx`, in
// place: appends go after the table's last sequence item, nil values remove.
void apply_delta(lua_State* L, int idx, const common::Value& delta);

// [-0, +0] Makes the Lua table at `idx` hold exactly `snapshot`'s plain data, in place
// (nested tables too, so references scripts hold stay live). Values that never travel
// (functions, userdata, and at the `top` level the "args" key) are left alone.
void sync_table(lua_State* L, int idx, const common::Value& snapshot, bool top);

// [-0, +1] Pushes a Value as a plain Lua value.
void push_value(lua_State* L, const common::Value& v);

}  // namespace nse
