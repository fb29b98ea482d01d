#include "nse/lib/openssl.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "nse/lib/luax.h"
#include "nse/runtime.h"

namespace nse::lib {
namespace {

constexpr char kBignumMeta[] = "BIGNUM";  // an array: a template argument of close_box

// RAII owners for libcrypto objects: Lua errors unwind as C++ exceptions, so these free
// everything on every exit path.
struct MdFree {
    void operator()(EVP_MD* p) const { EVP_MD_free(p); }
};
struct CipherFree {
    void operator()(EVP_CIPHER* p) const { EVP_CIPHER_free(p); }
};
struct CipherCtxFree {
    void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
struct BnFree {
    void operator()(BIGNUM* p) const { BN_free(p); }
};
struct BnCtxFree {
    void operator()(BN_CTX* p) const { BN_CTX_free(p); }
};
struct OsslFree {
    void operator()(char* p) const { OPENSSL_free(p); }
};
using MdPtr = std::unique_ptr<EVP_MD, MdFree>;
using CipherPtr = std::unique_ptr<EVP_CIPHER, CipherFree>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
using BnCtxPtr = std::unique_ptr<BN_CTX, BnCtxFree>;
using OsslStr = std::unique_ptr<char, OsslFree>;

OSSL_PROVIDER* g_legacy = nullptr;
OSSL_PROVIDER* g_default = nullptr;

void load_providers() {
    static std::once_flag once;
    std::call_once(once, [] {
        // Loading legacy alone would hide the default algorithms; load both, for the life of
        // the process (providers are global to the default library context).
        g_legacy = OSSL_PROVIDER_load(nullptr, "legacy");
        g_default = OSSL_PROVIDER_load(nullptr, "default");
        ERR_clear_error();
        // Registered after libcrypto's own exit handler, so it runs before it; without this
        // the providers show up as leaks under LeakSanitizer.
        std::atexit([] {
            if (g_legacy) OSSL_PROVIDER_unload(g_legacy);
            if (g_default) OSSL_PROVIDER_unload(g_default);
        });
    });
}

// Raises "OpenSSL error: <text>" with the oldest queued OpenSSL error.
[[noreturn]] void raise_openssl(lua_State* L) {
    char buf[256];
    unsigned long code = ERR_get_error();
    if (code == 0) {
        std::snprintf(buf, sizeof buf, "unknown failure");
    } else {
        ERR_error_string_n(code, buf, sizeof buf);
    }
    ERR_clear_error();
    luaL_error(L, "OpenSSL error: %s", buf);
    std::terminate();  // luaL_error never returns
}

// Name lookup is case-insensitive and honours aliases (sha256, SHA256, RSA-SHA1 ...).
MdPtr fetch_md(const char* name) {
    ERR_set_mark();
    EVP_MD* md = EVP_MD_fetch(nullptr, name, nullptr);
    if (md == nullptr) {
        // Names known only to the legacy object table (e.g. "ssl3-md5").
        if (const EVP_MD* legacy = EVP_get_digestbyname(name)) {
            md = EVP_MD_fetch(nullptr, EVP_MD_get0_name(legacy), nullptr);
        }
    }
    ERR_pop_to_mark();
    return MdPtr(md);
}

MdPtr check_md(lua_State* L, int arg) {
    const char* name = luaL_checkstring(L, arg);
    MdPtr md = fetch_md(name);
    if (!md) luaL_error(L, "Unknown digest algorithm: %s", name);
    return md;
}

CipherPtr fetch_cipher(const char* name) {
    ERR_set_mark();
    EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, name, nullptr);
    if (c == nullptr) {
        if (const EVP_CIPHER* legacy = EVP_get_cipherbyname(name)) {
            c = EVP_CIPHER_fetch(nullptr, EVP_CIPHER_get0_name(legacy), nullptr);
        }
    }
    ERR_pop_to_mark();
    return CipherPtr(c);
}

// [-0, +1] Pushes the digest of `data` under `md`.
void push_digest(lua_State* L, const EVP_MD* md, const char* data, size_t len) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    if (!EVP_Digest(data, len, out, &outlen, md, nullptr)) raise_openssl(L);
    lua_pushlstring(L, reinterpret_cast<char*>(out), outlen);
}

int named_digest(lua_State* L, const char* alg) {
    size_t len;
    const char* s = luaL_checklstring(L, 1, &len);
    MdPtr md = fetch_md(alg);
    if (!md) return luaL_error(L, "Unknown digest algorithm: %s", alg);
    push_digest(L, md.get(), s, len);
    return 1;
}

int l_md4(lua_State* L) { return named_digest(L, "MD4"); }
int l_md5(lua_State* L) { return named_digest(L, "MD5"); }
int l_sha1(lua_State* L) { return named_digest(L, "SHA1"); }
int l_ripemd160(lua_State* L) { return named_digest(L, "RIPEMD160"); }

int l_digest(lua_State* L) {
    MdPtr md = check_md(L, 1);
    size_t len;
    const char* s = luaL_checklstring(L, 2, &len);
    push_digest(L, md.get(), s, len);
    return 1;
}

int l_hmac(lua_State* L) {
    MdPtr md = check_md(L, 1);
    size_t klen, len;
    const char* key = luaL_checklstring(L, 2, &klen);
    const char* s = luaL_checklstring(L, 3, &len);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    if (!HMAC(md.get(), key, static_cast<int>(klen), reinterpret_cast<const unsigned char*>(s), len,
              out, &outlen)) {
        raise_openssl(L);
    }
    lua_pushlstring(L, reinterpret_cast<char*>(out), outlen);
    return 1;
}

// [-0, +1] Pushes a sorted, duplicate-free array of names.
void push_name_list(lua_State* L, std::vector<std::string>& names) {
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    lua_createtable(L, static_cast<int>(names.size()), 0);
    lua_Integer i = 1;
    for (const auto& n : names) {
        lua_pushlstring(L, n.data(), n.size());
        lua_rawseti(L, -2, i++);
    }
}

int l_supported_digests(lua_State* L) {
    std::vector<std::string> names;
    EVP_MD_do_all_sorted(
        [](const EVP_MD*, const char* from, const char*, void* arg) {
            if (from) static_cast<std::vector<std::string>*>(arg)->emplace_back(from);
        },
        &names);
    push_name_list(L, names);
    return 1;
}

int l_supported_ciphers(lua_State* L) {
    std::vector<std::string> names;
    EVP_CIPHER_do_all_sorted(
        [](const EVP_CIPHER*, const char* from, const char*, void* arg) {
            if (from) static_cast<std::vector<std::string>*>(arg)->emplace_back(from);
        },
        &names);
    push_name_list(L, names);
    return 1;
}

// encrypt/decrypt(alg, key, iv, data[, padding=false])
int do_cipher(lua_State* L, int enc) {
    const char* alg = luaL_checkstring(L, 1);
    size_t klen, ivlen = 0, dlen;
    const char* key = luaL_checklstring(L, 2, &klen);
    const char* iv = luaL_optlstring(L, 3, nullptr, &ivlen);
    const char* data = luaL_checklstring(L, 4, &dlen);
    const bool padding = lua_toboolean(L, 5);

    CipherPtr cipher = fetch_cipher(alg);
    if (!cipher) return luaL_error(L, "Unknown cipher algorithm: %s", alg);
    if (ivlen == 0) iv = nullptr;  // nil or "" both mean "no IV"
    const int want_iv = EVP_CIPHER_get_iv_length(cipher.get());
    if (iv != nullptr && static_cast<int>(ivlen) != want_iv) {
        return luaL_error(L, "Length of iv is %d; should be %d", static_cast<int>(ivlen), want_iv);
    }

    ERR_clear_error();
    CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
    if (!ctx) raise_openssl(L);
    // Two-step init: the key length must be set before the key is read, so a short key for a
    // variable-length cipher (Blowfish, CAST5, RC4) is honoured and never over-read.
    if (!EVP_CipherInit_ex(ctx.get(), cipher.get(), nullptr, nullptr, nullptr, enc) ||
        !EVP_CIPHER_CTX_set_key_length(ctx.get(), static_cast<int>(klen)) ||
        !EVP_CIPHER_CTX_set_padding(ctx.get(), padding ? 1 : 0) ||
        !EVP_CipherInit_ex(ctx.get(), nullptr, nullptr, reinterpret_cast<const unsigned char*>(key),
                           reinterpret_cast<const unsigned char*>(iv), enc)) {
        raise_openssl(L);
    }
    std::vector<unsigned char> out(dlen + EVP_MAX_BLOCK_LENGTH);
    int n1 = 0, n2 = 0;
    if (!EVP_CipherUpdate(ctx.get(), out.data(), &n1, reinterpret_cast<const unsigned char*>(data),
                          static_cast<int>(dlen)) ||
        !EVP_CipherFinal_ex(ctx.get(), out.data() + n1, &n2)) {
        raise_openssl(L);
    }
    lua_pushlstring(L, reinterpret_cast<char*>(out.data()), static_cast<size_t>(n1 + n2));
    return 1;
}

int l_encrypt(lua_State* L) { return do_cipher(L, 1); }
int l_decrypt(lua_State* L) { return do_cipher(L, 0); }

// Spreads 56 key bits over 8 bytes, 7 per byte, leaving the low (parity) bit clear.
int l_des_string_to_key(lua_State* L) {
    size_t len;
    const auto* s = reinterpret_cast<const unsigned char*>(luaL_checklstring(L, 1, &len));
    if (len != 7) return luaL_error(L, "String must have length of 7 bytes.");
    unsigned char k[8];
    k[0] = s[0];
    for (int i = 1; i < 7; ++i)
        k[i] = static_cast<unsigned char>((s[i - 1] << (8 - i)) | (s[i] >> i));
    k[7] = static_cast<unsigned char>(s[6] << 1);
    for (auto& b : k)
        b &= 0xFE;
    lua_pushlstring(L, reinterpret_cast<char*>(k), sizeof k);
    return 1;
}

size_t check_length(lua_State* L, int arg) {
    lua_Integer n = luaL_checkinteger(L, arg);
    luaL_argcheck(L, n >= 0, arg, "length must not be negative");
    return static_cast<size_t>(n);
}

int l_rand_bytes(lua_State* L) {
    size_t n = check_length(L, 1);
    luaL_Buffer b;
    auto* p = reinterpret_cast<unsigned char*>(luaL_buffinitsize(L, &b, n));
    if (n > 0 && RAND_bytes(p, static_cast<int>(n)) != 1) {
        return luaL_error(L, "Failure in RAND_bytes.");
    }
    luaL_pushresultsize(&b, n);
    return 1;
}

int l_rand_pseudo_bytes(lua_State* L) {
    size_t n = check_length(L, 1);
    luaL_Buffer b;
    auto* p = reinterpret_cast<unsigned char*>(luaL_buffinitsize(L, &b, n));
    if (n > 0 && RAND_bytes(p, static_cast<int>(n)) != 1) {
        // Non-cryptographic by contract: never fail, fall back to a PRNG.
        std::mt19937 gen(std::random_device{}());
        for (size_t i = 0; i < n; ++i)
            p[i] = static_cast<unsigned char>(gen());
    }
    luaL_pushresultsize(&b, n);
    return 1;
}

// ---- BIGNUM userdata

BIGNUM* check_bn(lua_State* L, int arg) {
    BIGNUM* bn = check_box<BIGNUM>(L, arg, kBignumMeta)->p;
    if (bn == nullptr) luaL_argerror(L, arg, "BIGNUM already freed");
    return bn;
}

BnCtxPtr new_ctx(lua_State* L) {
    BnCtxPtr ctx(BN_CTX_new());
    if (!ctx) raise_openssl(L);
    return ctx;
}

BnPtr new_bn(lua_State* L) {
    BnPtr bn(BN_new());
    if (!bn) raise_openssl(L);
    return bn;
}

void push_owned(lua_State* L, BnPtr bn) { push_bignum(L, bn.release()); }

int bn_bin2bn(lua_State* L) {
    size_t len;
    const char* s = luaL_checklstring(L, 1, &len);
    BnPtr bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(s), static_cast<int>(len), nullptr));
    if (!bn) raise_openssl(L);
    push_owned(L, std::move(bn));
    return 1;
}

