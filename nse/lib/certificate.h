#pragma once
// The SSL certificate object of docs/runtime-contract.md "SSL certificate object", as returned by
// socket:get_ssl_certificate() and nmap.socket.parse_ssl_certificate(der).
//
// The object is a userdata (metatable registered as "nse.ssl_certificate") that indexes like a
// table: subject, issuer, sig_algorithm, validity, pem, extensions (absent when the certificate
// has none), pubkey, and the method cert:digest(alg). All fields are computed once, when the
// object is made, and kept in a plain table stored as the userdata's user value. BIGNUMs in
// pubkey use the openssl module's "BIGNUM" metatable (nse/lib/openssl.h).
#include <openssl/x509.h>

#include <lua.hpp>

namespace nse::lib {

// Pushes a certificate object for `cert`. Takes its own reference (X509_up_ref): the caller
// keeps and frees its own. Returns the number of values pushed, so a binding can
// `return push_certificate(L, cert);`:
//   [-0, +1] the object, on success;
//   [-0, +2] nil and "Error parsing cert: <OpenSSL text>" when the public key cannot be
//            decoded (the only decoding failure that is reported rather than tolerated).
// Raises only on memory errors.
int push_certificate(lua_State* L, X509* cert);

// lua_CFunction for nmap.socket.parse_ssl_certificate(der): arg 1 must be a string (else
// raises the usual argument error); returns the object, nil when the DER does not decode, or
// nil plus a message as push_certificate does.
int parse_ssl_certificate(lua_State* L);

}  // namespace nse::lib
