// The RapidJSON request path against what nlohmann's parser did before it (the reference kept in
// these tests): the same payloads accepted and refused, the same values read, the same `data`
// text stored; and the streaming writer's output.
#include <boost/test/unit_test.hpp>

#include <cctype>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/codec.hpp"
#include "core/errors.hpp"
#include "support/protocol_error.hpp"
#include "core/json_body.hpp"
#include "core/json_writer.hpp"

using namespace navietakie;

namespace {

constexpr std::size_t kMaxText = 4096;

using testing::error_of;

std::optional<ErrorCode> parse_error(const std::string& payload) {
  auto e = error_of([&] { const RequestBody body(payload); });
  return e ? std::optional<ErrorCode>(e->code()) : std::nullopt;
}

bool nlohmann_accepts(const std::string& payload) { return Json::accept(payload); }

// RapidJSON's writer escapes control characters as \u001F where nlohmann wrote \u001f: the only
// byte difference between the two for the same value.
std::string lower_unicode_escapes(std::string text) {
  for (std::size_t i = text.find("\\u"); i != std::string::npos; i = text.find("\\u", i + 2)) {
    if (i > 0 && text[i - 1] == '\\') continue;
    for (std::size_t k = i + 2; k < i + 6 && k < text.size(); ++k)
      text[k] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[k])));
  }
  return text;
}

// Accepted or refused as nlohmann did; if accepted, the value rewritten as nlohmann dumped it.
void check_same_as_nlohmann(const std::string& payload) {
  BOOST_TEST_CONTEXT("payload " << Json(payload).dump(-1, ' ', true, Json::error_handler_t::replace)) {
    const bool accepted = !parse_error(payload).has_value();
    BOOST_TEST(accepted == nlohmann_accepts(payload));
    if (!accepted || !nlohmann_accepts(payload)) return;
    const RequestBody body(payload);
    BOOST_TEST(lower_unicode_escapes(compact_json(body.root())) == Json::parse(payload).dump());
  }
}

std::string deep(const std::string& open, const std::string& inner, const std::string& close, int levels) {
  std::string out;
  for (int i = 0; i < levels; ++i) out += open;
  out += inner;
  for (int i = 0; i < levels; ++i) out += close;
  return out;
}

