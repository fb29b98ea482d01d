#include "nse/lib/certificate.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <memory>

#include "nse/lib/luax.h"
#include "nse/lib/openssl.h"

namespace nse::lib {
namespace {

constexpr char kCertMeta[] = "nse.ssl_certificate";  // an array: a template argument of close_box

struct BioFree {
    void operator()(BIO* p) const { BIO_free(p); }
};
struct X509Free {
    void operator()(X509* p) const { X509_free(p); }
};
struct MdFree {
    void operator()(EVP_MD* p) const { EVP_MD_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using MdPtr = std::unique_ptr<EVP_MD, MdFree>;

// [-0, +1] Pushes "Error parsing cert: <oldest queued OpenSSL error>"; clears the queue.
void push_parse_error(lua_State* L) {
    unsigned long code = ERR_get_error();
    char buf[256] = "unknown error";
    if (code != 0) ERR_error_string_n(code, buf, sizeof buf);
    ERR_clear_error();
    lua_pushfstring(L, "Error parsing cert: %s", buf);
}

// [-0, +1] Pushes what was written to a memory BIO.
void push_bio(lua_State* L, BIO* bio) {
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    lua_pushlstring(L, data, len > 0 ? static_cast<size_t>(len) : 0);
}

// [-0, +1] Pushes an X509_NAME as {longName = raw bytes, {"2","5","4","15"} = raw bytes, ...}.
void push_name(lua_State* L, const X509_NAME* name) {
    lua_newtable(L);
    if (name == nullptr) return;
    const int n = X509_NAME_entry_count(name);
    for (int i = 0; i < n; ++i) {
        const X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
        const ASN1_OBJECT* obj = X509_NAME_ENTRY_get_object(e);
        const int nid = OBJ_obj2nid(obj);
        if (nid != NID_undef) {
            lua_pushstring(L, OBJ_nid2ln(nid));  // [t, key]
        } else {
            // Unknown attribute: key is the array of OID components.
            char oid[256];
            OBJ_obj2txt(oid, sizeof oid, obj, 1);
            lua_newtable(L);  // [t, key]
            lua_Integer idx = 1;
            for (const char* p = oid; *p;) {
                const char* dot = std::strchr(p, '.');
                size_t len = dot ? static_cast<size_t>(dot - p) : std::strlen(p);
                lua_pushlstring(L, p, len);
                lua_rawseti(L, -2, idx++);
                p += len;
                if (*p == '.') ++p;
            }
        }
        const ASN1_STRING* v = X509_NAME_ENTRY_get_data(e);
        lua_pushlstring(L, reinterpret_cast<const char*>(ASN1_STRING_get0_data(v)),
                        static_cast<size_t>(ASN1_STRING_length(v)));  // [t, key, value]
        lua_settable(L, -3);                                          // [t]
    }
}

// [-0, +1] Pushes a date table {year, month, day, hour, min, sec} (UTC), the raw string when
// the time does not parse, or nil when absent.
void push_time(lua_State* L, const ASN1_TIME* t) {
    if (t == nullptr) {
        lua_pushnil(L);
        return;
    }
    std::tm tm{};
    if (ASN1_TIME_to_tm(t, &tm) != 1) {
        ERR_clear_error();
        lua_pushlstring(L, reinterpret_cast<const char*>(ASN1_STRING_get0_data(t)),
                        static_cast<size_t>(ASN1_STRING_length(t)));
        return;
    }
    lua_createtable(L, 0, 6);
    const struct {
        const char* key;
        int value;
    } fields[] = {{"year", tm.tm_year + 1900}, {"month", tm.tm_mon + 1}, {"day", tm.tm_mday},
                  {"hour", tm.tm_hour},        {"min", tm.tm_min},       {"sec", tm.tm_sec}};
    for (const auto& f : fields) {
        lua_pushinteger(L, f.value);
        lua_setfield(L, -2, f.key);
    }
}

// [-0, +1] Pushes the extensions array, or nothing-equivalent nil when there are none.
void push_extensions(lua_State* L, X509* cert) {
    const int n = X509_get_ext_count(cert);
    if (n <= 0) {
        lua_pushnil(L);
        return;
    }
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; ++i) {
        X509_EXTENSION* ext = X509_get_ext(cert, i);
        lua_createtable(L, 0, 3);  // [exts, e]
        char name[256];
        OBJ_obj2txt(name, sizeof name, X509_EXTENSION_get_object(ext), 0);
        lua_pushstring(L, name);
        lua_setfield(L, -2, "name");
        if (X509_EXTENSION_get_critical(ext)) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "critical");
        }
        BioPtr bio(BIO_new(BIO_s_mem()));
        if (bio && X509V3_EXT_print(bio.get(), ext, 0, 0) == 1) {
            push_bio(L, bio.get());
            lua_setfield(L, -2, "value");
        } else {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "error");
        }
        ERR_clear_error();
        lua_rawseti(L, -2, i + 1);  // [exts]
    }
}