// Invalid text yields 0, as the contract asks.
template <int (*Parse)(BIGNUM**, const char*)>
int bn_text2bn(lua_State* L) {
    const char* s = luaL_checkstring(L, 1);
    BnPtr bn = new_bn(L);
    BIGNUM* raw = bn.get();
    if (Parse(&raw, s) == 0) BN_zero(bn.get());
    ERR_clear_error();
    push_owned(L, std::move(bn));
    return 1;
}

int bn_rand(lua_State* L) {
    lua_Integer bits = luaL_checkinteger(L, 1);
    luaL_argcheck(L, bits >= 0 && bits <= (1 << 24), 1, "bit count out of range");
    BnPtr bn = new_bn(L);
    if (bits > 0 &&
        !BN_rand(bn.get(), static_cast<int>(bits), BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY)) {
        raise_openssl(L);
    }
    push_owned(L, std::move(bn));
    return 1;
}

int bn_add(lua_State* L) {
    BIGNUM* a = check_bn(L, 1);
    BIGNUM* b = check_bn(L, 2);
    BnPtr r = new_bn(L);
    if (!BN_add(r.get(), a, b)) raise_openssl(L);
    push_owned(L, std::move(r));
    return 1;
}

int bn_mod_exp(lua_State* L) {
    BIGNUM* a = check_bn(L, 1);
    BIGNUM* p = check_bn(L, 2);
    BIGNUM* m = check_bn(L, 3);
    BnCtxPtr ctx = new_ctx(L);
    BnPtr r = new_bn(L);
    ERR_clear_error();
    if (!BN_mod_exp(r.get(), a, p, m, ctx.get())) raise_openssl(L);
    push_owned(L, std::move(r));
    return 1;
}

