#include "nse/registry_shadow.h"

#include <cmath>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "nse/registry_delta.h"
#include "nse/value_bridge.h"

namespace nse {

namespace {

// A unique light userdata standing for nil in a walk's journal.
void* nil_mark() {
    static char mark;
    return &mark;
}

// Equal as Values: same type; integers and floats differ; NaN equals NaN.
bool same_scalar(lua_State* L, int a, int b) {
    int ta = lua_type(L, a);
    if (ta != lua_type(L, b)) return false;
    if (ta != LUA_TNUMBER) return lua_rawequal(L, a, b);
    bool ia = lua_isinteger(L, a);
    if (ia != static_cast<bool>(lua_isinteger(L, b))) return false;
    if (ia) return lua_tointeger(L, a) == lua_tointeger(L, b);
    double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
    return x == y || (std::isnan(x) && std::isnan(y));
}

// One pass over the live registry, with the table of shadows at `shadows`.
class Walker {
public:
    // `journal`: a table where diff() records the shadow updates it makes (applied by
    // commit() once the whole walk succeeded); 0 outside diff.
    Walker(lua_State* L, int shadows, int journal = 0) : L_(L), s_(shadows), j_(journal) {}

    lua_Integer recorded() const { return n_; }  // journal entries (3 per update)

    // [-0, +0] shadow(t) := the travelling entries of t, and the same below it.
    void reset(int t) {
        std::unordered_set<const void*> seen;
        reset(t, seen);
    }

    // [-0, +0] The delta of table t against its shadow; the shadow is updated.
    common::Table diff(int t, bool top) {
        t = lua_absindex(L_, t);
        const void* p = lua_topointer(L_, t);
        // A table reached twice (two keys hold it) has one delta; a cycle adds nothing.
        if (auto it = memo_.find(p); it != memo_.end())
            return it->second ? *it->second : common::Table{};
        memo_[p] = std::nullopt;
        luaL_checkstack(L_, 8, "registry too deep");
        int c = push_shadow(t, true);
        common::Table out;
        // Appends: the items that continue the shadow's sequence 1..n without a gap.
        lua_Integer n = 0, m = 0;
        while (lua_rawgeti(L_, c, n + 1) != LUA_TNIL) {
            lua_pop(L_, 1);
            ++n;
        }
        lua_pop(L_, 1);
        for (;;) {
            int vt = lua_rawgeti(L_, t, n + m + 1);
            lua_pop(L_, 1);
            if (!registry_value_travels(vt)) break;
            ++m;
        }
        // Keys set or changed.
        lua_pushnil(L_);
        while (lua_next(L_, t)) {
            const int k = lua_gettop(L_) - 1, v = k + 1;
            const int vt = lua_type(L_, v);
            bool append =
                lua_isinteger(L_, k) && lua_tointeger(L_, k) > n && lua_tointeger(L_, k) <= n + m;
            if (append || !registry_value_travels(vt) || !registry_key_travels(L_, k, top)) {
                lua_pop(L_, 1);
                continue;
            }
            lua_pushvalue(L_, k);
            const int ct = lua_rawget(L_, c);
            const int cv = v + 1;
            bool changed = false;
            if (vt == LUA_TTABLE && lua_rawequal(L_, v, cv)) {
                common::Table sub = diff(v, false);
                if (!sub.entries.empty()) {
                    common::Entry e = registry_key(L_, k);
                    e.value.v = std::move(sub);
                    out.entries.push_back(std::move(e));
                }
            } else if (vt == LUA_TTABLE) {
                // Another table, or one where a scalar was: its content against the old.
                common::Value old = ct == LUA_TTABLE ? shadow_value(cv) : common::Value{};
                common::Entry e = registry_key(L_, k);
                e.value = registry_diff(old, plain_to_value(L_, v));
                if (ct != LUA_TTABLE || !e.value.table().entries.empty())
                    out.entries.push_back(std::move(e));
                // Its own shadows (and what another key holding it gets) are brought up to
                // date by diffing it; a table being walked above (a cycle) is left to that walk.
                diff(v, false);
                changed = true;
            } else if (ct == LUA_TTABLE || !same_scalar(L_, v, cv)) {
                common::Entry e = registry_key(L_, k);
                e.value = plain_to_value(L_, v);
                out.entries.push_back(std::move(e));
                changed = true;
            }
            lua_pop(L_, 1);  // the shadow's value
            if (changed) record(c, k, v);
            lua_pop(L_, 1);  // the value
        }
        // Keys removed (or holding what does not travel any more). Clearing fields of the
        // table being traversed is allowed.
        lua_pushnil(L_);
        while (lua_next(L_, c)) {
            const int k = lua_gettop(L_) - 1;
            if (registry_key_travels(L_, k, top)) {
                lua_pushvalue(L_, k);
                int tt = lua_rawget(L_, t);
                lua_pop(L_, 1);
                if (!registry_value_travels(tt)) {
                    out.entries.push_back(registry_key(L_, k));  // nil value: removed
                    record(c, k, 0);
                }
            }
            lua_pop(L_, 1);
        }
        for (lua_Integer i = n + 1; i <= n + m; ++i) {
            lua_rawgeti(L_, t, i);
            common::Entry e;
            e.indexed = true;  // no key text: an append
            if (lua_type(L_, -1) == LUA_TTABLE) {
                e.value = registry_diff(common::Value{}, plain_to_value(L_, -1));
                diff(-1, false);
            } else {
                e.value = plain_to_value(L_, -1);
            }
            out.entries.push_back(std::move(e));
            lua_pushinteger(L_, i);
            record(c, lua_gettop(L_), lua_gettop(L_) - 1);
            lua_pop(L_, 2);
        }
        lua_pop(L_, 1);  // the shadow
        memo_[p] = out;  // (usually empty: nothing to copy)
        return out;
    }

