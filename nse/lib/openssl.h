#pragma once
// The `openssl` Lua module (docs/runtime-contract.md "openssl"): digests, HMAC, symmetric ciphers,
// random bytes and BIGNUM userdata, on OpenSSL 3 libcrypto.
#include <openssl/bn.h>

#include <lua.hpp>

namespace nse::lib {

// Opens the module: [-0, +1] pushes the module table. Loads OpenSSL's "legacy" and "default"
// providers (once per process) so MD4, DES, RIPEMD160, CAST5 and Blowfish resolve; if the
// legacy provider cannot be loaded the module still opens and those names raise "Unknown ...".
int luaopen_openssl(lua_State* L);

// [-0, +1] Pushes `owned` as a BIGNUM userdata (metatable "BIGNUM", shared with the module;
// created on demand, so the module need not be opened first). Takes ownership: the userdata
// frees it when collected, also when this call raises (memory error).
void push_bignum(lua_State* L, BIGNUM* owned);

}  // namespace nse::lib
