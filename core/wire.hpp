// The wire rules of docs/protocol.md, each written once, as data: topic levels, request actions,
// events, error codes and their precedence, limits, the character rules of booking codes and
// client keys, and the call state machine. The codec, topics, errors and calls read these tables;
// the web client reads them as web/public/wire.js (generated from them by navietakie-wire), and a
// unit test (tests/test_wire.cpp) checks that file and the protocol doc's tables against them, so
// a rule changed here cannot silently disagree elsewhere.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/calls.hpp"
#include "core/errors.hpp"
#include "core/topics.hpp"
#include "store/records.hpp"

namespace navietakie::wire {

// An enum value and its spelling on the wire.
template <typename E>
struct Named {
  E value;
  std::string_view name;
};

template <typename E, std::size_t N>
constexpr std::optional<E> parse(const std::array<Named<E>, N>& table, std::string_view name) {
  for (const auto& entry : table) {
    if (entry.name == name) return entry.value;
  }
  return std::nullopt;
}

template <typename E, std::size_t N>
constexpr std::string_view name_of(const std::array<Named<E>, N>& table, E value) {
  for (const auto& entry : table) {
    if (entry.value == value) return entry.name;
  }
  return "?";
}

// Whether each table lists its enum in declaration order, so that the enum value is the index.
template <typename E, std::size_t N>
constexpr bool in_enum_order(const std::array<Named<E>, N>& table, std::size_t first = 0) {
  for (std::size_t i = 0; i < N; ++i) {
    if (static_cast<std::size_t>(table[i].value) != first + i) return false;
  }
  return true;
}

// ---- Topics: `{prefix}/bookings/{code}/{action}`, `.../events/{event}`, `.../errors`,
// `{prefix}/errors`, replies under `{prefix}/replies/{client id}/`.

inline constexpr std::string_view kBookingsLevel = "bookings";
inline constexpr std::string_view kEventsLevel = "events";
inline constexpr std::string_view kErrorsLevel = "errors";
inline constexpr std::string_view kRepliesLevel = "replies";
// The bridge's own topics: `{prefix}/metrics/{bridge client id}` (its counters, retained) and
// `{prefix}/bridge/{bridge client id}/wake` (a Paho work-around; clients ignore it).
inline constexpr std::string_view kMetricsLevel = "metrics";
inline constexpr std::string_view kBridgeLevel = "bridge";
inline constexpr std::string_view kWakeLeaf = "wake";

inline constexpr std::array<Named<Action>, 8> kActions{{
    {Action::send_message, "send_message"},
    {Action::get_message, "get_message"},
    {Action::make_call, "make_call"},
    {Action::presence, "presence"},
    {Action::mark_read, "mark_read"},
    {Action::typing, "typing"},
    {Action::close, "close"},
    {Action::signal, "signal"},
}};

enum class Event { message, call, presence, read, typing, booking, signal };
struct EventRule {
  Event event;
  std::string_view name;  // the topic's last level, after `events/`
  bool retained;
};
inline constexpr std::array<EventRule, 7> kEvents{{
    {Event::message, "message", false},
    {Event::call, "call", false},
    {Event::presence, "presence", true},
    {Event::read, "read", true},
    {Event::typing, "typing", false},  // QoS 0: a hint, not worth a retransmission
    {Event::booking, "booking", true},
    {Event::signal, "signal", false},
}};
constexpr std::string_view event_name(Event event) {
  for (const auto& rule : kEvents) {
    if (rule.event == event) return rule.name;
  }
  return "?";
}

// ---- Errors, in ErrorCode order.

inline constexpr std::array<Named<ErrorCode>, 12> kErrorCodes{{
    {ErrorCode::invalid_json, "invalid_json"},
    {ErrorCode::invalid_request, "invalid_request"},
    {ErrorCode::payload_too_large, "payload_too_large"},
    {ErrorCode::invalid_booking_code, "invalid_booking_code"},
    {ErrorCode::forbidden, "forbidden"},
    {ErrorCode::not_found, "not_found"},
    {ErrorCode::invalid_state, "invalid_state"},
    {ErrorCode::busy, "busy"},
    {ErrorCode::booking_closed, "booking_closed"},
    {ErrorCode::rate_limited, "rate_limited"},
    {ErrorCode::unavailable, "unavailable"},
    {ErrorCode::internal, "internal"},
}};

// When a request breaks several rules, the error of the lowest rank is the one reported. Codes
// of equal rank exclude each other; codes not listed (storage, internal) are outside the order.
struct ErrorRank {
  ErrorCode code;
  int rank;
};
// booking_closed comes before the state of what a request names: a closed booking refuses a
// write whatever its call or message would have been.
inline constexpr std::array<ErrorRank, 9> kErrorPrecedence{{
    {ErrorCode::payload_too_large, 1},
    {ErrorCode::invalid_json, 2},
    {ErrorCode::invalid_booking_code, 3},
    {ErrorCode::invalid_request, 4},
    {ErrorCode::forbidden, 5},
    {ErrorCode::booking_closed, 6},
    {ErrorCode::not_found, 7},
    {ErrorCode::invalid_state, 8},
    {ErrorCode::busy, 8},
}};

// ---- Character rules, written as the inside of a regular-expression bracket (`a-z_`: ranges
// and single characters), so that the browser can use them as they are.

struct CharRule {
  std::string_view first;  // the first character
  std::string_view rest;   // every other character
  std::size_t min_length;
  std::size_t max_length;
};

// A booking code: 1 to 64 characters of A-Z a-z 0-9 _ -, starting with a letter or digit.
inline constexpr CharRule kBookingCode{"A-Za-z0-9", "A-Za-z0-9_-", 1, 64};
// message_id, call_id, client_id: 1 to 128 characters from 0x21 to 0x7E.
inline constexpr CharRule kClientKey{"!-~", "!-~", 1, 128};

constexpr bool in_bracket(std::string_view bracket, char c) {
  for (std::size_t i = 0; i < bracket.size(); ++i) {
    if (i + 2 < bracket.size() && bracket[i + 1] == '-') {
      if (c >= bracket[i] && c <= bracket[i + 2]) return true;
      i += 2;
    } else if (c == bracket[i]) {
      return true;
    }
  }
  return false;
}

constexpr bool matches(const CharRule& rule, std::string_view text) {
  if (text.size() < rule.min_length || text.size() > rule.max_length) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (!in_bracket(i == 0 ? rule.first : rule.rest, text[i])) return false;
  }
  return true;
}

