// The whole-payload limit (max_payload_bytes), checked first of all (error precedence rank 1) by
// every host that answers requests: the engine, and the edge node before it forwards.
#pragma once

#include <cstddef>
#include <string>

#include "core/errors.hpp"

namespace navietakie {

// Throws `payload_too_large` naming both sizes when `size` is over `limit`.
inline void check_payload_size(std::size_t size, std::size_t limit) {
  if (size > limit) {
    throw ProtocolError(ErrorCode::payload_too_large,
                        "payload of " + std::to_string(size) + " bytes is over the limit of " + std::to_string(limit));
  }
}

}  // namespace navietakie
