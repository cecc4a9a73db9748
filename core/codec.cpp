#include "core/codec.hpp"

#include <limits>

#include "core/errors.hpp"
#include "core/wire.hpp"

namespace navietakie {
namespace {

// The first `count` names of a wire table in words: `"a", "b" or "c"` (quoted) or `a, b, c`.
template <typename E, std::size_t N>
std::string listed(const std::array<wire::Named<E>, N>& table, std::size_t count, bool quoted,
                   std::string_view last_joiner) {
  std::string out;
  for (std::size_t i = 0; i < count && i < N; ++i) {
    if (i > 0) out += i + 1 == count ? last_joiner : std::string_view(", ");
    if (quoted) out += '"';
    out += table[i].name;
    if (quoted) out += '"';
  }
  return out;
}

[[noreturn]] void invalid(const std::string& field, const std::string& why) {
  throw ProtocolError(ErrorCode::invalid_request, "'" + field + "' " + why);
}

const Json* field(const Json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() ? nullptr : &*it;
}

std::string required_string(const Json& body, const char* name) {
  const Json* v = field(body, name);
  if (!v) invalid(name, "is required");
  if (!v->is_string()) invalid(name, "must be a string");
  return v->get<std::string>();
}

std::optional<std::string> optional_string(const Json& body, const char* name) {
  const Json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_string()) invalid(name, "must be a string");
  return v->get<std::string>();
}

// An id the client chooses (message_id, call_id, client_id): the printable-key rule.
std::string client_key_rule() {
  return "must be " + std::to_string(wire::kClientKey.min_length) + " to " +
         std::to_string(wire::kClientKey.max_length) + " printable ASCII characters without spaces";
}

std::optional<std::string> optional_key(const Json& body, const char* name) {
  auto key = optional_string(body, name);
  if (key && !valid_printable_key(*key)) invalid(name, client_key_rule());
  return key;
}

std::optional<std::uint64_t> optional_unsigned(const Json& body, const char* name) {
  const Json* v = field(body, name);
  if (!v) return std::nullopt;
  if (v->is_number_unsigned()) return v->get<std::uint64_t>();
  if (v->is_number_integer() && v->get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v->get<std::int64_t>());
  invalid(name, "must be a non-negative integer");
}

std::optional<Millis> optional_millis(const Json& body, const char* name) {
  const Json* v = field(body, name);
  if (!v) return std::nullopt;
  if (v->is_number_unsigned()) {
    auto u = v->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<Millis>::max())) invalid(name, "is out of range");
    return static_cast<Millis>(u);
  }
  if (v->is_number_integer()) return v->get<Millis>();
  invalid(name, "must be an integer (milliseconds since the Unix epoch)");
}

// A party of the booking (driver, passenger), or with `allow_system` any role.
Role party(const std::string& value, const char* name, bool allow_system) {
  const std::size_t allowed = allow_system ? wire::kRoles.size() : wire::kParties;
  auto role = wire::parse(wire::kRoles, value);
  if (role && static_cast<std::size_t>(*role) < allowed) return *role;
  invalid(name, "must be " + listed(wire::kRoles, allowed, true, " or "));
}

std::optional<MessageType> parse_type(const std::string& value) { return wire::parse(wire::kMessageTypes, value); }

int depth(const Json& value, int limit) {
  if (limit < 0 || !value.is_structured()) return 0;
  int deepest = 0;
  for (const auto& child : value) {
    deepest = std::max(deepest, depth(child, limit - 1));
    if (deepest >= limit) break;
  }
  return deepest + 1;
}

}  // namespace

// The wire tables' names are literals, so each view is NUL-terminated.
const char* to_string(MessageType type) { return wire::name_of(wire::kMessageTypes, type).data(); }
const char* to_string(Role role) { return wire::name_of(wire::kRoles, role).data(); }
const char* to_string(CallState state) { return wire::name_of(wire::kCallStates, state).data(); }
const char* to_string(EndReason reason) {
  return reason == EndReason::none ? "none" : wire::name_of(wire::kEndReasons, reason).data();
}

Json to_json(const Message& m) {
  Json j = {{"booking_code", m.booking_code},
            {"seq", m.seq},
            {"message_id", m.message_id},
            {"type", to_string(m.type)},
            {"sender", to_string(m.sender)}};
  if (m.sender_id) j["sender_id"] = *m.sender_id;
  if (m.type == MessageType::text || !m.text.empty()) j["text"] = m.text;
  j["data"] = Json::parse(m.data_json, nullptr, false);
  if (j["data"].is_discarded()) j["data"] = Json::object();
  j["ts"] = m.ts;
  return j;
}

Json to_json(const Call& c) {
  Json j = {{"booking_code", c.booking_code},
            {"call_id", c.call_id},
            {"from", to_string(c.from)},
            {"to", to_string(c.to)},
            {"state", to_string(c.state)}};
  j["end_reason"] = c.end_reason == EndReason::none ? Json(nullptr) : Json(to_string(c.end_reason));
  j["created_at"] = c.created_at;
  if (c.state == CallState::ringing) j["ring_deadline"] = c.ring_deadline;
  if (c.connected_at) j["connected_at"] = *c.connected_at;
  if (c.ended_at) j["ended_at"] = *c.ended_at;
  j["duration_ms"] = c.duration_ms();
  return j;
}