// A bracket in words: "A-Za-z0-9_-" -> "A-Z a-z 0-9 _ -".
inline std::string bracket_words(std::string_view bracket) {
  std::string words;
  for (std::size_t i = 0; i < bracket.size(); ++i) {
    if (!words.empty()) words += ' ';
    const bool range = i + 2 < bracket.size() && bracket[i + 1] == '-';
    words.append(bracket.substr(i, range ? 3 : 1));
    if (range) i += 2;
  }
  return words;
}

// A character rule in words, for error messages.
inline std::string describe(const CharRule& rule) {
  std::string text = std::to_string(rule.min_length) + " to " + std::to_string(rule.max_length) + " characters of " +
                     bracket_words(rule.rest);
  if (rule.first != rule.rest) text += ", starting with one of " + bracket_words(rule.first);
  return text;
}

// ---- Limits that are not configuration (the configurable ones, max_text_bytes and
// max_payload_bytes, have their defaults in the config schema).

inline constexpr std::size_t kSenderIdMaxBytes = 128;
inline constexpr int kDataMaxDepth = 32;
inline constexpr std::size_t kHistoryLimitMin = 1;
inline constexpr std::size_t kHistoryLimitMax = 200;
inline constexpr std::size_t kHistoryLimitDefault = 50;
// typing: at most this many relayed per role and booking in any window of kTypingWindowMs.
inline constexpr std::size_t kTypingRelaysPerWindow = 2;
inline constexpr Millis kTypingWindowMs = 1000;
// WebRTC signalling (`signal`): an offer's or answer's SDP, and one ICE candidate (its compact JSON
// text when the client sends RTCIceCandidate.toJSON()'s object).
inline constexpr std::size_t kSignalSdpMaxBytes = 16 * 1024;
inline constexpr std::size_t kSignalCandidateMaxBytes = 1024;
// A bye's optional `reason` (e.g. `microphone`: the sender's microphone was refused), relayed so
// the other side can say why the audio stopped; short, free text.
inline constexpr std::size_t kSignalReasonMaxBytes = 64;

// ---- Records' enumerations.

inline constexpr std::array<Named<Role>, 3> kRoles{{
    {Role::driver, "driver"},
    {Role::passenger, "passenger"},
    {Role::system, "system"},
}};
// The parties of a booking (and of a call): the roles without `system`.
inline constexpr std::size_t kParties = 2;

inline constexpr std::array<Named<MessageType>, 3> kMessageTypes{{
    {MessageType::text, "text"},
    {MessageType::call, "call"},
    {MessageType::system, "system"},
}};

// What a `signal` request carries (WebRTC signalling between the parties of the current call).
enum class SignalKind { offer, answer, candidate, bye };
inline constexpr std::array<Named<SignalKind>, 4> kSignalKinds{{
    {SignalKind::offer, "offer"},
    {SignalKind::answer, "answer"},
    {SignalKind::candidate, "candidate"},
    {SignalKind::bye, "bye"},
}};

// ---- The call state machine.

inline constexpr std::array<Named<CallState>, 3> kCallStates{{
    {CallState::ringing, "ringing"},
    {CallState::connected, "connected"},
    {CallState::ended, "ended"},
}};

