#include "core/topics.hpp"

#include "core/wire.hpp"

namespace navietakie {
namespace {

std::string event_leaf(std::string_view name) {
  std::string leaf(wire::kEventsLevel);
  leaf += '/';
  leaf += name;
  return leaf;
}
std::string event_leaf(wire::Event event) { return event_leaf(wire::event_name(event)); }

}  // namespace

const char* to_string(Action action) {
  // The names are literals, so the view is NUL-terminated.
  return wire::name_of(wire::kActions, action).data();
}

bool valid_booking_code(std::string_view code) { return wire::matches(wire::kBookingCode, code); }

std::optional<RequestTopic> Topics::parse_request(std::string_view topic) const {
  const std::string& head = bookings_level();
  if (topic.size() <= head.size() || topic.substr(0, head.size()) != head) return std::nullopt;
  std::string_view rest = topic.substr(head.size());
  auto slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view booking = rest.substr(0, slash);
  if (auto action = wire::parse(wire::kActions, rest.substr(slash + 1))) {
    return RequestTopic{std::string(booking), *action};
  }
  return std::nullopt;
}

std::optional<std::string> Topics::events_booking(std::string_view topic) const {
  const std::string& head = bookings_level();
  if (topic.size() <= head.size() || topic.substr(0, head.size()) != head) return std::nullopt;
  const std::string_view rest = topic.substr(head.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view booking = rest.substr(0, slash), leaf = rest.substr(slash + 1);
  const std::string_view events = wire::kEventsLevel;
  if (!valid_booking_code(booking) || leaf.substr(0, events.size()) != events) return std::nullopt;
  if (leaf.size() != events.size() && leaf[events.size()] != '/') return std::nullopt;
  return std::string(booking);
}

std::string Topics::request_filter(Action action) const { return bookings_level() + "+/" + to_string(action); }

Topics::Topics(std::string prefix) : prefix_(std::move(prefix)) {
  bookings_level_ = prefix_;
  bookings_level_ += '/';
  bookings_level_ += wire::kBookingsLevel;
  bookings_level_ += '/';
}

std::string Topics::booking_topic(const std::string& booking, std::string_view leaf) const {
  std::string topic;
  topic.reserve(bookings_level().size() + booking.size() + 1 + leaf.size());
  topic += bookings_level();
  topic += booking;
  topic += '/';
  topic += leaf;
  return topic;
}

std::string Topics::request(const std::string& booking, Action action) const {
  return booking_topic(booking, to_string(action));
}
std::string Topics::message_events(const std::string& booking) const {
  return booking_topic(booking, event_leaf(wire::Event::message));
}
std::string Topics::call_events(const std::string& booking) const {
  return booking_topic(booking, event_leaf(wire::Event::call));
}
std::string Topics::presence_events(const std::string& booking) const {
  return booking_topic(booking, event_leaf(wire::Event::presence));
}
std::string Topics::read_events(const std::string& booking) const {
  return booking_topic(booking, event_leaf(wire::Event::read));
}
std::string Topics::typing_events(const std::string& booking) const {
  return booking_topic(booking, event_leaf(wire::Event::typing));
}
std::string Topics::booking_state_events(const std::string& booking) const {
  return booking_topic(booking, event_leaf(wire::Event::booking));
}
std::string Topics::event_topic(const std::string& booking, std::string_view event) const {
  return booking_topic(booking, event_leaf(event));
}

std::string Topics::signal_events(const std::string& booking) const {
  return booking_topic(booking, event_leaf(wire::Event::signal));
}
std::string Topics::booking_events_filter(const std::string& booking) const {
  return booking_topic(booking, std::string(wire::kEventsLevel) + "/#");
}
std::string Topics::booking_errors(const std::string& booking) const {
  return booking_topic(booking, wire::kErrorsLevel);
}
std::string Topics::global_errors() const { return prefix_ + '/' + std::string(wire::kErrorsLevel); }
std::string Topics::replies(std::string_view client_id) const {
  return prefix_ + '/' + std::string(wire::kRepliesLevel) + '/' + std::string(client_id);
}
std::string Topics::bridge_metrics(std::string_view client_id) const {
  return prefix_ + '/' + std::string(wire::kMetricsLevel) + '/' + std::string(client_id);
}
std::string Topics::bridge_wake(std::string_view client_id) const {
  return prefix_ + '/' + std::string(wire::kBridgeLevel) + '/' + std::string(client_id) + '/' +
         std::string(wire::kWakeLeaf);
}

bool Topics::valid_topic_name(std::string_view topic) {
  if (topic.empty() || topic.size() > 65535) return false;
  for (char c : topic) {
    if (c == '+' || c == '#' || c == '\0') return false;
  }
  return topic.front() != '$';
}

bool Topics::system_topic(std::string_view topic) const {
  if (parse_request(topic)) return true;
  const std::string root = prefix_ + "/";
  if (topic.substr(0, root.size()) != root) return false;
  const std::string_view rest = topic.substr(root.size());
  const auto is_or_under = [](std::string_view t, std::string_view base) {
    return t == base || (t.size() > base.size() && t.substr(0, base.size()) == base && t[base.size()] == '/');
  };
  if (rest == "errors" || is_or_under(rest, "metrics")) return true;
  // bookings/{one level}/events[/...] and bookings/{one level}/errors
  constexpr std::string_view bookings = "bookings/";
  if (rest.substr(0, bookings.size()) != bookings) return false;
  const std::string_view in_booking = rest.substr(bookings.size());
  const std::size_t slash = in_booking.find('/');
  if (slash == std::string_view::npos) return false;
  const std::string_view leaf = in_booking.substr(slash + 1);
  return leaf == "errors" || is_or_under(leaf, "events");
}

}  // namespace navietakie
