#pragma once
// Status values for fallible calls at library boundaries.
#include <string>
#include <utility>
#include <variant>

namespace common {

class [[nodiscard]] Status {
public:
    static Status ok() { return Status(); }
    static Status error(std::string msg) { return Status(std::move(msg)); }
    bool is_ok() const { return !failed_; }
    explicit operator bool() const { return !failed_; }
    const std::string& message() const { return msg_; }

private:
    Status() = default;
    explicit Status(std::string m) : failed_(true), msg_(std::move(m)) {}
    bool failed_ = false;
    std::string msg_;
};

// A value or an error message.
template <typename T>
class [[nodiscard]] Result {
public:
    Result(T v) : v_(std::move(v)) {}
    Result(Status s) : v_(std::move(s)) {}
    bool is_ok() const { return std::holds_alternative<T>(v_); }
    explicit operator bool() const { return is_ok(); }
    T& value() { return std::get<T>(v_); }
    const T& value() const { return std::get<T>(v_); }
    T& operator*() { return value(); }
    T* operator->() { return &value(); }
    const std::string& message() const { return std::get<Status>(v_).message(); }
    Status status() const { return is_ok() ? Status::ok() : std::get<Status>(v_); }

private:
    std::variant<T, Status> v_;
};

}  // namespace common
