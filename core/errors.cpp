#include "core/errors.hpp"

namespace navietakie {

const char* to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_json: return "invalid_json";
    case ErrorCode::invalid_request: return "invalid_request";
    case ErrorCode::payload_too_large: return "payload_too_large";
    case ErrorCode::invalid_booking_code: return "invalid_booking_code";
    case ErrorCode::forbidden: return "forbidden";
    case ErrorCode::not_found: return "not_found";
    case ErrorCode::invalid_state: return "invalid_state";
    case ErrorCode::busy: return "busy";
    case ErrorCode::booking_closed: return "booking_closed";
    case ErrorCode::rate_limited: return "rate_limited";
    case ErrorCode::unavailable: return "unavailable";
    case ErrorCode::internal: return "internal";
  }
  return "internal";
}

}  // namespace navietakie
