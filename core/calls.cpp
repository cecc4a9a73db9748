#include "core/calls.hpp"

#include "core/errors.hpp"

namespace navietakie {
namespace {

Role other_party(Role role) { return role == Role::driver ? Role::passenger : Role::driver; }

void require_party(bool allowed, CallAction action, const char* who) {
  if (!allowed) {
    throw ProtocolError(ErrorCode::forbidden,
                        std::string("only the ") + who + " may " + to_string(action) + " a call");
  }
}

void require_state(const Call& call, CallState state, CallAction action) {
  if (call.state != state) {
    static const char* names[] = {"ringing", "connected", "ended"};
    throw ProtocolError(ErrorCode::invalid_state,
                        std::string("cannot ") + to_string(action) + " a call that is " +
                            names[static_cast<int>(call.state)]);
  }
}

Call ended(Call call, EndReason reason, Millis at) {
  call.state = CallState::ended;
  call.end_reason = reason;
  call.ended_at = at;
  return call;
}

}  // namespace

std::optional<CallAction> parse_call_action(std::string_view name) {
  for (auto action : {CallAction::start, CallAction::accept, CallAction::decline, CallAction::cancel,
                      CallAction::end, CallAction::get}) {
    if (name == to_string(action)) return action;
  }
  return std::nullopt;
}

const char* to_string(CallAction action) {
  switch (action) {
    case CallAction::start: return "start";
    case CallAction::accept: return "accept";
    case CallAction::decline: return "decline";
    case CallAction::cancel: return "cancel";
    case CallAction::end: return "end";
    case CallAction::get: return "get";
  }
  return "?";
}

Call start_call(const std::string& booking, const std::string& call_id, Role caller, Millis now,
                Millis ring_timeout_ms) {
  Call call;
  call.booking_code = booking;
  call.call_id = call_id;
  call.from = caller;
  call.to = other_party(caller);
  call.state = CallState::ringing;
  call.created_at = now;
  call.ring_deadline = now + ring_timeout_ms;
  return call;
}

Call apply_call_action(const Call& call, CallAction action, Role by, Millis now) {
  switch (action) {
    case CallAction::accept:
      require_party(by == call.to, action, "callee");
      require_state(call, CallState::ringing, action);
      {
        Call next = call;
        next.state = CallState::connected;
        next.connected_at = now;
        return next;
      }
    case CallAction::decline:
      require_party(by == call.to, action, "callee");
      require_state(call, CallState::ringing, action);
      return ended(call, EndReason::declined, now);
    case CallAction::cancel:
      require_party(by == call.from, action, "caller");
      require_state(call, CallState::ringing, action);
      return ended(call, EndReason::cancelled, now);
    case CallAction::end:
      require_party(by == call.from || by == call.to, action, "caller or the callee");
      require_state(call, CallState::connected, action);
      return ended(call, EndReason::completed, now);
    case CallAction::start:
    case CallAction::get:
      break;
  }
  throw ProtocolError(ErrorCode::internal, "apply_call_action: not a transition");
}

Call expire_call(const Call& call) { return ended(call, EndReason::missed, call.ring_deadline); }

}  // namespace navietakie
