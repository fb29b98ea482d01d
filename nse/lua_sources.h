#pragma once
// The driver's Lua sources, compiled into the binary by tools/embed.py.
#include <cstddef>

namespace nse {

struct LuaSource {
    const char* name;  // file name without .lua ("driver", "selection", ...)
    const char* text;
    std::size_t size;
};

// Terminated by an entry whose name is nullptr.
extern const LuaSource kLuaSources[];

}  // namespace nse
