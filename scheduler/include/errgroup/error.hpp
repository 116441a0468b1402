// errgroup/error.hpp
//
// errgroup::error is the reason a task failed: one exception, held as a value
// rather than thrown. It is Go's `error` for C++: empty means success, and
// tasks may return it, return a std::error_code, return a std::exception_ptr,
// or simply throw.
//
// Example:
//   errgroup::error e = errgroup::make_error<std::runtime_error>("disk full");
//   if (e) std::puts(e.message().c_str());           // "disk full"
//   if (e.is<std::runtime_error>()) e.throw_if();    // rethrows the same
//   object
//
// Comparison is identity: two errors are equal when they hold the same
// exception object. A sentinel made once compares equal to itself wherever it
// travels, across threads and groups.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace errgroup {

// cancelled_error is the error of a context that was cancelled (Go's
// context.Canceled). Its message is "context canceled".
struct cancelled_error : std::exception {
  const char* what() const noexcept override { return "context canceled"; }
};

// deadline_exceeded_error is the error of a context whose deadline passed
// (Go's context.DeadlineExceeded). Its message is "context deadline exceeded".
struct deadline_exceeded_error : std::exception {
  const char* what() const noexcept override {
    return "context deadline exceeded";
  }
};

class error {
 public:
  // error() holds nothing: bool(e) == false.
  error() noexcept = default;

  // error(p) holds the exception p points to; a null p gives no error.
  error(std::exception_ptr p) noexcept : p_(std::move(p)) {}  // NOLINT

  // error(ec) holds std::system_error(ec) when ec is non-zero; a zero ec
  // gives no error.
  error(std::error_code ec)  // NOLINT
      : p_(ec ? std::make_exception_ptr(std::system_error(ec))
              : std::exception_ptr()) {}

  // operator bool reports whether an error is held.
  explicit operator bool() const noexcept { return static_cast<bool>(p_); }

  // exception() returns the held exception (null when none).
  const std::exception_ptr& exception() const noexcept { return p_; }

  // as<E>() returns the held exception if it is an E or derives from E, else
  // nullptr. The pointer stays valid while any error holds the exception (on
  // a temporary error: until the end of the full expression).
  template <class E>
  const E* as() const noexcept {
    if (!p_) return nullptr;
    try {
      std::rethrow_exception(p_);
    } catch (const E& e) {
      return &e;
    } catch (...) {
      return nullptr;
    }
  }

  // is<E>() reports whether the held exception is an E (or derived).
  template <class E>
  bool is() const noexcept {
    return as<E>() != nullptr;
  }

  // message() returns what() of the held exception, "" when there is none
  // (or what() returns null), and "unknown exception (not derived from
  // std::exception)" for other thrown types.
  std::string message() const;

  // throw_if() rethrows the held exception, if any; otherwise returns.
  void throw_if() const {
    if (p_) std::rethrow_exception(p_);
  }

  // == is identity: true when both hold the same exception object, or both
  // hold nothing.
  friend bool operator==(const error& a, const error& b) noexcept {
    return a.p_ == b.p_;
  }

  // == with a std::error_code compares codes: true when the error holds a
  // std::system_error with that code, or when both are empty (ec == 0).
  friend bool operator==(const error& a, std::error_code ec) noexcept {
    if (!a.p_) return !ec;
    const auto* s = a.as<std::system_error>();
    return s != nullptr && s->code() == ec;
  }

 private:
  std::exception_ptr p_;
};

// make_error<E>(args...) returns an error holding a new E(args...).
template <class E, class... Args>
error make_error(Args&&... args) {
  return error(std::make_exception_ptr(E(std::forward<Args>(args)...)));
}

}  // namespace errgroup
