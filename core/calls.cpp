#include "core/calls.hpp"

#include "core/codec.hpp"
#include "core/errors.hpp"
#include "core/wire.hpp"

namespace navietakie {
namespace {

Role other_party(Role role) { return role == Role::driver ? Role::passenger : Role::driver; }

bool may_act(wire::CallParty party, const Call& call, Role by) {
  switch (party) {
    case wire::CallParty::caller: return by == call.from;
    case wire::CallParty::callee: return by == call.to;
    case wire::CallParty::either: return by == call.from || by == call.to;
    case wire::CallParty::system: break;
  }
  return false;
}

// The party in words, for "only the ... may accept a call".
const char* party_words(wire::CallParty party) {
  switch (party) {
    case wire::CallParty::caller: return "caller";
    case wire::CallParty::callee: return "callee";
    case wire::CallParty::either: return "caller or the callee";
    case wire::CallParty::system: break;
  }
  return "system";
}

Call take(const Call& call, const wire::CallTransition& transition, Millis at) {
  Call next = call;
  next.state = transition.to;
  if (transition.to == CallState::connected) next.connected_at = at;
  if (transition.to == CallState::ended) {
    next.end_reason = transition.end_reason;
    next.ended_at = at;
  }
  return next;
}

}  // namespace

std::optional<CallAction> parse_call_action(std::string_view name) { return wire::parse(wire::kCallActions, name); }

const char* to_string(CallAction action) {
  // The names are literals, so the view is NUL-terminated.
  return wire::name_of(wire::kCallActions, action).data();
}

Call start_call(const std::string& booking, const std::string& call_id, Role caller, Millis now,
                Millis ring_timeout_ms) {
  Call call;
  call.booking_code = booking;
  call.call_id = call_id;
  call.from = caller;
  call.to = other_party(caller);
  call.state = wire::transition_for(CallAction::start)->to;
  call.created_at = now;
  call.ring_deadline = now + ring_timeout_ms;
  return call;
}

Call apply_call_action(const Call& call, CallAction action, Role by, Millis now) {
  const wire::CallTransition* transition = wire::transition_for(action);
  if (!transition || !transition->from) {
    throw ProtocolError(ErrorCode::internal, "apply_call_action: not a transition");
  }
  if (!may_act(transition->by, call, by)) {
    throw ProtocolError(ErrorCode::forbidden, std::string("only the ") + party_words(transition->by) + " may " +
                                                  to_string(action) + " a call");
  }
  if (call.state != *transition->from) {
    throw ProtocolError(ErrorCode::invalid_state,
                        std::string("cannot ") + to_string(action) + " a call that is " + to_string(call.state));
  }
  return take(call, *transition, now);
}

Call expire_call(const Call& call) { return take(call, wire::ring_timeout(), call.ring_deadline); }

Call close_call(const Call& call, Millis now) {
  // Not a row of the transition table: no party takes it, and it leaves either active state.
  const wire::CallTransition closing{call.state, std::nullopt, wire::CallParty::system, CallState::ended,
                                     EndReason::booking_closed};
  return take(call, closing, now);
}

}  // namespace navietakie
