// Tests of the SSL certificate object (docs/runtime-contract.md "SSL certificate object"),
// including a run of the stock ssl-cert.nse output code over it.
#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <lua.hpp>
#include <memory>
#include <string>

#include "nse/lib/certificate.h"
#include "nse/lib/openssl.h"
#include "nse/tests/lua_harness.h"

namespace {

// openssl req -x509 -newkey rsa:2048 -days 36500 -subj "/C=US/O=Lab Org/CN=lab.example"
//   -addext "subjectAltName=DNS:lab.example,IP:127.0.0.1"
const char kRsaPem[] = R"(-----BEGIN CERTIFICATE-----
MIIDazCCAlOgAwIBAgIULUE06C3S9Zg24kOkyUTrBbQ4h78wDQYJKoZIhvcNAQEL
BQAwNTELMAkGA1UEBhMCVVMxEDAOBgNVBAoMB0xhYiBPcmcxFDASBgNVBAMMC2xh
Yi5leGFtcGxlMCAXDTI2MTEyMTA1NTUyOFoYDzIxMjYxMDI4MDU1NTI4WjA1MQsw
CQYDVQQGEwJVUzEQMA4GA1UECgwHTGFiIE9yZzEUMBIGA1UEAwwLbGFiLmV4YW1w
bGUwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDejXj88C243PDVSkHo
ohmVNUiEbAUkXqSUlxP0GubFKBzv1caNkPxyNvKKvFgdxy6MGtEN1U1R4cTe4TnR
yyo/O2MaXQ+gO7ksNZQj4pMqnjmyI720BAdRzXjZWMioax5gBg2N5ghmTcrtFaIC
4qxz0kP2FyRIOhTw4O1m/3vGi42kee+gZ2C9+mKXbZe/ztEqEY4csM2eYLYaVsbt
bXHSbtG5mEcv4rp2WG01xqrg33z3nqk8yYqh1zLG/UnUCJGsAQB4AGVy4BsPlYIe
DhsROVmYHKyGPBgsnqHwJRdwCo3XrC6+zyJCAI18RO9yxVy+d+LYbWm0m8K4x/+D
Ppi5AgMBAAGjcTBvMB0GA1UdDgQWBBSxH7AsiOfyoT4bFVpK/gAQ7Hih0DAfBgNV
HSMEGDAWgBSxH7AsiOfyoT4bFVpK/gAQ7Hih0DAPBgNVHRMBAf8EBTADAQH/MBwG
A1UdEQQVMBOCC2xhYi5leGFtcGxlhwR/AAABMA0GCSqGSIb3DQEBCwUAA4IBAQDW
RcH/jE9RzRo+1X9PVbrW2ED89S/BnHtuNtcRK7UevQbRrEuS3b5q/rvmvJ3Pspgo
CdY3jcvI77E3uA0VZPRdSScjJTgEdY28mUBIR/N93Y88LagX/GZeZLv1XWT2Epll
qg4EES6L7ewQScaDdZF7mgcif7TtdgS/LG2D8ZliWxUdrUXQSmYgIdf0JN2AI9NS
rAcFPmnfqxc+9bEt1RFBSRSRvFLQHLnrdONt63Cxk9f3MNVRyk105YHlCpF1KYnV
M3WD2Ob5WuFv/R9HxdSIjivfE64MJG/F6U2hrDQmzHnp9cG4ed85+TczQsoBOCv+
AerXn4CmroTheedRKnCS
-----END CERTIFICATE-----
)";

