// JSON on the wire: records out, requests in. Validation errors name the offending field.
// The engine's path is RapidJSON (core/json_body, core/json_writer): records written once as text,
// requests decoded without a DOM of nlohmann values. The nlohmann forms below serve the edge node,
// tools and tests, and go through the same code.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/calls.hpp"
#include "core/json_body.hpp"
#include "core/json_writer.hpp"
#include "core/printable_key.hpp"
#include "core/wire.hpp"
#include "store/records.hpp"

namespace navietakie {

// Insertion-ordered, so replies read as written: "ok" first, records in contract order.
using Json = nlohmann::ordered_json;

const char* to_string(MessageType type);
const char* to_string(Role role);
const char* to_string(CallState state);
const char* to_string(EndReason reason);

// Records as the contract writes them. A stored message's `data` is spliced as it was stored.
void write_json(JsonWriter& out, const Message& message);
void write_json(JsonWriter& out, const Call& call);
void write_json(JsonWriter& out, const Presence& presence);
void write_json(JsonWriter& out, const ReadReceipts& receipts);
std::string json_text(const Message& message);
std::string json_text(const Call& call);
std::string json_text(const Presence& presence);
std::string json_text(const ReadReceipts& receipts);
// The events/booking object: `{"booking_code","state":"open"|"closed","closed_at":null|ms,"reason"?}`
// (nullopt: open).
void write_json(JsonWriter& out, const std::string& booking_code, const std::optional<BookingState>& state);
std::string json_text(const std::string& booking_code, const std::optional<BookingState>& state);

Json to_json(const Message& message);
Json to_json(const Call& call);
Json to_json(const Presence& presence);
Json to_json(const ReadReceipts& receipts);

// Parses a payload: `invalid_json` if it is not JSON or not UTF-8 (the rules of RequestBody).
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

struct MarkReadRequest {
  Role role = Role::driver;
  std::uint64_t seq = 0;
};

struct TypingRequest {
  Role role = Role::driver;
  bool typing = false;
};

struct CloseRequest {
  std::optional<std::string> reason;
};

// A `signal` request: WebRTC signalling relayed between the parties of the booking's current call.
struct SignalRequest {
  std::string call_id;
  Role by = Role::driver;
  wire::SignalKind kind = wire::SignalKind::bye;
  std::optional<std::string> sdp;             // offer, answer (required there, refused elsewhere)
  std::optional<std::string> candidate_json;  // candidate: the candidate's compact JSON (a string or an object)
  std::optional<std::string> reason;          // bye: why (relayed as given)
};

// Each throws ProtocolError(invalid_request) naming the field. `body` is a JSON object.
SendMessageRequest decode_send_message(const RequestBody& body, std::size_t max_text_bytes);
HistoryQuery decode_get_message(const RequestBody& body);
MakeCallRequest decode_make_call(const RequestBody& body);
PresenceRequest decode_presence(const RequestBody& body);
MarkReadRequest decode_mark_read(const RequestBody& body);
TypingRequest decode_typing(const RequestBody& body);
CloseRequest decode_close(const RequestBody& body);
SignalRequest decode_signal(const RequestBody& body);
// The same for a body already in nlohmann form (the edge node edits requests before forwarding).
SendMessageRequest decode_send_message(const Json& body, std::size_t max_text_bytes);
HistoryQuery decode_get_message(const Json& body);
MakeCallRequest decode_make_call(const Json& body);
PresenceRequest decode_presence(const Json& body);
MarkReadRequest decode_mark_read(const Json& body);
TypingRequest decode_typing(const Json& body);
CloseRequest decode_close(const Json& body);
SignalRequest decode_signal(const Json& body);

}  // namespace navietakie
