// The NSE engine: Lua state, scheduler, yield/resume doors, timeouts and memory cap.
#include "nse/engine.h"

#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_map>

#include "nse/lib/libssh2.h"
#include "nse/lib/nmap.h"
#include "nse/lib/openssl.h"
#include "nse/lib/zlib.h"
#include "nse/lua_sources.h"
#include "nse/registry_delta.h"
#include "nse/registry_shadow.h"
#include "nse/runtime.h"
#include "nse/value_bridge.h"

namespace nse {

namespace {

double steady_now() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// Thrown by the panic handler: an error outside any protected call (which the engine avoids)
// becomes an engine error instead of abort().
struct LuaPanic : std::runtime_error {
    using std::runtime_error::runtime_error;
};

int on_panic(lua_State* L) {
    const char* msg = lua_tostring(L, -1);
    throw LuaPanic(msg ? msg : "unprotected Lua error");
}

// The governor's window for the timing template (-T0..-T5) or a fixed --max-parallelism.
GovernorConfig governor_config(const EngineConfig& cfg) {
    GovernorConfig g;
    if (cfg.socket_slots > 0) {
        g.initial = g.min = g.max = cfg.socket_slots;
        g.fixed = true;
        return g;
    }
    static const double initial[] = {1, 2, 8, 64, 128, 256};
    static const double floor[] = {1, 1, 2, 4, 8, 16};
    int t = std::clamp(cfg.timing_level, 0, 5);
    g.initial = initial[t];
    g.min = floor[t];
    g.max = t <= 2 ? g.initial : 1024;  // -T0..-T2 stay polite: no growth
    if (cfg.socket_min > 0) {           // --min-parallelism: congestion never cuts below it
        g.min = std::min<double>(cfg.socket_min, 1024);
        g.initial = std::max(g.initial, g.min);
        g.max = std::max(g.max, g.min);
    }
    return g;
}

// How often (in VM instructions) the hook looks at the clock.
constexpr int kHookCount = 1000;

const char* const kDriverKey = "nsefleet.driver";
const char* const kMarkKey = "nsefleet.mark";

struct ThreadRec {
    ThreadInfo info;
    int ref = LUA_NOREF;  // registry reference anchoring the coroutine
    bool started = false;
    int nargs = 0;
    bool waiting = false;
    std::uint64_t gen = 0;
    std::function<int(lua_State*)> push;  // values to deliver at the next resume
    double deadline = 0;                  // --script-timeout, steady clock, 0 = none
    double host_deadline = 0;             // --host-timeout of the thread's host, 0 = none
    bool killed = false;
    std::map<CleanupId, std::function<void()>> cleanups;
};

class EngineImpl final : public Engine, public Runtime {
public:
    EngineImpl(const EngineConfig& cfg, Embedder& emb, SharedState& shared)
        : cfg_(cfg),
          emb_(emb),
          shared_(shared),
          files_(cfg.datadir),
          governor_(governor_config(cfg)),
          budget_(std::make_shared<MemoryBudget>()) {}

    ~EngineImpl() override {
        if (!broken_.empty()) return;  // after a panic the state cannot be trusted: leak it
        kill_all();
        if (L_) lua_close(L_);
    }

    common::Status init();
    void mark_broken(const std::string& why) { broken_ = why; }

    // Engine
    bool has_scripts() const override { return !scripts_.empty(); }
    bool has_prerule() const override { return any_rule(&Script::prerule); }
    bool has_postrule() const override { return any_rule(&Script::postrule); }
    std::string script_help() override;
    std::vector<std::string> script_ids() const override {
        std::vector<std::string> ids;
        for (const auto& s : scripts_)
            ids.push_back(s.id);
        return ids;
    }
    common::Status run_prerule(std::vector<common::ScriptResult>& out) override {
        return guarded([&] { return run_prepost(true, out); });
    }
    common::Status run_postrule(std::vector<common::ScriptResult>& out) override {
        return guarded([&] { return run_prepost(false, out); });
    }
    common::Status run_scan(std::vector<common::HostResult>& hosts) override {
        return guarded([&] { return scan_phase(hosts); });
    }
    void registry_publish() override;
    void registry_refresh() override;
    asio::io_context& io() override { return io_; }

    // Runtime
    Embedder& embedder() override { return emb_; }
    SharedState& shared() override { return shared_; }
    std::uint64_t engine_id() const override { return cfg_.engine_id; }
    const common::DataFiles& datafiles() const override { return files_; }
    int verbosity() const override { return cfg_.verbosity; }
    int version_intensity() const override { return cfg_.version_intensity; }
    bool script_trace() const override { return cfg_.script_trace; }
    bool packet_trace() const override { return cfg_.packet_trace; }
    int debugging() const override { return cfg_.debugging; }
    int timing_level() const override { return cfg_.timing_level; }
    bool ipv6() const override { return cfg_.ipv6; }
    const std::string& iface() const override { return cfg_.iface; }
    Governor& governor() override { return governor_; }
    const std::shared_ptr<MemoryBudget>& memory() override { return budget_; }
    double steady_now() const override { return nse::steady_now(); }
    void note_resource_loss(const std::string& script, int host, const std::string& what) override;
    using Runtime::note_resource_loss;
    const ThreadInfo* current() const override { return current_ ? &current_->info : nullptr; }
    void note_lock(std::uint64_t thread, int delta) override {
        auto it = threads_.find(thread);
        if (it != threads_.end()) it->second->info.locks_held += delta;
    }
    std::uint64_t coroutine_id(lua_State* co) override;
    Waker prepare_wait(lua_State* L) override;
    CleanupId add_cleanup(lua_State* L, std::function<void()> fn) override;
    void remove_cleanup(CleanupId id) override;
    common::HostResult* host(std::size_t index) override {
        return hosts_ && index < hosts_->size() ? &(*hosts_)[index] : nullptr;
    }
    common::HostResult* find_host(const std::string& key) override;
    void spawn_worker(lua_State* L, int nargs) override;
    void deliver(std::uint64_t thread, std::uint64_t gen,
                 std::function<int(lua_State*)> push) override;

