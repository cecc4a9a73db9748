// Malformed and hostile requests: each gets the exact error code of the contract (with the error
// precedence of PROTOCOL.md "Precise rules"), nothing is stored, and the host keeps serving.
#include <optional>

#include "support/contract.hpp"

using namespace navietakie::test;

namespace {

System& hostile_system(Host host) { return shared_system("hostile", system_options(host)); }

constexpr std::size_t max_payload_bytes = 64 * 1024;

struct HostileCase {
  HostileCase(std::string name_, std::string action_, std::string payload_, std::string code_, std::string field_,
              std::optional<std::string> booking_ = std::nullopt)
      : name(std::move(name_)),
        action(std::move(action_)),
        payload(std::move(payload_)),
        code(std::move(code_)),
        field(std::move(field_)),
        booking(std::move(booking_)) {}
  std::string name;
  std::string action;                  // a request action (wire::kActions)
  std::string payload;                 // sent as-is
  std::string code;                    // the expected error code
  std::string field;                   // the field the message must name ("" when none applies)
  std::optional<std::string> booking;  // the raw topic level; none: the suite's hostile booking
};

std::string repeat(const std::string& s, std::size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (std::size_t i = 0; i < n; ++i) out += s;
  return out;
}

// The bytes of a literal, embedded NULs included.
template <std::size_t N>
std::string bytes(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}

// A valid send_message of exactly `size` bytes (padded inside `data`).
std::string send_payload_of_size(std::size_t size) {
  const std::string head = R"({"sender":"driver","text":"padded","data":{"pad":")";
  const std::string tail = R"("}})";
  return head + std::string(size - head.size() - tail.size(), 'p') + tail;
}

// mark_read and typing (v1.1): malformed, wrong types, huge. The suite's booking has no messages,
// so every seq above 0 is above its last_seq.
std::vector<HostileCase> receipt_cases() {
  const std::string huge = R"({"role":"driver","seq":0,"pad":")" + std::string(1024 * 1024, 'x') + R"("})";
  return {
      {"mark_read not JSON", "mark_read", "seq=1", "invalid_json", ""},
      {"mark_read an array", "mark_read", R"([{"role":"driver","seq":0}])", "invalid_request", ""},
      {"mark_read role missing", "mark_read", R"({"seq":0})", "invalid_request", "role"},
      {"mark_read role system", "mark_read", R"({"role":"system","seq":0})", "invalid_request", "role"},
      {"mark_read role number", "mark_read", R"({"role":1,"seq":0})", "invalid_request", "role"},
      {"mark_read seq missing", "mark_read", R"({"role":"driver"})", "invalid_request", "seq"},
      {"mark_read seq string", "mark_read", R"({"role":"driver","seq":"1"})", "invalid_request", "seq"},
      {"mark_read seq negative", "mark_read", R"({"role":"driver","seq":-1})", "invalid_request", "seq"},
      {"mark_read seq fraction", "mark_read", R"({"role":"driver","seq":0.5})", "invalid_request", "seq"},
      {"mark_read seq null", "mark_read", R"({"role":"driver","seq":null})", "invalid_request", "seq"},
      {"mark_read seq beyond 64 bits", "mark_read", R"({"role":"driver","seq":18446744073709551616})",
       "invalid_request", "seq"},
      {"mark_read seq above last_seq", "mark_read", R"({"role":"driver","seq":1})", "invalid_request", "seq"},
      {"mark_read 1 MiB", "mark_read", huge, "payload_too_large", ""},
      {"typing not JSON", "typing", "typing", "invalid_json", ""},
      {"typing a string", "typing", R"("driver")", "invalid_request", ""},
      {"typing role missing", "typing", R"({"typing":true})", "invalid_request", "role"},
      {"typing role system", "typing", R"({"role":"system","typing":true})", "invalid_request", "role"},
      {"typing flag missing", "typing", R"({"role":"driver"})", "invalid_request", "typing"},
      {"typing flag string", "typing", R"({"role":"driver","typing":"true"})", "invalid_request", "typing"},
      {"typing flag number", "typing", R"({"role":"driver","typing":1})", "invalid_request", "typing"},
      {"typing flag null", "typing", R"({"role":"driver","typing":null})", "invalid_request", "typing"},
      {"typing 1 MiB", "typing", std::string(1024 * 1024, '{'), "payload_too_large", ""},
      {"typing bad booking code", "typing", R"({"role":"driver","typing":true})", "invalid_booking_code", "", "-bk"},
  };
}

