// Placeholder until the libssh2 binding lands: every function fails loudly.
#include "nse/lib/libssh2.h"

namespace nse::lib {

namespace {
int unsupported(lua_State* L) {
    return luaL_error(L, "libssh2: %s is not supported by this build yet",
                      lua_tostring(L, lua_upvalueindex(1)));
}
}  // namespace

int luaopen_libssh2(lua_State* L) {
    static const char* const names[] = {"session_open", "set_timeout", "hostkey_hash",
                                        "userauth_list", "userauth_password",
                                        "userauth_publickey", "read_publickey",
                                        "publickey_canauth", "open_channel", "channel_exec",
                                        "channel_write", "channel_read", "channel_read_stderr",
                                        "channel_send_eof", "channel_eof", "channel_close",
                                        "session_close", nullptr};
    lua_newtable(L);
    for (const char* const* n = names; *n; ++n) {
        lua_pushstring(L, *n);
        lua_pushcclosure(L, unsupported, 1);
        lua_setfield(L, -2, *n);
    }
    return 1;
}

}  // namespace nse::lib