    // For the Lua-facing helpers below.
    ThreadRec* current_rec() { return current_; }
    bool over_deadline(const ThreadRec& t) const {
        double now = nse::steady_now();
        return t.killed || (t.deadline > 0 && now > t.deadline) ||
               (t.host_deadline > 0 && now > t.host_deadline) || emb_.cancelled();
    }
    MemoryBudget& budget() { return *budget_; }

private:
    struct Script {
        std::string id;
        int runlevel = 1;
        bool prerule = false, hostrule = false, portrule = false, postrule = false;
        bool by_name = false;
    };
    bool any_rule(bool Script::*r) const {
        for (const auto& s : scripts_)
            if (s.*r) return true;
        return false;
    }
    std::vector<int> runlevels() const;

    // Creates an instance thread of script `i` (1-based in Lua) with the rule type; the host
    // and port tables are pushed by `push_args` onto the new coroutine.
    void spawn_instance(std::size_t i, const char* rtype, int host, const common::PortResult* port);
    void resume(ThreadRec& t);
    void finish(ThreadRec& t, int status, int nres);
    void kill(ThreadRec& t, const char* why);
    void kill_all();
    void run_cleanups(ThreadRec& t);
    void record_result(ThreadRec& t, std::string text, std::optional<common::Value> tree);
    // Runs every thread to completion, starting new instances from `next` while below the
    // thread cap. `next` returns false when it has nothing more to start.
    void run_threads(const std::function<bool()>& next);
    common::Status run_prepost(bool pre, std::vector<common::ScriptResult>& out);
    common::Status scan_phase(std::vector<common::HostResult>& hosts);
    // Runs a phase; a Lua panic (an error outside every protected call, which the engine
    // avoids) ends the phase and the engine with an error instead of abort().
    common::Status guarded(const std::function<common::Status()>& phase) {
        if (!broken_.empty()) return common::Status::error(broken_);
        try {
            return phase();
        } catch (const LuaPanic& e) {
            broken_ = std::string("NSE engine error: ") + e.what();
            hosts_ = nullptr;
            prepost_out_ = nullptr;
            current_ = nullptr;
            return common::Status::error(broken_);
        }
    }
    // A new coroutine anchored in the registry, for a thread record not yet queued.
    std::unique_ptr<ThreadRec> new_thread_rec();
    // Queues a new thread for its first resume and counts it against its host.
    void enqueue(std::unique_ptr<ThreadRec> rec);
    // "http-title against 127.0.0.1:80" for log lines.
    std::string describe(const ThreadRec& t) const;
    // A thread stopped past its host's --host-timeout makes the host timed out.
    void note_host_timeout(const ThreadRec& t);
    void debug(int level, const std::string& msg) {
        if (cfg_.debugging >= level) emb_.write(true, "NSE: " + msg + "\n");
    }
    // Runs fn(L_) in protected mode: a Lua error (out of memory above all) comes back as its
    // message instead of reaching the panic handler.
    std::optional<std::string> protect(const std::function<void(lua_State*)>& fn);
    // Hands a waiting thread its delivered values (protected): false when they could not be
    // built (out of memory), in which case the thread gets nil, "not enough memory".
    int push_delivery(ThreadRec& t);
    // Lua's traceback of `co` under `msg` (protected; msg alone when it cannot be built).
    std::string traceback(lua_State* co, const std::string& msg) {
        std::string tb = msg;
        protect([&](lua_State* L) {
            luaL_traceback(L, co, msg.c_str(), 0);
            tb = lua_tostring(L, -1);
        });
        return tb;
    }

    EngineConfig cfg_;
    Embedder& emb_;
    SharedState& shared_;
    common::DataFiles files_;
    asio::io_context io_;
    lua_State* L_ = nullptr;
    std::vector<Script> scripts_;

    std::unordered_map<std::uint64_t, std::unique_ptr<ThreadRec>> threads_;
    std::deque<std::uint64_t> ready_;
    std::uint64_t next_thread_ = 1;
    std::uint64_t next_cleanup_ = 1;
    std::unordered_map<CleanupId, std::uint64_t> cleanup_owner_;
    ThreadRec* current_ = nullptr;
    std::size_t instances_alive_ = 0;

