#include "edge/replica.hpp"

namespace navietakie {

std::optional<Message> message_from_json(const Json& j) {
  if (!j.is_object()) return std::nullopt;
  const auto string_at = [&](const char* key) -> const std::string* {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
  };
  const std::string *booking = string_at("booking_code"), *id = string_at("message_id"), *type = string_at("type"),
                    *sender = string_at("sender");
  auto seq = j.find("seq");
  auto ts = j.find("ts");
  if (!booking || !id || !type || !sender || seq == j.end() || !seq->is_number_unsigned() || ts == j.end() ||
      !ts->is_number_integer()) {
    return std::nullopt;
  }
  Message m;
  m.booking_code = *booking;
  m.message_id = *id;
  m.seq = seq->get<std::uint64_t>();
  m.ts = ts->get<Millis>();
  bool type_known = false, sender_known = false;
  for (MessageType t : {MessageType::text, MessageType::call, MessageType::system}) {
    if (*type == to_string(t)) m.type = t, type_known = true;
  }
  for (Role r : {Role::driver, Role::passenger, Role::system}) {
    if (*sender == to_string(r)) m.sender = r, sender_known = true;
  }
  if (!type_known || !sender_known || m.seq == 0) return std::nullopt;
  if (const std::string* sid = string_at("sender_id")) m.sender_id = *sid;
  if (const std::string* text = string_at("text")) m.text = *text;
  if (auto data = j.find("data"); data != j.end() && data->is_object()) m.data_json = data->dump();
  return m;
}

void ReplicaTracker::set_until(const std::string& booking, std::uint64_t last_seq) {
  bookings_[booking].until = last_seq;
}

std::uint64_t ReplicaTracker::until(const std::string& booking) const {
  auto it = bookings_.find(booking);
  return it == bookings_.end() ? 0 : it->second.until;
}

ReplicaTracker::Outcome ReplicaTracker::receive(const Message& message) {
  Outcome out;
  Booking& b = bookings_[message.booking_code];
  if (message.seq <= b.until) return out;  // already in the replica: a repeat
  if (message.seq > b.until + 1) {
    if (b.held.size() < kMaxHeld || b.held.count(message.seq)) b.held.emplace(message.seq, message);
    out.gap = true;
    return out;
  }
  out.append.push_back(message);
  std::uint64_t next = message.seq + 1;
  b.held.erase(b.held.begin(), b.held.upper_bound(message.seq));
  for (auto it = b.held.begin(); it != b.held.end() && it->first == next; it = b.held.erase(it), ++next) {
    out.append.push_back(it->second);
  }
  out.gap = !b.held.empty();  // still something past a hole
  return out;
}

void ReplicaTracker::applied(const std::string& booking, std::uint64_t seq) {
  Booking& b = bookings_[booking];
  if (seq > b.until) b.until = seq;
}

bool ReplicaTracker::catching_up(const std::string& booking) const {
  auto it = bookings_.find(booking);
  return it != bookings_.end() && it->second.catching_up;
}

void ReplicaTracker::set_catching_up(const std::string& booking, bool on) { bookings_[booking].catching_up = on; }

void ReplicaTracker::reset_catch_ups() {
  for (auto& [_, b] : bookings_) b.catching_up = false;
}

}  // namespace navietakie
