#include "common/wire/registry_parts.h"

#include <string>
#include <utility>

#include "common/wire/codec.h"

namespace common::wire {

namespace {

// Bytes an entry's key and framing add to its value's encoding (an upper bound).
std::size_t entry_overhead(const common::Entry& e) { return e.key.size() + 16; }

// What a message adds around one part (envelope, op or reply fields): an upper bound.
constexpr std::size_t kEnvelopeBytes = 64 * 1024;

common::Value table_of(common::Table t) {
    common::Value v;
    v.v = std::move(t);
    return v;
}

// Appends `delta`'s entries to `parts`, each part a table under `wrap` (the enclosing keys,
// outermost first) of at most `max_bytes`; `prefix` is what the wrapping costs.
class Splitter {
public:
    explicit Splitter(std::size_t max_bytes) : max_(max_bytes) {}

    common::Status split(const common::Table& t, std::size_t prefix) {
        for (const auto& e : t.entries) {
            std::size_t size = entry_overhead(e) + encode_value(e.value).size();
            if (prefix + size <= max_) {
                if (used_ + size > max_ - prefix) flush();
                current_.entries.push_back(e);
                used_ += size;
                continue;
            }
            if (!e.value.is_table()) {
                // A single value travels alone when it fits a message (a part of its own).
                if (prefix + size + kEnvelopeBytes <= kDefaultMaxMessageBytes) {
                    flush();
                    current_.entries.push_back(e);
                    flush();
                    continue;
                }
                return common::Status::error("a registry value of " + std::to_string(size) +
                                             " bytes is larger than one message");
            }
            // An appended table cut in parts would arrive as several items: it must fit.
            if (e.indexed && e.key.empty())
                return common::Status::error("an appended registry table of " +
                                             std::to_string(size) +
                                             " bytes is larger than one message part");
            // Too large whole: its entries go in parts of their own, each naming the table.
            flush();
            wrap_.push_back({e.indexed, e.key});
            // An empty part first: the table exists (over a scalar) even if it is empty.
            common::Table empty;
            parts_.push_back(wrapped(std::move(empty)));
            auto st = split(e.value.table(), prefix + entry_overhead(e));
            flush();
            wrap_.pop_back();
            if (!st) return st;
        }
        return common::Status::ok();
    }

    std::vector<common::Value> take() {
        flush();
        if (parts_.empty()) parts_.push_back(table_of({}));
        return std::move(parts_);
    }

private:
    common::Value wrapped(common::Table inner) const {
        common::Value v = table_of(std::move(inner));
        for (auto it = wrap_.rbegin(); it != wrap_.rend(); ++it) {
            common::Table outer;
            outer.entries.push_back(common::Entry{it->first, it->second, std::move(v)});
            v = table_of(std::move(outer));
        }
        return v;
    }
    void flush() {
        if (current_.entries.empty()) return;
        parts_.push_back(wrapped(std::move(current_)));
        current_ = {};
        used_ = 0;
    }

    std::size_t max_;
    std::vector<std::pair<bool, std::string>> wrap_;
    common::Table current_;
    std::size_t used_ = 0;
    std::vector<common::Value> parts_;
};

// Appends `part`'s entries to `whole`: a table cut across parts continues in the entry
// that `whole` ends with at each level (split_delta keeps a cut table's parts in a row).
void join_into(common::Table& whole, common::Table& part) {
    for (auto& e : part.entries) {
        if (!whole.entries.empty() && e.value.is_table() && !(e.indexed && e.key.empty())) {
            auto& last = whole.entries.back();
            if (last.indexed == e.indexed && last.key == e.key && last.value.is_table()) {
                join_into(last.value.table(), e.value.table());
                continue;
            }
        }
        whole.entries.push_back(std::move(e));
    }
}

}  // namespace

void join_snapshot_part(common::Value& whole, common::Value part) {
    if (!whole.is_table()) whole.v = common::Table{};
    if (part.is_table()) join_into(whole.table(), part.table());
}

common::Result<std::vector<common::Value>> split_delta(const common::Value& delta,
                                                       std::size_t max_bytes) {
    if (!delta.is_table()) return std::vector<common::Value>{delta};
    Splitter s(max_bytes);
    if (auto st = s.split(delta.table(), 0); !st) return st;
    return s.take();
}

}  // namespace common::wire
