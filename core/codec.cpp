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

const JsonValue* field(const RequestBody& body, const char* name) { return body.find(name); }

std::string required_string(const RequestBody& body, const char* name) {
  const JsonValue* v = field(body, name);
  if (!v) invalid(name, "is required");
  if (!v->IsString()) invalid(name, "must be a string");
  return std::string(string_of(*v));
}

bool required_bool(const RequestBody& body, const char* name) {
  const JsonValue* v = field(body, name);
  if (!v) invalid(name, "is required");
  if (!v->IsBool()) invalid(name, "must be true or false");
  return v->GetBool();
}

std::optional<std::string> optional_string(const RequestBody& body, const char* name) {
  const JsonValue* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->IsString()) invalid(name, "must be a string");
  return std::string(string_of(*v));
}

// An id the client chooses (message_id, call_id, client_id): the printable-key rule.
std::string client_key_rule() {
  return "must be " + std::to_string(wire::kClientKey.min_length) + " to " +
         std::to_string(wire::kClientKey.max_length) + " printable ASCII characters without spaces";
}

std::optional<std::string> optional_key(const RequestBody& body, const char* name) {
  auto key = optional_string(body, name);
  if (key && !valid_printable_key(*key)) invalid(name, client_key_rule());
  return key;
}

// Integers as nlohmann read them: an integer literal that fits 64 bits, signed or unsigned; one
// with a fraction or exponent (50.0) is a double, and so is one beyond 64 bits. "-0" is 0.
std::optional<std::uint64_t> optional_unsigned(const RequestBody& body, const char* name) {
  const JsonValue* v = field(body, name);
  if (!v) return std::nullopt;
  if (v->IsUint64()) return v->GetUint64();
  invalid(name, "must be a non-negative integer");
}

std::optional<Millis> optional_millis(const RequestBody& body, const char* name) {
  const JsonValue* v = field(body, name);
  if (!v) return std::nullopt;
  if (v->IsInt64()) return v->GetInt64();
  if (v->IsUint64()) invalid(name, "is out of range");
  invalid(name, "must be an integer (milliseconds since the Unix epoch)");
}

// A party of the booking (driver, passenger), or with `allow_system` any role.
Role party(const std::string& value, const char* name, bool allow_system) {
  const std::size_t allowed = allow_system ? wire::kRoles.size() : wire::kParties;
  auto role = wire::parse(wire::kRoles, value);
  if (role && static_cast<std::size_t>(*role) < allowed) return *role;
  invalid(name, "must be " + listed(wire::kRoles, allowed, true, " or "));
}

// A body in nlohmann form, read by the same rules as a payload.
std::string payload_of(const Json& body) { return body.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::optional<MessageType> parse_type(std::string_view value) { return wire::parse(wire::kMessageTypes, value); }

}  // namespace

// The wire tables' names are literals, so each view is NUL-terminated.
const char* to_string(MessageType type) { return wire::name_of(wire::kMessageTypes, type).data(); }
const char* to_string(Role role) { return wire::name_of(wire::kRoles, role).data(); }
const char* to_string(CallState state) { return wire::name_of(wire::kCallStates, state).data(); }
const char* to_string(EndReason reason) {
  return reason == EndReason::none ? "none" : wire::name_of(wire::kEndReasons, reason).data();
}

namespace {

// A stored `data` is JSON object text this code wrote (compact_json) or an older version wrote
// (nlohmann's dump of a validated object): spliced as it is, never parsed again. Anything else
// (a hand-edited store) reads as an empty object rather than make the reply not JSON.
std::string_view stored_data(const std::string& data_json) {
  std::string_view text = data_json;
  const auto first = text.find_first_not_of(" \t\r\n");
  const auto last = text.find_last_not_of(" \t\r\n");
  if (first == std::string_view::npos || text[first] != '{' || text[last] != '}') return "{}";
  return text.substr(first, last - first + 1);
}

template <class Record>
std::string text_of(const Record& record) {
  JsonWriter out;
  write_json(out, record);
  return out.str();
}

void write_role(JsonWriter& out, const RolePresence& role) {
  out.begin_object().key("online").boolean(role.online).key("since").null_or(role.since).end_object();
}

// A party's read horizon: `at` null until it first marked something read.
void write_role(JsonWriter& out, const RoleRead& role) {
  out.begin_object().key("seq").number(role.seq).key("at").null_or(role.at).end_object();
}

}  // namespace

void write_json(JsonWriter& out, const Message& m) {
  out.begin_object();
  out.key("booking_code").string(m.booking_code);
  out.key("seq").number(m.seq);
  out.key("message_id").string(m.message_id);
  out.key("type").string(to_string(m.type));
  out.key("sender").string(to_string(m.sender));
  if (m.sender_id) out.key("sender_id").string(*m.sender_id);
  if (m.type == MessageType::text || !m.text.empty()) out.key("text").string(m.text);
  out.key("data").raw(stored_data(m.data_json));
  out.key("ts").number(m.ts);
  out.end_object();
}

