// Placeholder until the dnet binding lands: creating a dnet object fails loudly.
#include "nse/lib/dnet.h"

namespace nse::lib {

int new_dnet(lua_State* L) {
    return luaL_error(L, "raw packet sending (nmap.new_dnet) is not supported by this build yet");
}

}  // namespace nse::lib
