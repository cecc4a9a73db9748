#include "mcp/server.hpp"

#include <exception>
#include <utility>

namespace navietakie::mcp {
namespace {

// JSON-RPC 2.0 error codes (section 5.1).
constexpr int kParseError = -32700;
constexpr int kInvalidRequest = -32600;
constexpr int kMethodNotFound = -32601;
constexpr int kInvalidParams = -32602;
constexpr int kInternalError = -32603;

struct RpcError {
  int code;
  std::string message;
};

std::string reply_line(const Json& id, Json body, const char* key) {
  Json reply{{"jsonrpc", "2.0"}, {"id", id}};
  reply[key] = std::move(body);
  // dump() escapes control characters: the line holds no raw newline (stdio framing).
  return reply.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string error_line(const Json& id, const RpcError& error) {
  return reply_line(id, Json{{"code", error.code}, {"message", error.message}}, "error");
}

// The tools' schemas: the contract's request fields (PROTOCOL.md), booking_code added. navietakie
// validates every field itself and its error names the field, so the tools pass them through.
const char* const kToolsJson = R"json([
 {"name": "send_message",
  "title": "Send a chat message",
  "description": "Stores a message in a booking's chat and broadcasts it to the driver and passenger (durable before the reply). Returns the stored message with its seq; the same message_id sent again returns the first one with duplicate true.",
  "inputSchema": {"type": "object", "required": ["booking_code", "sender"], "additionalProperties": false,
   "properties": {
    "booking_code": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", "description": "the booking"},
    "sender": {"type": "string", "enum": ["driver", "passenger", "system"], "description": "who the message is from (system: a support or back-office note)"},
    "text": {"type": "string", "description": "the message text (required for type text; at most 4096 bytes)"},
    "type": {"type": "string", "enum": ["text", "call", "system"], "default": "text"},
    "sender_id": {"type": "string", "description": "the sender's own id, e.g. an agent's"},
    "message_id": {"type": "string", "description": "idempotency key, 1 to 128 printable ASCII; made by the system when absent"},
    "data": {"type": "object", "description": "any JSON object, carried as-is"}}}},
 {"name": "get_message",
  "title": "Read a booking's chat",
  "description": "Pages through a booking's messages, ascending by seq: the newest `limit` by default, before_seq to scroll back, after_seq to catch up. Filters (types, sender, since, until) apply before the limit.",
  "inputSchema": {"type": "object", "required": ["booking_code"], "additionalProperties": false,
   "properties": {
    "booking_code": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
    "before_seq": {"type": "integer", "minimum": 1},
    "after_seq": {"type": "integer", "minimum": 0},
    "types": {"type": "array", "items": {"type": "string", "enum": ["text", "call", "system"]}},
    "sender": {"type": "string", "enum": ["driver", "passenger", "system"]},
    "since": {"type": "integer", "description": "ts lower bound, ms since the Unix epoch, inclusive"},
    "until": {"type": "integer", "description": "ts upper bound, ms since the Unix epoch, inclusive"}}}},
 {"name": "make_call",
  "title": "Call signalling",
  "description": "Starts, accepts, declines, cancels or ends a call between driver and passenger, or gets a call's state. One active call per booking: start while one is active fails with busy.",
  "inputSchema": {"type": "object", "required": ["booking_code", "action"], "additionalProperties": false,
   "properties": {
    "booking_code": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
    "action": {"type": "string", "enum": ["start", "accept", "decline", "cancel", "end", "get"]},
    "call_id": {"type": "string", "description": "the call (every action but start)"},
    "by": {"type": "string", "enum": ["driver", "passenger"], "description": "who acts (optional for get)"}}}},
 {"name": "presence",
  "title": "Who of a booking is online",
  "description": "Without `online`: reads whether the driver and the passenger are online (the retained presence). With `role` and `online`: declares that role online or offline, as a participant's device does.",
  "inputSchema": {"type": "object", "required": ["booking_code"], "additionalProperties": false,
   "properties": {
    "booking_code": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
    "role": {"type": "string", "enum": ["driver", "passenger"]},
    "online": {"type": "boolean"},
    "client_id": {"type": "string"}}}}
])json";

Action tool_action(const std::string& name) {
  if (name == "send_message") return Action::send_message;
  if (name == "get_message") return Action::get_message;
  if (name == "make_call") return Action::make_call;
  if (name == "presence") return Action::presence;
  throw RpcError{kInvalidParams, "unknown tool '" + name + "'"};
}

Json tool_result(const Json& reply) {
  const bool ok = reply.is_object() && reply.value("ok", false);
  return Json{{"content", Json::array({Json{{"type", "text"}, {"text", reply.dump()}}})},
              {"structuredContent", reply},
              {"isError", !ok}};
}

Json tool_error(const std::string& text) {
  return Json{{"content", Json::array({Json{{"type", "text"}, {"text", text}}})}, {"isError", true}};
}

// The contract's presence of a booking no role of which was ever seen.
Json never_seen_presence(const std::string& booking) {
  const Json unseen{{"online", false}, {"since", nullptr}};
  return Json{{"booking_code", booking}, {"driver", unseen}, {"passenger", unseen}};
}

}  // namespace

