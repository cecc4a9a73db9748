// The records navietakie stores: messages, calls, connections, per-booking presence and read receipts.
// Plain domain structs; how they are laid out on disk lives in store/serialize.*.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace navietakie {

using Millis = std::int64_t;  // milliseconds since the Unix epoch

enum class MessageType : std::uint8_t { text = 0, call = 1, system = 2 };
enum class Role : std::uint8_t { driver = 0, passenger = 1, system = 2 };
enum class CallState : std::uint8_t { ringing = 0, connected = 1, ended = 2 };
enum class EndReason : std::uint8_t { none = 0, completed = 1, declined = 2, cancelled = 3, missed = 4, booking_closed = 5 };

struct Message {
  std::string booking_code;
  std::uint64_t seq = 0;
  std::string message_id;
  MessageType type = MessageType::text;
  Role sender = Role::driver;
  std::optional<std::string> sender_id;
  std::string text;              // empty for non-text messages that carry none
  std::string data_json = "{}";  // a JSON object, carried as-is
  Millis ts = 0;

  bool operator==(const Message& other) const;  // C++17: written out in records.cpp
  bool operator!=(const Message& other) const { return !(*this == other); }
};

struct Call {
  std::string booking_code;
  std::string call_id;
  Role from = Role::driver;
  Role to = Role::passenger;
  CallState state = CallState::ringing;
  EndReason end_reason = EndReason::none;
  Millis created_at = 0;
  std::optional<Millis> connected_at;
  std::optional<Millis> ended_at;
  Millis ring_deadline = 0;  // when a ringing call becomes missed

  bool active() const { return state != CallState::ended; }
  Millis duration_ms() const { return connected_at && ended_at ? *ended_at - *connected_at : 0; }
  bool operator==(const Call& other) const;  // C++17: written out in records.cpp
  bool operator!=(const Call& other) const { return !(*this == other); }
};

// One client's declared presence in one booking (the connections table).
struct Connection {
  std::string booking_code;
  std::string client_id;
  Role role = Role::driver;
  bool online = false;
  Millis since = 0;

  bool operator==(const Connection& other) const;  // C++17: written out in records.cpp
  bool operator!=(const Connection& other) const { return !(*this == other); }
};

struct RolePresence {
  bool online = false;
  std::optional<Millis> since;  // nullopt: this role was never seen

  bool operator==(const RolePresence& other) const;  // C++17: written out in records.cpp
  bool operator!=(const RolePresence& other) const { return !(*this == other); }
};

struct Presence {
  std::string booking_code;
  RolePresence driver;
  RolePresence passenger;

  bool operator==(const Presence& other) const;  // C++17: written out in records.cpp
  bool operator!=(const Presence& other) const { return !(*this == other); }
};

// One party's read horizon: it has read every message up to `seq` (0: none yet), since `at`.
struct RoleRead {
  std::uint64_t seq = 0;
  std::optional<Millis> at;  // nullopt: this role never marked anything read

  bool operator==(const RoleRead& other) const;  // C++17: written out in records.cpp
  bool operator!=(const RoleRead& other) const { return !(*this == other); }
};

// Both parties' read horizons in one booking (mark_read; retained on events/read).
struct ReadReceipts {
  std::string booking_code;
  RoleRead driver;
  RoleRead passenger;

  bool operator==(const ReadReceipts& other) const;  // C++17: written out in records.cpp
  bool operator!=(const ReadReceipts& other) const { return !(*this == other); }
};

// A booking's life (docs/protocol.md, close): stored once it is closed; no record is an open
// booking. closed_at orders the retention purge.
struct BookingState {
  std::string booking_code;
  bool closed = false;
  Millis closed_at = 0;
  std::optional<std::string> reason;

  bool operator==(const BookingState& other) const;  // C++17: written out in records.cpp
  bool operator!=(const BookingState& other) const { return !(*this == other); }
};

// A page of history, ascending by seq.
struct HistoryQuery {
  std::size_t limit = 50;
  std::optional<std::uint64_t> before_seq;
  std::optional<std::uint64_t> after_seq;
  std::vector<MessageType> types;  // empty: all types
  std::optional<Role> sender;
  std::optional<Millis> since;  // ts >= since
  std::optional<Millis> until;  // ts <= until

  bool matches(const Message& m) const;
};

struct HistoryPage {
  std::vector<Message> messages;
  bool has_more = false;
  std::uint64_t last_seq = 0;
};

}  // namespace navietakie
