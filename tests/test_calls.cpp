// The call state machine of PROTOCOL.md (make_call), as pure functions with a fixed clock:
// every allowed transition, every disallowed one, every wrong party.
#include <boost/test/unit_test.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/calls.hpp"
#include "core/errors.hpp"

using namespace navietakie;

namespace {

constexpr Millis kCreated = 1'764'160'000'000;
constexpr Millis kTimeout = 30'000;
constexpr Millis kConnected = kCreated + 4'000;
constexpr Millis kEnded = kConnected + 60'000;

const CallAction kTransitions[] = {CallAction::accept, CallAction::decline, CallAction::cancel, CallAction::end};
const CallState kStates[] = {CallState::ringing, CallState::connected, CallState::ended};

Call ringing(Role caller = Role::driver) { return start_call("BK123", "c-7f3a", caller, kCreated, kTimeout); }

Call connected(Role caller = Role::driver) {
  return apply_call_action(ringing(caller), CallAction::accept, caller == Role::driver ? Role::passenger : Role::driver,
                           kConnected);
}

Call ended_completed(Role caller = Role::driver) {
  return apply_call_action(connected(caller), CallAction::end, caller, kEnded);
}

Call in_state(CallState state, Role caller) {
  switch (state) {
    case CallState::ringing: return ringing(caller);
    case CallState::connected: return connected(caller);
    case CallState::ended: return ended_completed(caller);
  }
  return ringing(caller);
}

const char* name(CallState state) {
  switch (state) {
    case CallState::ringing: return "ringing";
    case CallState::connected: return "connected";
    case CallState::ended: return "ended";
  }
  return "?";
}

// The error code fn throws, or nullopt when it does not throw a ProtocolError.
std::optional<ErrorCode> error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ProtocolError& e) {
    return e.code();
  }
  return std::nullopt;
}

// Whether `by` is the party PROTOCOL.md allows to take `action` on a call from `caller`.
bool allowed_party(CallAction action, Role caller, Role by) {
  const Role callee = caller == Role::driver ? Role::passenger : Role::driver;
  switch (action) {
    case CallAction::accept:
    case CallAction::decline: return by == callee;
    case CallAction::cancel: return by == caller;
    case CallAction::end: return by == caller || by == callee;
    case CallAction::start:
    case CallAction::get: break;
  }
  return false;
}