    // [-0, +0] Table t took delta `d`: the shadows of what it touched follow.
    void applied(int t, const common::Table& d) {
        t = lua_absindex(L_, t);
        luaL_checkstack(L_, 8, "registry too deep");
        push_shadow(t, false);
        if (lua_type(L_, -1) != LUA_TTABLE) {
            lua_pop(L_, 1);
            reset(t);
            return;
        }
        const int c = lua_gettop(L_);
        bool appends = false;
        for (const auto& e : d.entries) {
            if (e.indexed && e.key.empty()) {
                appends = true;
                continue;
            }
            push_entry_key(L_, e);
            const int k = lua_gettop(L_);
            lua_pushvalue(L_, k);
            const int tt = lua_rawget(L_, t);
            const int tv = k + 1;
            if (tt == LUA_TTABLE) {
                lua_pushvalue(L_, k);
                lua_rawget(L_, c);
                bool same = lua_rawequal(L_, tv, -1);
                lua_pop(L_, 1);
                if (same && e.value.is_table())
                    applied(tv, e.value.table());
                else
                    reset(tv);
            }
            lua_pushvalue(L_, k);
            if (registry_value_travels(tt))
                lua_pushvalue(L_, tv);
            else
                lua_pushnil(L_);
            lua_rawset(L_, c);
            lua_pop(L_, 2);
        }
        // Appends went after the first border: the shadow takes the items it lacks.
        for (lua_Integer i = 1; appends; ++i) {
            int tt = lua_rawgeti(L_, t, i);
            if (tt == LUA_TNIL) {
                lua_pop(L_, 1);
                break;
            }
            lua_rawgeti(L_, c, i);
            bool same = lua_rawequal(L_, -1, -2);
            lua_pop(L_, 1);
            if (same || !registry_value_travels(tt)) {
                lua_pop(L_, 1);
                continue;
            }
            if (tt == LUA_TTABLE) reset(-1);
            lua_rawseti(L_, c, i);
        }
        lua_pop(L_, 1);
    }

private:
    // [-0, +1] Pushes the shadow of table t (a new empty one when it has none and `make`),
    // returning its index; nil when it has none and !make.
    int push_shadow(int t, bool make) {
        lua_pushvalue(L_, t);
        if (lua_rawget(L_, s_) != LUA_TTABLE && make) {
            lua_pop(L_, 1);
            lua_newtable(L_);  // filled by this walk's records, registered by commit()
            record(s_, t, lua_gettop(L_));
        }
        return lua_gettop(L_);
    }

    // [-0, +0] Records shadow[key] = value (0 for value: nil), for commit(). The shadows
    // stay as they were during the walk: a failed walk leaves them untouched, and a table
    // met again under another key is compared with what it was, not what it just became.
    void record(int shadow, int key, int value) {
        lua_pushvalue(L_, shadow);
        lua_rawseti(L_, j_, ++n_);
        lua_pushvalue(L_, key);
        lua_rawseti(L_, j_, ++n_);
        if (value)
            lua_pushvalue(L_, value);
        else
            lua_pushlightuserdata(L_, nil_mark());
        lua_rawseti(L_, j_, ++n_);
    }

    void reset(int t, std::unordered_set<const void*>& seen) {
        t = lua_absindex(L_, t);
        if (!seen.insert(lua_topointer(L_, t)).second) return;
        luaL_checkstack(L_, 6, "registry too deep");
        lua_newtable(L_);
        const int c = lua_gettop(L_);
        lua_pushnil(L_);
        while (lua_next(L_, t)) {
            int vt = lua_type(L_, -1);
            if (registry_key_travels(L_, -2, false) && registry_value_travels(vt)) {
                if (vt == LUA_TTABLE) reset(-1, seen);
                lua_pushvalue(L_, -2);
                lua_pushvalue(L_, -2);
                lua_rawset(L_, c);
            }
            lua_pop(L_, 1);
        }
        lua_pushvalue(L_, t);
        lua_pushvalue(L_, c);
        lua_rawset(L_, s_);
        lua_pop(L_, 1);
    }