int bn_div(lua_State* L) {
    BIGNUM* a = check_bn(L, 1);
    BIGNUM* d = check_bn(L, 2);
    BnCtxPtr ctx = new_ctx(L);
    BnPtr q = new_bn(L);
    BnPtr r = new_bn(L);
    ERR_clear_error();
    if (!BN_div(q.get(), r.get(), a, d, ctx.get())) raise_openssl(L);
    push_owned(L, std::move(q));
    push_owned(L, std::move(r));
    return 2;
}

int bn_num_bits(lua_State* L) {
    lua_pushinteger(L, BN_num_bits(check_bn(L, 1)));
    return 1;
}

int bn_num_bytes(lua_State* L) {
    lua_pushinteger(L, BN_num_bytes(check_bn(L, 1)));
    return 1;
}

int check_bit(lua_State* L, int arg) {
    lua_Integer i = luaL_checkinteger(L, arg);
    luaL_argcheck(L, i >= 0 && i <= (1 << 24), arg, "bit index out of range");
    return static_cast<int>(i);
}

int bn_is_bit_set(lua_State* L) {
    BIGNUM* bn = check_bn(L, 1);
    lua_pushboolean(L, BN_is_bit_set(bn, check_bit(L, 2)));
    return 1;
}

int bn_set_bit(lua_State* L) {
    BIGNUM* bn = check_bn(L, 1);
    if (!BN_set_bit(bn, check_bit(L, 2))) raise_openssl(L);
    return 0;
}

