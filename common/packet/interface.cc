#include "common/packet/interface.h"

#include <cstdio>
#include <fstream>

namespace packet {

namespace {

// The first word of /sys/class/net/<name>/<attr>; "" when unreadable. Names that could leave
// the directory are refused (no interface is called that).
std::string attr(const std::string& name, const char* what) {
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
        return "";
    std::ifstream f("/sys/class/net/" + name + "/" + what);
    std::string word;
    f >> word;
    return word;
}

// Decimal or 0x-prefixed hexadecimal (flags) number; `fallback` when absent or malformed.
long long number(const std::string& text, long long fallback) {
    if (text.empty()) return fallback;
    try {
        std::size_t used = 0;
        long long v = std::stoll(text, &used, 0);
        return used == text.size() ? v : fallback;
    } catch (const std::exception&) {
        return fallback;
    }
}

}  // namespace

unsigned interface_index(const std::string& name) {
    return static_cast<unsigned>(number(attr(name, "ifindex"), 0));
}

int interface_type(const std::string& name) {
    return static_cast<int>(number(attr(name, "type"), -1));
}

int interface_mtu(const std::string& name) {
    return static_cast<int>(number(attr(name, "mtu"), 0));
}

unsigned interface_flags(const std::string& name) {
    return static_cast<unsigned>(number(attr(name, "flags"), 0));
}

std::optional<Mac> interface_mac(const std::string& name) {
    std::string text = attr(name, "address");
    Mac mac{};
    unsigned v[6];
    int used = 0;
    if (text.size() != 17 ||
        std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%n", &v[0], &v[1], &v[2], &v[3], &v[4],
                    &v[5], &used) != 6 ||
        used != 17)
        return std::nullopt;
    for (int i = 0; i < 6; ++i)
        mac[i] = static_cast<std::uint8_t>(v[i]);
    return mac;
}

std::string mac_text(const std::uint8_t* m) {
    char b[18];
    std::snprintf(b, sizeof b, "%02X:%02X:%02X:%02X:%02X:%02X", m[0], m[1], m[2], m[3], m[4], m[5]);
    return b;
}

}  // namespace packet
