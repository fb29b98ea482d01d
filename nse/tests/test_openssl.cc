// Tests of the `openssl` Lua module (docs/runtime-contract.md "openssl"), driven from Lua.
#include <doctest/doctest.h>
#include <openssl/bn.h>

#include <lua.hpp>
#include <string>

#include "nse/lib/openssl.h"
#include "nse/tests/lua_harness.h"

namespace {

// A harness state with the module loaded as global `openssl` and in package.loaded.
struct OpensslLua : nse::test::LuaHarness {
    OpensslLua() { require("openssl", nse::lib::luaopen_openssl); }
};

}  // namespace

TEST_CASE("openssl: named digests, including the legacy-provider ones") {
    OpensslLua lua;
    CHECK(lua.run(R"lua(
        assert(hex(openssl.md5("abc")) == "900150983cd24fb0d6963f7d28e17f72")
        assert(hex(openssl.sha1("abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        assert(hex(openssl.md4("abc")) == "a448017aaf21d8525fc10ae87aa6729d")
        assert(hex(openssl.ripemd160("abc")) == "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc")
        assert(#openssl.md5("") == 16)
    )lua") == "");
}

TEST_CASE("openssl: digest and hmac resolve names case-insensitively") {
    OpensslLua lua;
    CHECK(lua.run(R"lua(
        local want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        assert(hex(openssl.digest("sha256", "abc")) == want)
        assert(hex(openssl.digest("SHA256", "abc")) == want)
        assert(hex(openssl.digest("MD4", "abc")) == "a448017aaf21d8525fc10ae87aa6729d")
        local msg = "The quick brown fox jumps over the lazy dog"
        assert(hex(openssl.hmac("sha256", "key", msg)) ==
               "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
        assert(hex(openssl.hmac("MD5", "key", msg)) == "80070713463e7749b90c2dc24911e275")
    )lua") == "");
}

TEST_CASE("openssl: misuse raises the contract's messages") {
    OpensslLua lua;
    CHECK(lua.run(R"lua(
        local ok, e = pcall(openssl.digest, "nope", "x")
        assert(not ok and e == "Unknown digest algorithm: nope", e)
        ok, e = pcall(openssl.hmac, "nope", "k", "x")
        assert(not ok and e == "Unknown digest algorithm: nope", e)
        ok, e = pcall(openssl.encrypt, "nope", "k", nil, "x")
        assert(not ok and e == "Unknown cipher algorithm: nope", e)
        ok, e = pcall(openssl.encrypt, "aes-128-cbc", ("k"):rep(16), "abc", ("x"):rep(16))
        assert(not ok and e == "Length of iv is 3; should be 16", e)
        ok, e = pcall(openssl.DES_string_to_key, "abc")
        assert(not ok and e == "String must have length of 7 bytes.", e)
        ok, e = pcall(openssl.md5, {})
        assert(not ok and e:find("bad argument #1 to", 1, true) and e:find("(string expected, got table)", 1, true), e)
    )lua") == "");
}

TEST_CASE("openssl: supported_digests/ciphers are sorted arrays with the legacy names") {
    OpensslLua lua;
    CHECK(lua.run(R"lua(
        for _, f in ipairs{"supported_digests", "supported_ciphers"} do
            local t = openssl[f]()
            assert(#t > 10, f)
            for i = 2, #t do assert(t[i-1] < t[i], f .. " not sorted at " .. i) end
        end
        local found = {}
        for _, n in ipairs(openssl.supported_digests()) do found[n:lower()] = true end
        assert(found.md4 and found.md5 and found.sha1 and found.ripemd160)
        found = {}
        for _, n in ipairs(openssl.supported_ciphers()) do found[n:lower()] = true end
        assert(found["des-cbc"] and found["cast5-cbc"] and found["aes-128-ecb"])
    )lua") == "");
}

TEST_CASE("openssl: encrypt/decrypt, padding off unless asked for") {
    OpensslLua lua;
    CHECK(lua.run(R"lua(
        local function unhex(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end
        -- FIPS-197 C.1
        local key = unhex("000102030405060708090a0b0c0d0e0f")
        local pt = unhex("00112233445566778899aabbccddeeff")
        local ct = openssl.encrypt("aes-128-ecb", key, nil, pt)
        assert(hex(ct) == "69c4e0d86a7b0430d8cdb78070b4c55a", hex(ct))
        assert(openssl.decrypt("AES-128-ECB", key, "", ct) == pt)
        -- padding on: one extra block, and it round-trips
        local padded = openssl.encrypt("aes-128-ecb", key, nil, pt, true)
        assert(#padded == 32)
        assert(openssl.decrypt("aes-128-ecb", key, nil, padded, true) == pt)
        -- padding off: unaligned data is an OpenSSL error
        local ok, e = pcall(openssl.encrypt, "aes-128-ecb", key, nil, "short")
        assert(not ok and e:find("^OpenSSL error: "), e)
        -- CBC with an IV
        local iv = ("\0"):rep(16)
        local c2 = openssl.encrypt("AES-128-CBC", key, iv, pt .. pt)
        assert(#c2 == 32 and c2:sub(1, 16) == ct)
        assert(openssl.decrypt("AES-128-CBC", key, iv, c2) == pt .. pt)
        -- a wrong key length for a fixed-length cipher
        ok, e = pcall(openssl.encrypt, "aes-128-ecb", "short", nil, pt)
        assert(not ok and e:find("^OpenSSL error: "), e)
        -- legacy ciphers; variable key length honoured for cast5
        local data = ("01234567"):rep(2)
        local k5 = "12345"
        local c3 = openssl.encrypt("cast5-cbc", k5, ("\0"):rep(8), data)
        assert(#c3 == 16 and c3 ~= openssl.encrypt("cast5-cbc", k5 .. ("\0"):rep(11), ("\0"):rep(8), data))
        assert(openssl.decrypt("cast5-cbc", k5, ("\0"):rep(8), c3) == data)
        assert(#openssl.encrypt("aes-192-cbc", ("k"):rep(24), ("i"):rep(16), data) == 16)
    )lua") == "");
}

TEST_CASE("openssl: DES_string_to_key + des-ecb give the known LM hash") {
    OpensslLua lua;
    // LM hash of "password" is E52CAC67419A9A224A3B108F3FA6CB6D.
    CHECK(lua.run(R"lua(
        local pw = "PASSWORD" .. ("\0"):rep(6)
        local k1 = openssl.DES_string_to_key(pw:sub(1, 7))
        local k2 = openssl.DES_string_to_key(pw:sub(8, 14))
        assert(#k1 == 8)
        for i = 1, 8 do assert(k1:byte(i) % 2 == 0, "parity bit must be clear") end
        local lm = openssl.encrypt("des-ecb", k1, nil, "KGS!@#$%") ..
                   openssl.encrypt("DES-ECB", k2, nil, "KGS!@#$%")
        assert(hex(lm) == "e52cac67419a9a224a3b108f3fa6cb6d", hex(lm))
        assert(hex(openssl.DES_string_to_key("\255\255\255\255\255\255\255")) == "fefefefefefefefe")
        -- "DES" is DES-CBC
        local iv = ("\0"):rep(8)
        assert(openssl.encrypt("DES", k1, iv, "KGS!@#$%") == openssl.encrypt("DES-CBC", k1, iv, "KGS!@#$%"))
    )lua") == "");
}

TEST_CASE("openssl: random bytes") {
    OpensslLua lua;
    CHECK(lua.run(R"lua(
        local a, b = openssl.rand_bytes(32), openssl.rand_bytes(32)
        assert(#a == 32 and #b == 32 and a ~= b)
        assert(#openssl.rand_pseudo_bytes(7) == 7)
        assert(openssl.rand_bytes(0) == "")
        assert(not pcall(openssl.rand_bytes, -1))
    )lua") == "");
}

TEST_CASE("openssl: BIGNUM constructors, conversions and arithmetic") {
    OpensslLua lua;
    CHECK(lua.run(R"lua(
        local b = openssl.bignum_bin2bn("\1\0")
        assert(b:todec() == "256" and openssl.bignum_bn2dec(b) == "256")
        assert(tostring(b) == "0100" and b:tohex() == "0100")
        assert(b:tobin() == "\1\0" and b:num_bytes() == 2 and b:num_bits() == 9)
        local big = openssl.bignum_dec2bn("123456789012345678901234567890")
        assert(big:todec() == "123456789012345678901234567890")
        assert(openssl.bignum_hex2bn("ff"):todec() == "255")
        local zero = openssl.bignum_hex2bn("zz")
        assert(zero:todec() == "0" and zero:tohex() == "0" and zero:tobin() == "")
        assert(openssl.bignum_dec2bn("-5"):tohex() == "-05")
        local function n(x) return openssl.bignum_dec2bn(tostring(x)) end
        assert(openssl.bignum_mod_exp(n(4), n(13), n(497)):todec() == "445")
        local q, r = openssl.bignum_div(n(100), n(7))
        assert(q:todec() == "14" and r:todec() == "2")
        assert(openssl.bignum_add(n(40), n(2)):todec() == "42")
        assert(not pcall(openssl.bignum_div, n(1), n(0)))
        -- bits
        local x = n(0)
        openssl.bignum_set_bit(x, 70)
        assert(x:is_bit_set(70) and openssl.bignum_is_bit_set(x, 70) and not x:is_bit_set(3))
        assert(openssl.bignum_num_bits(x) == 71)
        x:clear_bit(70); x:clear_bit(500)
        assert(x:todec() == "0")
        -- primes
        local m127 = openssl.bignum_hex2bn("7fffffffffffffffffffffffffffffff")
        assert(m127:is_prime() and openssl.bignum_is_prime(m127))
        assert(not n(91):is_prime())
        local safe, prime = n(23):is_safe_prime()
        assert(safe == true and prime == true)
        safe, prime = openssl.bignum_is_safe_prime(n(13))
        assert(safe == false and prime == true)
        safe, prime = n(15):is_safe_prime()
        assert(safe == false and prime == false)
        -- random
        for _, f in ipairs{"bignum_rand", "bignum_pseudo_rand"} do
            local r = openssl[f](64)
            assert(r:num_bits() <= 64 and r:num_bits() > 0)
        end
    )lua") == "");
}

TEST_CASE("openssl: BIGNUM metatable is registered and type-checked") {
    OpensslLua lua;
    CHECK(lua.run(R"lua(
        local b = openssl.bignum_dec2bn("7")
        assert(getmetatable(b) == debug.getregistry().BIGNUM)
        local ok, e = pcall(openssl.bignum_bn2dec, 5)
        assert(not ok and e:find("BIGNUM expected, got number", 1, true), e)
        ok, e = pcall(openssl.bignum_add, b, "x")
        assert(not ok and e:find("bad argument #2 to", 1, true) and e:find("(BIGNUM expected, got string)", 1, true), e)
    )lua") == "");
}

TEST_CASE("openssl: push_bignum hands a C++ BIGNUM to Lua, without the module opened") {
    nse::test::LuaHarness lua;
    BIGNUM* bn = BN_new();
    REQUIRE(BN_set_word(bn, 65537) == 1);
    nse::lib::push_bignum(lua.L, bn);
    lua_setglobal(lua.L, "e");
    CHECK(lua.run("assert(e:todec() == '65537' and tostring(e) == '010001') e = nil "
                  "collectgarbage() collectgarbage()") == "");
}

// nselib's own test suites that exercise this module: smbauth (LM/NTLM hashes: DES,
// DES_string_to_key, MD4) and sasl (DIGEST-MD5), run with nselib's unittest runner.
TEST_CASE("openssl: stock nselib test suites pass and openssl users load") {
    if (!nse::test::have_stock_file("/usr/share/nmap/nselib/smbauth.lua")) return;
    OpensslLua lua;
    CHECK(lua.run(nse::test::nmap_stub(nse::test::kUnittestArgs)) == "");
    CHECK(lua.run(R"lua(
        local smbauth = require "smbauth"
        local failed, total = smbauth.test_suite()
        assert(failed == 0 and total == 4, ("smbauth %d/%d failed"):format(failed, total))
        local sasl = require "sasl"
        failed, total = sasl.test_suite()
        assert(failed == 0 and total == 3, ("sasl %d/%d failed"):format(failed, total))
        -- modules that load openssl mandatorily (tns calls rand_pseudo_bytes while loading)
        for _, m in ipairs{"ssh1", "ssh2", "tns", "pgsql", "rsync", "sip", "iscsi", "iax2",
                           "bitcoin", "sslcert", "tls", "vnc", "mysql"} do
            local ok, err = pcall(require, m)
            assert(ok, m .. ": " .. tostring(err))
        end
        -- vnc-style DES with no IV equals an all-zero IV
        local k = "abcdefgh"
        assert(openssl.encrypt("DES", k, nil, "12345678") ==
               openssl.encrypt("DES", k, ("\0"):rep(8), "12345678"))
    )lua") == "");
}