Json to_json(const Presence& p) {
  auto role = [](const RolePresence& r) {
    return Json{{"online", r.online}, {"since", r.since ? Json(*r.since) : Json(nullptr)}};
  };
  return Json{{"booking_code", p.booking_code}, {"driver", role(p.driver)}, {"passenger", role(p.passenger)}};
}

Json parse_payload(std::string_view payload) {
  try {
    return Json::parse(payload.begin(), payload.end());
  } catch (const Json::parse_error& e) {
    // Not e.what(): it quotes the offending bytes, which may not be UTF-8 themselves.
    throw ProtocolError(ErrorCode::invalid_json,
                        "payload is not valid JSON in UTF-8 (error at byte " + std::to_string(e.byte) + ")");
  } catch (const Json::exception&) {
    throw ProtocolError(ErrorCode::invalid_json, "payload is not valid JSON (a number is out of range)");
  }
}

SendMessageRequest decode_send_message(const Json& body, std::size_t max_text_bytes) {
  SendMessageRequest r;
  r.message_id = optional_key(body, "message_id");
  if (auto type = optional_string(body, "type")) {
    auto parsed = parse_type(*type);
    if (!parsed) invalid("type", "must be " + listed(wire::kMessageTypes, wire::kMessageTypes.size(), true, " or "));
    r.type = *parsed;
  }
  r.sender = party(required_string(body, "sender"), "sender", true);
  r.sender_id = optional_string(body, "sender_id");
  if (r.sender_id && (r.sender_id->empty() || r.sender_id->size() > wire::kSenderIdMaxBytes)) {
    invalid("sender_id", "must be 1 to " + std::to_string(wire::kSenderIdMaxBytes) + " bytes");
  }
  if (auto text = optional_string(body, "text")) r.text = std::move(*text);
  if (r.text.size() > max_text_bytes) {
    invalid("text", "is longer than " + std::to_string(max_text_bytes) + " bytes");
  }
  if (r.type == MessageType::text && r.text.empty()) invalid("text", "is required for a text message");
  if (const Json* data = field(body, "data")) {
    if (!data->is_object()) invalid("data", "must be a JSON object");
    if (depth(*data, wire::kDataMaxDepth) > wire::kDataMaxDepth) {
      invalid("data", "is nested deeper than " + std::to_string(wire::kDataMaxDepth) + " levels");
    }
    r.data_json = data->dump();
  }
  return r;
}

HistoryQuery decode_get_message(const Json& body) {
  HistoryQuery q;
  q.limit = wire::kHistoryLimitDefault;
  if (const Json* limit = field(body, "limit")) {
    const std::string rule = "must be an integer from " + std::to_string(wire::kHistoryLimitMin) + " to " +
                             std::to_string(wire::kHistoryLimitMax);
    if (!limit->is_number_integer()) invalid("limit", rule);
    // A negative integer is a signed number; any other is read unsigned.
    if (!limit->is_number_unsigned() && limit->get<std::int64_t>() < 0) invalid("limit", rule);
    const auto value = limit->get<std::uint64_t>();
    if (value < wire::kHistoryLimitMin || value > wire::kHistoryLimitMax) invalid("limit", rule);
    q.limit = static_cast<std::size_t>(value);
  }
  q.before_seq = optional_unsigned(body, "before_seq");
  q.after_seq = optional_unsigned(body, "after_seq");
  if (q.before_seq && q.after_seq) invalid("before_seq", "cannot be combined with 'after_seq'");
  if (const Json* types = field(body, "types")) {
    if (!types->is_array()) invalid("types", "must be an array of message types");
    for (const auto& t : *types) {
      auto parsed = t.is_string() ? parse_type(t.get<std::string>()) : std::nullopt;
      if (!parsed) {
        invalid("types", "may hold only " + listed(wire::kMessageTypes, wire::kMessageTypes.size(), true, " and "));
      }
      q.types.push_back(*parsed);
    }
  }
  if (auto sender = optional_string(body, "sender")) q.sender = party(*sender, "sender", true);
  q.since = optional_millis(body, "since");
  q.until = optional_millis(body, "until");
  return q;
}

MakeCallRequest decode_make_call(const Json& body) {
  MakeCallRequest r;
  auto action = parse_call_action(required_string(body, "action"));
  if (!action)
    invalid("action", "must be one of " + listed(wire::kCallActions, wire::kCallActions.size(), false, ", "));
  r.action = *action;
  r.call_id = optional_key(body, "call_id");
  if (!r.call_id && r.action != CallAction::start && r.action != CallAction::get) {
    invalid("call_id", "is required");
  }
  if (auto by = optional_string(body, "by")) {
    r.by = party(*by, "by", false);
  } else if (r.action != CallAction::get) {
    invalid("by", "is required");
  }
  return r;
}

PresenceRequest decode_presence(const Json& body) {
  PresenceRequest r;
  r.role = party(required_string(body, "role"), "role", false);
  const Json* online = field(body, "online");
  if (!online) invalid("online", "is required");
  if (!online->is_boolean()) invalid("online", "must be true or false");
  r.online = online->get<bool>();
  r.client_id = optional_key(body, "client_id");
  return r;
}

}  // namespace navietakie
