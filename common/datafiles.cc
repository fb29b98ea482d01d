#include "common/datafiles.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace common {

namespace fs = std::filesystem;

namespace {

bool is_dir(const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p, ec);
}

}  // namespace

DataFiles::DataFiles(const std::string& datadir) {
    std::vector<std::string> candidates;
    if (!datadir.empty()) candidates.push_back(datadir);
    for (const char* env : {"NSEFLEET_DATADIR", "NMAPDIR"})
        if (const char* v = std::getenv(env); v && *v) candidates.push_back(v);

    // The source tree when run from <root>/build/nsefleet, or the install prefix's share dir.
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        fs::path root = exe.parent_path().parent_path();
        if (is_dir(root / "scripts")) candidates.push_back(root.string());
        if (is_dir(root / "share" / "nsefleet"))
            candidates.push_back((root / "share" / "nsefleet").string());
    }
    candidates.push_back("/usr/share/nmap");

    std::vector<fs::path> seen;  // the same directory reached twice is searched once
    for (const auto& c : candidates) {
        if (!is_dir(c)) continue;
        fs::path canon = fs::weakly_canonical(c, ec);
        if (ec) canon = c;
        bool dup = false;
        for (const auto& s : seen)
            dup = dup || s == canon;
        if (dup) continue;
        seen.push_back(canon);
        dirs_.push_back(c);
    }
}

std::optional<std::string> DataFiles::find_file(const std::string& rel) const {
    // Absolute paths would escape the search list (path / "/abs" is "/abs").
    if (rel.empty() || rel.front() == '/') return std::nullopt;
    for (const auto& d : dirs_) {
        fs::path p = fs::path(d) / rel;
        std::error_code ec;
        if (fs::is_regular_file(p, ec) && ::access(p.c_str(), R_OK) == 0) return p.string();
    }
    return std::nullopt;
}

std::optional<std::string> DataFiles::find_dir(const std::string& rel) const {
    if (!rel.empty() && rel.front() == '/') return std::nullopt;
    for (const auto& d : dirs_) {
        fs::path p = rel.empty() ? fs::path(d) : fs::path(d) / rel;
        if (is_dir(p)) return p.string();
    }
    return std::nullopt;
}

std::optional<std::string> DataFiles::find_db(const std::string& rel,
                                              const std::string& override_path) const {
    if (override_path.empty()) return find_file(rel);
    if (access(override_path.c_str(), R_OK) != 0) return std::nullopt;
    return override_path;
}

}  // namespace common
