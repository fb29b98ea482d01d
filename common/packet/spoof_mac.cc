#include "common/packet/spoof_mac.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>

namespace packet {
namespace {

std::string lower(std::string s) {
    for (char& c : s)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// The vendor of the OUI `oui` (6 upper-case hex digits) in the prefixes file, or "".
std::string vendor_of(const std::string& oui, const std::string& path) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);)
        if (line.size() > 7 && line[6] == ' ' && line.compare(0, 6, oui) == 0)
            return line.substr(7);
    return "";
}

}  // namespace

common::Result<SpoofMac> choose_spoof_mac(const std::string& spec,
                                          const std::string& prefixes_path) {
    std::random_device rd;
    SpoofMac out;
    for (auto& b : out.mac)
        b = static_cast<std::uint8_t>(rd());
    std::size_t given = 0;  // bytes taken from the value
    if (spec != "0") {
        std::string hex;
        bool is_hex = !spec.empty();
        for (std::size_t i = 0; i < spec.size() && is_hex; ++i) {
            char c = spec[i];
            if (std::isxdigit(static_cast<unsigned char>(c)))
                hex += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            else if ((c == ':' || c == '-') && i % 3 == 2)
                continue;
            else
                is_hex = false;
        }
        if (is_hex && hex.size() % 2 == 0 && hex.size() <= 12) {
            given = hex.size() / 2;
            for (std::size_t i = 0; i < given; ++i)
                out.mac[i] = static_cast<std::uint8_t>(
                    std::strtoul(hex.substr(2 * i, 2).c_str(), nullptr, 16));
        } else {
            // A vendor name: the first line of the prefixes file whose name contains it.
            std::ifstream in(prefixes_path);
            if (!in)
                return common::Status::error("--spoof-mac " + spec + ": cannot read " +
                                             prefixes_path + " to look the vendor up");
            std::string want = lower(spec);
            for (std::string line; std::getline(in, line) && given == 0;) {
                if (line.size() < 8 || line[0] == '#' || line[6] != ' ') continue;
                if (lower(line.substr(7)).find(want) == std::string::npos) continue;
                for (std::size_t i = 0; i < 3; ++i)
                    out.mac[i] = static_cast<std::uint8_t>(
                        std::strtoul(line.substr(2 * i, 2).c_str(), nullptr, 16));
                given = 3;
                out.vendor = line.substr(7);
            }
            if (given == 0)
                return common::Status::error(
                    "Could not parse as a prefix nor find as a vendor substring the given "
                    "--spoof-mac argument: " +
                    spec +
                    ".  If you are giving hex digits, there must be an even number of them.");
        }
    }
    if (given == 0) out.mac[0] &= 0xFE;  // a random first byte: never a multicast address
    char oui[8];
    std::snprintf(oui, sizeof oui, "%02X%02X%02X", out.mac[0], out.mac[1], out.mac[2]);
    if (out.vendor.empty()) out.vendor = vendor_of(oui, prefixes_path);
    if (out.vendor.empty()) out.vendor = "No registered vendor";
    return out;
}

}  // namespace packet