void write_json(JsonWriter& out, const Call& c) {
  out.begin_object();
  out.key("booking_code").string(c.booking_code);
  out.key("call_id").string(c.call_id);
  out.key("from").string(to_string(c.from));
  out.key("to").string(to_string(c.to));
  out.key("state").string(to_string(c.state));
  out.key("end_reason");
  if (c.end_reason == EndReason::none) {
    out.null();
  } else {
    out.string(to_string(c.end_reason));
  }
  out.key("created_at").number(c.created_at);
  if (c.state == CallState::ringing) out.key("ring_deadline").number(c.ring_deadline);
  if (c.connected_at) out.key("connected_at").number(*c.connected_at);
  if (c.ended_at) out.key("ended_at").number(*c.ended_at);
  out.key("duration_ms").number(c.duration_ms());
  out.end_object();
}

void write_json(JsonWriter& out, const Presence& p) {
  out.begin_object().key("booking_code").string(p.booking_code);
  out.key("driver");
  write_role(out, p.driver);
  out.key("passenger");
  write_role(out, p.passenger);
  out.end_object();
}

void write_json(JsonWriter& out, const ReadReceipts& r) {
  out.begin_object().key("booking_code").string(r.booking_code);
  out.key("driver");
  write_role(out, r.driver);
  out.key("passenger");
  write_role(out, r.passenger);
  out.end_object();
}

std::string json_text(const Message& message) { return text_of(message); }
std::string json_text(const Call& call) { return text_of(call); }
std::string json_text(const Presence& presence) { return text_of(presence); }
std::string json_text(const ReadReceipts& receipts) { return text_of(receipts); }

void write_json(JsonWriter& out, const std::string& booking_code, const std::optional<BookingState>& state) {
  const bool closed = state && state->closed;
  out.begin_object().key("booking_code").string(booking_code);
  out.key("state").string(closed ? "closed" : "open");
  out.key("closed_at");
  if (closed) {
    out.number(state->closed_at);
  } else {
    out.null();
  }
  if (closed && state->reason) out.key("reason").string(*state->reason);
  out.end_object();
}

std::string json_text(const std::string& booking_code, const std::optional<BookingState>& state) {
  JsonWriter out;
  write_json(out, booking_code, state);
  return out.str();
}

Json to_json(const Message& message) { return Json::parse(json_text(message)); }
Json to_json(const Call& call) { return Json::parse(json_text(call)); }
Json to_json(const Presence& presence) { return Json::parse(json_text(presence)); }
Json to_json(const ReadReceipts& receipts) { return Json::parse(json_text(receipts)); }

Json parse_payload(std::string_view payload) {
  const RequestBody checked(payload);  // the engine's rules decide what is JSON
  try {
    return Json::parse(payload.begin(), payload.end());
  } catch (const Json::exception&) {
    // Not e.what(): it quotes the offending bytes, which may not be UTF-8 themselves.
    throw ProtocolError(ErrorCode::invalid_json, "payload is not valid JSON in UTF-8");
  }
}

SendMessageRequest decode_send_message(const RequestBody& body, std::size_t max_text_bytes) {
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
  if (const JsonValue* data = field(body, "data")) {
    if (!data->IsObject()) invalid("data", "must be a JSON object");
    if (depth(*data, wire::kDataMaxDepth) > wire::kDataMaxDepth) {
      invalid("data", "is nested deeper than " + std::to_string(wire::kDataMaxDepth) + " levels");
    }
    r.data_json = compact_json(*data);
  }
  return r;
}