Json tool_list() {
  static const Json tools = Json::parse(kToolsJson);
  return tools;
}

std::optional<std::string> Server::handle(std::string_view line) {
  Json message;
  try {
    message = Json::parse(line);
  } catch (const Json::parse_error& error) {
    return error_line(nullptr, {kParseError, std::string("parse error: ") + error.what()});
  }
  if (message.is_array()) return error_line(nullptr, {kInvalidRequest, "batches are not supported"});
  if (!message.is_object()) return error_line(nullptr, {kInvalidRequest, "a message is a JSON object"});

  const auto id_at = message.find("id");
  const bool has_id = id_at != message.end();
  const bool id_valid = has_id && (id_at->is_string() || id_at->is_number_integer());
  const Json id = id_valid ? *id_at : Json(nullptr);
  const auto method_at = message.find("method");
  if (method_at == message.end()) {
    // A reply of the client (we send no requests) or garbage: never answered with another reply.
    if (message.contains("result") || message.contains("error")) return std::nullopt;
    return error_line(id, {kInvalidRequest, "no method"});
  }
  if (message.value("jsonrpc", Json()) != "2.0") return error_line(id, {kInvalidRequest, "jsonrpc must be \"2.0\""});
  if (!method_at->is_string()) return error_line(id, {kInvalidRequest, "method must be a string"});
  if (has_id && !id_valid) return error_line(nullptr, {kInvalidRequest, "id must be a string or an integer"});
  const std::string method = method_at->get<std::string>();
  // Notifications (initialized, cancelled, ...): nothing to do, nothing to say.
  if (!has_id) return std::nullopt;

  const auto params_at = message.find("params");
  if (params_at != message.end() && !params_at->is_object()) {
    return error_line(id, {kInvalidParams, "params must be an object"});
  }
  try {
    return reply_line(id, dispatch(method, params_at != message.end() ? *params_at : Json::object()), "result");
  } catch (const RpcError& error) {
    return error_line(id, error);
  } catch (const std::exception& error) {
    return error_line(id, {kInternalError, error.what()});
  }
}

Json Server::dispatch(const std::string& method, const Json& params) {
  if (method == "initialize") return initialize(params);
  if (method == "ping") return Json::object();
  if (method == "tools/list") return Json{{"tools", tool_list()}};
  if (method == "tools/call") return call_tool(params);
  throw RpcError{kMethodNotFound, "method not found: " + method};
}

Json Server::initialize(const Json& params) {
  const auto asked = params.find("protocolVersion");
  if (asked == params.end() || !asked->is_string()) {
    throw RpcError{kInvalidParams, "initialize: protocolVersion (a string) is required"};
  }
  // The client's version if this server speaks it, else the newest it does (the client decides).
  std::string version = kProtocolVersions[0];
  for (const char* known : kProtocolVersions) {
    if (*asked == known) version = known;
  }
  return Json{{"protocolVersion", version},
              {"capabilities", Json{{"tools", Json{{"listChanged", false}}}}},
              {"serverInfo", Json{{"name", "navietakie-mcp"}, {"title", "navietakie"}, {"version", "1.1.0"}}},
              {"instructions",
               "Tools of a running navietakie, the chat and call bus of ride-hailing bookings: read a "
               "booking's chat (get_message), post into it (send_message), drive or read a call "
               "(make_call), see who is online (presence). Replies are navietakie's own JSON."}};
}

Json Server::call_tool(const Json& params) {
  const auto name_at = params.find("name");
  if (name_at == params.end() || !name_at->is_string()) {
    throw RpcError{kInvalidParams, "tools/call: name (a string) is required"};
  }
  const std::string name = name_at->get<std::string>();
  const Action action = tool_action(name);
  Json arguments = params.value("arguments", Json::object());
  if (!arguments.is_object()) throw RpcError{kInvalidParams, "tools/call: arguments must be an object"};

  // Mistakes in the arguments are the tool's errors (the model reads them and can correct itself).
  const auto booking_at = arguments.find("booking_code");
  if (booking_at == arguments.end() || !booking_at->is_string() ||
      !valid_booking_code(booking_at->get<std::string>())) {
    return tool_error(
        "booking_code: required, 1 to 64 characters of A-Z a-z 0-9 _ -, starting with a letter or digit");
  }
  const std::string booking = booking_at->get<std::string>();
  arguments.erase("booking_code");
  try {
    if (action == Action::presence && !arguments.contains("online")) {
      if (!arguments.empty()) return tool_error("presence: role and client_id go with online (to declare presence)");
      const auto presence = navietakie_.retained_presence(booking);
      return tool_result(Json{{"ok", true}, {"presence", presence ? *presence : never_seen_presence(booking)}});
    }
    return tool_result(navietakie_.request(booking, action, arguments));
  } catch (const LinkError& error) {
    return tool_error(std::string("navietakie: ") + error.what());
  }
}

}  // namespace navietakie::mcp
