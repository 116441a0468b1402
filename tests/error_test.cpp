// tests/error_test.cpp: errgroup::error and the two context errors
// (<errgroup/error.hpp>, docs/contract.md §1).
#include "errgroup/error.hpp"

#include <doctest/doctest.h>

#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

// A type that is not a std::exception, to throw and hold.
struct not_std {
  int code;
};

// A std::runtime_error one level further down, for as<>()/is<>() with bases.
struct derived_error : std::runtime_error {
  explicit derived_error(const std::string& what, int n)
      : std::runtime_error(what), number(n) {}
  int number;
};

// The address of the exception object that throw_if() throws.
template <class E>
const E* thrown_address(const errgroup::error& e) {
  try {
    e.throw_if();
  } catch (const E& x) {
    return &x;
  }
  return nullptr;
}

}  // namespace

TEST_SUITE("error") {
  TEST_CASE("a default-constructed error holds nothing") {
    const errgroup::error e;
    CHECK_FALSE(static_cast<bool>(e));
    CHECK(e.exception() == nullptr);
    CHECK(e.message().empty());
    CHECK(e.as<std::exception>() == nullptr);
    CHECK_FALSE(e.is<std::exception>());
    CHECK_NOTHROW(e.throw_if());
    CHECK(e == errgroup::error());
  }

  TEST_CASE("operator bool is explicit") {
    static_assert(std::is_constructible_v<bool, errgroup::error>);
    static_assert(!std::is_convertible_v<errgroup::error, bool>);
    CHECK(static_cast<bool>(errgroup::make_error<std::runtime_error>("x")));
  }

  TEST_CASE("an error built from an exception_ptr holds that exception") {
    SUBCASE("a non-null pointer") {
      const std::exception_ptr p =
          std::make_exception_ptr(std::logic_error("bad state"));
      const errgroup::error e(p);
      CHECK(static_cast<bool>(e));
      CHECK(e.exception() == p);
      CHECK(e.message() == "bad state");
      CHECK(e.is<std::logic_error>());
      CHECK(e == errgroup::error(p));
    }
    SUBCASE("a null pointer gives no error") {
      const errgroup::error e{std::exception_ptr()};
      CHECK_FALSE(static_cast<bool>(e));
      CHECK(e == errgroup::error());
    }
    SUBCASE("a pointer caught in a catch block") {
      std::exception_ptr p;
      try {
        throw std::out_of_range("index 7");
      } catch (...) {
        p = std::current_exception();
      }
      const errgroup::error e(p);
      CHECK(e.message() == "index 7");
      CHECK(e.is<std::out_of_range>());
      CHECK(e.is<std::logic_error>());
    }
  }

  TEST_CASE("an error built from an error_code holds a system_error") {
    SUBCASE("a zero code gives no error") {
      const errgroup::error e{std::error_code()};
      CHECK_FALSE(static_cast<bool>(e));
      CHECK(e.exception() == nullptr);
      CHECK(e.message().empty());
    }
    SUBCASE("a non-zero code is held as std::system_error with that code") {
      const std::error_code ec = std::make_error_code(std::errc::io_error);
      const errgroup::error e(ec);
      REQUIRE(static_cast<bool>(e));
      const auto* se = e.as<std::system_error>();
      REQUIRE(se != nullptr);
      CHECK(se->code() == ec);
      CHECK(e.message() == std::system_error(ec).what());
      CHECK(e.is<std::runtime_error>());
    }
    SUBCASE("a code of another category keeps its category") {
      const std::error_code ec(EACCES, std::system_category());
      const errgroup::error e(ec);  // as<>() points into e's exception
      const auto* se = e.as<std::system_error>();
      REQUIRE(se != nullptr);
      CHECK(se->code() == ec);
      CHECK(&se->code().category() == &std::system_category());
    }
  }

  TEST_CASE("make_error holds a new exception built from its arguments") {
    const errgroup::error e = errgroup::make_error<derived_error>("parse", 42);
    REQUIRE(static_cast<bool>(e));
    const auto* d = e.as<derived_error>();
    REQUIRE(d != nullptr);
    CHECK(d->number == 42);
    CHECK(e.message() == "parse");

    SUBCASE("each call makes a distinct object") {
      const errgroup::error other =
          errgroup::make_error<derived_error>("parse", 42);
      CHECK(e != other);
      CHECK(e.as<derived_error>() != other.as<derived_error>());
    }
  }

  TEST_CASE("exception() returns the held exception_ptr") {
    const std::exception_ptr p = std::make_exception_ptr(std::bad_alloc());
    const errgroup::error e(p);
    CHECK(e.exception() == p);
    CHECK(errgroup::error(e.exception()) == e);
  }

  TEST_CASE("as and is match the held type and its bases only") {
    const errgroup::error e = errgroup::make_error<derived_error>("deep", 1);
    CHECK(e.is<derived_error>());
    CHECK(e.is<std::runtime_error>());
    CHECK(e.is<std::exception>());
    CHECK_FALSE(e.is<std::logic_error>());
    CHECK_FALSE(e.is<std::system_error>());
    CHECK_FALSE(e.is<not_std>());
    CHECK(e.as<std::logic_error>() == nullptr);

    SUBCASE("every view is the same held object") {
      const derived_error* d = e.as<derived_error>();
      REQUIRE(d != nullptr);
      CHECK(static_cast<const std::runtime_error*>(d) ==
            e.as<std::runtime_error>());
      CHECK(static_cast<const std::exception*>(d) == e.as<std::exception>());
      CHECK(e.as<derived_error>() == d);
    }
    SUBCASE("a copy sees the same object") {
      const errgroup::error copy = e;  // NOLINT(performance-unnecessary-copy)
      CHECK(copy.as<derived_error>() == e.as<derived_error>());
    }
    SUBCASE("a base type does not match a derived request") {
      const errgroup::error base =
          errgroup::make_error<std::runtime_error>("base");
      CHECK(base.is<std::runtime_error>());
      CHECK_FALSE(base.is<derived_error>());
      CHECK(base.as<derived_error>() == nullptr);
    }
  }

  TEST_CASE("a non-std exception can be held and matched by its type") {
    const errgroup::error e(std::make_exception_ptr(not_std{7}));
    REQUIRE(static_cast<bool>(e));
    CHECK_FALSE(e.is<std::exception>());
    const not_std* n = e.as<not_std>();
    REQUIRE(n != nullptr);
    CHECK(n->code == 7);
    CHECK(errgroup::make_error<int>(5).as<int>() != nullptr);
    CHECK(*errgroup::make_error<int>(5).as<int>() == 5);
  }

  TEST_CASE("message is what() or a fixed text or empty") {
    SUBCASE("a std exception gives its what()") {
      CHECK(errgroup::make_error<std::runtime_error>("disk full").message() ==
            "disk full");
      CHECK(errgroup::make_error<std::bad_alloc>().message() ==
            std::bad_alloc().what());
    }
    SUBCASE("a non-std exception gives the fixed text") {
      const std::string expected =
          "unknown exception (not derived from std::exception)";
      CHECK(errgroup::error(std::make_exception_ptr(not_std{1})).message() ==
            expected);
      CHECK(errgroup::make_error<int>(3).message() == expected);
      CHECK(errgroup::make_error<std::string>("text").message() == expected);
    }
    SUBCASE("no error gives an empty string") {
      CHECK(errgroup::error().message() == std::string());
    }
  }

  TEST_CASE("throw_if rethrows the held object and does nothing when empty") {
    SUBCASE("a std exception") {
      const errgroup::error e = errgroup::make_error<derived_error>("t", 9);
      CHECK_THROWS_AS(e.throw_if(), derived_error);
      CHECK_THROWS_WITH(e.throw_if(), "t");
      CHECK(thrown_address<derived_error>(e) == e.as<derived_error>());
    }
    SUBCASE("a non-std exception") {
      const errgroup::error e(std::make_exception_ptr(not_std{4}));
      CHECK_THROWS_AS(e.throw_if(), not_std);
      CHECK(thrown_address<not_std>(e) == e.as<not_std>());
    }
    SUBCASE("an error_code") {
      const std::error_code ec = std::make_error_code(std::errc::timed_out);
      try {
        errgroup::error(ec).throw_if();
        FAIL("throw_if did not throw");
      } catch (const std::system_error& se) {
        CHECK(se.code() == ec);
      }
    }
    SUBCASE("empty") {
      CHECK_NOTHROW(errgroup::error().throw_if());
      CHECK_NOTHROW(errgroup::error(std::error_code()).throw_if());
    }
  }

  TEST_CASE("equality is identity of the held exception object") {
    const errgroup::error a = errgroup::make_error<std::runtime_error>("same");
    const errgroup::error b = errgroup::make_error<std::runtime_error>("same");
    const errgroup::error a_copy = a;  // NOLINT(performance-unnecessary-copy)
    errgroup::error a_moved = a;
    const errgroup::error a_target = std::move(a_moved);

    CHECK(a == a);
    CHECK(a == a_copy);
    CHECK(a == a_target);
    CHECK(a == errgroup::error(a.exception()));
    CHECK_FALSE(a != a_copy);
    CHECK(a != b);  // same type and message, different objects
    CHECK_FALSE(a == b);
    CHECK(a != errgroup::error());
    CHECK(errgroup::error() == errgroup::error());
    CHECK(errgroup::error() == errgroup::error(std::error_code()));

    SUBCASE("two errors from the same error_code are different objects") {
      const std::error_code ec = std::make_error_code(std::errc::io_error);
      CHECK(errgroup::error(ec) != errgroup::error(ec));
    }
    SUBCASE("an error rethrown and caught again is still the same object") {
      errgroup::error caught;
      try {
        a.throw_if();
      } catch (...) {
        caught = errgroup::error(std::current_exception());
      }
      CHECK(caught == a);
    }
  }

  TEST_CASE("a sentinel compares equal to itself after crossing threads") {
    static const errgroup::error sentinel =
        errgroup::make_error<std::runtime_error>("sentinel");
    const errgroup::error impostor =
        errgroup::make_error<std::runtime_error>("sentinel");
    for (int hops : {1, 2, 4, 8}) {
      CAPTURE(hops);
      // Each thread receives the error by value from the previous one and
      // hands a copy on; the last copy comes back to this thread.
      std::vector<errgroup::error> seen(static_cast<std::size_t>(hops));
      errgroup::error carried = sentinel;
      for (int i = 0; i < hops; ++i) {
        std::jthread hop([&seen, i, in = carried]() mutable {
          seen[static_cast<std::size_t>(i)] = std::move(in);
        });
        hop.join();
        carried = seen[static_cast<std::size_t>(i)];
      }
      CHECK(carried == sentinel);
      CHECK(carried != impostor);
      CHECK(carried.as<std::runtime_error>() ==
            sentinel.as<std::runtime_error>());
      for (const errgroup::error& e : seen) CHECK(e == sentinel);
    }
  }

  TEST_CASE("cancelled_error and deadline_exceeded_error") {
    static_assert(std::is_base_of_v<std::exception, errgroup::cancelled_error>);
    static_assert(
        std::is_base_of_v<std::exception, errgroup::deadline_exceeded_error>);
    static_assert(!std::is_base_of_v<errgroup::cancelled_error,
                                     errgroup::deadline_exceeded_error>);
    static_assert(!std::is_base_of_v<errgroup::deadline_exceeded_error,
                                     errgroup::cancelled_error>);

    CHECK(std::string(errgroup::cancelled_error().what()) ==
          "context canceled");
    CHECK(std::string(errgroup::deadline_exceeded_error().what()) ==
          "context deadline exceeded");

    const errgroup::error c = errgroup::make_error<errgroup::cancelled_error>();
    const errgroup::error d =
        errgroup::make_error<errgroup::deadline_exceeded_error>();
    CHECK(c.message() == "context canceled");
    CHECK(d.message() == "context deadline exceeded");
    CHECK(c.is<errgroup::cancelled_error>());
    CHECK_FALSE(c.is<errgroup::deadline_exceeded_error>());
    CHECK(d.is<errgroup::deadline_exceeded_error>());
    CHECK_FALSE(d.is<errgroup::cancelled_error>());
    CHECK(c.is<std::exception>());
    CHECK(d.is<std::exception>());
    CHECK_FALSE(c.is<std::runtime_error>());
  }
}  // TEST_SUITE("error")
