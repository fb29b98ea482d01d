#pragma once
// What the engine offers its Lua modules (nmap, socket, ...): the event loop, the one yield
// door and the one resume door, per-thread cleanups, and the host data of the running phase.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <lua.hpp>
#include <memory>
#include <string>
#include <utility>

#include "common/datafiles.h"
#include "common/result.h"
#include "nse/embedder.h"
#include "nse/governor.h"

namespace asio {
class io_context;
}

namespace nse {

class Runtime;

// The engine's memory budget: the Lua allocator and every byte held outside Lua on behalf of
// scripts (socket receive buffers, decompression output) count against one cap. Shared
// (std::shared_ptr) so charges held by late I/O handlers outlive the engine safely.
struct MemoryBudget {
    std::size_t used = 0;
    std::size_t limit = 0;  // 0 = none
    // Counts `n` more bytes; false (nothing counted) when that would pass the cap.
    bool charge(std::size_t n) {
        if (limit && used + n > limit) return false;
        used += n;
        return true;
    }
    void uncharge(std::size_t n) { used -= std::min(n, used); }
};

// Bytes counted against a budget while this object lives. Move-only.
class MemCharge {
public:
    MemCharge() = default;
    explicit MemCharge(std::shared_ptr<MemoryBudget> b) : budget_(std::move(b)) {}
    MemCharge(MemCharge&& o) noexcept : budget_(std::move(o.budget_)), n_(std::exchange(o.n_, 0)) {}
    MemCharge& operator=(MemCharge&& o) noexcept {
        if (this != &o) {
            reset();
            budget_ = std::move(o.budget_);
            n_ = std::exchange(o.n_, 0);
        }
        return *this;
    }
    ~MemCharge() { reset(); }
    // Makes the charge `total` bytes; false (unchanged) when the budget cannot take it, or
    // when one buffer would hold more than a quarter of the cap (one greedy script must not
    // starve every other script of its engine).
    bool set(std::size_t total) {
        if (!budget_) return true;
        if (total > n_ && !within_share(total)) return false;
        if (total > n_) {
            if (!budget_->charge(total - n_)) return false;
        } else {
            budget_->uncharge(n_ - total);
        }
        n_ = total;
        return true;
    }
    void reset() {
        if (budget_) budget_->uncharge(n_);
        n_ = 0;
    }
    // Whether one buffer of `n` bytes stays within its share of the cap.
    bool within_share(std::size_t n) const {
        return !budget_ || !budget_->limit || n <= budget_->limit / 4;
    }

private:
    std::shared_ptr<MemoryBudget> budget_;
    std::size_t n_ = 0;
};

// Registry key of a light userdata pointing to the engine's std::shared_ptr<MemoryBudget>.
inline constexpr const char* kBudgetKey = "nsefleet.budget";

// [-0, +0] A charge against the memory budget of L's engine (uncounted outside an engine,
// e.g. in module unit tests).
inline MemCharge budget_charge(lua_State* L) {
    lua_getfield(L, LUA_REGISTRYINDEX, kBudgetKey);
    auto* b = static_cast<std::shared_ptr<MemoryBudget>*>(lua_touserdata(L, -1));
    lua_pop(L, 1);
    return b ? MemCharge(*b) : MemCharge();
}

// The reason a script gets for an operation refused by the memory budget.
inline constexpr const char* kNotEnoughMemory = "not enough memory";

// A promise to resume one waiting script thread. Cheap to copy; firing it more than once,
// or after the thread died or was resumed for another reason, does nothing.
class Waker {
public:
    Waker() = default;
    // Delivers values: `push` runs later, on the resumed thread's stack, and returns how
    // many values it pushed. Those values become the results of the yield.
    void wake(std::function<int(lua_State*)> push) const;
    // Convenience: deliver nothing.
    void wake() const;
    bool valid() const { return rt_ != nullptr; }

private:
    friend class Runtime;
    Runtime* rt_ = nullptr;
    std::uint64_t thread_ = 0;  // base thread id
    std::uint64_t gen_ = 0;     // wait generation: stale wakes are dropped
};

using CleanupId = std::uint64_t;

// Per-base-thread facts modules need.
struct ThreadInfo {
    std::uint64_t id = 0;      // base thread id (unique in the engine)
    std::string script_id;     // "http-title"
    bool spawned = false;      // started by stdnse.new_thread (not a script instance)
    bool by_name = false;      // selected by name/path (verbosity +1)
    int host = -1;             // index into the phase's hosts, -1 for pre/post
    int port = -1;             // port number for portrule instances
    std::string proto;         // port protocol
    lua_State* co = nullptr;   // the base coroutine
    std::uint64_t parent = 0;  // for workers: the instance they belong to
    int locks_held = 0;        // nmap.mutex locks held (governor priority)
};

class Runtime {
public:
    virtual ~Runtime() = default;
    virtual asio::io_context& io() = 0;
    virtual Embedder& embedder() = 0;
    virtual SharedState& shared() = 0;
    virtual std::uint64_t engine_id() const = 0;
    virtual const common::DataFiles& datafiles() const = 0;
    virtual int verbosity() const = 0;          // -v level (without the by-name boost)
    virtual int version_intensity() const = 0;  // --version-intensity (7 without -sV)
    virtual bool script_trace() const = 0;      // --script-trace
    virtual bool packet_trace() const = 0;      // --packet-trace: NSOCK lines for sockets
    virtual int debugging() const = 0;
    virtual int timing_level() const = 0;
    virtual bool ipv6() const = 0;
    virtual const std::string& iface() const = 0;  // -e, "" when not given
    // The script-socket governor and the memory budget of this engine.
    virtual Governor& governor() = 0;
    virtual const std::shared_ptr<MemoryBudget>& memory() = 0;
    // Monotonic seconds (the governor's clock).
    virtual double steady_now() const = 0;
    // Counts a result of `script` on host `host` (-1: none) lost to an engine limit (memory),
    // not to the script's own decision; shown at -v and before the end line.
    virtual void note_resource_loss(const std::string& script, int host,
                                    const std::string& what) = 0;
    // The same for the script thread running now.
    void note_resource_loss(const std::string& what) {
        const ThreadInfo* t = current();
        note_resource_loss(t ? t->script_id : "a script", t ? t->host : -1, what);
    }