std::vector<HostileCase> hostile_cases() {
  const std::string valid_send = R"({"sender":"driver","text":"hi"})";
  std::vector<HostileCase> cases{
      // Not JSON, or not UTF-8.
      {"plain text", "send_message", "hello there", "invalid_json", ""},
      {"truncated object", "send_message", R"({"sender":"driver","text":"hi")", "invalid_json", ""},
      {"trailing garbage", "send_message", valid_send + " trailing", "invalid_json", ""},
      {"two objects", "send_message", valid_send + valid_send, "invalid_json", ""},
      {"single quotes", "send_message", "{'sender':'driver','text':'hi'}", "invalid_json", ""},
      {"comment", "send_message", R"({"sender":"driver", /* c */ "text":"hi"})", "invalid_json", ""},
      {"empty payload", "send_message", "", "invalid_json", ""},
      {"whitespace only", "get_message", " \n\t ", "invalid_json", ""},
      {"invalid UTF-8 in a string", "send_message", "{\"sender\":\"driver\",\"text\":\"\xff\xfe\"}", "invalid_json",
       ""},
      {"overlong UTF-8", "send_message", "{\"sender\":\"driver\",\"text\":\"\xc0\xaf\"}", "invalid_json", ""},
      {"UTF-8 encoded surrogate", "send_message", "{\"sender\":\"driver\",\"text\":\"\xed\xa0\x80\"}", "invalid_json",
       ""},
      {"truncated UTF-8 sequence", "send_message", "{\"sender\":\"driver\",\"text\":\"\xe2\x82\"}", "invalid_json", ""},
      {"binary garbage", "make_call", bytes("\x00\x01\x02\xff\x80garbage\x00\x7f"), "invalid_json", ""},
      {"NUL inside JSON", "send_message", bytes("{\"sender\":\"driver\",\x00\"text\":\"hi\"}"), "invalid_json", ""},
      // JSON, but not an object.
      {"JSON array", "send_message", R"([{"sender":"driver","text":"hi"}])", "invalid_request", ""},
      {"JSON string", "send_message", R"("hello")", "invalid_request", ""},
      {"JSON number", "get_message", "42", "invalid_request", ""},
      {"JSON null", "make_call", "null", "invalid_request", ""},
      {"JSON true", "presence", "true", "invalid_request", ""},
      {"deeply nested array", "send_message", repeat("[", 20000) + repeat("]", 20000), "invalid_request", ""},
      // send_message: every field of the wrong type or out of range.
      {"sender missing", "send_message", R"({"text":"hi"})", "invalid_request", "sender"},
      {"sender null", "send_message", R"({"sender":null,"text":"hi"})", "invalid_request", "sender"},
      {"sender number", "send_message", R"({"sender":7,"text":"hi"})", "invalid_request", "sender"},
      {"sender unknown role", "send_message", R"({"sender":"pilot","text":"hi"})", "invalid_request", "sender"},
      {"sender empty", "send_message", R"({"sender":"","text":"hi"})", "invalid_request", "sender"},
      {"sender object", "send_message", R"({"sender":{"role":"driver"},"text":"hi"})", "invalid_request", "sender"},
      {"type number", "send_message", R"({"sender":"driver","type":1,"text":"hi"})", "invalid_request", "type"},
      {"type unknown", "send_message", R"({"sender":"driver","type":"video","text":"hi"})", "invalid_request", "type"},
      {"text number", "send_message", R"({"sender":"driver","text":5})", "invalid_request", "text"},
      {"text object", "send_message", R"({"sender":"driver","text":{"body":"hi"}})", "invalid_request", "text"},
      {"text array", "send_message", R"({"sender":"driver","text":["hi"]})", "invalid_request", "text"},
      {"text too long", "send_message", R"({"sender":"driver","text":")" + std::string(4097, 'x') + R"("})",
       "invalid_request", "text"},
      {"sender_id number", "send_message", R"({"sender":"driver","sender_id":42,"text":"hi"})", "invalid_request",
       "sender_id"},
      {"sender_id object", "send_message", R"({"sender":"driver","sender_id":{},"text":"hi"})", "invalid_request",
       "sender_id"},
      {"data string", "send_message", R"({"sender":"driver","text":"hi","data":"junk"})", "invalid_request", "data"},
      {"data array", "send_message", R"({"sender":"driver","text":"hi","data":[{"a":1}]})", "invalid_request", "data"},
      {"data number", "send_message", R"({"sender":"driver","text":"hi","data":3})", "invalid_request", "data"},
      {"message_id number", "send_message", R"({"sender":"driver","text":"hi","message_id":12})", "invalid_request",
       "message_id"},
      {"message_id with spaces", "send_message", R"({"sender":"driver","text":"hi","message_id":"has space"})",
       "invalid_request", "message_id"},
      {"message_id 129 chars", "send_message",
       R"({"sender":"driver","text":"hi","message_id":")" + std::string(129, 'm') + R"("})", "invalid_request",
       "message_id"},
      {"message_id empty", "send_message", R"({"sender":"driver","text":"hi","message_id":""})", "invalid_request",
       "message_id"},
      {"message_id non-ASCII", "send_message", "{\"sender\":\"driver\",\"text\":\"hi\",\"message_id\":\"id\xc3\xa9\"}",
       "invalid_request", "message_id"},
      {"message_id control char", "send_message", R"({"sender":"driver","text":"hi","message_id":"a\tb"})",
       "invalid_request", "message_id"},
      {"message_id array", "send_message", R"({"sender":"driver","text":"hi","message_id":["a"]})", "invalid_request",
       "message_id"},
      // get_message.
      {"limit as string", "get_message", R"({"limit":"10"})", "invalid_request", "limit"},
      {"limit negative", "get_message", R"({"limit":-1})", "invalid_request", "limit"},
      {"limit zero", "get_message", R"({"limit":0})", "invalid_request", "limit"},
      {"limit 201", "get_message", R"({"limit":201})", "invalid_request", "limit"},
      {"limit fractional", "get_message", R"({"limit":1.5})", "invalid_request", "limit"},
      {"limit huge float", "get_message", R"({"limit":1e30})", "invalid_request", "limit"},
      {"limit 2^64", "get_message", R"({"limit":18446744073709551616})", "invalid_request", "limit"},
      {"limit boolean", "get_message", R"({"limit":true})", "invalid_request", "limit"},
      {"before_seq string", "get_message", R"({"before_seq":"5"})", "invalid_request", "before_seq"},
      {"before_seq negative", "get_message", R"({"before_seq":-3})", "invalid_request", "before_seq"},
      {"after_seq fractional", "get_message", R"({"after_seq":2.5})", "invalid_request", "after_seq"},
      {"after_seq negative", "get_message", R"({"after_seq":-1})", "invalid_request", "after_seq"},
      {"after_seq huge negative", "get_message", R"({"after_seq":-9223372036854775808})", "invalid_request",
       "after_seq"},
      {"before_seq with after_seq", "get_message", R"({"before_seq":5,"after_seq":1})", "invalid_request", "_seq"},
      {"types string", "get_message", R"({"types":"text"})", "invalid_request", "types"},
      {"types of numbers", "get_message", R"({"types":[1]})", "invalid_request", "types"},
      {"types unknown value", "get_message", R"({"types":["sms"]})", "invalid_request", "types"},
      {"types with null", "get_message", R"({"types":["text",null]})", "invalid_request", "types"},
      {"types object", "get_message", R"({"types":{"text":true}})", "invalid_request", "types"},
      {"get sender number", "get_message", R"({"sender":3})", "invalid_request", "sender"},
      {"get sender unknown", "get_message", R"({"sender":"pilot"})", "invalid_request", "sender"},
      {"since string", "get_message", R"({"since":"yesterday"})", "invalid_request", "since"},
      {"until array", "get_message", R"({"until":[]})", "invalid_request", "until"},
      // make_call.
      {"action missing", "make_call", R"({"by":"driver"})", "invalid_request", "action"},
      {"action unknown", "make_call", R"({"action":"hold","by":"driver"})", "invalid_request", "action"},
      {"action number", "make_call", R"({"action":1,"by":"driver"})", "invalid_request", "action"},
      {"action null", "make_call", R"({"action":null,"by":"driver"})", "invalid_request", "action"},
      {"by missing on start", "make_call", R"({"action":"start"})", "invalid_request", "by"},
      {"by system", "make_call", R"({"action":"start","by":"system"})", "invalid_request", "by"},
      {"by number", "make_call", R"({"action":"start","by":2})", "invalid_request", "by"},
      {"by empty", "make_call", R"({"action":"start","by":""})", "invalid_request", "by"},
      {"get with invalid by", "make_call", R"({"action":"get","by":"system"})", "invalid_request", "by"},
      {"call_id missing on accept", "make_call", R"({"action":"accept","by":"passenger"})", "invalid_request",
       "call_id"},
      {"call_id number", "make_call", R"({"action":"accept","by":"passenger","call_id":17})", "invalid_request",
       "call_id"},
      {"call_id with spaces", "make_call", R"({"action":"end","by":"driver","call_id":"c 1"})", "invalid_request",
       "call_id"},
      {"call_id 129 chars", "make_call",
       R"({"action":"end","by":"driver","call_id":")" + std::string(129, 'c') + R"("})", "invalid_request", "call_id"},
      {"start with call_id number", "make_call", R"({"action":"start","by":"driver","call_id":5})", "invalid_request",
       "call_id"},
      // invalid_request comes before not_found.
      {"unknown call_id and no by", "make_call", R"({"action":"accept","call_id":"nope-1"})", "invalid_request", "by"},
      {"unknown call_id", "make_call", R"({"action":"accept","by":"passenger","call_id":"nope-1"})", "not_found", ""},
      {"unknown call_id on get", "make_call", R"({"action":"get","call_id":"nope-2"})", "not_found", ""},
      // presence.
      {"role missing", "presence", R"({"online":true})", "invalid_request", "role"},
      {"role system", "presence", R"({"role":"system","online":true})", "invalid_request", "role"},
      {"role number", "presence", R"({"role":5,"online":true})", "invalid_request", "role"},
      {"online missing", "presence", R"({"role":"driver"})", "invalid_request", "online"},
      {"online string", "presence", R"({"role":"driver","online":"yes"})", "invalid_request", "online"},
      {"online number", "presence", R"({"role":"driver","online":1})", "invalid_request", "online"},
      {"online null", "presence", R"({"role":"driver","online":null})", "invalid_request", "online"},
      {"client_id number", "presence", R"({"role":"driver","online":true,"client_id":9})", "invalid_request",
       "client_id"},
      // Sizes: the whole payload is checked first.
      {"payload 1 MiB of valid JSON", "send_message",
       R"({"sender":"driver","text":"hi","data":{"pad":")" + std::string(1024 * 1024, 'x') + R"("}})",
       "payload_too_large", ""},
      {"payload 1 MiB of garbage", "send_message", std::string(1024 * 1024, '\xff'), "payload_too_large", ""},
      {"payload one byte over the limit", "send_message", send_payload_of_size(max_payload_bytes + 1),
       "payload_too_large", ""},
  };

  // Booking codes: 1 to 64 of A-Z a-z 0-9 _ -, starting with a letter or digit.
  const std::vector<std::pair<std::string, std::string>> bad_codes{
      {"65 characters", "b" + std::string(64, '1')},
      {"starting with -", "-bk1"},
      {"starting with _", "_bk1"},
      {"containing .", "bk.1"},
      {"empty level", ""},
      {"containing a space", "bk 1"},
      {"non-ASCII", "bk\xc3\xa9"},
      {"containing @", "bk@1"},
  };
  for (const auto& [name, code] : bad_codes) {
    cases.push_back({"booking code " + name, "send_message", valid_send, "invalid_booking_code", "", code});
  }
  // Precedence: payload_too_large, invalid_json, invalid_booking_code, invalid_request.
  cases.push_back({"bad booking code and not JSON", "send_message", "not json", "invalid_json", "", "bk.bad"});
  cases.push_back(
      {"bad booking code and invalid UTF-8", "get_message", "{\"a\":\"\xff\"}", "invalid_json", "", "-bad"});
  cases.push_back({"bad booking code and not an object", "send_message", "[1]", "invalid_booking_code", "", "bk.bad"});
  cases.push_back(
      {"bad booking code and no sender", "send_message", R"({"text":"hi"})", "invalid_booking_code", "", "bk.bad"});
  cases.push_back({"bad booking code and too large", "send_message", std::string(max_payload_bytes + 1, 'x'),
                   "payload_too_large", "", "bk.bad"});
  for (auto& c : receipt_cases()) cases.push_back(std::move(c));
  return cases;
}

