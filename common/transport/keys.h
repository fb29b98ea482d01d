#pragma once
// CURVE key files for the fleet (`nsefleet keygen PREFIX`).
//   PREFIX.key  mode 0600, holds the secret and the public key (Z85, 40 characters each)
//   PREFIX.pub  holds the public key only; copy it to the coordinator's --allow directory
//               (workers) or to the workers' --server-key (coordinator).
// Format: text lines `public-key = "Z85"` / `secret-key = "Z85"`; a line starting with `#`
// is a comment (only at line start: `#` and `=` are Z85 characters).
#include <string>
#include <vector>

#include "common/status.h"

namespace common::transport {

struct KeyPair {
    std::string public_key;  // Z85, 40 characters
    std::string secret_key;  // Z85, 40 characters; empty for a public-only key
};

// A fresh CURVE key pair from libzmq. Fails when libzmq was built without CURVE.
common::Result<KeyPair> generate_keypair();

// Writes PREFIX.key (created 0600, replaced atomically) and PREFIX.pub (0644). Fails on an
// I/O error (the message names the file) or an invalid key.
common::Status write_keypair(const std::string& prefix, const KeyPair& keys);

// Reads a .key file. Fails when the file is unreadable, readable by group or others (like
// ssh, a leaked secret is refused rather than used), lacks either key, holds a malformed
// key, or its public key does not belong to its secret key.
common::Result<KeyPair> load_secret_key(const std::string& path);

// Reads the public key from a .pub file (or a .key file). Fails on a missing/malformed key.
common::Result<std::string> load_public_key(const std::string& path);

// Public keys of every `*.pub` file in `dir` (sorted, unique). Fails when the directory
// cannot be read or any .pub in it is malformed (a typo must not silently lock a worker out).
// An empty directory is not an error: the result is empty and nobody is admitted.
common::Result<std::vector<std::string>> load_allowed_keys(const std::string& dir);

// True when `z85` is 40 Z85 characters that decode to a 32-byte key.
bool valid_key(const std::string& z85);

}  // namespace common::transport
