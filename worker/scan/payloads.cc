#include "worker/scan/payloads.h"

#include <cctype>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

namespace worker {

std::map<std::uint16_t, std::string> load_udp_payloads(const std::string& path) {
    std::map<std::uint16_t, std::string> out;
    std::ifstream f(path);
    if (!f) return out;
    // Tokens: words and C-escaped quoted strings; '#' starts a comment outside strings.
    std::vector<std::pair<bool, std::string>> toks;  // (is_string, text)
    std::string line;
    while (std::getline(f, line)) {
        std::size_t i = 0;
        while (i < line.size()) {
            char c = line[i];
            if (c == '#') break;
            if (std::isspace(static_cast<unsigned char>(c))) {
                ++i;
                continue;
            }
            if (c == '"') {
                std::string s;
                for (++i; i < line.size() && line[i] != '"'; ++i) {
                    if (line[i] != '\\' || i + 1 >= line.size()) {
                        s += line[i];
                        continue;
                    }
                    char e = line[++i];
                    if (e == 'x' && i + 2 < line.size()) {
                        s += static_cast<char>(std::stoi(line.substr(i + 1, 2), nullptr, 16));
                        i += 2;
                    } else if (e == 'n')
                        s += '\n';
                    else if (e == 'r')
                        s += '\r';
                    else if (e == 't')
                        s += '\t';
                    else if (e == '0')
                        s += '\0';
                    else
                        s += e;
                }
                ++i;
                toks.emplace_back(true, s);
                continue;
            }
            std::size_t j = i;
            while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j])) &&
                   line[j] != '"' && line[j] != '#')
                ++j;
            toks.emplace_back(false, line.substr(i, j - i));
            i = j;
        }
    }
    for (std::size_t i = 0; i < toks.size(); ++i) {
        if (toks[i].first || toks[i].second != "udp" || i + 1 >= toks.size()) continue;
        std::string ports = toks[++i].second, payload;
        while (i + 1 < toks.size() && toks[i + 1].first)
            payload += toks[++i].second;
        std::stringstream ps(ports);
        std::string item;
        while (std::getline(ps, item, ',')) {
            auto dash = item.find('-');
            try {
                int lo = std::stoi(item.substr(0, dash));
                int hi = dash == std::string::npos ? lo : std::stoi(item.substr(dash + 1));
                for (int p = lo; p <= hi && p < 65536; ++p)
                    out.emplace(static_cast<std::uint16_t>(p), payload);  // first one wins
            } catch (const std::exception&) {
                // malformed port item: skip it
            }
        }
    }
    return out;
}

}  // namespace worker