SendMessageRequest send(const std::string& payload) {
  return decode_send_message(RequestBody(payload), kMaxText);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(json_codec)

BOOST_AUTO_TEST_CASE(accepts_and_refuses_what_nlohmann_did) {
  const std::vector<std::string> payloads = {
      "{}", " {\"a\" : [1, 2]} \n", "[1]", "\"x\"", "1", "null", "true", "-0", "-0.0", "1e300", "1E+2",
      "1e-400",  // underflows to 0, as strtod
      "", " ", "not json", "{", "{}x", "{} {}", "{}{}", "{'a':1}", "{\"a\":1,}", "[1,]", "{\"a\":NaN}",
      "{\"a\":Infinity}", "/* c */ {}", "{} // c", "01", "1.", ".5", "-", "+1", "0x10", "1e", "\"\\x\"",
      "\xff", "{\"a\":\"\xff\"}", "{\"a\":\"\xc3\x28\"}",
      "{\"a\":\"\xc0\xaf\"}",          // overlong '/'
      "{\"a\":\"\xe0\x80\xaf\"}",      // overlong, three bytes
      "{\"a\":\"\xf0\x80\x80\xaf\"}",  // overlong, four bytes
      "{\"a\":\"\xed\xa0\x80\"}",      // a surrogate in UTF-8
      "{\"a\":\"\xf4\x90\x80\x80\"}",  // above U+10FFFF
      "{\"a\":\"\xe2\x82\"}",          // truncated
      "{\"a\":\"\\ud800\"}",           // lone high surrogate
      "{\"a\":\"\\udc00\"}",           // lone low surrogate
      "{\"a\":\"\\uDFFF\"}", "{\"a\":\"x\\ud800\\u0041\"}", "{\"a\":\"\\ud83d\\ude95\"}",
      "{\"a\":\"\\\\udc00\"}",  // an escaped backslash, then text: fine
      "{\"\\udc00\":1}",        // in a key
      "{\"a\":\"\\u0000\"}", "{\"a\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x95\"}",
      std::string("{\"a\":\"x\0y\"}", 11),  // a raw control byte
      std::string("{}\0", 3), std::string("{\"a\":1}\0 ", 9), "{\"a\":\"\x01\"}", "{\"a\":\"\\u001f\\u000b\"}",
      "\xef\xbb\xbf{}",                   // a byte order mark
      "\xef\xbb\xbf", "\xef\xbb{}", " \xef\xbb\xbf{}", "{\"a\":\"\xef\xbb\xbf\"}",
      "0E99", "0e400", "0e999", "{\"a\":-0.00E+99999999999}", "[0e999,1e999]", "[0e999,1]", "[0e999,\"\\udc00\"]", "[0e999,\"\\ud83d\\ude95\"]", "-0.0e-500", "0.000e99", "[0e1,0.0E+30,-0e-7]",  // zero significands
      "1e400", "-1e400", "{\"limit\":1e999}", "18446744073709551615", "18446744073709551616",
      "-9223372036854775808", "-9223372036854775809", "123456789012345678901234567890",
      "{\"a\":1,\"b\":2,\"a\":3}", "{\"a\":{\"x\":1,\"x\":{\"y\":2}},\"b\":[{\"c\":1,\"c\":2}]}",
      "{\"f\":[0.1,1.5,100.0,1e20,1e21,1e-7,123456789.125,5e-324,1.7976931348623157e308,-2.5e-5]}",
      // Nesting far past data's limit of 32, but only so deep that the comparison's own recursive
      // writers (ours and nlohmann's dump) fit in a sanitizer build's stack; the parser's own
      // depth is checked alone below.
      "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}", deep("[", "", "]", 1000), deep("{\"a\":", "1", "}", 500),
      deep("[", "", "]", 1000) + "]",
  };
  for (const auto& payload : payloads) check_same_as_nlohmann(payload);
}

// The parser is iterative: nesting as deep as a maximal payload allows costs no stack.
BOOST_AUTO_TEST_CASE(nesting_of_any_depth_parses_without_recursion) {
  BOOST_TEST(!parse_error(deep("[", "", "]", 100000)).has_value());
  BOOST_TEST(!parse_error(deep("{\"a\":", "1", "}", 50000)).has_value());
  BOOST_TEST((parse_error(deep("[", "", "]", 100000) + "]") == std::optional<ErrorCode>(ErrorCode::invalid_json)));
}

BOOST_AUTO_TEST_CASE(errors_are_invalid_json_with_the_same_shape) {
  auto e = error_of([] { const RequestBody body("{\"a\":1,}"); });
  BOOST_REQUIRE(e.has_value());
  BOOST_TEST(std::string(to_string(e->code())) == "invalid_json");
  BOOST_TEST(std::string(e->what()) == "payload is not valid JSON in UTF-8 (error at byte 8)");
  e = error_of([] { const RequestBody body("{\"a\":1e400}"); });
  BOOST_REQUIRE(e.has_value());
  BOOST_TEST(std::string(e->what()) == "payload is not valid JSON (a number is out of range)");
  e = error_of([] { const RequestBody body("{\"a\":\"\\udc00\"}"); });
  BOOST_REQUIRE(e.has_value());
  BOOST_TEST(std::string(to_string(e->code())) == "invalid_json");
}

BOOST_AUTO_TEST_CASE(duplicate_names_last_value_wins_at_the_first_place) {
  BOOST_TEST(send(R"({"sender":"driver","text":"a","text":"b"})").text == "b");
  BOOST_TEST(Json::parse(R"({"text":"a","text":"b"})").at("text") == "b");  // the reference
  // The last one decides even when an earlier one was invalid, and the other way round.
  BOOST_CHECK(send(R"({"sender":1,"text":"x","sender":"passenger"})").sender == Role::passenger);
  BOOST_TEST(error_of([] { send(R"({"sender":"driver","text":"x","text":5})"); }).has_value());
  BOOST_TEST(send(R"({"sender":"driver","text":"x","data":{"a":1,"b":2,"a":{"c":3}}})").data_json ==
             R"({"a":{"c":3},"b":2})");
  // Depth counts the value kept, not one overwritten.
  const std::string shadowed = R"({"sender":"driver","text":"x","data":{"a":)" + deep("[", "", "]", 40) + R"(,"a":1}})";
  BOOST_TEST(send(shadowed).data_json == R"({"a":1})");
}

BOOST_AUTO_TEST_CASE(integer_fields_take_integer_literals_only) {
  BOOST_TEST(decode_get_message(RequestBody(R"({"limit":50})")).limit == 50u);
  BOOST_TEST(error_of([] { decode_get_message(RequestBody(R"({"limit":50.0})")); }).has_value());
  BOOST_TEST(error_of([] { decode_get_message(RequestBody(R"({"limit":5e1})")); }).has_value());
  BOOST_TEST(error_of([] { decode_get_message(RequestBody(R"({"limit":-0})")); }).has_value());  // 0: below 1
  BOOST_CHECK(decode_get_message(RequestBody(R"({"before_seq":-0})")).before_seq == std::optional<std::uint64_t>(0));
  BOOST_CHECK(decode_get_message(RequestBody(R"({"after_seq":18446744073709551615})")).after_seq ==
              std::optional<std::uint64_t>(18446744073709551615u));
  BOOST_TEST(error_of([] { decode_get_message(RequestBody(R"({"after_seq":18446744073709551616})")); }).has_value());
  BOOST_TEST(error_of([] { decode_get_message(RequestBody(R"({"after_seq":-1})")); }).has_value());
  BOOST_CHECK(decode_get_message(RequestBody(R"({"since":-5})")).since == std::optional<Millis>(-5));
  auto e = error_of([] { decode_get_message(RequestBody(R"({"since":9223372036854775808})")); });
  BOOST_REQUIRE(e.has_value());
  BOOST_TEST(std::string(e->what()) == "'since' is out of range");
  e = error_of([] { decode_get_message(RequestBody(R"({"until":-9223372036854775809})")); });
  BOOST_REQUIRE(e.has_value());
  BOOST_TEST(std::string(e->what()).find("must be an integer") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(data_is_stored_as_nlohmann_wrote_it) {
  const std::vector<std::string> datas = {
      R"({})", R"({"gate":"B","pos":[1.5,2],"deep":{"x":null,"y":true}})", R"({"z":-0,"w":-0.0})",
      R"({"n":18446744073709551616,"m":-9223372036854775809,"k":18446744073709551615})",
      R"({"f":[0.1,100.0,1e20,1e21,1e-7,5e-324,1.7976931348623157e308]})", R"({"u":"x\u0000y\u00e9\ud83d\ude95"})",
      R"({ "spaced" : [ 1 , { "a" : "b" } ] })", R"({"b":1,"a":2})",
  };
  for (const auto& data : datas) {
    BOOST_TEST_CONTEXT(data) {
      const auto r = send(R"({"sender":"driver","text":"x","data":)" + data + "}");
      BOOST_TEST(r.data_json == Json::parse(data).dump());
    }
  }
  // Control characters: the same value, hex digits in upper case.
  BOOST_TEST(send(R"({"sender":"driver","text":"x","data":{"c":"\u001f"}})").data_json == R"({"c":"\u001F"})");
}

BOOST_AUTO_TEST_CASE(data_nesting_is_limited_to_32_levels) {
  const auto at = [](int levels) {
    return R"({"sender":"driver","text":"x","data":)" + deep("{\"n\":", "{}", "}", levels - 1) + "}";
  };
  BOOST_TEST(!error_of([&] { send(at(32)); }).has_value());
  auto e = error_of([&] { send(at(33)); });
  BOOST_REQUIRE(e.has_value());
  BOOST_TEST(std::string(e->what()) == "'data' is nested deeper than 32 levels");
  // Far deeper than any stack would take recursively: refused, not crashed.
  BOOST_TEST(error_of([&] { send(at(20000)); }).has_value());
}

BOOST_AUTO_TEST_CASE(text_keeps_escaped_nul) {
  const auto r = send(R"({"sender":"driver","text":"a\u0000b"})");
  BOOST_TEST(r.text == std::string("a\0b", 3));
}

BOOST_AUTO_TEST_CASE(non_objects_parse_but_are_not_objects) {
  for (const char* payload : {"[1]", "\"x\"", "1", "null", "[]"}) {
    const RequestBody body(payload);
    BOOST_TEST(!body.is_object());
    BOOST_TEST(body.find("sender") == nullptr);
  }
}

BOOST_AUTO_TEST_CASE(writer_replaces_invalid_utf8) {
  JsonWriter out;
  out.begin_object().key("t").string("a\xff" "b\xc3\x28" "c\xe2\x82").key("ok").string("caf\xc3\xa9").end_object();
  BOOST_TEST(out.str() == "{\"t\":\"a\xef\xbf\xbd" "b\xef\xbf\xbd(c\xef\xbf\xbd\xef\xbf\xbd\",\"ok\":\"caf\xc3\xa9\"}");
  BOOST_TEST(Json::accept(out.str()));
}

BOOST_AUTO_TEST_CASE(message_splices_stored_data_and_never_writes_invalid_json) {
  Message m;
  m.booking_code = "BK1";
  m.message_id = "m";
  m.text = "x";
  m.data_json = R"({"a": [1, 2]})";  // as another writer stored it: carried as is
  BOOST_TEST(json_text(m) ==
             R"({"booking_code":"BK1","seq":0,"message_id":"m","type":"text","sender":"driver","text":"x","data":{"a": [1, 2]},"ts":0})");
  for (const char* bad : {"", "null", "[1]", "  ", "not json"}) {
    m.data_json = bad;
    BOOST_TEST(to_json(m).at("data") == Json::object());
  }
}

BOOST_AUTO_TEST_SUITE_END()