std::string topic_for(const HostileCase& c, const std::string& hostile_booking) {
  return topic_prefix + "/bookings/" + c.booking.value_or(hostile_booking) + "/" + c.action;
}

// Sends each case (one at a time) on `hostile_booking` unless it names its own, and checks the
// error code (and the field the message names).
void check_each_case(TestContext& ctx, TestClient& client, const std::vector<HostileCase>& cases,
                     const std::string& hostile_booking) {
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT("case '" << c.name << "' on " << c.action) {
      const auto reply = client.try_await_reply(client.send_request(topic_for(c, hostile_booking), c.payload), 5s);
      BOOST_CHECK_MESSAGE(reply, "no reply within 5 s");
      if (reply && c.field.empty()) {
        NT_CHECK_ERROR(*reply, c.code);
      } else if (reply) {
        NT_CHECK_ERROR_NAMING(*reply, c.code, c.field);
      }
      // One case that kills the host must not hide the verdicts on the others.
      if (!ctx.system().host_alive()) {
        BOOST_ERROR("the host died:\n" << ctx.system().describe());
        ctx.system().start_host();
      }
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(hostile)

NT_HOST_TEST(malformed_requests_get_the_exact_error_code, 180) {
  TestContext ctx(hostile_system(host));
  auto client = ctx.client();
  const std::string code = booking("hostile");
  const auto cases = hostile_cases();
  BOOST_TEST_MESSAGE(cases.size() << " hostile requests");
  BOOST_TEST(cases.size() >= 30u);
  check_each_case(ctx, *client, cases, code);
  // Nothing of it was stored, and the host still serves.
  BOOST_TEST(ctx.system().host_alive());
  const json page = get_message(*client, code);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page.value("last_seq", -1) == 0);
  const json sent = send_message(*client, code, text_message("driver", "still here"));
  NT_REQUIRE_OK(sent);
  BOOST_TEST(sent["message"].value("seq", -1) == 1);
}

NT_HOST_TEST(limits_are_inclusive, 60) {
  TestContext ctx(hostile_system(host));
  auto client = ctx.client();
  // A payload of exactly 64 KiB is accepted.
  const std::string code = booking("exact");
  const std::string payload = send_payload_of_size(max_payload_bytes);
  BOOST_REQUIRE_EQUAL(payload.size(), max_payload_bytes);
  NT_CHECK_OK(client->request_raw(request_topic(code, "send_message"), payload));
  // A booking code of 64 characters is valid.
  const std::string long_code = "L" + random_hex(63);
  const json reply = send_message(*client, long_code, text_message("driver", "long code"));
  NT_REQUIRE_OK(reply);
  BOOST_TEST(reply["message"].value("booking_code", "") == long_code);
  // A message_id of 128 printable characters, every printable ASCII character allowed.
  std::string printable;
  for (char c = 0x21; c <= 0x7e; ++c) printable.push_back(c);
  const std::string id = printable + std::string(128 - printable.size(), 'z');
  json body = text_message("driver", "edge id");
  body["message_id"] = id;
  const json edge = send_message(*client, code, body);
  NT_REQUIRE_OK(edge);
  BOOST_TEST(edge["message"].value("message_id", "") == id);
  // limit 1 and 200 are in range.
  NT_CHECK_OK(get_message(*client, code, {{"limit", 1}}));
  NT_CHECK_OK(get_message(*client, code, {{"limit", 200}}));
}

NT_HOST_TEST(deeply_nested_data_does_not_break_the_host, 60) {
  TestContext ctx(hostile_system(host));
  auto client = ctx.client();
  const std::string code = booking("deep");
  // `data` is an object carried as-is: storing it is correct, refusing it as invalid_request
  // naming data is a defensible limit; anything else (a crash, no reply) is not.
  const std::string deep =
      R"({"sender":"driver","text":"deep","data":)" + repeat(R"({"a":)", 10000) + "1" + repeat("}", 10000) + "}";
  BOOST_REQUIRE(deep.size() < max_payload_bytes);
  const json reply = client->request_raw(request_topic(code, "send_message"), deep, 10s);
  BOOST_CHECK_MESSAGE(is_ok(reply) || is_error_naming(reply, "invalid_request", "data"),
                      "expected ok or invalid_request naming data, got " << reply.dump().substr(0, 300));
  BOOST_TEST(ctx.system().host_alive());
  NT_CHECK_OK(get_message(*client, code, {{"limit", 1}}));
}

NT_HOST_TEST(bad_reply_addresses_are_reported_on_the_errors_topic, 60) {
  TestContext ctx(hostile_system(host));
  ClientOptions options;
  options.version = MqttVersion::v311;
  auto client = ctx.client(options);
  const std::string code = booking("replyto");
  client->subscribe(errors_topic(code));
  client->subscribe(request_topic(code, "send_message"));  // to see whether the host published there

  struct BadReplyTo {
    std::string name;
    json reply_to;
    std::string error;  // not a topic name: invalid_request; a topic no reply may go to: forbidden
  };
  const std::vector<BadReplyTo> cases{
      {"a request topic of the booking", request_topic(code, "send_message"), "forbidden"},
      {"a request topic of another booking", request_topic(booking("victim"), "make_call"), "forbidden"},
      {"a filter with +", topic_prefix + "/replies/+/x", "invalid_request"},
      {"a filter with #", topic_prefix + "/replies/#", "invalid_request"},
      {"a number", 42, "invalid_request"},
      {"an empty topic", "", "invalid_request"},
  };
  // One request at a time: the n-th error on the errors topic belongs to the n-th request.
  std::size_t errors_seen = 0;
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT("reply_to " << c.name) {
      const std::string marker = "bad-reply-to-" + random_hex(6);
      json body = text_message("driver", marker);
      body["reply_to"] = c.reply_to;
      body["correlation_id"] = marker;
      client->publish(request_topic(code, "send_message"), body.dump());
      const auto errors = client->wait_for_count(on_topic(errors_topic(code)), errors_seen + 1, 5s);
      BOOST_CHECK_MESSAGE(errors.size() == errors_seen + 1, "no error on " << errors_topic(code));
      errors_seen = errors.size();
      if (!errors.empty()) {
        const json error = errors.back().body();
        NT_CHECK_ERROR_NAMING(error, c.error, "reply_to");
        BOOST_TEST(error.value("request_topic", "") == request_topic(code, "send_message"));
      }
    }
  }
  // The host published nothing on the request topic, stored nothing. With the bridge only our own
  // requests are there; the plugin consumes requests, so nothing at all is.
  const json page = client->request_v311(request_topic(code, "get_message"), json::object());
  NT_REQUIRE_OK(page);
  BOOST_TEST(page.value("last_seq", -1) == 0);
  const std::size_t expected_on_request_topic = host == Host::bridge ? cases.size() : 0u;
  BOOST_TEST(client->count(on_topic(request_topic(code, "send_message"))) == expected_on_request_topic);

  // correlation_id of the wrong type, with a valid reply_to: invalid_request naming correlation_id,
  // as a reply or on the errors topic.
  const std::string reply_topic = client->next_reply_topic();
  json body = text_message("driver", "bad correlation");
  body["reply_to"] = reply_topic;
  body["correlation_id"] = json::object({{"id", 1}});
  client->publish(request_topic(code, "send_message"), body.dump());
  const auto answers = client->wait_for_count(
      [&](const Received& m) { return m.topic == reply_topic || m.topic == errors_topic(code); }, errors_seen + 1, 5s);
  BOOST_REQUIRE_MESSAGE(answers.size() == errors_seen + 1, "no reply and no error for a correlation_id object");
  NT_CHECK_ERROR_NAMING(answers.back().body(), "invalid_request", "correlation_id");
}