int bn_clear_bit(lua_State* L) {
    BIGNUM* bn = check_bn(L, 1);
    int bit = check_bit(L, 2);
    // BN_clear_bit fails for bits beyond the top word; such bits are already clear.
    if (bit < BN_num_bits(bn)) BN_clear_bit(bn, bit);
    ERR_clear_error();
    return 0;
}

bool is_prime(lua_State* L, const BIGNUM* bn, BN_CTX* ctx) {
    int r = BN_check_prime(bn, ctx, nullptr);
    if (r < 0) raise_openssl(L);
    return r == 1;
}

int bn_is_prime(lua_State* L) {
    BIGNUM* bn = check_bn(L, 1);
    BnCtxPtr ctx = new_ctx(L);
    lua_pushboolean(L, is_prime(L, bn, ctx.get()));
    return 1;
}

// → is_safe, is_prime. A safe prime p has (p-1)/2 prime as well.
int bn_is_safe_prime(lua_State* L) {
    BIGNUM* bn = check_bn(L, 1);
    BnCtxPtr ctx = new_ctx(L);
    const bool prime = is_prime(L, bn, ctx.get());
    bool safe = false;
    if (prime) {
        BnPtr half = new_bn(L);
        if (!BN_rshift1(half.get(), bn)) raise_openssl(L);
        safe = is_prime(L, half.get(), ctx.get());
    }
    lua_pushboolean(L, safe);
    lua_pushboolean(L, prime);
    return 2;
}

int bn_bn2bin(lua_State* L) {
    BIGNUM* bn = check_bn(L, 1);
    std::vector<unsigned char> out(static_cast<size_t>(BN_num_bytes(bn)));
    int n = BN_bn2bin(bn, out.data());
    lua_pushlstring(L, reinterpret_cast<char*>(out.data()), static_cast<size_t>(n));
    return 1;
}