    // The content table t had at the last exchange (its shadow, and theirs below), as a
    // Value; nil for a table met again on the way down (a cycle).
    common::Value shadow_value(int t) {
        t = lua_absindex(L_, t);
        const void* p = lua_topointer(L_, t);
        if (!path_.insert(p).second) return {};
        luaL_checkstack(L_, 6, "registry too deep");
        common::Value out;
        push_shadow(t, false);
        if (lua_type(L_, -1) != LUA_TTABLE) {
            lua_pop(L_, 1);
            out = plain_to_value(L_, t);
            path_.erase(p);
            return out;
        }
        const int c = lua_gettop(L_);
        common::Table tab;
        lua_pushnil(L_);
        while (lua_next(L_, c)) {
            if (registry_key_travels(L_, -2, false)) {
                common::Entry e = registry_key(L_, -2);
                e.value =
                    lua_type(L_, -1) == LUA_TTABLE ? shadow_value(-1) : plain_to_value(L_, -1);
                tab.entries.push_back(std::move(e));
            }
            lua_pop(L_, 1);
        }
        lua_pop(L_, 1);
        path_.erase(p);
        out.v = std::move(tab);
        return out;
    }

    lua_State* L_;
    int s_;
    int j_;              // the journal (diff only)
    lua_Integer n_ = 0;  // entries in it
    std::unordered_map<const void*, std::optional<common::Table>> memo_;
    std::unordered_set<const void*> path_;
};

}  // namespace

void RegistryShadow::push_shadows(lua_State* L) {
    if (ref_ != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref_);
        return;
    }
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    ref_ = luaL_ref(L, LUA_REGISTRYINDEX);
}

void RegistryShadow::reset(lua_State* L, int idx) {
    idx = lua_absindex(L, idx);
    if (journal_ != LUA_NOREF) {  // rebuilt whole: an unfinished update is moot
        luaL_unref(L, LUA_REGISTRYINDEX, journal_);
        journal_ = LUA_NOREF;
    }
    push_shadows(L);
    Walker(L, lua_gettop(L)).reset(idx);
    lua_pop(L, 1);
}

common::Value RegistryShadow::diff(lua_State* L, int idx) {
    idx = lua_absindex(L, idx);
    common::Value out;
    if (!lua_istable(L, idx)) {
        out.v = common::Table{};
        return out;
    }
    // Shadows half-way through an earlier update cannot be compared with: nothing yet.
    if (!finish(L)) {
        out.v = common::Table{};
        return out;
    }
    push_shadows(L);
    lua_newtable(L);  // the walk's journal: shadows change only once it has succeeded
    Walker w(L, lua_gettop(L) - 1, lua_gettop(L));
    out.v = w.diff(idx, true);
    journal_size_ = w.recorded();
    journal_done_ = 0;
    journal_ = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    finish(L);  // out of memory half-way: the rest is applied at the next call
    return out;
}

int RegistryShadow::commit_step(lua_State* L) {
    auto* self = static_cast<RegistryShadow*>(lua_touserdata(L, 1));
    lua_rawgeti(L, LUA_REGISTRYINDEX, self->journal_);
    const int j = lua_gettop(L);
    while (self->journal_done_ + 3 <= self->journal_size_) {
        const lua_Integer i = self->journal_done_ + 1;
        lua_rawgeti(L, j, i);      // the shadow (or the table of shadows)
        lua_rawgeti(L, j, i + 1);  // key
        if (lua_rawgeti(L, j, i + 2) == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == nil_mark()) {
            lua_pop(L, 1);
            lua_pushnil(L);
        }
        lua_rawset(L, -3);
        lua_pop(L, 1);
        self->journal_done_ += 3;  // applied: a later retry starts after it
    }
    luaL_unref(L, LUA_REGISTRYINDEX, self->journal_);  // may allocate: inside the pcall too
    self->journal_ = LUA_NOREF;
    return 0;
}

bool RegistryShadow::finish(lua_State* L) {
    if (journal_ == LUA_NOREF) return true;
    lua_pushcfunction(L, &RegistryShadow::commit_step);
    lua_pushlightuserdata(L, this);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        lua_pop(L, 1);
        return false;
    }
    return true;
}

void RegistryShadow::applied(lua_State* L, int idx, const common::Value& delta) {
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx) || !delta.is_table()) return;
    if (!finish(L)) luaL_error(L, "not enough memory to update the registry's shadows");
    push_shadows(L);
    Walker(L, lua_gettop(L)).applied(idx, delta.table());
    lua_pop(L, 1);
}

}  // namespace nse