    // Phase state.
    std::vector<common::HostResult>* hosts_ = nullptr;
    std::vector<int> host_registry_;      // registry refs of each host's `registry` table
    RegistryShadow registry_base_;        // nmap.registry as of the last exchange
    std::uint64_t registry_version_ = 0;  // the shared registry's version last taken in
    // Per host: live script threads, and whether host_done was already announced. A host is
    // done when the walk of the last runlevel has passed it and none of its threads is left.
    std::vector<int> host_alive_;
    std::vector<bool> host_reported_;
    bool last_level_ = false;
    std::size_t walk_host_ = 0;
    void check_host_done(std::size_t h) {
        if (!hosts_ || h >= host_alive_.size()) return;
        if (last_level_ && h < walk_host_ && host_alive_[h] == 0 && !host_reported_[h]) {
            host_reported_[h] = true;
            auto& host = (*hosts_)[h];
            auto by_id = [](const auto& a, const auto& b) { return a.id < b.id; };
            for (auto& port : host.ports)
                std::stable_sort(port.scripts.begin(), port.scripts.end(), by_id);
            std::stable_sort(host.hostscripts.begin(), host.hostscripts.end(), by_id);
            done_pending_.push_back(h);
            flush_done(false);
        }
    }
    // Announces finished hosts. The registry never lags the results (a host delivered and
    // then lost with its worker is not scanned again, so its writes must already be
    // published), but a publish costs the registry's size: finished hosts wait, at most
    // 25 times what the last publish took (capped at 2 s), to share one. Immediate while
    // the registry is small; a registry of thousands of hosts' keys stays ~4% of the time.
    std::vector<std::size_t> done_pending_;
    double next_publish_ = 0;
    void flush_done(bool now) {
        if (done_pending_.empty() || (!now && steady_now() < next_publish_)) return;
        double t0 = steady_now();
        registry_publish();
        double t1 = steady_now();
        next_publish_ = t1 + std::min(2.0, 25 * (t1 - t0));
        auto done = std::move(done_pending_);
        done_pending_.clear();
        for (auto h : done)
            emb_.host_done(h);
    }
    std::vector<common::ScriptResult>* prepost_out_ = nullptr;
    Governor governor_;
    std::shared_ptr<MemoryBudget> budget_;
    std::string broken_;  // set by a Lua panic: the state is unusable from then on
};

EngineImpl& impl_of(lua_State* L) { return **static_cast<EngineImpl**>(lua_getextraspace(L)); }

void* counting_alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
    auto& b = static_cast<EngineImpl*>(ud)->budget();
    std::size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        b.uncharge(old);
        std::free(ptr);
        return nullptr;
    }
    if (nsize > old && !b.charge(nsize - old)) return nullptr;
    void* p = std::realloc(ptr, nsize);
    if (!p) {
        if (nsize > old) b.uncharge(nsize - old);
        return nullptr;
    }
    if (nsize < old) b.uncharge(old - nsize);
    return p;
}

// Enforces --script-timeout and cancellation even on code that never yields. Once a thread
// is condemned the hook fires on every instruction, so a pcall in the script cannot keep
// it alive.
void count_hook(lua_State* L, lua_Debug*) {
    auto& e = impl_of(L);
    ThreadRec* t = e.current_rec();
    if (!t || !e.over_deadline(*t)) return;
    t->killed = true;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "script timed out");
}

// ---- functions of the E table handed to the Lua driver

int e_fetchfile(lua_State* L) {
    auto p = impl_of(L).datafiles().find_file(luaL_checkstring(L, 1));
    if (p)
        lua_pushlstring(L, p->data(), p->size());
    else
        lua_pushnil(L);
    return 1;
}

int e_source(lua_State* L) {
    const char* name = luaL_checkstring(L, 1);
    for (const LuaSource* s = kLuaSources; s->name; ++s) {
        if (std::strcmp(s->name, name) == 0) {
            lua_pushlstring(L, s->text, s->size);
            return 1;
        }
    }
    return luaL_error(L, "no embedded Lua source '%s'", name);
}

int e_current(lua_State* L) {
    const ThreadInfo* t = impl_of(L).current();
    if (!t) return 0;
    lua_pushthread(t->co);
    lua_xmove(t->co, L, 1);
    return 1;
}

int e_spawn(lua_State* L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    impl_of(L).spawn_worker(L, lua_gettop(L) - 1);
    return 1;
}

int e_write(lua_State* L) {
    std::size_t n;
    const char* s = luaL_checklstring(L, 2, &n);
    impl_of(L).embedder().write(std::strcmp(luaL_checkstring(L, 1), "stderr") == 0,
                                std::string(s, n));
    return 0;
}

// [-0, +1] pushes the driver table D.
void push_driver(lua_State* L) { lua_getfield(L, LUA_REGISTRYINDEX, kDriverKey); }

// Calls D[fn] with `nargs` arguments already pushed (above nothing else of ours) in protected
// mode with a traceback; [-nargs, +nres] on success. On error returns the message.
std::optional<std::string> call_driver(lua_State* L, const char* fn, int nargs, int nres) {
    push_driver(L);
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_insert(L, -(nargs + 1));
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, [](lua_State* l) -> int {
        const char* msg = lua_tostring(l, 1);
        if (!msg) msg = luaL_tolstring(l, 1, nullptr);
        luaL_traceback(l, l, msg, 1);
        return 1;
    });
    lua_insert(L, base);
    int st = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (st == LUA_OK) return std::nullopt;
    std::string msg = lua_tostring(L, -1) ? lua_tostring(L, -1) : "unknown error";
    lua_pop(L, 1);
    return msg;
}