// Decimal (BN_bn2dec) or hex (BN_bn2hex) text of a BIGNUM.
template <char* (*Print)(const BIGNUM*)>
int bn_bn2text(lua_State* L) {
    OsslStr s(Print(check_bn(L, 1)));
    if (!s) raise_openssl(L);
    lua_pushstring(L, s.get());
    return 1;
}

// BIGNUM methods; the metatable is its own __index (luax.h push_metatable).
const luaL_Reg kBignumMethods[] = {
    {"num_bits", nse::guard<bn_num_bits>},
    {"num_bytes", nse::guard<bn_num_bytes>},
    {"tobin", nse::guard<bn_bn2bin>},
    {"todec", nse::guard<bn_bn2text<BN_bn2dec>>},
    {"tohex", nse::guard<bn_bn2text<BN_bn2hex>>},
    {"is_bit_set", nse::guard<bn_is_bit_set>},
    {"set_bit", nse::guard<bn_set_bit>},
    {"clear_bit", nse::guard<bn_clear_bit>},
    {"is_prime", nse::guard<bn_is_prime>},
    {"is_safe_prime", nse::guard<bn_is_safe_prime>},
    {"__tostring", nse::guard<bn_bn2text<BN_bn2hex>>},
    {"__gc", close_box<BIGNUM, kBignumMeta, BN_free>},
    {"__close", close_box<BIGNUM, kBignumMeta, BN_free>},
    {nullptr, nullptr},
};

const luaL_Reg kFunctions[] = {
    {"md4", nse::guard<l_md4>},
    {"md5", nse::guard<l_md5>},
    {"sha1", nse::guard<l_sha1>},
    {"ripemd160", nse::guard<l_ripemd160>},
    {"digest", nse::guard<l_digest>},
    {"hmac", nse::guard<l_hmac>},
    {"supported_digests", nse::guard<l_supported_digests>},
    {"supported_ciphers", nse::guard<l_supported_ciphers>},
    {"encrypt", nse::guard<l_encrypt>},
    {"decrypt", nse::guard<l_decrypt>},
    {"DES_string_to_key", nse::guard<l_des_string_to_key>},
    {"rand_bytes", nse::guard<l_rand_bytes>},
    {"rand_pseudo_bytes", nse::guard<l_rand_pseudo_bytes>},
    {"bignum_bin2bn", nse::guard<bn_bin2bn>},
    {"bignum_dec2bn", nse::guard<bn_text2bn<BN_dec2bn>>},
    {"bignum_hex2bn", nse::guard<bn_text2bn<BN_hex2bn>>},
    {"bignum_rand", nse::guard<bn_rand>},
    {"bignum_pseudo_rand", nse::guard<bn_rand>},
    {"bignum_add", nse::guard<bn_add>},
    {"bignum_mod_exp", nse::guard<bn_mod_exp>},
    {"bignum_div", nse::guard<bn_div>},
    {"bignum_num_bits", nse::guard<bn_num_bits>},
    {"bignum_num_bytes", nse::guard<bn_num_bytes>},
    {"bignum_is_bit_set", nse::guard<bn_is_bit_set>},
    {"bignum_set_bit", nse::guard<bn_set_bit>},
    {"bignum_clear_bit", nse::guard<bn_clear_bit>},
    {"bignum_is_prime", nse::guard<bn_is_prime>},
    {"bignum_is_safe_prime", nse::guard<bn_is_safe_prime>},
    {"bignum_bn2bin", nse::guard<bn_bn2bin>},
    {"bignum_bn2dec", nse::guard<bn_bn2text<BN_bn2dec>>},
    {"bignum_bn2hex", nse::guard<bn_bn2text<BN_bn2hex>>},
    {nullptr, nullptr},
};

}  // namespace

void push_bignum(lua_State* L, BIGNUM* owned) {
    BnPtr owner(owned);  // freed if allocating the userdata raises
    Box<BIGNUM>* box = new_box<BIGNUM>(L, 0, kBignumMeta, kBignumMethods);  // [ud]
    box->p = owner.release();
}

int luaopen_openssl(lua_State* L) {
    load_providers();
    push_metatable(L, kBignumMeta, kBignumMethods);
    lua_pop(L, 1);
    luaL_newlib(L, kFunctions);
    return 1;
}

}  // namespace nse::lib
