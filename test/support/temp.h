#pragma once
// Scratch files and directories for the unit tests, removed at scope exit (one copy for every
// test executable instead of one per test file).
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

namespace test_support {

// "<temp dir>/<prefix>-XXXXXX", the template mkdtemp/mkstemp fill in.
inline std::string temp_template(std::string_view prefix) {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    return (base / (std::string(prefix) + "-XXXXXX")).string();
}

// A fresh, empty directory, removed with everything in it at scope exit.
struct TempDir {
    std::string path;
    explicit TempDir(std::string_view prefix = "nsefleet-test") {
        std::string tmpl = temp_template(prefix);
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    // Full path of `rel` inside the directory.
    std::string operator/(std::string_view rel) const { return path + "/" + std::string(rel); }
    // Writes `content` to `rel` (parent directories created); returns its full path.
    std::string write(std::string_view rel, std::string_view content) const {
        std::string full = *this / rel;
        std::filesystem::create_directories(std::filesystem::path(full).parent_path());
        std::ofstream out(full, std::ios::binary);
        out << content;
        REQUIRE(out.good());
        return full;
    }
};

// A file holding `content`, removed at scope exit.
struct TempFile {
    std::string path;
    explicit TempFile(std::string_view content, std::string_view prefix = "nsefleet-test") {
        std::string tmpl = temp_template(prefix);
        int fd = ::mkstemp(tmpl.data());
        REQUIRE(fd >= 0);
        ::close(fd);
        path = tmpl;
        std::ofstream out(path, std::ios::binary);
        out << content;
        REQUIRE(out.good());
    }
    ~TempFile() {
        std::error_code ec;
        std::filesystem::remove(path, ec);
    }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
};

}  // namespace test_support
