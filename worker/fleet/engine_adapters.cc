#include "worker/fleet/engine_adapters.h"

#include "common/clock.h"
#include "common/targets.h"

namespace worker::fleet {

double EngineEmbedder::now() { return common::epoch_now(); }

std::size_t EngineEmbedder::add_targets(const std::vector<std::string>& specs) {
    wire::AddTargets m;
    std::size_t n = 0;
    for (const auto& s : specs) {
        auto t = common::expand_targets({s}, {}, opts_.excludes, opts_.exclude_files, opts_.ipv6,
                                        1u << 16);
        if (!t) break;
        for (const auto& x : *t)
            m.targets.push_back({0, x.address, x.ipv6, x.targetname, {}});
        ++n;
    }
    if (!m.targets.empty()) send_(std::move(m));
    added_ += n;
    return n;
}

std::size_t EngineEmbedder::targets_added() {
    auto c = fleet_.target_counts();
    return c ? static_cast<std::size_t>(c->first) : added_.load();
}

std::size_t EngineEmbedder::targets_pending() {
    auto c = fleet_.target_counts();
    return c ? static_cast<std::size_t>(c->second) : 0;
}

}  // namespace worker::fleet