    // The base thread being resumed now, or nullptr (module load, driver code).
    virtual const ThreadInfo* current() const = 0;
    // nmap.mutex bookkeeping: the base thread `thread` took (+1) or gave back (-1) a lock.
    virtual void note_lock(std::uint64_t thread, int delta) = 0;
    // nmap.registry exchange with the other engines (Engine::registry_publish/refresh): an
    // nmap.mutex publishes before its release and refreshes when it is acquired.
    virtual void registry_publish() = 0;
    virtual void registry_refresh() = 0;
    // Stable id for a coroutine (mutex owner, socket owner checks).
    virtual std::uint64_t coroutine_id(lua_State* co) = 0;

    // Starts a wait for the current base thread (raises a Lua error outside script threads).
    // Pair it with `return nse::yield(L, ...)`.
    virtual Waker prepare_wait(lua_State* L) = 0;

    // Runs `fn` once when the current base thread ends for any reason (finished, error,
    // timeout, engine shutdown). Raises outside script threads.
    virtual CleanupId add_cleanup(lua_State* L, std::function<void()> fn) = 0;
    virtual void remove_cleanup(CleanupId id) = 0;

    // Host and port data of the running scan phase (nullptr when unknown / not in a phase).
    virtual common::HostResult* host(std::size_t index) = 0;
    virtual common::HostResult* find_host(const std::string& ip_or_name) = 0;

    // Creates a worker base thread running the function at stack index `fn` with `nargs`
    // arguments above it, inheriting the current thread's identity. [-(nargs+1), +1]: pushes
    // the new coroutine.
    virtual void spawn_worker(lua_State* L, int nargs) = 0;

    // Delivery from a Waker (the one resume door).
    virtual void deliver(std::uint64_t thread, std::uint64_t gen,
                         std::function<int(lua_State*)> push) = 0;

protected:
    static Waker make_waker(Runtime* rt, std::uint64_t thread, std::uint64_t gen) {
        Waker w;
        w.rt_ = rt;
        w.thread_ = thread;
        w.gen_ = gen;
        return w;
    }
};

// Registry table (weak values) mapping coroutine_id() numbers back to coroutines.
inline constexpr const char* kCoroutinesById = "nsefleet.cobyid";

// [-0, +0] The runtime that owns L (any thread of the state).
Runtime& runtime(lua_State* L);

// The one yield door. [-0, +?] Suspends the current script thread until its Waker fires.
// With k == nullptr, the C function then returns exactly the delivered values; otherwise k
// runs with them on top of the stack (its `ctx` is what was passed here, the values are the
// topmost lua_gettop(L) - (top at yield) slots). Use as `return nse::yield(L, ...)`.
int yield(lua_State* L, lua_KContext ctx = 0, lua_KFunction k = nullptr);

// Wraps a lua_CFunction so that C++ exceptions of ours become Lua errors with their message
// (Lua errors and yields are not std::exceptions and pass through). Register `guard<f>`.
template <int (*F)(lua_State*)>
int guard(lua_State* L) {
    std::string msg;
    try {
        return F(L);
    } catch (const std::exception& e) {
        msg = e.what();
    }
    lua_pushlstring(L, msg.data(), msg.size());
    return lua_error(L);
}

}  // namespace nse