// EndReason::none is "not ended" (null on the wire), not a reason.
inline constexpr std::array<Named<EndReason>, 5> kEndReasons{{
    {EndReason::completed, "completed"},
    {EndReason::declined, "declined"},
    {EndReason::cancelled, "cancelled"},
    {EndReason::missed, "missed"},
    {EndReason::booking_closed, "booking_closed"},
}};

inline constexpr std::array<Named<CallAction>, 6> kCallActions{{
    {CallAction::start, "start"},
    {CallAction::accept, "accept"},
    {CallAction::decline, "decline"},
    {CallAction::cancel, "cancel"},
    {CallAction::end, "end"},
    {CallAction::get, "get"},
}};

// Who may take a transition: the call's `from`, its `to`, either of them, or nobody (the system:
// the ring timeout).
enum class CallParty { caller, callee, either, system };
inline constexpr std::array<Named<CallParty>, 4> kCallParties{{
    {CallParty::caller, "caller"},
    {CallParty::callee, "callee"},
    {CallParty::either, "either"},
    {CallParty::system, "system"},
}};

struct CallTransition {
  std::optional<CallState> from;     // nullopt: no call yet
  std::optional<CallAction> action;  // nullopt: the ring timeout
  CallParty by;
  CallState to;
  EndReason end_reason;
};

// Every state change a call can make; anything else is `invalid_state`. `get` changes nothing.
inline constexpr std::array<CallTransition, 6> kCallTransitions{{
    {std::nullopt, CallAction::start, CallParty::caller, CallState::ringing, EndReason::none},
    {CallState::ringing, CallAction::accept, CallParty::callee, CallState::connected, EndReason::none},
    {CallState::ringing, CallAction::decline, CallParty::callee, CallState::ended, EndReason::declined},
    {CallState::ringing, CallAction::cancel, CallParty::caller, CallState::ended, EndReason::cancelled},
    {CallState::ringing, std::nullopt, CallParty::system, CallState::ended, EndReason::missed},
    {CallState::connected, CallAction::end, CallParty::either, CallState::ended, EndReason::completed},
}};

// The transition `action` makes; nullptr for `get`.
constexpr const CallTransition* transition_for(CallAction action) {
  for (const auto& t : kCallTransitions) {
    if (t.action == action) return &t;
  }
  return nullptr;
}

// The transition of a ringing call nobody answered.
constexpr const CallTransition& ring_timeout() {
  for (const auto& t : kCallTransitions) {
    if (!t.action) return t;
  }
  return kCallTransitions[0];  // unreachable: the table has one
}

// Whether a call may go from `from` (nullopt: not yet known) to `to` in one step.
constexpr bool may_follow(std::optional<CallState> from, CallState to) {
  for (const auto& t : kCallTransitions) {
    if (t.from == from && t.to == to) return true;
  }
  return false;
}

// Active (ringing or connected): a state some transition leaves. One per booking at a time.
constexpr bool is_active(CallState state) {
  for (const auto& t : kCallTransitions) {
    if (t.from == state) return true;
  }
  return false;
}

// ---- A closed booking (docs/protocol.md, close): the requests it refuses with `booking_closed`,
// by action name (the topic's last level), and for make_call by call action (`start` only; the
// others keep their answers on a call already ended). Actions of other lanes are listed by name
// before their enum exists; a handler asks Engine::require_open, which reads this table.
struct ClosedRefusal {
  std::string_view action;
  std::optional<CallAction> call_action;  // nullopt: every request of the action
};
inline constexpr std::array<ClosedRefusal, 5> kClosedBookingRefuses{{
    {"send_message", std::nullopt},
    {"make_call", CallAction::start},
    {"signal", std::nullopt},
    {"typing", std::nullopt},
    {"mark_read", std::nullopt},
}};

constexpr bool refused_when_closed(std::string_view action, std::optional<CallAction> call_action = std::nullopt) {
  for (const auto& rule : kClosedBookingRefuses) {
    if (rule.action == action && (!rule.call_action || rule.call_action == call_action)) return true;
  }
  return false;
}

// The longest `reason` of a close request, in bytes (it is stored and retained).
inline constexpr std::size_t kCloseReasonMaxBytes = 256;

static_assert(in_enum_order(kErrorCodes) && kErrorCodes.size() == error_code_count);
static_assert(in_enum_order(kActions) && in_enum_order(kCallActions) && in_enum_order(kRoles) &&
              in_enum_order(kMessageTypes) && in_enum_order(kCallStates) && in_enum_order(kEndReasons, 1) &&
              in_enum_order(kSignalKinds));
// Ranks start at 1 and grow by at most one from row to row.
constexpr bool ranks_consecutive() {
  int rank = 0;
  for (const auto& entry : kErrorPrecedence) {
    if (entry.rank != rank && entry.rank != rank + 1) return false;
    rank = entry.rank;
  }
  return kErrorPrecedence[0].rank == 1;
}

static_assert(ranks_consecutive());
static_assert(ring_timeout().to == CallState::ended && !is_active(CallState::ended));

}  // namespace navietakie::wire
