#include "core/topics.hpp"

#include <array>

namespace navietakie {
namespace {

constexpr std::array<Action, 4> kActions{Action::send_message, Action::get_message, Action::make_call,
                                         Action::presence};

bool is_alnum(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

}  // namespace

const char* to_string(Action action) {
  switch (action) {
    case Action::send_message: return "send_message";
    case Action::get_message: return "get_message";
    case Action::make_call: return "make_call";
    case Action::presence: return "presence";
  }
  return "?";
}

bool valid_booking_code(std::string_view code) {
  if (code.empty() || code.size() > 64 || !is_alnum(code.front())) return false;
  for (char c : code) {
    if (!is_alnum(c) && c != '_' && c != '-') return false;
  }
  return true;
}

std::optional<RequestTopic> Topics::parse_request(std::string_view topic) const {
  const std::string head = prefix_ + "/bookings/";
  if (topic.size() <= head.size() || topic.substr(0, head.size()) != head) return std::nullopt;
  std::string_view rest = topic.substr(head.size());
  auto slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view booking = rest.substr(0, slash);
  std::string_view leaf = rest.substr(slash + 1);
  for (Action action : kActions) {
    if (leaf == to_string(action)) return RequestTopic{std::string(booking), action};
  }
  return std::nullopt;
}

std::string Topics::request_filter(Action action) const {
  return prefix_ + "/bookings/+/" + to_string(action);
}

std::string Topics::booking_topic(const std::string& booking, std::string_view leaf) const {
  std::string topic = prefix_;
  topic += "/bookings/";
  topic += booking;
  topic += '/';
  topic += leaf;
  return topic;
}

std::string Topics::request(const std::string& booking, Action action) const {
  return booking_topic(booking, to_string(action));
}
std::string Topics::message_events(const std::string& booking) const {
  return booking_topic(booking, "events/message");
}
std::string Topics::call_events(const std::string& booking) const {
  return booking_topic(booking, "events/call");
}
std::string Topics::presence_events(const std::string& booking) const {
  return booking_topic(booking, "events/presence");
}
std::string Topics::booking_errors(const std::string& booking) const {
  return booking_topic(booking, "errors");
}
std::string Topics::global_errors() const { return prefix_ + "/errors"; }

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
