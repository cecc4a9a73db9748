// The one error type of the protocol: a code from the contract plus a human message.
// The same code reaches the client, the log and the metrics.
#pragma once

#include <stdexcept>
#include <string>

namespace navietakie {

enum class ErrorCode {
  invalid_json,
  invalid_request,
  payload_too_large,
  invalid_booking_code,
  forbidden,
  not_found,
  invalid_state,
  busy,
  booking_closed,
  rate_limited,
  unavailable,
  internal,
};

const char* to_string(ErrorCode code);
constexpr std::size_t error_code_count = static_cast<std::size_t>(ErrorCode::internal) + 1;

class ProtocolError : public std::runtime_error {
 public:
  ProtocolError(ErrorCode code, const std::string& message, std::string call_id = {})
      : std::runtime_error(message), code_(code), call_id_(std::move(call_id)) {}
  ErrorCode code() const { return code_; }
  // Set for `busy`: the active call.
  const std::string& call_id() const { return call_id_; }

 private:
  ErrorCode code_;
  std::string call_id_;
};

}  // namespace navietakie
