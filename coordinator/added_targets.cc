#include "coordinator/added_targets.h"

#include <algorithm>
#include <cstdio>

#include "common/wire/codec.h"

namespace coordinator {

namespace wire = common::wire;

namespace {

constexpr const char* kPrefix = "added/";

std::string key_of(std::uint64_t index) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%016llx", kPrefix, static_cast<unsigned long long>(index));
    return buf;
}

}  // namespace

common::Status AddedTargets::restore() {
    common::Status bad = common::Status::ok();
    auto st = store_.for_each_record(kPrefix, [&](std::string_view key, std::string_view bytes) {
        auto rec = wire::decode_as<wire::AddTargets>(
            bytes, "state: added target '" + std::string(key) + "'");
        if (rec && (rec->targets.size() != 1 || !is_added(rec->targets[0].index)))
            rec = common::Status::error("state: added target '" + std::string(key) +
                                        "' is unreadable (bad index)");
        if (!rec) {
            bad = rec.status();
            return false;
        }
        auto& h = rec->targets[0];
        seen_.insert(h.address);
        count_ = std::max(count_, h.index - kBase + 1);
        pending_.push_back(std::move(h));
        return true;
    });
    if (!st) return st;
    return bad;
}

common::Result<AddedTargets::AddOutcome> AddedTargets::add(
    const std::vector<wire::LeaseHost>& targets) {
    AddOutcome out;
    for (const auto& t : targets) {
        if (t.address.empty() || t.address.size() > 64) continue;
        if (count_ >= kMax) {
            out.capped = true;
            break;
        }
        if (!seen_.insert(t.address).second) continue;
        wire::AddTargets rec;
        rec.targets.push_back(
            {kBase + count_++, t.address, t.ipv6, t.targetname.substr(0, 256), {}});
        if (auto s = store_.put_record(key_of(rec.targets[0].index), wire::encode(rec)); !s)
            return s;
        pending_.push_back(std::move(rec.targets[0]));
        ++out.fresh;
    }
    return out;
}

std::vector<wire::LeaseHost> AddedTargets::take(std::size_t n) {
    std::vector<wire::LeaseHost> out;
    while (!pending_.empty() && out.size() < n) {
        out.push_back(std::move(pending_.front()));
        pending_.pop_front();
    }
    return out;
}

const wire::LeaseHost* AddedTargets::find(std::uint64_t index) const {
    auto it =
        std::lower_bound(pending_.begin(), pending_.end(), index,
                         [](const wire::LeaseHost& h, std::uint64_t i) { return h.index < i; });
    return it != pending_.end() && it->index == index ? &*it : nullptr;
}

void AddedTargets::drop_below(std::uint64_t index) {
    std::erase_if(pending_, [&](const wire::LeaseHost& h) { return h.index < index; });
}

}  // namespace coordinator
