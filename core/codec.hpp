// JSON on the wire: records out, requests in. Validation errors name the offending field.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/calls.hpp"
#include "core/printable_key.hpp"
#include "store/records.hpp"

namespace navietakie {

// Insertion-ordered, so replies read as written: "ok" first, records in contract order.
using Json = nlohmann::ordered_json;

const char* to_string(MessageType type);
const char* to_string(Role role);
const char* to_string(CallState state);
const char* to_string(EndReason reason);

Json to_json(const Message& message);
Json to_json(const Call& call);
Json to_json(const Presence& presence);

// Parses a payload: `invalid_json` if it is not JSON or not UTF-8.
Json parse_payload(std::string_view payload);

struct SendMessageRequest {
  std::optional<std::string> message_id;
  MessageType type = MessageType::text;
  Role sender = Role::driver;
  std::optional<std::string> sender_id;
  std::string text;
  std::string data_json = "{}";
};

struct MakeCallRequest {
  CallAction action = CallAction::get;
  std::optional<std::string> call_id;
  std::optional<Role> by;
};

struct PresenceRequest {
  Role role = Role::driver;
  bool online = false;
  std::optional<std::string> client_id;
};

// Each throws ProtocolError(invalid_request) naming the field. `body` is a JSON object.
SendMessageRequest decode_send_message(const Json& body, std::size_t max_text_bytes);
HistoryQuery decode_get_message(const Json& body);
MakeCallRequest decode_make_call(const Json& body);
PresenceRequest decode_presence(const Json& body);

}  // namespace navietakie
