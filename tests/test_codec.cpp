// JSON on the wire: records out (exact fields), requests in (every field's type, presence and
// range), payload parsing, booking codes and the topic layout.
#include <boost/test/unit_test.hpp>

#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "core/codec.hpp"
#include "core/errors.hpp"
#include "support/protocol_error.hpp"
#include "core/topics.hpp"

using namespace navietakie;

namespace {

constexpr std::size_t kMaxText = 4096;

using testing::error_of;

// fn fails with invalid_request whose message names `field` as 'field'.
void check_invalid(const std::function<void()>& fn, const std::string& field) {
  auto e = error_of(fn);
  BOOST_REQUIRE_MESSAGE(e.has_value(), "no ProtocolError; expected invalid_request naming " << field);
  BOOST_TEST(std::string(to_string(e->code())) == "invalid_request");
  BOOST_TEST(std::string(e->what()).find("'" + field + "'") != std::string::npos,
             "message '" << e->what() << "' names '" << field << "'");
}

void check_send_invalid(const Json& body, const std::string& field) {
  BOOST_TEST_CONTEXT(body.dump()) {
    check_invalid([&] { (void)decode_send_message(body, kMaxText); }, field);
  }
}
void check_get_invalid(const Json& body, const std::string& field) {
  BOOST_TEST_CONTEXT(body.dump()) {
    check_invalid([&] { (void)decode_get_message(body); }, field);
  }
}
void check_call_invalid(const Json& body, const std::string& field) {
  BOOST_TEST_CONTEXT(body.dump()) {
    check_invalid([&] { (void)decode_make_call(body); }, field);
  }
}
void check_presence_invalid(const Json& body, const std::string& field) {
  BOOST_TEST_CONTEXT(body.dump()) {
    check_invalid([&] { (void)decode_presence(body); }, field);
  }
}

Json with(Json body, const std::string& key, Json value) {
  body[key] = std::move(value);
  return body;
}

Json nested_object(int depth) {
  Json j = Json::object();
  for (int i = 1; i < depth; ++i) j = Json{{"n", std::move(j)}};
  return j;
}

const Json kSend = {{"sender", "driver"}, {"text", "hi"}};

}  // namespace

BOOST_AUTO_TEST_SUITE(codec)

// ---- records out ----

BOOST_AUTO_TEST_CASE(message_to_json_has_exactly_the_contract_fields) {
  Message m;
  m.booking_code = "BK123";
  m.seq = 17;
  m.message_id = "0b6f";
  m.type = MessageType::text;
  m.sender = Role::driver;
  m.sender_id = "drv-42";
  m.text = "I'm at gate B";
  m.data_json = R"({"gate":"B","pos":[1.5,2],"deep":{"x":null,"y":true}})";
  m.ts = 1764160000123;
  const Json expected = Json::parse(R"({"booking_code":"BK123","seq":17,"message_id":"0b6f","type":"text",
    "sender":"driver","sender_id":"drv-42","text":"I'm at gate B",
    "data":{"gate":"B","pos":[1.5,2],"deep":{"x":null,"y":true}},"ts":1764160000123})");
  BOOST_TEST(to_json(m) == expected);
  BOOST_TEST(to_json(m).at("seq").is_number_unsigned());
  BOOST_TEST(to_json(m).at("ts").is_number_integer());
}

BOOST_AUTO_TEST_CASE(message_to_json_omits_absent_sender_id_and_keeps_empty_data) {
  Message m;
  m.booking_code = "BK1";
  m.seq = 1;
  m.message_id = "m";
  m.sender = Role::passenger;
  m.text = "x";
  m.ts = 5;
  const Json j = to_json(m);
  BOOST_TEST(!j.contains("sender_id"));
  BOOST_TEST(j.at("data") == Json::object());
  BOOST_TEST(j.at("sender") == "passenger");
  BOOST_TEST(j.at("type") == "text");
}