NT_HOST_TEST(requests_at_qos_0_and_2_are_served, 60) {
  TestContext ctx(hostile_system(host));
  auto client = ctx.client();
  const std::string code = booking("qos");
  for (int qos : {0, 2}) {
    BOOST_TEST_CONTEXT("qos " << qos) {
      const auto pending = client->send_request(request_topic(code, "send_message"),
                                                text_message("driver", "qos " + std::to_string(qos)).dump(), qos);
      NT_CHECK_OK(client->await_reply(pending));
    }
  }
}

NT_HOST_TEST(host_still_serves_after_the_hostile_suite, 60) {
  TestContext ctx(hostile_system(host));
  BOOST_REQUIRE(ctx.system().host_alive());
  auto client = ctx.client();
  const std::string code = booking("after");
  NT_CHECK_OK(send_message(*client, code, text_message("passenger", "alive?")));
  NT_CHECK_OK(make_call(*client, code, call_request("start", "passenger")));
  NT_CHECK_OK(set_presence(*client, code, {{"role", "passenger"}, {"online", true}}));
  NT_CHECK_OK(client->request(request_topic(code, "mark_read"), {{"role", "passenger"}, {"seq", 1}}));
  NT_CHECK_OK(client->request(request_topic(code, "typing"), {{"role", "passenger"}, {"typing", true}}));
  BOOST_TEST(ctx.system().host_alive());
}

