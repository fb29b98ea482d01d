#pragma once
// The Lua side of the nse/lib unit tests (openssl, zlib, certificate): a fresh state, chunks
// run to "" or their error message, and a stand-in `nmap` module so stock nselib files load.
#include <doctest/doctest.h>

#include <filesystem>
#include <lua.hpp>
#include <string>

namespace nse::test {

// A plain Lua state with the standard libraries and a global hex(s) (lowercase hex of the
// bytes of s) for readable assertions. Owns the state.
struct LuaHarness {
    lua_State* L = luaL_newstate();

    LuaHarness() {
        luaL_openlibs(L);
        run("function hex(s) return (s:gsub('.', function(c) return ('%02x'):format(c:byte()) "
            "end)) end");
    }
    ~LuaHarness() { lua_close(L); }
    LuaHarness(const LuaHarness&) = delete;
    LuaHarness& operator=(const LuaHarness&) = delete;

    // Opens module `name` as the global `name` and package.loaded[name].
    void require(const char* name, lua_CFunction open) {
        luaL_requiref(L, name, open, 1);
        lua_pop(L, 1);
    }
    // package.preload[name] = open: the module opens on the first require.
    void preload(const char* name, lua_CFunction open) {
        luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
        lua_pushcfunction(L, open);
        lua_setfield(L, -2, name);
        lua_pop(L, 1);
    }
    void set_function(const char* name, lua_CFunction f) {
        lua_pushcfunction(L, f);
        lua_setglobal(L, name);
    }
    void set_string(const char* name, const std::string& s) {
        lua_pushlstring(L, s.data(), s.size());
        lua_setglobal(L, name);
    }
    // "" when the chunk ran, else its error message. Leaves the stack empty.
    std::string run(const char* code) {
        std::string err;
        if (luaL_dostring(L, code) != LUA_OK) {
            err = lua_tostring(L, -1) ? lua_tostring(L, -1) : "(non-string error)";
        }
        lua_settop(L, 0);
        return err;
    }
    std::string run(const std::string& code) { return run(code.c_str()); }
};

// Lua code that stands in for the `nmap` C module (just what nselib touches while loading and
// testing), points package.path at the stock nselib and injects stdnse.silent_require as the
// real driver does (docs/runtime-contract.md "stdnse functions the driver injects").
// `script_args` is a Lua table constructor for
// nmap.registry.args.
inline std::string nmap_stub(const char* script_args = "{}", int verbosity = 0) {
    return std::string(R"lua(
        package.path = "/usr/share/nmap/nselib/?.lua"
        local nmap = {registry = {args = )lua") +
           script_args + R"lua(}, socket = {sleep = function() end}}
        function nmap.debugging() return 0 end
        function nmap.verbosity() return )lua" +
           std::to_string(verbosity) + R"lua( end
        function nmap.log_write() end
        function nmap.clock() return os.time() end
        function nmap.address_family() return "inet" end
        function nmap.is_privileged() return false end
        function nmap.timing_level() return 3 end
        function nmap.mutex() return function() end end
        package.preload.nmap = function() return nmap end
        require("stdnse").silent_require = require
    )lua";
}

// Script arguments that make nselib's test_suite() functions run.
inline constexpr const char* kUnittestArgs = R"({["unittest.run"] = "1"})";

// True when the stock nmap file at `path` is there; otherwise notes that the calling test is
// skipped (nmap-common not installed), so it can `return`.
inline bool have_stock_file(const char* path) {
    if (std::filesystem::exists(path)) return true;
    MESSAGE("nmap-common not installed; skipped");
    return false;
}

}  // namespace nse::test