// The state from which PROTOCOL.md's table allows `action`.
CallState allowed_state(CallAction action) {
  return action == CallAction::end ? CallState::connected : CallState::ringing;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(calls)

BOOST_AUTO_TEST_CASE(start_makes_a_ringing_call_to_the_other_party) {
  for (Role caller : {Role::driver, Role::passenger}) {
    const Call c = start_call("BK123", "c-1", caller, kCreated, kTimeout);
    BOOST_TEST(c.booking_code == "BK123");
    BOOST_TEST(c.call_id == "c-1");
    BOOST_CHECK(c.from == caller);
    BOOST_CHECK(c.to == (caller == Role::driver ? Role::passenger : Role::driver));
    BOOST_CHECK(c.state == CallState::ringing);
    BOOST_CHECK(c.end_reason == EndReason::none);
    BOOST_TEST(c.created_at == kCreated);
    BOOST_TEST(c.ring_deadline == kCreated + kTimeout);
    BOOST_TEST(!c.connected_at.has_value());
    BOOST_TEST(!c.ended_at.has_value());
    BOOST_TEST(c.duration_ms() == 0);
    BOOST_TEST(c.active());
  }
}

BOOST_AUTO_TEST_CASE(ringing_accept_by_callee_connects) {
  const Call before = ringing();
  const Call c = apply_call_action(before, CallAction::accept, Role::passenger, kConnected);
  BOOST_CHECK(c.state == CallState::connected);
  BOOST_CHECK(c.end_reason == EndReason::none);
  BOOST_CHECK(c.connected_at == std::optional<Millis>(kConnected));
  BOOST_TEST(!c.ended_at.has_value());
  BOOST_TEST(c.created_at == kCreated);
  BOOST_TEST(c.duration_ms() == 0);
  BOOST_TEST(c.active());
  BOOST_CHECK(c.from == Role::driver);
  BOOST_CHECK(c.to == Role::passenger);
  BOOST_TEST(c.call_id == before.call_id);
  // The input is a value: untouched.
  BOOST_CHECK(before.state == CallState::ringing);
}

BOOST_AUTO_TEST_CASE(ringing_decline_by_callee_ends_declined_never_connected) {
  const Call c = apply_call_action(ringing(), CallAction::decline, Role::passenger, kCreated + 2'000);
  BOOST_CHECK(c.state == CallState::ended);
  BOOST_CHECK(c.end_reason == EndReason::declined);
  BOOST_CHECK(c.ended_at == std::optional<Millis>(kCreated + 2'000));
  BOOST_TEST(!c.connected_at.has_value());
  BOOST_TEST(c.duration_ms() == 0);
  BOOST_TEST(!c.active());
}

BOOST_AUTO_TEST_CASE(ringing_cancel_by_caller_ends_cancelled_never_connected) {
  const Call c = apply_call_action(ringing(), CallAction::cancel, Role::driver, kCreated + 3'000);
  BOOST_CHECK(c.state == CallState::ended);
  BOOST_CHECK(c.end_reason == EndReason::cancelled);
  BOOST_CHECK(c.ended_at == std::optional<Millis>(kCreated + 3'000));
  BOOST_TEST(!c.connected_at.has_value());
  BOOST_TEST(c.duration_ms() == 0);
}

BOOST_AUTO_TEST_CASE(connected_end_by_either_party_completes_with_duration) {
  for (Role caller : {Role::driver, Role::passenger}) {
    for (Role by : {Role::driver, Role::passenger}) {
      const Call c = apply_call_action(connected(caller), CallAction::end, by, kEnded);
      BOOST_CHECK(c.state == CallState::ended);
      BOOST_CHECK(c.end_reason == EndReason::completed);
      BOOST_CHECK(c.connected_at == std::optional<Millis>(kConnected));
      BOOST_CHECK(c.ended_at == std::optional<Millis>(kEnded));
      BOOST_TEST(c.duration_ms() == kEnded - kConnected);
      BOOST_TEST(c.created_at == kCreated);
    }
  }
}

BOOST_AUTO_TEST_CASE(passenger_called_driver_roles_mirror) {
  const Call r = ringing(Role::passenger);
  BOOST_CHECK(r.from == Role::passenger);
  BOOST_CHECK(r.to == Role::driver);
  BOOST_CHECK(apply_call_action(r, CallAction::accept, Role::driver, kConnected).state == CallState::connected);
  BOOST_CHECK(apply_call_action(r, CallAction::decline, Role::driver, kConnected).end_reason == EndReason::declined);
  BOOST_CHECK(apply_call_action(r, CallAction::cancel, Role::passenger, kConnected).end_reason == EndReason::cancelled);
}

BOOST_AUTO_TEST_CASE(expire_ends_missed_at_the_ring_deadline) {
  const Call r = ringing();
  const Call c = expire_call(r);
  BOOST_CHECK(c.state == CallState::ended);
  BOOST_CHECK(c.end_reason == EndReason::missed);
  BOOST_CHECK(c.ended_at == std::optional<Millis>(kCreated + kTimeout));
  BOOST_CHECK(c.ended_at == std::optional<Millis>(r.ring_deadline));
  BOOST_TEST(!c.connected_at.has_value());
  BOOST_TEST(c.duration_ms() == 0);
  BOOST_TEST(c.created_at == kCreated);
  BOOST_TEST(c.call_id == r.call_id);
  BOOST_TEST(c.booking_code == r.booking_code);
}

// Every (state, action) pair outside the table, by the right party: invalid_state.
BOOST_AUTO_TEST_CASE(every_disallowed_transition_is_invalid_state) {
  int checked = 0;
  for (Role caller : {Role::driver, Role::passenger}) {
    for (CallState state : kStates) {
      for (CallAction action : kTransitions) {
        if (state == allowed_state(action)) continue;
        for (Role by : {Role::driver, Role::passenger}) {
          if (!allowed_party(action, caller, by)) continue;
          BOOST_TEST_CONTEXT("caller " << (caller == Role::driver ? "driver" : "passenger") << ", " << to_string(action)
                                       << " on " << name(state)) {
            const Call c = in_state(state, caller);
            auto code = error_of([&] { (void)apply_call_action(c, action, by, kEnded + 1'000); });
            BOOST_CHECK(code == std::optional<ErrorCode>(ErrorCode::invalid_state));
            ++checked;
          }
        }
      }
    }
  }
  // accept/decline/cancel on connected and ended (1 party each), end on ringing and ended (2 parties),
  // for 2 callers.
  BOOST_TEST(checked == 2 * (3 * 2 + 2 * 2));
}

// Every action by the wrong party fails with forbidden, in every state: forbidden precedes
// invalid_state.
BOOST_AUTO_TEST_CASE(every_wrong_party_is_forbidden_in_every_state) {
  int checked = 0;
  for (Role caller : {Role::driver, Role::passenger}) {
    for (CallState state : kStates) {
      for (CallAction action : kTransitions) {
        for (Role by : {Role::driver, Role::passenger, Role::system}) {
          if (allowed_party(action, caller, by)) continue;
          BOOST_TEST_CONTEXT("caller " << (caller == Role::driver ? "driver" : "passenger") << ", " << to_string(action)
                                       << " by " << static_cast<int>(by) << " on " << name(state)) {
            const Call c = in_state(state, caller);
            auto code = error_of([&] { (void)apply_call_action(c, action, by, kEnded + 1'000); });
            BOOST_CHECK(code == std::optional<ErrorCode>(ErrorCode::forbidden));
            ++checked;
          }
        }
      }
    }
  }
  // accept/decline/cancel: 2 wrong parties each (the other one and system), end: system only.
  BOOST_TEST(checked == 2 * 3 * (3 * 2 + 1));
}

BOOST_AUTO_TEST_CASE(every_ended_reason_is_final) {
  const Call ended_calls[] = {
      apply_call_action(ringing(), CallAction::decline, Role::passenger, kConnected),
      apply_call_action(ringing(), CallAction::cancel, Role::driver, kConnected),
      expire_call(ringing()),
      ended_completed(),
  };
  for (const Call& c : ended_calls) {
    BOOST_TEST_CONTEXT("end_reason " << static_cast<int>(c.end_reason)) {
      for (CallAction action : kTransitions) {
        for (Role by : {Role::driver, Role::passenger}) {
          if (!allowed_party(action, Role::driver, by)) continue;
          auto code = error_of([&] { (void)apply_call_action(c, action, by, kEnded); });
          BOOST_CHECK(code == std::optional<ErrorCode>(ErrorCode::invalid_state));
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(start_and_get_are_not_transitions) {
  for (CallAction action : {CallAction::start, CallAction::get}) {
    auto code = error_of([&] { (void)apply_call_action(ringing(), action, Role::driver, kEnded); });
    BOOST_CHECK(code.has_value());
  }
}

BOOST_AUTO_TEST_CASE(parse_call_action_round_trips_and_rejects_others) {
  const std::vector<std::pair<std::string, CallAction>> known = {
      {"start", CallAction::start},   {"accept", CallAction::accept}, {"decline", CallAction::decline},
      {"cancel", CallAction::cancel}, {"end", CallAction::end},       {"get", CallAction::get}};
  for (const auto& [text, action] : known) {
    BOOST_TEST_CONTEXT(text) {
      BOOST_CHECK(parse_call_action(text) == std::optional<CallAction>(action));
      BOOST_TEST(std::string(to_string(action)) == text);
    }
  }
  for (const char* bad : {"", "START", "Start", "start ", " end", "hangup", "ringing", "missed", "get\n"}) {
    BOOST_TEST_CONTEXT("'" << bad << "'") { BOOST_CHECK(!parse_call_action(bad).has_value()); }
  }
  BOOST_CHECK(!parse_call_action(std::string_view("end\0", 4)).has_value());
}

BOOST_AUTO_TEST_SUITE_END()