// A flood from one client (docs/protocol.md "Rate limits"): past its burst its requests are refused
// `rate_limited` without being stored, and a client of the same booking is served all along.
// Authentication on, so that both hosts know who published (the bridge from the plugin's stamp).
NT_HOST_TEST(a_flood_from_one_client_leaves_the_others_served, 120) {
  SystemOptions options = system_options(HostSetup{host, true});
  options.rate_limit_per_s = 2;
  options.rate_limit_burst = 10;
  System system(options);
  TestContext ctx(system);
  const std::string code = booking("flood");
  auto watcher = ctx.client();  // a service: sees the booking's errors topic, and is not limited
  watcher->subscribe(errors_topic(code));
  auto flooder =
      ctx.client(system.as(navietakie::Identity{navietakie::Principal::driver, "drv-" + random_hex(6), code}));
  auto victim =
      ctx.client(system.as(navietakie::Identity{navietakie::Principal::passenger, "pax-" + random_hex(6), code}));

  // 1000 sends without a reply address, at QoS 0 (no acknowledgement awaited).
  constexpr std::size_t flood = 1000;
  PublishOptions qos0;
  qos0.qos = 0;
  for (std::size_t n = 0; n < flood; ++n) {
    auto written = flooder->publish_async(request_topic(code, "send_message"),
                                          text_message("driver", "flood " + std::to_string(n)).dump(), qos0);
    if (n % 50 == 49) written->wait();  // Paho buffers at most 100 publishes of a client
  }
  // The other party, right behind it: every request served (queued behind the flood's refusals:
  // a generous bound, not a timing claim).
  for (int n = 0; n < 5; ++n) {
    NT_CHECK_OK(victim->request(request_topic(code, "send_message"), text_message("passenger", "still here"), 30s));
  }
  const auto refusals = watcher->wait_for_count(
      on_topic_json(errors_topic(code), [](const json& e) { return error_code(e) == "rate_limited"; }), 1, 30s);
  BOOST_REQUIRE_MESSAGE(!refusals.empty(), "no rate_limited error for the flood");
  BOOST_TEST(error_message(refusals.front().body()).find("requests a second") != std::string::npos);

  // Far fewer of the flood were stored than sent (10 at once, then 2 a second).
  const json history = victim->request(request_topic(code, "get_message"), {{"limit", 200}}, 30s);
  NT_REQUIRE_OK(history);
  BOOST_TEST(history.value("last_seq", std::size_t{0}) < flood / 2, history.value("last_seq", 0));
  BOOST_TEST(system.host_alive());
}

