#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "common/datafiles.h"
#include "test/support/temp.h"

using common::DataFiles;
namespace fs = std::filesystem;

namespace {

// Sets (or unsets, for nullptr) an environment variable for one scope.
struct EnvGuard {
    std::string name;
    std::optional<std::string> old;
    EnvGuard(const char* n, const char* value) : name(n) {
        if (const char* v = std::getenv(n)) old = v;
        if (value)
            setenv(n, value, 1);
        else
            unsetenv(n);
    }
    ~EnvGuard() {
        if (old)
            setenv(name.c_str(), old->c_str(), 1);
        else
            unsetenv(name.c_str());
    }
};

// A scratch tree: <base>/{a,b,c} with a few files.
struct Tree {
    test_support::TempDir dir{"nsefleet-datafiles"};
    fs::path base = dir.path;
    Tree() {
        for (const char* d : {"a/scripts", "b/scripts", "c/nselib/data"})
            fs::create_directories(base / d);
        std::ofstream(base / "a/only-a.txt") << "a";
        std::ofstream(base / "a/both.txt") << "a";
        std::ofstream(base / "b/both.txt") << "b";
        std::ofstream(base / "b/scripts/x.nse") << "-- x";
        std::ofstream(base / "c/nselib/data/passwords.lst") << "root";
        fs::create_directories(base / "b/dir-not-file.txt");
    }
    std::string operator/(const char* rel) const { return (base / rel).string(); }
};

}  // namespace

TEST_CASE("search order: --datadir, NSEFLEET_DATADIR, NMAPDIR, ..., /usr/share/nmap") {
    Tree t;
    EnvGuard e1("NSEFLEET_DATADIR", (t / "b").c_str());
    EnvGuard e2("NMAPDIR", (t / "c").c_str());
    DataFiles df(t / "a");
    const auto& d = df.dirs();
    REQUIRE(d.size() >= 4);
    CHECK(d[0] == t / "a");
    CHECK(d[1] == t / "b");
    CHECK(d[2] == t / "c");
    CHECK(d.back() == "/usr/share/nmap");

    CHECK(df.find_file("both.txt") == t / "a/both.txt");
    CHECK(df.find_file("only-a.txt") == t / "a/only-a.txt");
    CHECK(df.find_file("scripts/x.nse") == t / "b/scripts/x.nse");
    CHECK(df.find_file("nselib/data/passwords.lst") == t / "c/nselib/data/passwords.lst");
    CHECK(df.find_file("nmap-services") == std::string("/usr/share/nmap/nmap-services"));
    CHECK_FALSE(df.find_file("no-such-file.txt"));
    CHECK_FALSE(df.find_file(""));
    CHECK_FALSE(df.find_file("/etc/hostname"));  // absolute paths are not searched
    // A directory is not a file: the search goes on (and here finds nothing).
    CHECK_FALSE(df.find_file("dir-not-file.txt"));
    CHECK(df.find_file("scripts") == std::nullopt);

    CHECK(df.find_dir("scripts") == t / "a/scripts");
    CHECK(df.find_dir("nselib/data") == t / "c/nselib/data");
    CHECK(df.find_dir("dir-not-file.txt") == t / "b/dir-not-file.txt");
    CHECK_FALSE(df.find_dir("both.txt"));
    CHECK_FALSE(df.find_dir("/tmp"));
}

TEST_CASE("missing and duplicate directories are dropped") {
    Tree t;
    EnvGuard e1("NSEFLEET_DATADIR", (t / "missing").c_str());
    EnvGuard e2("NMAPDIR", (t / "a").c_str());
    DataFiles df(t / "a");
    const auto& d = df.dirs();
    CHECK(d.front() == t / "a");
    CHECK(std::count(d.begin(), d.end(), t / "a") == 1);
    CHECK(std::find(d.begin(), d.end(), t / "missing") == d.end());
    CHECK(d.back() == "/usr/share/nmap");
}

TEST_CASE("defaults without --datadir or environment") {
    EnvGuard e1("NSEFLEET_DATADIR", nullptr);
    EnvGuard e2("NMAPDIR", nullptr);
    DataFiles df;
    REQUIRE_FALSE(df.dirs().empty());
    CHECK(df.dirs().back() == "/usr/share/nmap");
    for (const auto& dir : df.dirs())
        CHECK(fs::is_directory(dir));
    CHECK(df.find_dir("scripts").has_value());
    CHECK(df.find_dir("nselib").has_value());
    CHECK(df.find_file("nselib/stdnse.lua").has_value());
    // An empty environment variable counts as unset.
    EnvGuard e3("NMAPDIR", "");
    CHECK(DataFiles().dirs() == df.dirs());
}
