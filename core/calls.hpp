// The call state machine (PROTOCOL.md, make_call). Pure functions: no store, no clock.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "store/records.hpp"

namespace navietakie {

enum class CallAction { start, accept, decline, cancel, end, get };
std::optional<CallAction> parse_call_action(std::string_view name);
const char* to_string(CallAction action);

// A new ringing call from `caller` to the other party.
Call start_call(const std::string& booking, const std::string& call_id, Role caller, Millis now,
                Millis ring_timeout_ms);

// The call after `action` by `by` at `now`. Throws ProtocolError: `forbidden` when `by` is not the
// party allowed to take the action, `invalid_state` when the call's state does not allow it.
// Not for start or get.
Call apply_call_action(const Call& call, CallAction action, Role by, Millis now);

// A ringing call whose ring deadline passed: ended, missed, ended_at = the deadline.
Call expire_call(const Call& call);

// An active call of a booking being closed: ended at `now`, end_reason booking_closed.
Call close_call(const Call& call, Millis now);

}  // namespace navietakie