BOOST_AUTO_TEST_SUITE_END()

// The close topic (docs/protocol.md, close and retention) under the same abuse: every malformed
// close gets its exact error, closes nothing, and the host goes on.
BOOST_AUTO_TEST_SUITE(hostile_close)

NT_HOST_TEST(malformed_close_requests_get_the_exact_error_code_and_close_nothing, 90) {
  TestContext ctx(hostile_system(host));
  auto client = ctx.client();
  const std::string code = booking("hclose");
  struct Case {
    const char* name;
    std::string booking;
    std::string payload;
    const char* code;
    const char* field;
  };
  const std::vector<Case> cases{
      {"not JSON", code, "{not json", "invalid_json", ""},
      {"invalid UTF-8", code, "{\"reason\":\"\xff\"}", "invalid_json", ""},
      {"not an object", code, "[\"close\"]", "invalid_request", ""},
      {"reason a number", code, R"({"reason":1})", "invalid_request", "reason"},
      {"reason null", code, R"({"reason":null})", "invalid_request", "reason"},
      {"reason an object", code, R"({"reason":{"a":1}})", "invalid_request", "reason"},
      {"reason too long", code, json{{"reason", std::string(257, 'r')}}.dump(), "invalid_request", "reason"},
      {"too large", code, std::string(max_payload_bytes + 1, 'x'), "payload_too_large", ""},
      {"bad booking code", "bk.bad", "{}", "invalid_booking_code", ""},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT("case '" << c.name << "'") {
      const auto reply = client->try_await_reply(
          client->send_request(topic_prefix + "/bookings/" + c.booking + "/close", c.payload), 5s);
      BOOST_CHECK_MESSAGE(reply, "no reply within 5 s");
      if (reply && std::string(c.field).empty()) {
        NT_CHECK_ERROR(*reply, c.code);
      } else if (reply) {
        NT_CHECK_ERROR_NAMING(*reply, c.code, c.field);
      }
    }
  }
  BOOST_TEST(ctx.system().host_alive());
  NT_CHECK_OK(send_message(*client, code, text_message("driver", "still open")));
}

