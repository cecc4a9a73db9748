// The simulator's view of the wire contract (docs/protocol.md): the request payloads it sends and
// the records it reads back from replies and events. No MQTT here.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace navietakie::sim {

enum class Role : std::uint8_t { driver = 0, passenger = 1 };

const char* to_string(Role role);
inline Role other(Role role) { return role == Role::driver ? Role::passenger : Role::driver; }
inline std::size_t index_of(Role role) { return static_cast<std::size_t>(role); }

// A message record as stored, returned and broadcast.
struct MessageView {
  std::string booking_code;
  std::int64_t seq = 0;
  std::string message_id;
  std::string type;
  std::string sender;
  std::string text;  // empty when absent
  std::int64_t ts = 0;
};

// nullopt when a required field is missing or of the wrong type.
std::optional<MessageView> read_message(const nlohmann::json& record);
// Identifies a record's content: the same message read twice (event, redelivery, reply, history
// page) has the same fingerprint; two different messages almost surely do not.
std::uint64_t fingerprint(const MessageView& message);

struct CallView {
  std::string booking_code;
  std::string call_id;
  std::string from;
  std::string to;
  std::string state;       // ringing | connected | ended
  std::string end_reason;  // empty until ended
};

std::optional<CallView> read_call(const nlohmann::json& record);

std::uint64_t fnv1a(std::string_view bytes);

// A chat line of exactly `bytes` bytes of printable ASCII that starts with the message id (so a
// captured payload can be traced) and continues with filler drawn from `salt`.
std::string make_text(std::string_view message_id, std::size_t bytes, std::uint64_t salt);

// Request payloads. Every value the simulator puts in them is plain ASCII without quotes or
// backslashes (ids, roles, generated texts), so they are written directly.
std::string send_message_request(std::string_view message_id, Role sender, std::string_view text);
std::string get_message_request(int limit, std::optional<std::int64_t> before_seq);
// {"limit":limit,"after_seq":after_seq}: the oldest `limit` messages after a seq (catching up).
std::string get_message_after_request(int limit, std::int64_t after_seq);
std::string make_call_request(std::string_view action, std::string_view call_id, Role by);
std::string presence_request(Role role, bool online, std::string_view client_id);

}  // namespace navietakie::sim
