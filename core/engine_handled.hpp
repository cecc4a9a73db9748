// The engine's record of one request while its batch is handled (engine.cpp and the handlers in
// their own files, core/engine_*.cpp): private to the engine, not part of its interface.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/engine.hpp"

namespace navietakie {

// A connection a client declared (presence with its MQTT client id), to remember once committed.
struct Engine::ConnectionChange {
  std::string client_id;
  std::string booking;
  std::string key;
  bool online = false;
};

// What one request produced, held until its batch commits.
// The answer is kept as JSON text written once (a record, or a history page's array) and spliced
// into the reply, which is written only if someone will receive it.
struct Engine::Handled {
  enum class Result { none, message, messages, call, presence, read, typing, booking, relayed };

  const std::string* topic = nullptr;  // the request's, set once it is handled (it outlives this)
  const char* action = "unknown";
  std::string booking;  // set once the booking code is valid
  std::chrono::steady_clock::time_point received;  // for the logged latency
  std::optional<std::string> reply_topic;
  std::optional<std::string> correlation_data;  // v5
  std::optional<std::string> correlation_id;    // 3.1.1, echoed in the payload: its JSON text
  bool ignored = false;                         // not a request topic
  bool log_quietly = false;                     // its failure is logged in aggregate (overloaded)
  RateLimiter::Verdict rate = RateLimiter::Verdict::admitted;  // refused: answered `rate_limited`
  std::optional<ProtocolError> error;
  std::optional<ProtocolError> refused_reply;  // `forbidden`, raised after the payload's own checks
  Result result = Result::none;
  std::string result_json;  // the record (or array of records) the reply carries
  // Or the result is the payload of events[*result_event]: the same bytes, not copied.
  std::optional<std::size_t> result_event;
  // A party's make_call reply also carries ICE servers (JSON text), with fresh TURN credentials.
  std::optional<std::string> ice_json;
  bool has_more = false;    // a history page's
  std::uint64_t last_seq = 0;
  std::string read_json;    // a history page's `read` object (both parties' horizons)
  bool relayed = false;     // typing: the hint went out
  bool typing_dropped = false;
  std::vector<Publish> events;
  std::vector<Deadline> arm;
  std::vector<Deadline> disarm;
  std::optional<ConnectionChange> connection;
  bool stored_message = false;
  bool duplicate = false;
  bool closed_booking = false;  // this request closed its booking

  // What was prepared for a change that is not stored: no event, no timer, nothing counted.
  void discard_effects() {
    events.clear();
    result_event.reset();
    arm.clear();
    disarm.clear();
    connection.reset();
    stored_message = duplicate = typing_dropped = closed_booking = false;
  }
};

// A driver or passenger acts only as its own role (`role`, the request's `field`), else `forbidden`;
// a service may act as either.
void check_own_role(const Identity& identity, Role role, const char* field);

}  // namespace navietakie
