#pragma once
// The data-file search shared by nselib's searcher, nmap.fetchfile and script lookup:
// --datadir, $NSEFLEET_DATADIR, $NMAPDIR, the project's scripts/ folder (beside the binary's
// source tree), then /usr/share/nmap. The current directory is never searched.
#include <optional>
#include <string>
#include <vector>

namespace common {

class DataFiles {
public:
    // `datadir` is --datadir (may be empty).
    explicit DataFiles(const std::string& datadir = "");
    // Full path of a readable regular file `rel` (may contain '/'), or nullopt. An absolute
    // `rel` is never found: only the search directories are looked in.
    std::optional<std::string> find_file(const std::string& rel) const;
    // Full path of a directory `rel` (absolute: nullopt; "" = the first directory), or nullopt.
    std::optional<std::string> find_dir(const std::string& rel) const;
    // nmap-services / nmap-service-probes, or the file --servicedb / --versiondb named
    // (`override_path`, when not empty and readable).
    std::optional<std::string> find_db(const std::string& rel,
                                       const std::string& override_path) const;
    // Directories searched, first wins.
    const std::vector<std::string>& dirs() const { return dirs_; }

private:
    std::vector<std::string> dirs_;
};

}  // namespace common