HistoryQuery decode_get_message(const RequestBody& body) {
  HistoryQuery q;
  q.limit = wire::kHistoryLimitDefault;
  if (const JsonValue* limit = field(body, "limit")) {
    const std::string rule = "must be an integer from " + std::to_string(wire::kHistoryLimitMin) + " to " +
                             std::to_string(wire::kHistoryLimitMax);
    if (!limit->IsUint64()) invalid("limit", rule);  // also a negative integer
    const auto value = limit->GetUint64();
    if (value < wire::kHistoryLimitMin || value > wire::kHistoryLimitMax) invalid("limit", rule);
    q.limit = static_cast<std::size_t>(value);
  }
  q.before_seq = optional_unsigned(body, "before_seq");
  q.after_seq = optional_unsigned(body, "after_seq");
  if (q.before_seq && q.after_seq) invalid("before_seq", "cannot be combined with 'after_seq'");
  if (const JsonValue* types = field(body, "types")) {
    if (!types->IsArray()) invalid("types", "must be an array of message types");
    for (const auto& t : types->GetArray()) {
      auto parsed = t.IsString() ? parse_type(string_of(t)) : std::nullopt;
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

MakeCallRequest decode_make_call(const RequestBody& body) {
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

PresenceRequest decode_presence(const RequestBody& body) {
  PresenceRequest r;
  r.role = party(required_string(body, "role"), "role", false);
  r.online = required_bool(body, "online");
  r.client_id = optional_key(body, "client_id");
  return r;
}

MarkReadRequest decode_mark_read(const RequestBody& body) {
  MarkReadRequest r;
  r.role = party(required_string(body, "role"), "role", false);
  const auto seq = optional_unsigned(body, "seq");
  if (!seq) invalid("seq", "is required");
  r.seq = *seq;
  return r;
}

TypingRequest decode_typing(const RequestBody& body) {
  TypingRequest r;
  r.role = party(required_string(body, "role"), "role", false);
  r.typing = required_bool(body, "typing");
  return r;
}

CloseRequest decode_close(const RequestBody& body) {
  CloseRequest r;
  r.reason = optional_string(body, "reason");
  if (r.reason && r.reason->size() > wire::kCloseReasonMaxBytes) {
    invalid("reason", "is longer than " + std::to_string(wire::kCloseReasonMaxBytes) + " bytes");
  }
  return r;
}

SignalRequest decode_signal(const RequestBody& body) {
  SignalRequest r;
  const std::string kind = required_string(body, "kind");
  auto parsed = wire::parse(wire::kSignalKinds, kind);
  if (!parsed) invalid("kind", "must be " + listed(wire::kSignalKinds, wire::kSignalKinds.size(), true, " or "));
  r.kind = *parsed;
  auto call_id = optional_key(body, "call_id");
  if (!call_id) invalid("call_id", "is required");
  r.call_id = std::move(*call_id);
  r.by = party(required_string(body, "by"), "by", false);
  const bool carries_sdp = r.kind == wire::SignalKind::offer || r.kind == wire::SignalKind::answer;
  r.sdp = optional_string(body, "sdp");
  if (carries_sdp && !r.sdp) invalid("sdp", "is required for an " + kind);
  if (!carries_sdp && r.sdp) invalid("sdp", "belongs to an offer or an answer only");
  if (r.sdp && r.sdp->size() > wire::kSignalSdpMaxBytes) {
    invalid("sdp", "must be at most " + std::to_string(wire::kSignalSdpMaxBytes) + " bytes");
  }
  // RTCIceCandidate.toJSON() is an object ({candidate, sdpMid, sdpMLineIndex, usernameFragment});
  // a bare candidate line is a string. Either is relayed as it came (compact), within the limit.
  const JsonValue* candidate = field(body, "candidate");
  const bool carries_candidate = r.kind == wire::SignalKind::candidate;
  if (carries_candidate && !candidate) invalid("candidate", "is required for a candidate");
  if (!carries_candidate && candidate) invalid("candidate", "belongs to a candidate only");
  if (candidate) {
    if (!candidate->IsString() && !candidate->IsObject()) invalid("candidate", "must be a string or an object");
    if (depth(*candidate, 1) > 1) invalid("candidate", "must be a flat object");
    r.candidate_json = compact_json(*candidate);
    if (r.candidate_json->size() > wire::kSignalCandidateMaxBytes) {
      invalid("candidate", "must be at most " + std::to_string(wire::kSignalCandidateMaxBytes) + " bytes");
    }
  }
  r.reason = optional_string(body, "reason");
  if (r.reason && r.kind != wire::SignalKind::bye) invalid("reason", "belongs to a bye only");
  if (r.reason && r.reason->size() > wire::kSignalReasonMaxBytes) {
    invalid("reason", "must be at most " + std::to_string(wire::kSignalReasonMaxBytes) + " bytes");
  }
  return r;
}

SendMessageRequest decode_send_message(const Json& body, std::size_t max_text_bytes) {
  return decode_send_message(RequestBody(payload_of(body)), max_text_bytes);
}
HistoryQuery decode_get_message(const Json& body) { return decode_get_message(RequestBody(payload_of(body))); }
MakeCallRequest decode_make_call(const Json& body) { return decode_make_call(RequestBody(payload_of(body))); }
PresenceRequest decode_presence(const Json& body) { return decode_presence(RequestBody(payload_of(body))); }
MarkReadRequest decode_mark_read(const Json& body) { return decode_mark_read(RequestBody(payload_of(body))); }
TypingRequest decode_typing(const Json& body) { return decode_typing(RequestBody(payload_of(body))); }
CloseRequest decode_close(const Json& body) { return decode_close(RequestBody(payload_of(body))); }
SignalRequest decode_signal(const Json& body) { return decode_signal(RequestBody(payload_of(body))); }

}  // namespace navietakie