// Same subject, EC prime256v1 key.
const char kEcPem[] = R"(-----BEGIN CERTIFICATE-----
MIIBwTCCAWegAwIBAgIUf3xtD3Xz2xom/aBWGahRTWu05SMwCgYIKoZIzj0EAwIw
NTELMAkGA1UEBhMCVVMxEDAOBgNVBAoMB0xhYiBPcmcxFDASBgNVBAMMC2xhYi5l
eGFtcGxlMCAXDTI2MTEyMTA1NTUyOFoYDzIxMjYxMDI4MDU1NTI4WjA1MQswCQYD
VQQGEwJVUzEQMA4GA1UECgwHTGFiIE9yZzEUMBIGA1UEAwwLbGFiLmV4YW1wbGUw
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATCsrhMs1Yue1kO1MoTSnUG7rQQKYd2
jmJPR1dWJgwGwYbp9brQxE7iLaRcQ2hW1WHpafLK6d7XVjzHqqXfrvGzo1MwUTAd
BgNVHQ4EFgQUhHnAQRhpCbVT5gQhPilRI6ArdhcwHwYDVR0jBBgwFoAUhHnAQRhp
CbVT5gQhPilRI6ArdhcwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBF
AiEA+qb5JBUhTmFlP3f1D6CxCvBKIcOv9t8Eg/XsyUp+7QECICA5VBN2+B3vOEmp
xNGsR86XVKuMPHIEqOQOpXAjU7TY
-----END CERTIFICATE-----
)";

struct X509Free {
    void operator()(X509* p) const { X509_free(p); }
};
struct PkeyFree {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

X509Ptr from_pem(const char* pem) {
    BIO* bio = BIO_new_mem_buf(pem, -1);
    X509Ptr cert(PEM_read_bio_X509(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
    REQUIRE(cert);
    return cert;
}

std::string to_der(X509* cert) {
    unsigned char* der = nullptr;
    int len = i2d_X509(cert, &der);
    REQUIRE(len > 0);
    std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
    OPENSSL_free(der);
    return out;
}

// A certificate with an attribute of unknown OID, an unprintable critical extension, signed
// with a fresh EC key. With `garbage_key`, its SubjectPublicKeyInfo claims RSA but holds junk.
X509Ptr odd_cert(bool garbage_key) {
    PkeyPtr key(EVP_EC_gen("prime256v1"));
    REQUIRE(key);
    X509Ptr cert(X509_new());
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 7);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("odd.example"), -1, -1, 0);
    ASN1_OBJECT* oid = OBJ_txt2obj("1.2.3.4.5", 1);
    X509_NAME_add_entry_by_OBJ(name, oid, MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("oddvalue"), -1, -1, 0);
    ASN1_OBJECT_free(oid);
    X509_set_issuer_name(cert.get(), name);

    ASN1_OCTET_STRING* data = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(data, reinterpret_cast<const unsigned char*>("\x0c\x05hello"), 7);
    ASN1_OBJECT* extoid = OBJ_txt2obj("1.2.3.4", 1);
    X509_EXTENSION* ext = X509_EXTENSION_create_by_OBJ(nullptr, extoid, 1, data);
    X509_add_ext(cert.get(), ext, -1);
    X509_EXTENSION_free(ext);
    ASN1_OBJECT_free(extoid);
    ASN1_OCTET_STRING_free(data);

    if (garbage_key) {
        X509_PUBKEY* pub = X509_get_X509_PUBKEY(cert.get());
        auto* junk = static_cast<unsigned char*>(OPENSSL_malloc(4));
        std::memcpy(junk, "\x01\x02\x03\x04", 4);
        REQUIRE(X509_PUBKEY_set0_param(pub, OBJ_nid2obj(NID_rsaEncryption), V_ASN1_NULL, nullptr,
                                       junk, 4) == 1);
    } else {
        REQUIRE(X509_set_pubkey(cert.get(), key.get()) == 1);
    }
    REQUIRE(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0);
    return cert;
}

// A harness state with the global function parse_ssl_certificate(der).
struct CertLua : nse::test::LuaHarness {
    CertLua() { set_function("parse_ssl_certificate", nse::lib::parse_ssl_certificate); }
};

}  // namespace

