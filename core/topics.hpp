// The topic layout of the wire contract, under a configurable prefix.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace navietakie {

enum class Action { send_message, get_message, make_call, presence, mark_read, typing, close, signal };
const char* to_string(Action action);

// 1 to 64 characters of A-Z a-z 0-9 _ -, starting with a letter or digit (wire::kBookingCode).
bool valid_booking_code(std::string_view code);

struct RequestTopic {
  std::string booking;  // as published: not yet validated
  Action action;
};

class Topics {
 public:
  explicit Topics(std::string prefix);

  // `{prefix}/bookings/{one level}/{action}`; nullopt for any other topic.
  std::optional<RequestTopic> parse_request(std::string_view topic) const;
  // The valid booking code of a topic or filter under `{prefix}/bookings/{code}/events`
  // (`.../events/#`, `.../events/message`, ...); nullopt for anything else.
  std::optional<std::string> events_booking(std::string_view topic) const;
  // The subscription filter for one action: `{prefix}/bookings/+/{action}`.
  std::string request_filter(Action action) const;

  std::string request(const std::string& booking, Action action) const;
  std::string message_events(const std::string& booking) const;
  std::string call_events(const std::string& booking) const;
  std::string presence_events(const std::string& booking) const;
  std::string read_events(const std::string& booking) const;
  std::string typing_events(const std::string& booking) const;
  std::string booking_state_events(const std::string& booking) const;
  // `{prefix}/bookings/{booking}/events/{event}`, any event by its name (wire::kEvents).
  std::string event_topic(const std::string& booking, std::string_view event) const;
  std::string signal_events(const std::string& booking) const;
  // Every event of one booking: `{prefix}/bookings/{booking}/events/#`.
  std::string booking_events_filter(const std::string& booking) const;
  std::string booking_errors(const std::string& booking) const;
  std::string global_errors() const;
  // A client's reply namespace, `{prefix}/replies/{client id}` (no trailing slash).
  std::string replies(std::string_view client_id) const;
  // The bridge's counters, `{prefix}/metrics/{client id}`, and its wake-up topic,
  // `{prefix}/bridge/{client id}/wake`.
  std::string bridge_metrics(std::string_view client_id) const;
  std::string bridge_wake(std::string_view client_id) const;

  // A topic name a reply could be published to: not empty, at most 65535 bytes, no wildcard or NUL,
  // not starting with '$' (the broker's own topics).
  static bool valid_topic_name(std::string_view topic);
  // A topic the system itself consumes or publishes: a request topic, a booking's `events` and
  // anything under it, a booking's `errors`, `{prefix}/errors`, `{prefix}/metrics` and anything
  // under it (any booking level, valid or not). A reply published there would loop back in as a
  // request or pass for the system's own output, so no reply ever goes there.
  bool system_topic(std::string_view topic) const;
  // A topic the system may publish a reply to, whoever asks: a valid topic name that is not a
  // system topic. Authentication narrows it further (the host's policy, EngineOptions).
  bool valid_reply_topic(std::string_view topic) const { return valid_topic_name(topic) && !system_topic(topic); }

 private:
  const std::string& bookings_level() const { return bookings_level_; }
  std::string booking_topic(const std::string& booking, std::string_view leaf) const;
  std::string prefix_;
  std::string bookings_level_;  // `{prefix}/bookings/`, made once: every request topic is matched against it
};

}  // namespace navietakie