BOOST_AUTO_TEST_SUITE_END()

// --- signal: hostile signalling requests are refused with the exact code and relay nothing ---

BOOST_AUTO_TEST_SUITE(hostile_signal)

NT_HOST_TEST(malformed_signals_get_the_exact_error_code_and_relay_nothing, 180) {
  TestContext ctx(hostile_system(host));
  auto client = ctx.client();
  const std::string code = booking("hsignal");
  client->subscribe(events_filter(code));
  const json started = make_call(*client, code, call_request("start", "driver"));
  NT_REQUIRE_OK(started);
  const std::string id = started["call"].value("call_id", "");
  const std::string head = R"({"call_id":")" + id + R"(","by":"driver",)";
  const std::vector<HostileCase> cases{
      {"not JSON", "signal", "offer", "invalid_json", ""},
      {"an array", "signal", "[]", "invalid_request", ""},
      {"kind missing", "signal", head + R"("sdp":"v=0"})", "invalid_request", "kind"},
      {"kind unknown", "signal", head + R"("kind":"hangup"})", "invalid_request", "kind"},
      {"kind number", "signal", head + R"("kind":3})", "invalid_request", "kind"},
      {"kind null", "signal", head + R"("kind":null})", "invalid_request", "kind"},
      {"call_id missing", "signal", R"({"by":"driver","kind":"bye"})", "invalid_request", "call_id"},
      {"call_id object", "signal", R"({"call_id":{},"by":"driver","kind":"bye"})", "invalid_request", "call_id"},
      {"call_id 129 chars", "signal", R"({"call_id":")" + std::string(129, 'c') + R"(","by":"driver","kind":"bye"})",
       "invalid_request", "call_id"},
      {"by system", "signal", R"({"call_id":")" + id + R"(","by":"system","kind":"bye"})", "invalid_request", "by"},
      {"by missing", "signal", R"({"call_id":")" + id + R"(","kind":"bye"})", "invalid_request", "by"},
      {"offer without sdp", "signal", head + R"("kind":"offer"})", "invalid_request", "sdp"},
      {"sdp number", "signal", head + R"("kind":"offer","sdp":1})", "invalid_request", "sdp"},
      {"sdp with a bye", "signal", head + R"("kind":"bye","sdp":"v=0"})", "invalid_request", "sdp"},
      {"sdp one byte over 16 KiB", "signal", head + R"("kind":"answer","sdp":")" + std::string(16 * 1024 + 1, 'a') + R"("})",
       "invalid_request", "sdp"},
      {"candidate missing", "signal", head + R"("kind":"candidate"})", "invalid_request", "candidate"},
      {"candidate array", "signal", head + R"("kind":"candidate","candidate":[1]})", "invalid_request", "candidate"},
      {"candidate nested", "signal", head + R"("kind":"candidate","candidate":{"a":{"b":1}}})", "invalid_request",
       "candidate"},
      {"candidate over 1 KiB", "signal", head + R"("kind":"candidate","candidate":")" + std::string(1100, 'c') + R"("})",
       "invalid_request", "candidate"},
      {"candidate with an offer", "signal", head + R"("kind":"offer","sdp":"v=0","candidate":"x"})", "invalid_request",
       "candidate"},
      {"invalid UTF-8 in sdp", "signal", head + "\"kind\":\"offer\",\"sdp\":\"\xff\"}", "invalid_json", ""},
      {"payload over the limit", "signal", head + R"("kind":"offer","sdp":")" + std::string(max_payload_bytes, 's') + R"("})",
       "payload_too_large", ""},
      {"another call", "signal", R"({"call_id":"c-other","by":"driver","kind":"offer","sdp":"v=0"})", "not_found", ""},
      {"bad booking code", "signal", head + R"("kind":"bye"})", "invalid_booking_code", "", "bk.bad"},
  };
  check_each_case(ctx, *client, cases, code);
  // Still serving signals, and the one valid one is the only one relayed.
  NT_CHECK_OK(client->request(request_topic(code, "signal"), {{"call_id", id}, {"by", "driver"}, {"kind", "bye"}}));
  BOOST_TEST(client->wait_for(on_topic(event_topic(code, "signal")), 5s).has_value());
  NT_REQUIRE_OK(send_message(*client, code, text_message("driver", "fence")));
  BOOST_TEST(client
                 ->wait_for(on_topic_json(event_topic(code, "message"),
                                          [](const json& m) { return m.value("text", "") == "fence"; }),
                            5s)
                 .has_value());
  BOOST_TEST(client->count(on_topic(event_topic(code, "signal"))) == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
