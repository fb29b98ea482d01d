#include "worker/fleet/wire_fit.h"

#include <algorithm>

#include "common/wire/codec.h"

namespace worker::fleet {

namespace {

// Levels of a Value tree (a scalar is 1), stopping once past `limit`.
std::size_t depth(const common::Value& v, std::size_t limit) {
    if (!v.is_table()) return 1;
    std::size_t d = 1;
    for (const auto& e : v.table().entries) {
        d = std::max(d, 1 + depth(e.value, limit));
        if (d > limit) break;
    }
    return d;
}

std::size_t result_size(const common::ScriptResult& r) {
    // The text plus a rough size of the tree: enough to pick the biggest.
    std::size_t n = r.output.size();
    if (r.structured) {
        common::wire::SharedOp probe;
        probe.value = *r.structured;
        n += common::wire::encode(probe).size();
    }
    return n;
}

// Drops over-deep trees; returns notes.
void flatten_deep(std::vector<common::ScriptResult*>& all, const std::string& where,
                  std::vector<std::string>& notes) {
    for (auto* r : all) {
        if (r->structured && depth(*r->structured, max_tree_depth()) > max_tree_depth()) {
            r->structured.reset();
            notes.push_back(r->id + where + ": structured output nested deeper than " +
                            std::to_string(max_tree_depth()) + " levels; sent as text only");
        }
    }
}

// Replaces the largest result by an error until `fits()`.
template <class Fits>
void shrink(std::vector<common::ScriptResult*>& all, const std::string& where, Fits fits,
            std::size_t limit, std::vector<std::string>& notes) {
    while (!fits()) {
        common::ScriptResult* big = nullptr;
        std::size_t best = 0;
        for (auto* r : all) {
            std::size_t n = result_size(*r);
            if (n > best && r->output.rfind("ERROR: ", 0) != 0) {
                best = n;
                big = r;
            }
        }
        if (!big) return;  // nothing left to shrink: the caller's message is what it is
        big->output = "ERROR: Script result too large for the fleet wire (" + std::to_string(best) +
                      " bytes, a message carries at most " + std::to_string(limit) + ")";
        big->structured.reset();
        notes.push_back(big->id + where + ": result of " + std::to_string(best) +
                        " bytes is too large to send; reported as the script's error");
    }
}

}  // namespace

std::size_t max_tree_depth() { return common::wire::kMaxDepth - 20; }

std::vector<std::string> fit_host(common::HostResult& h, std::uint64_t group,
                                  std::size_t max_bytes) {
    std::vector<std::string> notes;
    std::vector<common::ScriptResult*> all;
    for (auto& p : h.ports)
        for (auto& s : p.scripts)
            all.push_back(&s);
    for (auto& s : h.hostscripts)
        all.push_back(&s);
    std::string where = " on " + h.address;
    flatten_deep(all, where, notes);
    auto fits = [&] {
        return common::wire::encode(common::wire::HostResult{group, h}).size() <= max_bytes;
    };
    shrink(all, where, fits, max_bytes, notes);
    return notes;
}

std::vector<std::string> fit_scripts(std::vector<common::ScriptResult>& scripts,
                                     std::size_t budget) {
    std::vector<std::string> notes;
    std::vector<common::ScriptResult*> all;
    for (auto& s : scripts)
        all.push_back(&s);
    flatten_deep(all, "", notes);
    auto fits = [&] {
        std::size_t n = 0;
        for (auto* r : all)
            n += result_size(*r) + 64;
        return n <= budget;
    };
    shrink(all, "", fits, budget, notes);
    return notes;
}

}  // namespace worker::fleet
