// CURVE key files: generation, writing (0600 for secrets), loading and validation.
#include "common/transport/keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace common::transport {
namespace {

std::string errno_text() { return std::strerror(errno); }

// Writes `text` to `path` with `mode` through a temporary file and rename, so a reader
// never sees a half-written key and an existing file's wider mode is not inherited.
common::Status write_file(const std::string& path, const std::string& text, mode_t mode) {
    std::string tmp = path + ".tmp";
    ::unlink(tmp.c_str());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return common::Status::error("cannot create '" + tmp + "': " + errno_text());
    bool ok = ::fchmod(fd, mode) == 0;  // umask may have narrowed or the mode must be exact
    std::size_t done = 0;
    while (ok && done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            ok = false;
        else
            done += static_cast<std::size_t>(n);
    }
    ok = ok && ::fsync(fd) == 0;
    std::string err = ok ? "" : errno_text();
    ::close(fd);
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
        if (ok) err = errno_text();
        ::unlink(tmp.c_str());
        return common::Status::error("cannot write '" + path + "': " + err);
    }
    return common::Status::ok();
}

struct KeyFile {
    std::string public_key, secret_key;
};

// Parses `name = "value"` lines; unknown names are ignored (room for comments/metadata).
common::Result<KeyFile> parse(const std::string& path) {
    std::ifstream in(path);
    if (!in) return common::Status::error("cannot read key file '" + path + "': " + errno_text());
    KeyFile kf;
    std::string line;
    int lines = 0;
    while (std::getline(in, line) && ++lines <= 1000) {
        // Whole-line comments only: '#' and '=' are Z85 characters.
        auto first = line.find_first_not_of(" \t");
        if (first == std::string::npos || line[first] == '#') continue;
        auto eq = line.find('=');
        if (eq == std::string::npos) continue;
        auto trim = [](std::string s) {
            const char* ws = " \t\r\"";
            s.erase(0, s.find_first_not_of(ws));
            auto e = s.find_last_not_of(ws);
            s.erase(e == std::string::npos ? 0 : e + 1);
            return s;
        };
        std::string name = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
        if (name == "public-key")
            kf.public_key = value;
        else if (name == "secret-key")
            kf.secret_key = value;
    }
    if (kf.public_key.empty())
        return common::Status::error("key file '" + path + "' has no public-key");
    if (!valid_key(kf.public_key))
        return common::Status::error("key file '" + path + "' has a malformed public-key");
    return kf;
}

}  // namespace

bool valid_key(const std::string& z85) {
    if (z85.size() != 40) return false;
    std::uint8_t raw[32];
    return zmq_z85_decode(raw, z85.c_str()) != nullptr;
}

common::Result<KeyPair> generate_keypair() {
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0)
        return common::Status::error(std::string("cannot generate a CURVE key pair: ") +
                                     zmq_strerror(zmq_errno()));
    return KeyPair{pub, sec};
}

common::Status write_keypair(const std::string& prefix, const KeyPair& keys) {
    if (!valid_key(keys.public_key) || !valid_key(keys.secret_key))
        return common::Status::error("refusing to write a malformed key pair");
    std::string sec =
        "# nsefleet CURVE secret key: keep it private (mode 0600)\n"
        "public-key = \"" +
        keys.public_key +
        "\"\n"
        "secret-key = \"" +
        keys.secret_key + "\"\n";
    std::string pub =
        "# nsefleet CURVE public key\n"
        "public-key = \"" +
        keys.public_key + "\"\n";
    if (auto s = write_file(prefix + ".key", sec, 0600); !s) return s;
    return write_file(prefix + ".pub", pub, 0644);
}

common::Result<KeyPair> load_secret_key(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        return common::Status::error("cannot read key file '" + path + "': " + errno_text());
    if (st.st_mode & 077)
        return common::Status::error("secret key file '" + path +
                                     "' is accessible by group or others (chmod 600 it)");
    auto kf = parse(path);
    if (!kf) return kf.status();
    if (!valid_key(kf->secret_key))
        return common::Status::error("key file '" + path + "' has no valid secret-key");
    char derived[41];
    if (zmq_curve_public(derived, kf->secret_key.c_str()) != 0 || kf->public_key != derived)
        return common::Status::error("key file '" + path +
                                     "': public-key does not match secret-key");
    return KeyPair{kf->public_key, kf->secret_key};
}

common::Result<std::string> load_public_key(const std::string& path) {
    auto kf = parse(path);
    if (!kf) return kf.status();
    return kf->public_key;
}

common::Result<std::vector<std::string>> load_allowed_keys(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec)
        return common::Status::error("cannot read allow directory '" + dir + "': " + ec.message());
    std::vector<std::string> keys;
    for (const auto& e : it) {
        if (e.path().extension() != ".pub") continue;
        auto k = load_public_key(e.path().string());
        if (!k) return k.status();
        keys.push_back(*k);
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    return keys;
}

}  // namespace common::transport
