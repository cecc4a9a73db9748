#include "store/records.hpp"

#include <algorithm>
#include <tuple>

namespace navietakie {

bool HistoryQuery::matches(const Message& m) const {
  if (!types.empty() && std::find(types.begin(), types.end(), m.type) == types.end()) return false;
  if (sender && m.sender != *sender) return false;
  if (since && m.ts < *since) return false;
  if (until && m.ts > *until) return false;
  return true;
}

// Field-by-field equality (what `= default` would give in C++20). Keep in step with the structs.
bool Message::operator==(const Message& o) const {
  return std::tie(booking_code, seq, message_id, type, sender, sender_id, text, data_json, ts) ==
         std::tie(o.booking_code, o.seq, o.message_id, o.type, o.sender, o.sender_id, o.text, o.data_json, o.ts);
}

bool Call::operator==(const Call& o) const {
  return std::tie(booking_code, call_id, from, to, state, end_reason, created_at, connected_at, ended_at,
                  ring_deadline) == std::tie(o.booking_code, o.call_id, o.from, o.to, o.state, o.end_reason,
                                             o.created_at, o.connected_at, o.ended_at, o.ring_deadline);
}

bool Connection::operator==(const Connection& o) const {
  return std::tie(booking_code, client_id, role, online, since) ==
         std::tie(o.booking_code, o.client_id, o.role, o.online, o.since);
}

bool RolePresence::operator==(const RolePresence& o) const { return online == o.online && since == o.since; }

bool Presence::operator==(const Presence& o) const {
  return booking_code == o.booking_code && driver == o.driver && passenger == o.passenger;
}

bool RoleRead::operator==(const RoleRead& o) const { return seq == o.seq && at == o.at; }

bool ReadReceipts::operator==(const ReadReceipts& o) const {
  return booking_code == o.booking_code && driver == o.driver && passenger == o.passenger;
}

bool BookingState::operator==(const BookingState& o) const {
  return std::tie(booking_code, closed, closed_at, reason) == std::tie(o.booking_code, o.closed, o.closed_at, o.reason);
}

}  // namespace navietakie