std::string first_line(const std::string& s) {
    auto nl = s.find('\n');
    return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

Runtime& runtime(lua_State* L) { return impl_of(L); }

void Waker::wake(std::function<int(lua_State*)> push) const {
    if (rt_) rt_->deliver(thread_, gen_, std::move(push));
}

void Waker::wake() const {
    wake([](lua_State*) { return 0; });
}

namespace {
int return_delivered(lua_State* L, int, lua_KContext ctx) {
    return lua_gettop(L) - static_cast<int>(ctx);
}
}  // namespace

int yield(lua_State* L, lua_KContext ctx, lua_KFunction k) {
    if (!k) {
        ctx = lua_gettop(L);
        k = return_delivered;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, kMarkKey);
    return lua_yieldk(L, 1, ctx, k);
}

common::Status EngineImpl::init() {
    budget_->limit = cfg_.memory_limit;
    L_ = lua_newstate(counting_alloc, this);
    if (!L_) return common::Status::error("cannot create Lua state");
    lua_atpanic(L_, on_panic);
    lua_pushlightuserdata(L_, &budget_);
    lua_setfield(L_, LUA_REGISTRYINDEX, kBudgetKey);
    *static_cast<EngineImpl**>(lua_getextraspace(L_)) = this;
    luaL_openlibs(L_);
    lua_sethook(L_, count_hook, LUA_MASKCOUNT, kHookCount);

    // C modules nselib requires.
    luaL_getsubtable(L_, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L_, lib::luaopen_nmap);
    lua_setfield(L_, -2, "nmap");
    lua_pushcfunction(L_, lib::luaopen_openssl);
    lua_setfield(L_, -2, "openssl");
    lua_pushcfunction(L_, lib::luaopen_zlib);
    lua_setfield(L_, -2, "zlib");
    lua_pushcfunction(L_, lib::luaopen_libssh2);
    lua_setfield(L_, -2, "libssh2");
    lua_pop(L_, 1);

    // The yield marker: a unique table.
    lua_newtable(L_);
    lua_setfield(L_, LUA_REGISTRYINDEX, kMarkKey);

    // E: what the driver may call.
    lua_newtable(L_);
    const luaL_Reg efuncs[] = {{"fetchfile", guard<e_fetchfile>}, {"source", guard<e_source>},
                               {"current", guard<e_current>},     {"spawn", guard<e_spawn>},
                               {"write", guard<e_write>},         {nullptr, nullptr}};
    luaL_setfuncs(L_, efuncs, 0);
    lua_getfield(L_, LUA_REGISTRYINDEX, kMarkKey);
    lua_setfield(L_, -2, "MARK");
    lua_newtable(L_);  // E.config
    lua_createtable(L_, static_cast<int>(cfg_.scripts.size()), 0);
    for (std::size_t i = 0; i < cfg_.scripts.size(); ++i) {
        lua_pushstring(L_, cfg_.scripts[i].c_str());
        lua_rawseti(L_, -2, static_cast<lua_Integer>(i + 1));
    }
    lua_setfield(L_, -2, "scripts");
    lua_pushboolean(L_, cfg_.default_scripts);
    lua_setfield(L_, -2, "default");
    lua_pushstring(L_, cfg_.script_args.c_str());
    lua_setfield(L_, -2, "script_args");
    lua_pushstring(L_, cfg_.script_args_file.c_str());
    lua_setfield(L_, -2, "args_file");
    lua_pushinteger(L_, cfg_.debugging);
    lua_setfield(L_, -2, "debugging");
    lua_pushinteger(L_, cfg_.verbosity);
    lua_setfield(L_, -2, "verbosity");
    lua_pushboolean(L_, cfg_.announce);
    lua_setfield(L_, -2, "announce");
    lua_setfield(L_, -2, "config");

    const LuaSource* drv = nullptr;
    for (const LuaSource* s = kLuaSources; s->name; ++s)
        if (std::strcmp(s->name, "driver") == 0) drv = s;
    if (!drv) return common::Status::error("driver source missing from the binary");
    if (luaL_loadbufferx(L_, drv->text, drv->size, "=driver", "t") != LUA_OK) {
        std::string m = lua_tostring(L_, -1);
        return common::Status::error("driver does not compile: " + m);
    }
    lua_insert(L_, -2);
    if (lua_pcall(L_, 1, 1, 0) != LUA_OK) {
        std::string m = lua_tostring(L_, -1) ? lua_tostring(L_, -1) : "?";
        return common::Status::error("driver failed: " + m);
    }
    lua_setfield(L_, LUA_REGISTRYINDEX, kDriverKey);

    if (auto err = call_driver(L_, "init", 0, 1)) return common::Status::error(first_line(*err));
    auto n = static_cast<int>(lua_tointeger(L_, -1));
    lua_pop(L_, 1);
    for (int i = 1; i <= n; ++i) {
        lua_pushinteger(L_, i);
        if (auto err = call_driver(L_, "script_info", 1, 7))
            return common::Status::error(first_line(*err));
        Script s;
        s.id = lua_tostring(L_, -7);
        s.runlevel = static_cast<int>(lua_tointeger(L_, -6));
        s.prerule = lua_toboolean(L_, -5);
        s.hostrule = lua_toboolean(L_, -4);
        s.portrule = lua_toboolean(L_, -3);
        s.postrule = lua_toboolean(L_, -2);
        s.by_name = lua_toboolean(L_, -1);
        lua_pop(L_, 7);
        scripts_.push_back(std::move(s));
    }
    return common::Status::ok();
}

std::string EngineImpl::script_help() {
    if (call_driver(L_, "script_help", 0, 1)) return "";
    std::string text = lua_isstring(L_, -1) ? lua_tostring(L_, -1) : "";
    lua_pop(L_, 1);
    return text;
}

std::vector<int> EngineImpl::runlevels() const {
    std::vector<int> lv;
    for (const auto& s : scripts_)
        if (std::find(lv.begin(), lv.end(), s.runlevel) == lv.end()) lv.push_back(s.runlevel);
    std::sort(lv.begin(), lv.end());
    return lv;
}

std::uint64_t EngineImpl::coroutine_id(lua_State* co) {
    // Ids live in a weak-keyed table so a collected coroutine's id is never reused for
    // another one by address.
    static const char* const kIds = "nsefleet.coids";
    if (luaL_getsubtable(co, LUA_REGISTRYINDEX, kIds) == 0) {
        lua_createtable(co, 0, 1);
        lua_pushliteral(co, "k");
        lua_setfield(co, -2, "__mode");
        lua_setmetatable(co, -2);
    }
    lua_pushthread(co);
    lua_rawget(co, -2);
    std::uint64_t id;
    if (lua_isinteger(co, -1)) {
        id = static_cast<std::uint64_t>(lua_tointeger(co, -1));
        lua_pop(co, 2);
        return id;
    }
    lua_pop(co, 1);
    // Per process, so ids stay unique across the engines of one process.
    static std::atomic<std::uint64_t> next{1};
    id = next.fetch_add(1);
    lua_pushthread(co);
    lua_pushinteger(co, static_cast<lua_Integer>(id));
    lua_rawset(co, -3);
    lua_pop(co, 1);
    // And the way back (nmap.mutex "running" returns the owner coroutine).
    if (luaL_getsubtable(co, LUA_REGISTRYINDEX, kCoroutinesById) == 0) {
        lua_createtable(co, 0, 1);
        lua_pushliteral(co, "v");
        lua_setfield(co, -2, "__mode");
        lua_setmetatable(co, -2);
    }
    lua_pushthread(co);
    lua_rawseti(co, -2, static_cast<lua_Integer>(id));
    lua_pop(co, 1);
    return id;
}

Waker EngineImpl::prepare_wait(lua_State* L) {
    if (!current_) luaL_error(L, "this operation can only be used from a running script");
    ++current_->gen;
    current_->waiting = true;
    return make_waker(this, current_->info.id, current_->gen);
}

void EngineImpl::deliver(std::uint64_t thread, std::uint64_t gen,
                         std::function<int(lua_State*)> push) {
    auto it = threads_.find(thread);
    if (it == threads_.end()) return;
    ThreadRec& t = *it->second;
    if (!t.waiting || t.gen != gen) return;
    t.waiting = false;
    t.push = std::move(push);
    ready_.push_back(thread);
}

CleanupId EngineImpl::add_cleanup(lua_State* L, std::function<void()> fn) {
    if (!current_) luaL_error(L, "this operation can only be used from a running script");
    CleanupId id = next_cleanup_++;
    current_->cleanups.emplace(id, std::move(fn));
    cleanup_owner_[id] = current_->info.id;
    return id;
}

void EngineImpl::remove_cleanup(CleanupId id) {
    auto it = cleanup_owner_.find(id);
    if (it == cleanup_owner_.end()) return;
    auto t = threads_.find(it->second);
    if (t != threads_.end()) t->second->cleanups.erase(id);
    cleanup_owner_.erase(it);
}

common::HostResult* EngineImpl::find_host(const std::string& key) {
    if (!hosts_) return nullptr;
    for (auto& h : *hosts_)
        if (h.address == key || (!h.targetname.empty() && h.targetname == key)) return &h;
    return nullptr;
}

void EngineImpl::spawn_worker(lua_State* L, int nargs) {
    if (!current_) luaL_error(L, "stdnse.new_thread can only be run from an active script");
    auto rec = new_thread_rec();
    lua_State* co = rec->info.co;
    lua_xmove(L, co, nargs + 1);  // function and arguments
    rec->nargs = nargs;
    rec->info = current_->info;
    rec->info.spawned = true;
    rec->info.parent = current_->info.spawned ? current_->info.parent : current_->info.id;
    rec->info.id = next_thread_++;
    rec->info.co = co;
    rec->deadline = current_->deadline;
    rec->host_deadline = current_->host_deadline;
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    enqueue(std::move(rec));
}

std::unique_ptr<ThreadRec> EngineImpl::new_thread_rec() {
    auto rec = std::make_unique<ThreadRec>();
    rec->info.co = lua_newthread(L_);
    rec->ref = luaL_ref(L_, LUA_REGISTRYINDEX);
    return rec;
}

void EngineImpl::enqueue(std::unique_ptr<ThreadRec> rec) {
    ready_.push_back(rec->info.id);
    int host = rec->info.host;
    if (host >= 0 && static_cast<std::size_t>(host) < host_alive_.size())
        ++host_alive_[static_cast<std::size_t>(host)];
    if (!rec->info.spawned) ++instances_alive_;
    threads_.emplace(rec->info.id, std::move(rec));
}

void EngineImpl::spawn_instance(std::size_t i, const char* rtype, int host,
                                const common::PortResult* port) {
    std::unique_ptr<ThreadRec> rec;
    // Building the thread allocates: protected, so a full memory budget skips (and counts)
    // the instance instead of panicking.
    auto err = protect([&](lua_State*) {
        rec = new_thread_rec();
        lua_State* co = rec->info.co;
        push_driver(co);
        lua_getfield(co, -1, "run_instance");
        lua_remove(co, -2);
        lua_pushinteger(co, static_cast<lua_Integer>(i + 1));
        lua_pushstring(co, rtype);
        if (host >= 0) {
            lua_rawgeti(co, LUA_REGISTRYINDEX, host_registry_[host]);
            lib::push_host(co, (*hosts_)[host], lua_gettop(co));
            lua_remove(co, -2);
        } else {
            lua_pushnil(co);
        }
        if (port)
            lib::push_port(co, *port);
        else
            lua_pushnil(co);
    });
    if (err) {
        if (rec) luaL_unref(L_, LUA_REGISTRYINDEX, rec->ref);
        debug(1, scripts_[i].id + " could not start: " + *err);
        note_resource_loss(scripts_[i].id, host, "memory");
        return;
    }
    rec->nargs = 4;
    rec->info.id = next_thread_++;
    rec->info.script_id = scripts_[i].id;
    rec->info.by_name = scripts_[i].by_name;
    rec->info.host = host;
    if (port) {
        rec->info.port = port->number;
        rec->info.proto = port->protocol;
    }
    if (host >= 0 && cfg_.host_timeout > 0) {
        // The host's clock started with its port scan.
        const auto& h = (*hosts_)[static_cast<std::size_t>(host)];
        double left = h.start_time + cfg_.host_timeout - emb_.now();
        rec->host_deadline = steady_now() + std::max(0.0, left);
    }
    enqueue(std::move(rec));
}

std::string EngineImpl::describe(const ThreadRec& t) const {
    std::string s = t.info.script_id;
    if (t.info.host < 0 || !hosts_) return s;
    s += " against " + (*hosts_)[static_cast<std::size_t>(t.info.host)].address;
    if (t.info.port >= 0) s += ":" + std::to_string(t.info.port);
    return s;
}

void EngineImpl::note_host_timeout(const ThreadRec& t) {
    if (t.host_deadline > 0 && steady_now() > t.host_deadline && hosts_ && t.info.host >= 0)
        (*hosts_)[static_cast<std::size_t>(t.info.host)].timed_out = true;
}

void EngineImpl::resume(ThreadRec& t) {
    lua_State* co = t.info.co;
    int nargs;
    if (!t.started) {
        t.started = true;
        nargs = t.nargs;
        // The clock starts when the script first runs, not when it was queued.
        if (!t.info.spawned && cfg_.script_timeout > 0)
            t.deadline = steady_now() + cfg_.script_timeout;
    } else {
        nargs = push_delivery(t);
    }
    current_ = &t;
    int nres = 0;
    int st = lua_resume(co, nullptr, nargs, &nres);
    current_ = nullptr;
    if (st == LUA_YIELD) {
        lua_getfield(co, LUA_REGISTRYINDEX, kMarkKey);
        bool marker = nres == 1 && lua_rawequal(co, -1, -2);
        lua_pop(co, 1 + nres);
        if (marker && t.waiting) return;
        debug(1, t.info.script_id + " yielded unexpectedly and cannot be resumed");
        finish(t, LUA_ERRRUN, -1);
        return;
    }
    finish(t, st, st == LUA_OK ? nres : 0);
}

std::optional<std::string> EngineImpl::protect(const std::function<void(lua_State*)>& fn) {
    auto tramp = [](lua_State* L) -> int {
        auto* f = static_cast<const std::function<void(lua_State*)>*>(lua_touserdata(L, 1));
        lua_remove(L, 1);
        (*f)(L);
        return 0;
    };
    int top = lua_gettop(L_);
    if (!lua_checkstack(L_, 2)) return std::string(kNotEnoughMemory);
    lua_pushcfunction(L_, tramp);
    lua_pushlightuserdata(L_, const_cast<std::function<void(lua_State*)>*>(&fn));
    int st = lua_pcall(L_, 1, 0, 0);
    std::optional<std::string> err;
    if (st != LUA_OK)
        err = lua_tostring(L_, -1) ? lua_tostring(L_, -1) : "error object is not a string";
    lua_settop(L_, top);
    return err;
}

int EngineImpl::push_delivery(ThreadRec& t) {
    auto push = std::move(t.push);
    t.push = nullptr;
    if (!push) return 0;
    lua_State* co = t.info.co;
    // The values are built on the main thread under a protected call, then moved over:
    // a delivery too large for the memory cap becomes a soft failure, never a panic.
    int n = 0;
    int top = lua_gettop(L_);
    auto err = protect([&](lua_State* L) {
        n = push(L);
        luaL_checkstack(L, 2, nullptr);
        // protect() resets the main stack: park the values in a table of the registry.
        lua_createtable(L, n, 0);
        lua_insert(L, -(n + 1));
        for (int i = n; i >= 1; --i)
            lua_rawseti(L, -(i + 1), i);
        lua_setfield(L, LUA_REGISTRYINDEX, "nsefleet.delivery");
    });
    lua_settop(L_, top);
    if (err || !lua_checkstack(co, n + 2) || !lua_checkstack(L_, n + 2)) {
        note_resource_loss("memory");
        lua_pushnil(co);
        lua_pushstring(co, kNotEnoughMemory);  // short strings are interned: nearly free
        return 2;
    }
    lua_getfield(L_, LUA_REGISTRYINDEX, "nsefleet.delivery");
    for (int i = 1; i <= n; ++i)
        lua_rawgeti(L_, -i, i);
    lua_xmove(L_, co, n);
    lua_pop(L_, 1);
    lua_pushnil(L_);
    lua_setfield(L_, LUA_REGISTRYINDEX, "nsefleet.delivery");
    return n;
}

void EngineImpl::note_resource_loss(const std::string& script, int host, const std::string& what) {
    if (host >= 0 && hosts_ && static_cast<std::size_t>(host) < hosts_->size())
        ++(*hosts_)[static_cast<std::size_t>(host)].lost_results;
    if (cfg_.verbosity > 0 || cfg_.debugging > 0)
        emb_.write(true, "WARNING: " + script + ": engine " + what +
                             " limit reached; a result may be missing\n");
}

void EngineImpl::record_result(ThreadRec& t, std::string text, std::optional<common::Value> tree) {
    if (text.empty()) emb_.write(true, "Bug in " + t.info.script_id + ": no string output.\n");
    common::ScriptResult r{t.info.script_id, std::move(text), std::move(tree)};
    if (t.info.host < 0) {
        if (prepost_out_) prepost_out_->push_back(std::move(r));
        return;
    }
    auto& h = (*hosts_)[static_cast<std::size_t>(t.info.host)];
    if (t.info.port < 0) {
        h.hostscripts.push_back(std::move(r));
        return;
    }
    for (auto& p : h.ports) {
        if (p.number == t.info.port && p.protocol == t.info.proto) {
            p.scripts.push_back(std::move(r));
            return;
        }
    }
}

void EngineImpl::finish(ThreadRec& t, int status, int nres) {
    lua_State* co = t.info.co;
    if (status == LUA_OK) {
        if (!t.info.spawned && nres >= 1 && lua_type(co, -nres) == LUA_TSTRING) {
            std::size_t len = 0;
            const char* s = lua_tolstring(co, -nres, &len);
            std::string text(s, len);  // may hold NUL bytes: the writers escape them
            std::optional<common::Value> tree;
            if (nres >= 2 && lua_istable(co, -nres + 1)) tree = tree_to_value(co, -nres + 1);
            record_result(t, std::move(text), std::move(tree));
        }
        lua_settop(co, 0);
    } else if (nres >= 0) {
        if (status == LUA_ERRMEM) note_resource_loss(t.info.script_id, t.info.host, "memory");
        // Error: the error object is on top of the dead coroutine.
        bool quiet_try = false;
        if (lua_istable(co, -1)) {
            lua_getfield(co, -1, "errtype");
            quiet_try =
                lua_isstring(co, -1) && std::strcmp(lua_tostring(co, -1), "nmap.new_try") == 0;
            lua_pop(co, 1);
        }
        std::string msg;
        if (lua_type(co, -1) == LUA_TSTRING) {
            msg = lua_tostring(co, -1);
        } else if (quiet_try) {
            lua_getfield(co, -1, "message");
            msg = lua_isstring(co, -1) ? lua_tostring(co, -1) : "";
            lua_pop(co, 1);
        } else {
            // Protected: __tostring may fail, and so may the allocation of the text.
            auto err = protect([&](lua_State* L) {
                lua_pushvalue(co, -1);
                lua_xmove(co, L, 1);
                msg = luaL_tolstring(L, -1, nullptr);
            });
            if (err) msg = "(error object cannot be shown: " + *err + ")";
        }
        std::string who = describe(t);
        if (t.killed) {
            note_host_timeout(t);
            debug(1, who + " timed out");
        } else if (quiet_try) {
            debug(1, "Finished " + who + ". Reason: " + msg);
        } else if (t.info.spawned) {
            debug(1, "worker of " + who + " threw an error!\n" + traceback(co, msg));
            lua_pushthread(co);
            lua_xmove(co, L_, 1);
            lua_pushstring(L_, msg.c_str());
            if (auto err = call_driver(L_, "worker_failed", 2, 0))
                debug(1, "worker_failed: " + first_line(*err));
        } else {
            if (cfg_.debugging > 0) {
                emb_.write(true, "NSE: " + who + " threw an error!\n" + traceback(co, msg) + "\n");
            } else {
                record_result(t, "ERROR: Script execution failed (use -d to debug)", std::nullopt);
            }
        }
        lua_settop(co, 0);
    }
    run_cleanups(t);
    governor_.abandon(t.info.id, steady_now());  // sockets released theirs; this is a backstop
    if (!t.info.spawned) --instances_alive_;
    int host = t.info.host;
    luaL_unref(L_, LUA_REGISTRYINDEX, t.ref);
    threads_.erase(t.info.id);  // t is gone from here on
    if (host >= 0 && static_cast<std::size_t>(host) < host_alive_.size()) {
        --host_alive_[static_cast<std::size_t>(host)];
        check_host_done(static_cast<std::size_t>(host));
    }
}

void EngineImpl::run_cleanups(ThreadRec& t) {
    // A cleanup may add or remove others (e.g. a wake that re-arms): take them one by one.
    while (!t.cleanups.empty()) {
        auto it = t.cleanups.begin();
        auto fn = std::move(it->second);
        cleanup_owner_.erase(it->first);
        t.cleanups.erase(it);
        fn();
    }
}

void EngineImpl::kill(ThreadRec& t, const char* why) {
    note_host_timeout(t);
    debug(1, describe(t) + " " + why);
    t.killed = true;
    finish(t, LUA_ERRRUN, -1);
}

void EngineImpl::kill_all() {
    while (!threads_.empty())
        kill(*threads_.begin()->second, "abandoned");
    ready_.clear();
}

void EngineImpl::run_threads(const std::function<bool()>& next) {
    // A previous phase may have drained the loop, which leaves it stopped.
    if (io_.stopped()) io_.restart();
    auto guard = asio::make_work_guard(io_);
    std::size_t cap = cfg_.max_threads > 0 ? static_cast<std::size_t>(cfg_.max_threads) : 4096;
    bool exhausted = false;
    double last_gc = steady_now();
    for (;;) {
        while (!exhausted && instances_alive_ < cap) {
            if (!next()) exhausted = true;
        }
        if (threads_.empty() && exhausted) break;
        if (exhausted && instances_alive_ == 0) {
            // Only workers are left and nothing will wait for them: abandon them.
            kill_all();
            break;
        }
        if (ready_.empty()) io_.run_one_for(std::chrono::milliseconds(100));
        io_.poll();
        while (!ready_.empty()) {
            auto id = ready_.front();
            ready_.pop_front();
            auto it = threads_.find(id);
            if (it != threads_.end()) resume(*it->second);
            io_.poll();
        }
        // Timeouts and cancellation of blocked threads.
        double now = steady_now();
        std::vector<std::uint64_t> expired;
        for (auto& [id, t] : threads_)
            if (t->waiting && over_deadline(*t)) expired.push_back(id);
        for (auto id : expired) {
            auto it = threads_.find(id);
            if (it != threads_.end()) kill(*it->second, "timed out");
        }
        governor_.tick(now);
        flush_done(false);
        if (now - last_gc > 0.5) {
            lua_gc(L_, LUA_GCSTEP, 0);
            last_gc = now;
        }
    }
    io_.poll();
    lua_gc(L_, LUA_GCCOLLECT);
}

common::Status EngineImpl::run_prepost(bool pre, std::vector<common::ScriptResult>& out) {
    prepost_out_ = &out;
    for (int lv : runlevels()) {
        std::size_t i = 0;
        run_threads([&]() {
            while (i < scripts_.size()) {
                const auto& s = scripts_[i++];
                if (s.runlevel == lv && (pre ? s.prerule : s.postrule)) {
                    spawn_instance(i - 1, pre ? "prerule" : "postrule", -1, nullptr);
                    return true;
                }
            }
            return false;
        });
    }
    prepost_out_ = nullptr;
    return common::Status::ok();
}

namespace {
bool eligible(const common::PortResult& p) {
    return p.state == "open" || p.state == "open|filtered" || p.state == "unfiltered";
}
}  // namespace

common::Status EngineImpl::scan_phase(std::vector<common::HostResult>& hosts) {
    hosts_ = &hosts;
    done_pending_.clear();  // positions of an earlier group mean nothing here
    host_alive_.assign(hosts.size(), 0);
    host_reported_.assign(hosts.size(), false);
    last_level_ = false;
    walk_host_ = 0;
    host_registry_.clear();
    for (std::size_t h = 0; h < hosts.size(); ++h) {
        lua_newtable(L_);
        host_registry_.push_back(luaL_ref(L_, LUA_REGISTRYINDEX));
    }
    auto levels = runlevels();
    for (int lv : levels) {
        last_level_ = lv == levels.back();
        walk_host_ = 0;
        // Lazy walk: host → hostrule scripts, then each eligible port → portrule scripts.
        std::size_t h = 0, s = 0, p = 0;
        bool in_ports = false;
        run_threads([&]() {
            while (h < hosts.size()) {
                auto& host = hosts[h];
                if (host.status != "up" || host.timed_out) {
                    ++h;
                    walk_host_ = h;
                    check_host_done(h - 1);
                    continue;
                }
                if (!in_ports) {
                    while (s < scripts_.size()) {
                        const auto& sc = scripts_[s++];
                        if (sc.runlevel == lv && sc.hostrule) {
                            spawn_instance(s - 1, "hostrule", static_cast<int>(h), nullptr);
                            return true;
                        }
                    }
                    in_ports = true;
                    s = 0;
                    p = 0;
                }
                while (p < host.ports.size()) {
                    if (!eligible(host.ports[p])) {
                        ++p;
                        s = 0;
                        continue;
                    }
                    while (s < scripts_.size()) {
                        const auto& sc = scripts_[s++];
                        if (sc.runlevel == lv && sc.portrule) {
                            spawn_instance(s - 1, "portrule", static_cast<int>(h), &host.ports[p]);
                            return true;
                        }
                    }
                    ++p;
                    s = 0;
                }
                ++h;
                walk_host_ = h;
                check_host_done(h - 1);
                in_ports = false;
                s = 0;
            }
            return false;
        });
    }
    for (int ref : host_registry_)
        luaL_unref(L_, LUA_REGISTRYINDEX, ref);
    host_registry_.clear();
    if (cfg_.debugging > 1) {  // nsefleet's own: not in nmap's -d output
        auto g = governor_.stats();
        char line[256];
        std::snprintf(line, sizeof line,
                      "socket governor: window %.1f, %llu slots granted (%llu after waiting, %llu "
                      "over the window), %llu congestion cuts, %llu connects retried",
                      g.window, static_cast<unsigned long long>(g.granted),
                      static_cast<unsigned long long>(g.waited),
                      static_cast<unsigned long long>(g.overflow),
                      static_cast<unsigned long long>(g.decreases),
                      static_cast<unsigned long long>(g.retries));
        debug(1, line);
    }
    walk_host_ = hosts.size();
    last_level_ = true;
    for (std::size_t h = 0; h < hosts.size(); ++h) {
        host_alive_[h] = 0;  // abandoned workers are gone
        check_host_done(h);
    }
    flush_done(true);
    hosts_ = nullptr;
    return common::Status::ok();
}

// Publishes the changes since the last exchange (a delta: nse/registry_delta.h); nothing
// when there are none or the engine cannot read its registry.
void EngineImpl::registry_publish() {
    if (!broken_.empty()) return;
    common::Value delta;
    auto err = protect([&](lua_State* L) {
        lua_getglobal(L, "nmap");
        lua_getfield(L, -1, "registry");
        delta = registry_base_.diff(L, -1);
    });
    if (err) {
        emb_.write(true, "WARNING: NSE: registry not published: " + first_line(*err) + "\n");
        return;
    }
    if (!delta.table().entries.empty()) shared_.registry_merge(delta, cfg_.engine_id);
}

// Publishes first, so the live registry equals registry_base_ and the changes of others
// apply to both alike (an append lands on the same position in each).
void EngineImpl::registry_refresh() {
    registry_publish();
    if (!broken_.empty()) return;
    RegistryChanges c = shared_.registry_changes(registry_version_, cfg_.engine_id);
    if (!c.snapshot && c.deltas.empty()) {
        registry_version_ = c.version;
        return;
    }
    auto err = protect([&](lua_State* L) {
        lua_getglobal(L, "nmap");
        lua_getfield(L, -1, "registry");
        if (c.snapshot) {
            sync_table(L, -1, c.full, true);
            registry_base_.reset(L, -1);
            return;
        }
        for (const auto& d : c.deltas) {
            apply_delta(L, -1, d);
            registry_base_.applied(L, -1, d);
        }
    });
    if (err) {
        emb_.write(true, "WARNING: NSE: registry not refreshed: " + first_line(*err) + "\n");
        registry_version_ = 0;  // the next refresh takes the whole registry
        return;
    }
    registry_version_ = c.version;
}

common::Result<std::unique_ptr<Engine>> Engine::create(const EngineConfig& cfg, Embedder& emb,
                                                       SharedState& shared) {
    auto e = std::make_unique<EngineImpl>(cfg, emb, shared);
    common::Status st = common::Status::ok();
    try {
        st = e->init();
    } catch (const LuaPanic& p) {
        st = common::Status::error(std::string("NSE engine error: ") + p.what());
        e->mark_broken(st.message());
    }
    if (!st) return st;
    return std::unique_ptr<Engine>(std::move(e));
}

}  // namespace nse
