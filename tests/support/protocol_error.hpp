// What a codec test expects a call to throw.
#pragma once

#include <functional>
#include <optional>

#include "core/errors.hpp"

namespace navietakie::testing {

// The ProtocolError fn throws, or nullopt.
inline std::optional<ProtocolError> error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ProtocolError& e) {
    return e;
  }
  return std::nullopt;
}

}  // namespace navietakie::testing