TEST_CASE("certificate: RSA certificate fields") {
    CertLua lua;
    lua.set_string("der", to_der(from_pem(kRsaPem).get()));
    lua.set_string("pem_text", kRsaPem);
    CHECK(lua.run(R"lua(
        local c = assert(parse_ssl_certificate(der))
        assert(type(c) == "userdata")
        assert(c.subject.commonName == "lab.example")
        assert(c.subject.organizationName == "Lab Org")
        assert(c.subject.countryName == "US")
        assert(c.issuer.commonName == "lab.example" and c.issuer.countryName == "US")
        assert(c.sig_algorithm == "sha256WithRSAEncryption", c.sig_algorithm)
        local nb, na = c.validity.notBefore, c.validity.notAfter
        assert(nb.year == 2026 and nb.month == 11 and nb.day == 21 and nb.hour == 5 and
               nb.min == 55 and nb.sec == 28)
        assert(na.year == 2126 and na.month == 10 and na.day == 28)
        assert(nb.wday == nil and nb.yday == nil)
        assert(c.pem == pem_text)
        assert(c.pubkey.type == "rsa" and c.pubkey.bits == 2048)
        assert(c.pubkey.exponent:todec() == "65537")
        assert(c.pubkey.modulus:num_bits() == 2048)
        assert(c.pubkey.modulus:tohex():sub(1, 16) == "DE8D78FCF02DB8DC")
        assert(getmetatable(c.pubkey.modulus) == debug.getregistry().BIGNUM)
        assert(c.pubkey.ecdhparams == nil)
        -- fingerprints from `openssl x509 -fingerprint`
        assert(hex(c:digest("md5")) == "6a21f866cc7b178ef1525de75e256117")
        assert(hex(c:digest("sha1")) == "d6128797c4c490ffd3d37adc1fde7b982fb9e676")
        assert(#c:digest("SHA256") == 32)
        assert(c:digest("no-such-digest") == nil)
        -- extensions, in certificate order, as nmap 7.93 reports them for this cert
        local e = c.extensions
        assert(#e == 4)
        assert(e[1].name == "X509v3 Subject Key Identifier" and
               e[1].value == "B1:1F:B0:2C:88:E7:F2:A1:3E:1B:15:5A:4A:FE:00:10:EC:78:A1:D0")
        assert(e[3].name == "X509v3 Basic Constraints" and e[3].value == "CA:TRUE" and e[3].critical == true)
        assert(e[4].name == "X509v3 Subject Alternative Name" and
               e[4].value == "DNS:lab.example, IP Address:127.0.0.1" and e[4].critical == nil)
        assert(c.no_such_field == nil)
    )lua") == "");
}

TEST_CASE("certificate: EC certificate fields") {
    CertLua lua;
    lua.set_string("der", to_der(from_pem(kEcPem).get()));
    CHECK(lua.run(R"lua(
        local c = assert(parse_ssl_certificate(der))
        assert(c.pubkey.type == "ec" and c.pubkey.bits == 256)
        local cp = c.pubkey.ecdhparams.curve_params
        assert(cp.curve == "prime256v1" and cp.ec_curve_type == "namedcurve")
        assert(c.pubkey.modulus == nil)
        assert(c.sig_algorithm == "ecdsa-with-SHA256", c.sig_algorithm)
        assert(hex(c:digest("sha1")) == "4899d14a9c8cabc9496b0decd2c0809876554d3d")
    )lua") == "");
}

TEST_CASE("certificate: unknown OIDs and unprintable extensions") {
    CertLua lua;
    X509Ptr cert = odd_cert(false);
    lua.set_string("der", to_der(cert.get()));
    CHECK(lua.run(R"lua(
        local c = assert(parse_ssl_certificate(der))
        assert(c.subject.commonName == "odd.example")
        local found
        for k, v in pairs(c.subject) do
            if type(k) == "table" then
                assert(table.concat(k, ".") == "1.2.3.4.5" and #k == 5 and k[1] == "1")
                found = v
            end
        end
        assert(found == "oddvalue")
        local e = c.extensions[1]
        assert(e.name == "1.2.3.4" and e.critical == true and e.error == true and e.value == nil)
        assert(c.validity.notAfter.year >= 2024)
    )lua") == "");
}

TEST_CASE("certificate: push_certificate takes its own reference; failures reported") {
    nse::test::LuaHarness lua;
    lua_State* L = lua.L;
    {
        X509Ptr cert = from_pem(kRsaPem);
        CHECK(nse::lib::push_certificate(L, cert.get()) == 1);
        CHECK(lua_type(L, -1) == LUA_TUSERDATA);
        lua_setglobal(L, "c");
    }  // our reference is gone; the object must still work
    CHECK(lua.run("assert(c.subject.commonName == 'lab.example' and #c:digest('sha1') == 20)"
                  " c = nil collectgarbage() collectgarbage()") == "");

    X509Ptr bad = odd_cert(true);
    const int top = lua_gettop(L);
    CHECK(nse::lib::push_certificate(L, bad.get()) == 2);
    CHECK(lua_gettop(L) == top + 2);
    CHECK(lua_isnil(L, -2));
    CHECK(std::string(lua_tostring(L, -1)).rfind("Error parsing cert: ", 0) == 0);
    lua_settop(L, top);

    // the same through DER and the Lua function
    std::string der = to_der(bad.get());
    lua_pushcfunction(L, nse::lib::parse_ssl_certificate);
    lua_pushlstring(L, der.data(), der.size());
    CHECK(lua_pcall(L, 1, 2, 0) == LUA_OK);
    CHECK(lua_isnil(L, -2));
    CHECK(std::string(lua_tostring(L, -1)).rfind("Error parsing cert: ", 0) == 0);
}

TEST_CASE("certificate: undecodable DER gives nil; wrong argument type raises") {
    CertLua lua;
    CHECK(lua.run(R"lua(
        assert(select("#", parse_ssl_certificate("not a certificate")) == 1)
        assert(parse_ssl_certificate("") == nil)
        local ok, e = pcall(parse_ssl_certificate, {})
        assert(not ok and e:find("bad argument #1", 1, true), e)
    )lua") == "");
}

// The stock ssl-cert.nse output code over our object, with a stand-in nmap module and
// sslcert.getCertificate returning our parse. Expected text is what nmap 7.93 printed at -vv
// for this certificate served by `openssl s_server` on 127.0.0.1.
TEST_CASE("certificate: stock ssl-cert.nse renders our object like nmap 7.93") {
    if (!nse::test::have_stock_file("/usr/share/nmap/scripts/ssl-cert.nse")) return;
    CertLua lua;
    lua.preload("openssl", nse::lib::luaopen_openssl);
    lua.set_string("der", to_der(from_pem(kRsaPem).get()));
    lua.set_string("pem_text", kRsaPem);
    CHECK(lua.run(nse::test::nmap_stub("{}", 2)) == "");
    CHECK(lua.run(R"lua(
        local cert = assert(parse_ssl_certificate(der))
        package.loaded.sslcert = {
            getCertificate = function() return true, cert end,
            isPortSupported = function() return false end,
            getPrepareTLSWithoutReconnect = function() return nil end,
        }
        local env = setmetatable({}, {__index = _G})
        assert(loadfile("/usr/share/nmap/scripts/ssl-cert.nse", "t", env))()
        local tab, str = env.action({ip = "127.0.0.1"},
                                    {number = 443, protocol = "tcp", service = "https", version = {}})
        local want = table.concat({
            "Subject: commonName=lab.example/organizationName=Lab Org/countryName=US",
            "Subject Alternative Name: DNS:lab.example, IP Address:127.0.0.1",
            "Issuer: commonName=lab.example/organizationName=Lab Org/countryName=US",
            "Public Key type: rsa",
            "Public Key bits: 2048",
            "Signature Algorithm: sha256WithRSAEncryption",
            "Not valid before: 2026-11-21T05:55:28",
            "Not valid after:  2126-10-28T05:55:28",
            "MD5:   6a21f866cc7b178ef1525de75e256117",
            "SHA-1: d6128797c4c490ffd3d37adc1fde7b982fb9e676",
        }, "\n") .. "\n" .. pem_text
        assert(str == want, str)
        assert(tab.pubkey.exponent == "65537")
        assert(tab.pubkey.modulus:sub(1, 16) == "DE8D78FCF02DB8DC")
        assert(tab.validity.notAfter == "2126-10-28T05:55:28")
        assert(tab.sha1 == "d6128797c4c490ffd3d37adc1fde7b982fb9e676")
        assert(#tab.extensions == 4)
    )lua") == "");
}