BOOST_AUTO_TEST_CASE(message_to_json_names_every_type_and_sender) {
  Message m;
  m.booking_code = "BK1";
  m.message_id = "m";
  m.type = MessageType::call;
  m.sender = Role::system;
  m.data_json = R"({"call_id":"c-1","state":"ended","end_reason":"missed"})";
  Json j = to_json(m);
  BOOST_TEST(j.at("type") == "call");
  BOOST_TEST(j.at("sender") == "system");
  BOOST_TEST(j.at("data") == Json::parse(m.data_json));
  m.type = MessageType::system;
  BOOST_TEST(to_json(m).at("type") == "system");
}

BOOST_AUTO_TEST_CASE(call_to_json_matches_the_contract_example) {
  Call c;
  c.booking_code = "BK123";
  c.call_id = "c-7f3a";
  c.from = Role::driver;
  c.to = Role::passenger;
  c.state = CallState::ended;
  c.end_reason = EndReason::completed;
  c.created_at = 1764160000000;
  c.connected_at = 1764160004000;
  c.ended_at = 1764160064000;
  c.ring_deadline = 1764160030000;
  const Json expected = Json::parse(R"({"booking_code":"BK123","call_id":"c-7f3a","from":"driver",
    "to":"passenger","state":"ended","end_reason":"completed","created_at":1764160000000,
    "connected_at":1764160004000,"ended_at":1764160064000,"duration_ms":60000})");
  BOOST_TEST(to_json(c) == expected);
}