// [-0, +1] Pushes a BIGNUM parameter of `pkey` (nil if missing).
void push_bn_param(lua_State* L, const EVP_PKEY* pkey, const char* param) {
    BIGNUM* bn = nullptr;
    if (EVP_PKEY_get_bn_param(pkey, param, &bn) == 1 && bn != nullptr) {
        push_bignum(L, bn);
    } else {
        ERR_clear_error();
        lua_pushnil(L);
    }
}

// [-0, +1] Pushes ecdhparams = {curve_params = {curve =, ec_curve_type =}}.
void push_ec_params(lua_State* L, const EVP_PKEY* pkey) {
    lua_newtable(L);  // [ecdh]
    lua_newtable(L);  // [ecdh, cp]
    char buf[128];
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, buf, sizeof buf, &len) ==
        1) {
        lua_pushstring(L, buf);
        lua_setfield(L, -2, "curve");
        lua_pushliteral(L, "namedcurve");
    } else if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_EC_FIELD_TYPE, buf, sizeof buf,
                                              &len) == 1 &&
               std::strcmp(buf, SN_X9_62_characteristic_two_field) == 0) {
        lua_pushliteral(L, "explicit_char2");
    } else {
        lua_pushliteral(L, "explicit_prime");
    }
    ERR_clear_error();
    lua_setfield(L, -2, "ec_curve_type");
    lua_setfield(L, -2, "curve_params");  // [ecdh]
}

// [-0, +1] Pushes the pubkey table; returns false (pushing nothing) when undecodable.
bool push_pubkey(lua_State* L, X509* cert) {
    EVP_PKEY* pkey = X509_get0_pubkey(cert);
    if (pkey == nullptr) return false;
    lua_newtable(L);  // [pk]
    const char* type = "unknown";
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA: type = "rsa"; break;
    case EVP_PKEY_DSA: type = "dsa"; break;
    case EVP_PKEY_DH:
    case EVP_PKEY_DHX: type = "dh"; break;
    case EVP_PKEY_EC: type = "ec"; break;
    default: break;
    }
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, EVP_PKEY_get_bits(pkey));
    lua_setfield(L, -2, "bits");
    if (std::strcmp(type, "rsa") == 0) {
        push_bn_param(L, pkey, OSSL_PKEY_PARAM_RSA_N);
        lua_setfield(L, -2, "modulus");
        push_bn_param(L, pkey, OSSL_PKEY_PARAM_RSA_E);
        lua_setfield(L, -2, "exponent");
    } else if (std::strcmp(type, "ec") == 0) {
        push_ec_params(L, pkey);
        lua_setfield(L, -2, "ecdhparams");
    }
    return true;
}

