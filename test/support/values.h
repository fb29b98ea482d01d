#pragma once
// Building common::Value trees in tests: str("x"), num(1), table({kv("k", v), at(3, v),
// item(v)}). `at` is an array item with its index as the key text (as registry_to_value
// makes it); `item` one without (a structured-output item, or a registry append).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/value.h"

namespace test_support {

inline common::Value str(std::string s) { return common::Value{std::move(s)}; }
inline common::Value num(std::int64_t n) { return common::Value{n}; }
inline common::Value flt(double d) { return common::Value{d}; }
inline common::Value table(std::vector<common::Entry> e) {
    return common::Value{common::Table{std::move(e)}};
}
inline common::Entry kv(std::string k, common::Value v) {
    return common::Entry{false, std::move(k), std::move(v)};
}
inline common::Entry at(std::int64_t i, common::Value v) {
    return common::Entry{true, std::to_string(i), std::move(v)};
}
inline common::Entry item(common::Value v) { return common::Entry{true, "", std::move(v)}; }

}  // namespace test_support
