#include "errgroup/error.hpp"

namespace errgroup {

std::string error::message() const {
  if (!p_) return {};
  try {
    std::rethrow_exception(p_);
  } catch (const std::exception& e) {
    const char* what = e.what();  // may be null in a careless exception
    return what != nullptr ? what : "";
  } catch (...) {
    return "unknown exception (not derived from std::exception)";
  }
}

}  // namespace errgroup