// cert:digest(alg) → raw digest bytes, nil for an unknown algorithm.
int cert_digest(lua_State* L) {
    X509* cert = check_box<X509>(L, 1, kCertMeta)->p;
    const char* alg = luaL_checkstring(L, 2);
    ERR_set_mark();
    MdPtr md(EVP_MD_fetch(nullptr, alg, nullptr));
    if (!md) {
        if (const EVP_MD* legacy = EVP_get_digestbyname(alg)) {
            md.reset(EVP_MD_fetch(nullptr, EVP_MD_get0_name(legacy), nullptr));
        }
    }
    ERR_pop_to_mark();
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!md || cert == nullptr || X509_digest(cert, md.get(), out, &len) != 1) {
        ERR_clear_error();
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, reinterpret_cast<char*>(out), len);
    return 1;
}

// __index(cert, key): the method `digest`, else the field from the user-value table.
int cert_index(lua_State* L) {
    check_box<X509>(L, 1, kCertMeta);
    if (lua_type(L, 2) == LUA_TSTRING && std::strcmp(lua_tostring(L, 2), "digest") == 0) {
        lua_pushcfunction(L, cert_digest);
        return 1;
    }
    lua_getiuservalue(L, 1, 1);  // [cert, key, fields]
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

const luaL_Reg kCertMethods[] = {
    {"__index", cert_index},
    {"__gc", close_box<X509, kCertMeta, X509_free>},
    {"__close", close_box<X509, kCertMeta, X509_free>},
    {nullptr, nullptr},
};

// [-0, +1] Pushes the field table, or returns false with the stack unchanged when the public
// key cannot be decoded.
bool push_fields(lua_State* L, X509* cert) {
    lua_createtable(L, 0, 8);  // [t]
    if (!push_pubkey(L, cert)) {
        lua_pop(L, 1);
        return false;
    }
    lua_setfield(L, -2, "pubkey");
    push_name(L, X509_get_subject_name(cert));
    lua_setfield(L, -2, "subject");
    push_name(L, X509_get_issuer_name(cert));
    lua_setfield(L, -2, "issuer");

    const X509_ALGOR* alg = nullptr;
    X509_get0_signature(nullptr, &alg, cert);
    const ASN1_OBJECT* obj = nullptr;
    X509_ALGOR_get0(&obj, nullptr, nullptr, alg);
    char name[128];
    OBJ_obj2txt(name, sizeof name, obj, 0);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "sig_algorithm");

    lua_createtable(L, 0, 2);  // [t, validity]
    push_time(L, X509_get0_notBefore(cert));
    lua_setfield(L, -2, "notBefore");
    push_time(L, X509_get0_notAfter(cert));
    lua_setfield(L, -2, "notAfter");
    lua_setfield(L, -2, "validity");

    BioPtr bio(BIO_new(BIO_s_mem()));
    if (bio && PEM_write_bio_X509(bio.get(), cert) == 1) {
        push_bio(L, bio.get());
        lua_setfield(L, -2, "pem");
    }
    push_extensions(L, cert);
    lua_setfield(L, -2, "extensions");
    ERR_clear_error();
    return true;
}

}  // namespace

int push_certificate(lua_State* L, X509* cert) {
    ERR_clear_error();
    if (!push_fields(L, cert)) {  // [] or [fields]
        lua_pushnil(L);
        push_parse_error(L);
        return 2;
    }
    Box<X509>* box = new_box<X509>(L, 1, kCertMeta, kCertMethods);  // [fields, ud]
    lua_insert(L, -2);                                              // [ud, fields]
    lua_setiuservalue(L, -2, 1);                                    // [ud]
    X509_up_ref(cert);
    box->p = cert;
    return 1;
}

int parse_ssl_certificate(lua_State* L) {
    size_t len;
    const auto* der = reinterpret_cast<const unsigned char*>(luaL_checklstring(L, 1, &len));
    X509Ptr cert(d2i_X509(nullptr, &der, static_cast<long>(len)));
    if (!cert) {
        ERR_clear_error();
        lua_pushnil(L);
        return 1;
    }
    return push_certificate(L, cert.get());
}

}  // namespace nse::lib