BOOST_AUTO_TEST_CASE(call_to_json_active_has_null_end_reason_and_no_end) {
  const Call r = start_call("BK1", "c-1", Role::passenger, 1000, 30'000);
  Json j = to_json(r);
  BOOST_TEST(j.at("state") == "ringing");
  BOOST_TEST(j.at("end_reason").is_null());
  BOOST_TEST(j.at("from") == "passenger");
  BOOST_TEST(j.at("to") == "driver");
  BOOST_TEST(j.at("created_at") == 1000);
  BOOST_TEST(!j.contains("connected_at"));
  BOOST_TEST(!j.contains("ended_at"));
  BOOST_TEST(j.at("duration_ms") == 0);

  const Call c = apply_call_action(r, CallAction::accept, Role::driver, 5000);
  j = to_json(c);
  BOOST_TEST(j.at("state") == "connected");
  BOOST_TEST(j.at("end_reason").is_null());
  BOOST_TEST(j.at("connected_at") == 5000);
  BOOST_TEST(!j.contains("ended_at"));
  BOOST_TEST(j.at("duration_ms") == 0);
}

BOOST_AUTO_TEST_CASE(call_to_json_never_connected_has_no_connected_at) {
  const Call r = start_call("BK1", "c-1", Role::driver, 1000, 30'000);
  for (const Call& c : {apply_call_action(r, CallAction::decline, Role::passenger, 2000),
                        apply_call_action(r, CallAction::cancel, Role::driver, 2000), expire_call(r)}) {
    const Json j = to_json(c);
    BOOST_TEST_CONTEXT(j.dump()) {
      BOOST_TEST(j.at("state") == "ended");
      BOOST_TEST(!j.contains("connected_at"));
      BOOST_TEST(j.at("duration_ms") == 0);
      BOOST_TEST(j.contains("ended_at"));
    }
  }
  BOOST_TEST(to_json(expire_call(r)).at("end_reason") == "missed");
  BOOST_TEST(to_json(expire_call(r)).at("ended_at") == 31'000);
}

BOOST_AUTO_TEST_CASE(presence_to_json_never_seen_role_is_offline_since_null) {
  Presence p;
  p.booking_code = "BK1";
  BOOST_TEST(to_json(p) == Json::parse(R"({"booking_code":"BK1","driver":{"online":false,"since":null},
                                           "passenger":{"online":false,"since":null}})"));
  p.driver = RolePresence{true, 1764160000000};
  p.passenger = RolePresence{false, 1764160000500};
  BOOST_TEST(to_json(p) == Json::parse(R"({"booking_code":"BK1","driver":{"online":true,"since":1764160000000},
                                           "passenger":{"online":false,"since":1764160000500}})"));
}

BOOST_AUTO_TEST_CASE(enum_names) {
  BOOST_TEST(std::string(to_string(Role::driver)) == "driver");
  BOOST_TEST(std::string(to_string(Role::passenger)) == "passenger");
  BOOST_TEST(std::string(to_string(Role::system)) == "system");
  BOOST_TEST(std::string(to_string(CallState::ringing)) == "ringing");
  BOOST_TEST(std::string(to_string(CallState::connected)) == "connected");
  BOOST_TEST(std::string(to_string(CallState::ended)) == "ended");
  BOOST_TEST(std::string(to_string(EndReason::completed)) == "completed");
  BOOST_TEST(std::string(to_string(EndReason::declined)) == "declined");
  BOOST_TEST(std::string(to_string(EndReason::cancelled)) == "cancelled");
  BOOST_TEST(std::string(to_string(EndReason::missed)) == "missed");
  BOOST_TEST(std::string(to_string(ErrorCode::invalid_json)) == "invalid_json");
  BOOST_TEST(std::string(to_string(ErrorCode::payload_too_large)) == "payload_too_large");
  BOOST_TEST(std::string(to_string(ErrorCode::invalid_booking_code)) == "invalid_booking_code");
  BOOST_TEST(std::string(to_string(ErrorCode::unavailable)) == "unavailable");
}

// ---- payloads ----

BOOST_AUTO_TEST_CASE(parse_payload_accepts_json) {
  BOOST_TEST(parse_payload("{}") == Json::object());
  BOOST_TEST(parse_payload(" {\"a\" : [1, 2]} \n") == Json::parse(R"({"a":[1,2]})"));
  BOOST_TEST(parse_payload("[1]").is_array());  // not an object: the engine's concern
  BOOST_TEST(parse_payload("{\"t\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x95\"}").at("t") ==
             "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x95");
  BOOST_TEST(parse_payload("1e300").is_number_float());
}

BOOST_AUTO_TEST_CASE(parse_payload_rejects_non_json_bad_utf8_and_overflow) {
  const std::vector<std::string> bad = {
      "",
      "not json",
      "{",
      "{}x",
      "{} {}",
      "{'a':1}",
      "{\"a\":1,}",
      "\xff",
      "{\"a\":\"\xff\"}",              // a byte never valid in UTF-8
      "{\"a\":\"\xc3\x28\"}",          // bad continuation byte
      "{\"a\":\"\xc0\xaf\"}",          // overlong encoding of '/'
      "{\"a\":\"\xed\xa0\x80\"}",      // a UTF-16 surrogate encoded in UTF-8
      "{\"a\":\"\xf4\x90\x80\x80\"}",  // above U+10FFFF
      "{\"a\":\"\xe2\x82\"}",          // truncated sequence
      "{\"a\":\"\\ud800\"}",           // a lone escaped surrogate
      "1e999",
      "-1e999",
      "{\"limit\":1e999}",
      std::string("{\"a\":\"x\0y\"}", 11),  // a raw control byte in a string
  };
  for (const auto& payload : bad) {
    BOOST_TEST_CONTEXT("payload of " << payload.size() << " bytes") {
      auto e = error_of([&] { (void)parse_payload(payload); });
      BOOST_REQUIRE(e.has_value());
      BOOST_TEST(std::string(to_string(e->code())) == "invalid_json");
    }
  }
}

// The message is sent to clients as JSON, so it must itself be valid UTF-8 even when the payload
// was not.
BOOST_AUTO_TEST_CASE(parse_payload_error_message_is_valid_utf8) {
  for (const std::string& payload : {std::string("\xff"), std::string("{\"a\":\"\xff\"}"),
                                     std::string("{\"a\":\"\xc3\x28\"}"), std::string("{\"a\":\"\xe2\x82\"}")}) {
    BOOST_TEST_CONTEXT("payload of " << payload.size() << " bytes") {
      auto e = error_of([&] { (void)parse_payload(payload); });
      BOOST_REQUIRE(e.has_value());
      BOOST_CHECK_NO_THROW((void)Json(std::string(e->what())).dump());
    }
  }
}

// ---- send_message ----

BOOST_AUTO_TEST_CASE(send_defaults) {
  const SendMessageRequest r = decode_send_message(kSend, kMaxText);
  BOOST_CHECK(!r.message_id.has_value());
  BOOST_CHECK(r.type == MessageType::text);
  BOOST_CHECK(r.sender == Role::driver);
  BOOST_CHECK(!r.sender_id.has_value());
  BOOST_TEST(r.text == "hi");
  BOOST_TEST(Json::parse(r.data_json) == Json::object());
}

BOOST_AUTO_TEST_CASE(send_all_fields) {
  const Json body = {{"message_id", "m-1"}, {"type", "text"},        {"sender", "passenger"},
                     {"sender_id", "p-9"},  {"text", "caf\xc3\xa9"}, {"data", {{"a", {1, 2}}, {"b", nullptr}}}};
  const SendMessageRequest r = decode_send_message(body, kMaxText);
  BOOST_CHECK(r.message_id == std::optional<std::string>("m-1"));
  BOOST_CHECK(r.sender == Role::passenger);
  BOOST_CHECK(r.sender_id == std::optional<std::string>("p-9"));
  BOOST_TEST(r.text == "caf\xc3\xa9");
  BOOST_TEST(Json::parse(r.data_json) == body.at("data"));
}

BOOST_AUTO_TEST_CASE(send_call_and_system_types_need_no_text) {
  SendMessageRequest r =
      decode_send_message({{"type", "call"}, {"sender", "system"}, {"data", {{"call_id", "x"}}}}, kMaxText);
  BOOST_CHECK(r.type == MessageType::call);
  BOOST_CHECK(r.sender == Role::system);
  BOOST_TEST(r.text.empty());
  r = decode_send_message({{"type", "system"}, {"sender", "system"}, {"text", "trip started"}}, kMaxText);
  BOOST_CHECK(r.type == MessageType::system);
}

BOOST_AUTO_TEST_CASE(send_sender_required_and_checked) {
  check_send_invalid(Json::object(), "sender");
  check_send_invalid({{"text", "hi"}}, "sender");
  check_send_invalid(with(kSend, "sender", 1), "sender");
  check_send_invalid(with(kSend, "sender", nullptr), "sender");
  check_send_invalid(with(kSend, "sender", "bob"), "sender");
  check_send_invalid(with(kSend, "sender", "Driver"), "sender");
  check_send_invalid(with(kSend, "sender", Json::array({"driver"})), "sender");
}

BOOST_AUTO_TEST_CASE(send_text_rules) {
  check_send_invalid({{"sender", "driver"}}, "text");  // type text needs text
  check_send_invalid(with(kSend, "text", ""), "text");
  check_send_invalid(with(kSend, "text", 5), "text");
  check_send_invalid(with(kSend, "text", nullptr), "text");
  check_send_invalid(with(kSend, "text", Json::object()), "text");
}

BOOST_AUTO_TEST_CASE(send_text_limit_counts_utf8_bytes) {
  BOOST_TEST(decode_send_message(with(kSend, "text", std::string(kMaxText, 'x')), kMaxText).text.size() == kMaxText);
  check_send_invalid(with(kSend, "text", std::string(kMaxText + 1, 'x')), "text");
  std::string two_byte;
  for (std::size_t i = 0; i < kMaxText / 2; ++i) two_byte += "\xc3\xa9";
  BOOST_TEST(decode_send_message(with(kSend, "text", two_byte), kMaxText).text.size() == kMaxText);
  check_send_invalid(with(kSend, "text", two_byte + "\xc3\xa9"), "text");
  // The limit is the caller's (configurable).
  auto e = error_of([&] { (void)decode_send_message(with(kSend, "text", "abcdef"), 5); });
  BOOST_REQUIRE(e.has_value());
  BOOST_TEST(std::string(to_string(e->code())) == "invalid_request");
  BOOST_TEST(!error_of([&] { (void)decode_send_message(with(kSend, "text", "abcde"), 5); }).has_value());
}

BOOST_AUTO_TEST_CASE(send_type_checked) {
  check_send_invalid(with(kSend, "type", "video"), "type");
  check_send_invalid(with(kSend, "type", "TEXT"), "type");
  check_send_invalid(with(kSend, "type", 3), "type");
  check_send_invalid(with(kSend, "type", nullptr), "type");
}

BOOST_AUTO_TEST_CASE(send_message_id_rules) {
  for (const std::string& ok : {std::string("m"), std::string(128, 'k'), std::string("!"), std::string("~"),
                                std::string("0b6f-4e2a_x.y:z/{}")}) {
    BOOST_TEST_CONTEXT(ok) {
      BOOST_CHECK(decode_send_message(with(kSend, "message_id", ok), kMaxText).message_id ==
                  std::optional<std::string>(ok));
    }
  }
  for (const std::string& bad : {std::string(""), std::string(129, 'k'), std::string("a b"), std::string(" a"),
                                 std::string("a\t"), std::string("a\x7f"), std::string("caf\xc3\xa9")}) {
    check_send_invalid(with(kSend, "message_id", bad), "message_id");
  }
  check_send_invalid(with(kSend, "message_id", 5), "message_id");
  check_send_invalid(with(kSend, "message_id", nullptr), "message_id");
}

BOOST_AUTO_TEST_CASE(valid_printable_key_edges) {
  BOOST_TEST(valid_printable_key("a"));
  BOOST_TEST(valid_printable_key(std::string(128, '~')));
  BOOST_TEST(!valid_printable_key(std::string(129, 'a')));
  BOOST_TEST(!valid_printable_key(""));
  BOOST_TEST(!valid_printable_key(" "));
  BOOST_TEST(!valid_printable_key(std::string("a\0b", 3)));
  BOOST_TEST(!valid_printable_key("\x7f"));
  BOOST_TEST(!valid_printable_key("\x80"));
  BOOST_TEST(valid_printable_key("\x21\x7e"));
}

BOOST_AUTO_TEST_CASE(send_sender_id_rules) {
  check_send_invalid(with(kSend, "sender_id", 42), "sender_id");
  check_send_invalid(with(kSend, "sender_id", ""), "sender_id");
  check_send_invalid(with(kSend, "sender_id", std::string(129, 'x')), "sender_id");
  BOOST_CHECK(decode_send_message(with(kSend, "sender_id", std::string(128, 'x')), kMaxText).sender_id.has_value());
}

BOOST_AUTO_TEST_CASE(send_data_must_be_an_object_of_bounded_depth) {
  check_send_invalid(with(kSend, "data", Json::array()), "data");
  check_send_invalid(with(kSend, "data", "x"), "data");
  check_send_invalid(with(kSend, "data", 1), "data");
  check_send_invalid(with(kSend, "data", nullptr), "data");
  check_send_invalid(with(kSend, "data", true), "data");
  check_send_invalid(with(kSend, "data", nested_object(100)), "data");
  check_send_invalid(with(kSend, "data", nested_object(1000)), "data");
  Json deep_array = Json::array();
  for (int i = 0; i < 200; ++i) deep_array = Json::array({std::move(deep_array)});
  check_send_invalid(with(kSend, "data", Json{{"a", deep_array}}), "data");
  // Moderately nested data is carried as-is.
  const Json ok = nested_object(10);
  BOOST_TEST(Json::parse(decode_send_message(with(kSend, "data", ok), kMaxText).data_json) == ok);
}

// ---- get_message ----

BOOST_AUTO_TEST_CASE(get_defaults) {
  const HistoryQuery q = decode_get_message(Json::object());
  BOOST_TEST(q.limit == 50u);
  BOOST_CHECK(!q.before_seq && !q.after_seq && !q.sender && !q.since && !q.until);
  BOOST_TEST(q.types.empty());
}

BOOST_AUTO_TEST_CASE(get_all_fields) {
  // As parsed off the wire (non-negative numbers are unsigned there).
  const HistoryQuery q = decode_get_message(Json::parse(
      R"({"limit":7,"after_seq":0,"types":["text","call","system"],"sender":"system","since":10,"until":20})"));
  BOOST_TEST(q.limit == 7u);
  BOOST_CHECK(q.after_seq == std::optional<std::uint64_t>(0));
  BOOST_TEST(q.types.size() == 3u);
  BOOST_CHECK(q.sender == std::optional<Role>(Role::system));
  BOOST_CHECK(q.since == std::optional<Millis>(10));
  BOOST_CHECK(q.until == std::optional<Millis>(20));
  BOOST_CHECK(decode_get_message(Json::parse(R"({"before_seq":12})")).before_seq == std::optional<std::uint64_t>(12));
  BOOST_TEST(decode_get_message({{"types", Json::array()}}).types.empty());
}

BOOST_AUTO_TEST_CASE(get_limit_is_1_to_200) {
  BOOST_TEST(decode_get_message({{"limit", 1}}).limit == 1u);
  BOOST_TEST(decode_get_message({{"limit", 200}}).limit == 200u);
  for (const Json& bad : {Json(0), Json(201), Json(-1), Json(1000000), Json(1.5), Json(50.0), Json("10"), Json(true),
                          Json(nullptr), Json(std::numeric_limits<std::uint64_t>::max()),
                          Json(std::numeric_limits<std::int64_t>::min()), Json::array({10})}) {
    check_get_invalid({{"limit", bad}}, "limit");
  }
}

BOOST_AUTO_TEST_CASE(get_cursors_checked) {
  for (const char* cursor : {"before_seq", "after_seq"}) {
    for (const Json& bad : {Json(-1), Json("3"), Json(1.5), Json(nullptr), Json(false)}) {
      check_get_invalid({{cursor, bad}}, cursor);
    }
  }
  auto e = error_of([] { (void)decode_get_message({{"before_seq", 5}, {"after_seq", 2}}); });
  BOOST_REQUIRE(e.has_value());
  BOOST_TEST(std::string(to_string(e->code())) == "invalid_request");
  const std::string message = e->what();
  BOOST_TEST((message.find("'before_seq'") != std::string::npos || message.find("'after_seq'") != std::string::npos));
}

BOOST_AUTO_TEST_CASE(get_types_and_sender_checked) {
  check_get_invalid({{"types", "text"}}, "types");
  check_get_invalid({{"types", {"text", "video"}}}, "types");
  check_get_invalid({{"types", {1}}}, "types");
  check_get_invalid({{"types", {nullptr}}}, "types");
  check_get_invalid({{"types", Json::object()}}, "types");
  check_get_invalid({{"sender", "bob"}}, "sender");
  check_get_invalid({{"sender", 1}}, "sender");
}

BOOST_AUTO_TEST_CASE(get_since_until_checked) {
  for (const char* bound : {"since", "until"}) {
    for (const Json& bad : {Json("1764160000000"), Json(1.5), Json(true), Json(nullptr),
                            Json(std::numeric_limits<std::uint64_t>::max())}) {
      check_get_invalid({{bound, bad}}, bound);
    }
  }
  BOOST_CHECK(decode_get_message({{"since", -5}}).since == std::optional<Millis>(-5));
}

// ---- make_call ----

BOOST_AUTO_TEST_CASE(call_decodes) {
  MakeCallRequest r = decode_make_call({{"action", "start"}, {"by", "driver"}});
  BOOST_CHECK(r.action == CallAction::start);
  BOOST_CHECK(!r.call_id.has_value());
  BOOST_CHECK(r.by == std::optional<Role>(Role::driver));
  r = decode_make_call({{"action", "start"}, {"by", "passenger"}, {"call_id", "c-1"}});
  BOOST_CHECK(r.call_id == std::optional<std::string>("c-1"));
  r = decode_make_call({{"action", "get"}});  // by and call_id are optional for get
  BOOST_CHECK(r.action == CallAction::get);
  BOOST_CHECK(!r.by.has_value());
  for (const char* action : {"accept", "decline", "cancel", "end"}) {
    r = decode_make_call({{"action", action}, {"by", "passenger"}, {"call_id", "c-1"}});
    BOOST_TEST(std::string(to_string(r.action)) == action);
  }
}

BOOST_AUTO_TEST_CASE(call_action_checked) {
  check_call_invalid({{"by", "driver"}}, "action");
  check_call_invalid({{"action", 1}, {"by", "driver"}}, "action");
  check_call_invalid({{"action", "hangup"}, {"by", "driver"}}, "action");
  check_call_invalid({{"action", nullptr}, {"by", "driver"}}, "action");
}

BOOST_AUTO_TEST_CASE(call_id_required_except_start_and_get) {
  for (const char* action : {"accept", "decline", "cancel", "end"}) {
    check_call_invalid({{"action", action}, {"by", "driver"}}, "call_id");
  }
  for (const Json& bad : {Json(""), Json(std::string(129, 'c')), Json("a b"), Json(5), Json(nullptr)}) {
    check_call_invalid({{"action", "accept"}, {"by", "driver"}, {"call_id", bad}}, "call_id");
    check_call_invalid({{"action", "start"}, {"by", "driver"}, {"call_id", bad}}, "call_id");
  }
  BOOST_CHECK(decode_make_call({{"action", "end"}, {"by", "driver"}, {"call_id", std::string(128, 'c')}}).call_id);
}

BOOST_AUTO_TEST_CASE(call_by_required_except_get) {
  for (const char* action : {"start", "accept", "decline", "cancel", "end"}) {
    check_call_invalid({{"action", action}, {"call_id", "c-1"}}, "by");
  }
  check_call_invalid({{"action", "start"}, {"by", "system"}}, "by");
  check_call_invalid({{"action", "start"}, {"by", 1}}, "by");
  check_call_invalid({{"action", "start"}, {"by", "Driver"}}, "by");
  check_call_invalid({{"action", "get"}, {"by", "nobody"}}, "by");
}

// ---- presence ----

BOOST_AUTO_TEST_CASE(presence_decodes) {
  PresenceRequest r = decode_presence({{"role", "passenger"}, {"online", true}, {"client_id", "app-1"}});
  BOOST_CHECK(r.role == Role::passenger);
  BOOST_TEST(r.online);
  BOOST_CHECK(r.client_id == std::optional<std::string>("app-1"));
  r = decode_presence({{"role", "driver"}, {"online", false}});
  BOOST_CHECK(r.role == Role::driver);
  BOOST_TEST(!r.online);
  BOOST_CHECK(!r.client_id.has_value());
}

BOOST_AUTO_TEST_CASE(presence_fields_checked) {
  check_presence_invalid({{"online", true}}, "role");
  check_presence_invalid({{"role", "system"}, {"online", true}}, "role");
  check_presence_invalid({{"role", 1}, {"online", true}}, "role");
  check_presence_invalid({{"role", "driver"}}, "online");
  for (const Json& bad : {Json("true"), Json(1), Json(nullptr), Json::array()}) {
    check_presence_invalid({{"role", "driver"}, {"online", bad}}, "online");
  }
  for (const Json& bad : {Json(""), Json(5), Json(std::string(129, 'x')), Json("a b")}) {
    check_presence_invalid({{"role", "driver"}, {"online", true}, {"client_id", bad}}, "client_id");
  }
}

// ---- booking codes and topics ----

BOOST_AUTO_TEST_CASE(booking_code_edges) {
  for (const std::string& ok : {std::string("A"), std::string("z"), std::string("0"), std::string("BK123"),
                                std::string("a-b_c"), std::string("9_-"), std::string(64, 'a')}) {
    BOOST_TEST(valid_booking_code(ok), ok);
  }
  for (const std::string& bad :
       {std::string(""), std::string(65, 'a'), std::string("-a"), std::string("_a"), std::string("a.b"),
        std::string("."), std::string("a b"), std::string("a/b"), std::string("a+b"), std::string("a#"),
        std::string("caf\xc3\xa9"), std::string("a\0b", 3), std::string("$a")}) {
    BOOST_TEST(!valid_booking_code(bad), "'" << bad << "'");
  }
}

BOOST_AUTO_TEST_CASE(parse_request_topics) {
  const Topics topics("navietakie/v1");
  const std::pair<const char*, Action> actions[] = {{"send_message", Action::send_message},
                                                    {"get_message", Action::get_message},
                                                    {"make_call", Action::make_call},
                                                    {"presence", Action::presence}};
  for (const auto& [leaf, action] : actions) {
    auto parsed = topics.parse_request(std::string("navietakie/v1/bookings/BK123/") + leaf);
    BOOST_REQUIRE(parsed.has_value());
    BOOST_TEST(parsed->booking == "BK123");
    BOOST_CHECK(parsed->action == action);
    BOOST_TEST(topics.request("BK123", action) == std::string("navietakie/v1/bookings/BK123/") + leaf);
    BOOST_TEST(topics.request_filter(action) == std::string("navietakie/v1/bookings/+/") + leaf);
  }
  // The booking level is returned as published; validating it is the engine's job.
  auto parsed = topics.parse_request("navietakie/v1/bookings/bad.code/get_message");
  BOOST_REQUIRE(parsed.has_value());
  BOOST_TEST(parsed->booking == "bad.code");

  for (const char* other :
       {"", "navietakie/v1", "navietakie/v1/bookings/", "navietakie/v1/bookings/BK1", "navietakie/v1/bookings/BK1/",
        "navietakie/v1/bookings/BK1/events/message", "navietakie/v1/bookings/BK1/events/call",
        "navietakie/v1/bookings/BK1/errors", "navietakie/v1/bookings/BK1/send_message/x",
        "navietakie/v1/bookings/BK1/x/send_message", "navietakie/v1/bookings/BK1/Send_Message",
        "navietakie/v2/bookings/BK1/send_message", "x/navietakie/v1/bookings/BK1/send_message",
        "navietakie/v1/replies/c/send_message", "/navietakie/v1/bookings/BK1/send_message", "navietakie/v1/errors"}) {
    BOOST_TEST(!topics.parse_request(other).has_value(), "'" << other << "'");
  }
}

BOOST_AUTO_TEST_CASE(topics_under_a_custom_prefix) {
  const Topics topics("fleet/eu");
  auto parsed = topics.parse_request("fleet/eu/bookings/B-1/make_call");
  BOOST_REQUIRE(parsed.has_value());
  BOOST_CHECK(parsed->action == Action::make_call);
  BOOST_TEST(!topics.parse_request("navietakie/v1/bookings/B-1/make_call").has_value());
  BOOST_TEST(topics.message_events("B-1") == "fleet/eu/bookings/B-1/events/message");
  BOOST_TEST(topics.call_events("B-1") == "fleet/eu/bookings/B-1/events/call");
  BOOST_TEST(topics.presence_events("B-1") == "fleet/eu/bookings/B-1/events/presence");
  BOOST_TEST(topics.booking_errors("B-1") == "fleet/eu/bookings/B-1/errors");
  BOOST_TEST(topics.global_errors() == "fleet/eu/errors");
}

BOOST_AUTO_TEST_CASE(valid_reply_topic_rules) {
  const Topics topics("navietakie/v1");
  for (const char* ok : {"a", "navietakie/v1/replies/client-1/abc", "a/b/c", "replies/x y",
                         "other/bookings/BK1/send_message", "navietakie/v1/bookings/BK1/reply"}) {
    BOOST_TEST(topics.valid_reply_topic(ok), "'" << ok << "'");
  }
  for (const char* bad :
       {"", "+", "#", "a/+/b", "a/#", "a+", "$SYS/x", "$share/g/t", "$", "navietakie/v1/bookings/BK1/send_message",
        "navietakie/v1/bookings/BK1/get_message", "navietakie/v1/bookings/BK1/make_call",
        "navietakie/v1/bookings/BK1/presence", "navietakie/v1/bookings/bad.code/send_message"}) {
    BOOST_TEST(!topics.valid_reply_topic(bad), "'" << bad << "'");
  }
  BOOST_TEST(!topics.valid_reply_topic(std::string("a\0b", 3)));
}

BOOST_AUTO_TEST_SUITE_END()
