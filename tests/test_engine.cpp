// The Engine against a real store and a fake clock moved by hand: replies, events, errors and
// their routing, calls and ring timeouts, presence, restarts, a full store. The store is LMDB in a
// temp dir, or PostgreSQL when NAVIETAKIE_TEST_STORE=postgres (ctest test_engine_postgres;
// tests/support/store_space.hpp).
#include <boost/test/unit_test.hpp>

#include "support/store_space.hpp"

#include <stdlib.h>  // mkdtemp

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include "core/engine.hpp"
#include "core/wire.hpp"
#include "store/store.hpp"

using namespace navietakie;

namespace {

constexpr Millis kT0 = 1'764'160'000'000;
const std::string kPrefix = "navietakie/v1";
const std::string kReplyTo = "navietakie/v1/replies/client-1/r";

std::string topic(const std::string& booking, const std::string& leaf) {
  return kPrefix + "/bookings/" + booking + "/" + leaf;
}

Request request(const std::string& booking, const std::string& action, const Json& body,
                const std::string& client_id = "client-1") {
  return Request{topic(booking, action), body.dump(), std::nullopt, std::nullopt, client_id};
}

// The same, answered on kReplyTo (MQTT 3.1.1 style).
Request asking(const std::string& booking, const std::string& action, Json body,
               const std::string& client_id = "client-1") {
  body["reply_to"] = kReplyTo;
  return request(booking, action, body, client_id);
}

std::vector<Publish> on(const std::vector<Publish>& out, const std::string& t) {
  std::vector<Publish> found;
  for (const auto& p : out) {
    if (p.topic == t) found.push_back(p);
  }
  return found;
}

// The payload of the one publish on topic t (test fails if there is not exactly one).
Json one(const std::vector<Publish>& out, const std::string& t) {
  auto found = on(out, t);
  BOOST_REQUIRE_MESSAGE(found.size() == 1u, found.size() << " publishes on " << t << ", expected 1");
  return Json::parse(found.front().payload);
}

std::string topics_of(const std::vector<Publish>& out) {
  std::string s;
  for (const auto& p : out) s += p.topic + "\n";
  return s;
}

std::uint64_t errors_counted(const Engine& engine, ErrorCode code) {
  return engine.metrics().errors[static_cast<std::size_t>(code)].load();
}

constexpr std::size_t kMapSize = std::size_t{64} << 20;

// A fresh store, an engine on it and a clock that moves only when a test says so.
struct EngineFixture {
  explicit EngineFixture(EngineOptions engine_options = {}, std::size_t map_size = kMapSize)
      : options(std::move(engine_options)), space(map_size) {
    open_store();
    make_engine();
  }

  void open_store() { store = space.open(); }
  void make_engine() {
    engine = std::make_unique<Engine>(*store, options, [this] { return now; });
  }
  // The process dies and comes back: a new Engine (and optionally a reopened store).
  void restart(bool reopen_store) {
    engine.reset();
    if (reopen_store) {
      store.reset();
      open_store();
    }
    make_engine();
  }

  std::vector<Publish> handle(const Request& r) { return engine->handle({r}); }
  // What the engine loop does after start(): expire_calls() while a deadline is due (bounded).
  std::vector<Publish> expire_overdue() {
    std::vector<Publish> out;
    for (int pass = 0; pass < 100 && engine->next_deadline() && *engine->next_deadline() <= now; ++pass) {
      auto expired = engine->expire_calls();
      out.insert(out.end(), expired.begin(), expired.end());
    }
    return out;
  }

  // Sends a request with reply_to and returns the reply; `out` gets everything published.
  Json ask(const std::string& booking, const std::string& action, const Json& body, std::vector<Publish>* out = nullptr,
           const std::string& client_id = "client-1") {
    auto published = handle(asking(booking, action, body, client_id));
    Json reply = one(published, kReplyTo);
    if (out) *out = std::move(published);
    return reply;
  }

  Json send(const std::string& booking, const std::string& text, const std::string& sender = "driver") {
    return ask(booking, "send_message", {{"sender", sender}, {"text", text}});
  }

  Json get(const std::string& booking, const Json& query) { return ask(booking, "get_message", query); }

  Json call(const std::string& booking, const Json& body, std::vector<Publish>* out = nullptr) {
    return ask(booking, "make_call", body, out);
  }

  EngineOptions options;
  Millis now = kT0;
  navietakie::test::StoreSpace space;  // before store: outlives it
  std::unique_ptr<Store> store;
  std::unique_ptr<Engine> engine;
};

std::vector<std::uint64_t> seqs(const Json& get_reply) {
  std::vector<std::uint64_t> out;
  for (const auto& m : get_reply.at("messages")) out.push_back(m.at("seq").get<std::uint64_t>());
  return out;
}

std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t s = first; s <= last; ++s) out.push_back(s);
  return out;
}

void check_error(const Json& reply, const std::string& code) {
  BOOST_TEST(reply.at("ok") == false, reply.dump());
  BOOST_TEST(reply.at("error").at("code") == code, reply.dump());
  BOOST_TEST(reply.at("error").at("message").is_string());
  BOOST_TEST(!reply.at("error").at("message").get<std::string>().empty());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(engine_logic)

// ---- send_message ----

BOOST_FIXTURE_TEST_CASE(send_replies_and_broadcasts_the_same_message, EngineFixture) {
  now = kT0 + 123;
  auto out = handle(asking("BK123", "send_message",
                           {{"sender", "driver"},
                            {"sender_id", "drv-42"},
                            {"text", "I'm at gate B"},
                            {"data", {{"gate", "B"}}},
                            {"correlation_id", "c-1"}}));
  BOOST_TEST(out.size() == 2u, topics_of(out));
  const Json reply = one(out, kReplyTo);
  const Json event = one(out, topic("BK123", "events/message"));
  BOOST_TEST(reply.at("ok") == true);
  BOOST_TEST(reply.at("duplicate") == false);
  BOOST_TEST(reply.at("correlation_id") == "c-1");
  BOOST_TEST(reply.at("message") == event);
  BOOST_TEST(event.at("booking_code") == "BK123");
  BOOST_TEST(event.at("seq") == 1);
  BOOST_TEST(event.at("type") == "text");
  BOOST_TEST(event.at("sender") == "driver");
  BOOST_TEST(event.at("sender_id") == "drv-42");
  BOOST_TEST(event.at("text") == "I'm at gate B");
  BOOST_TEST(event.at("data") == Json({{"gate", "B"}}));
  BOOST_TEST(event.at("ts") == kT0 + 123);
  BOOST_TEST(valid_printable_key(event.at("message_id").get<std::string>()));  // made by the system
  for (const auto& p : out) {
    BOOST_TEST(!p.retain);
    BOOST_CHECK(!p.correlation_data.has_value());
  }
  BOOST_TEST(engine->metrics().messages_stored.load() == 1u);
}

BOOST_FIXTURE_TEST_CASE(seq_is_gapless_per_booking_and_independent_across_bookings, EngineFixture) {
  BOOST_TEST(send("BK1", "a").at("message").at("seq") == 1);
  BOOST_TEST(send("BK1", "b").at("message").at("seq") == 2);
  BOOST_TEST(send("BK2", "x").at("message").at("seq") == 1);
  BOOST_TEST(send("BK1", "c").at("message").at("seq") == 3);
  BOOST_TEST(send("BK10", "y").at("message").at("seq") == 1);
  BOOST_TEST(send("BK2", "z").at("message").at("seq") == 2);
  const Json page = get("BK1", Json::object());
  BOOST_TEST(seqs(page) == range(1, 3), boost::test_tools::per_element());
  BOOST_TEST(page.at("last_seq") == 3);
  BOOST_TEST(page.at("messages").at(2).at("text") == "c");
}

BOOST_FIXTURE_TEST_CASE(duplicate_message_id_returns_the_first_and_broadcasts_nothing, EngineFixture) {
  std::vector<Publish> out;
  const Json first = ask("BK1", "send_message", {{"message_id", "m-1"}, {"sender", "driver"}, {"text", "first"}}, &out);
  BOOST_TEST(on(out, topic("BK1", "events/message")).size() == 1u);
  now += 5'000;
  const Json again =
      ask("BK1", "send_message", {{"message_id", "m-1"}, {"sender", "passenger"}, {"text", "second"}}, &out);
  BOOST_TEST(out.size() == 1u, topics_of(out));  // the reply only
  BOOST_TEST(again.at("ok") == true);
  BOOST_TEST(again.at("duplicate") == true);
  BOOST_TEST(again.at("message") == first.at("message"));
  BOOST_TEST(again.at("message").at("text") == "first");
  BOOST_TEST(again.at("message").at("ts") == kT0);
  // Nothing new stored: the next message follows directly.
  BOOST_TEST(send("BK1", "next").at("message").at("seq") == 2);
  // The key is per booking.
  BOOST_TEST(
      ask("BK2", "send_message", {{"message_id", "m-1"}, {"sender", "driver"}, {"text", "other"}}).at("duplicate") ==
      false);
  BOOST_TEST(engine->metrics().duplicates.load() == 1u);
  BOOST_TEST(engine->metrics().messages_stored.load() == 3u);
}

BOOST_FIXTURE_TEST_CASE(duplicate_within_one_batch, EngineFixture) {
  const Json body = {{"message_id", "m-1"}, {"sender", "driver"}, {"text", "hi"}};
  auto out = engine->handle({asking("BK1", "send_message", body), asking("BK1", "send_message", body)});
  auto replies = on(out, kReplyTo);
  BOOST_REQUIRE(replies.size() == 2u);
  BOOST_TEST(Json::parse(replies[0].payload).at("duplicate") == false);
  BOOST_TEST(Json::parse(replies[1].payload).at("duplicate") == true);
  BOOST_TEST(Json::parse(replies[1].payload).at("message").at("seq") == 1);
  BOOST_TEST(on(out, topic("BK1", "events/message")).size() == 1u);
}

// ---- reply addresses ----

BOOST_FIXTURE_TEST_CASE(v311_correlation_id_is_echoed_on_success_and_error, EngineFixture) {
  auto reply = ask("BK1", "send_message", {{"sender", "driver"}, {"text", "hi"}, {"correlation_id", "abc"}});
  BOOST_TEST(reply.at("correlation_id") == "abc");
  reply = ask("BK1", "send_message", {{"text", "hi"}, {"correlation_id", "def"}});
  check_error(reply, "invalid_request");
  BOOST_TEST(reply.at("correlation_id") == "def");
  BOOST_TEST(reply.at("error").at("message").get<std::string>().find("'sender'") != std::string::npos);
  reply = ask("BK1", "make_call", {{"action", "get"}, {"correlation_id", "ghi"}});
  check_error(reply, "not_found");
  BOOST_TEST(reply.at("correlation_id") == "ghi");
  // Errors on the reply topic are not also reported on the errors topic.
  auto out = handle(asking("BK1", "send_message", {{"text", "hi"}}));
  BOOST_TEST(out.size() == 1u, topics_of(out));
  // An invalid booking code with a reply address is answered there.
  out = handle(asking("bad.code", "send_message", {{"sender", "driver"}, {"text", "hi"}, {"correlation_id", "x"}}));
  BOOST_TEST(out.size() == 1u, topics_of(out));
  reply = one(out, kReplyTo);
  check_error(reply, "invalid_booking_code");
  BOOST_TEST(reply.at("correlation_id") == "x");
}

BOOST_FIXTURE_TEST_CASE(v5_response_topic_and_correlation_data, EngineFixture) {
  Request r = request("BK1", "send_message", {{"sender", "driver"}, {"text", "hi"}});
  r.response_topic = "navietakie/v1/replies/client-1/v5";
  r.correlation_data = std::string("\x00\x01\xffid", 5);
  auto out = handle(r);
  auto replies = on(out, "navietakie/v1/replies/client-1/v5");
  BOOST_REQUIRE(replies.size() == 1u);
  BOOST_CHECK(replies[0].correlation_data == r.correlation_data);
  const Json reply = Json::parse(replies[0].payload);
  BOOST_TEST(reply.at("ok") == true);
  BOOST_TEST(!reply.contains("correlation_id"));
  // Events do not carry the requester's correlation data.
  for (const auto& p : on(out, topic("BK1", "events/message"))) BOOST_CHECK(!p.correlation_data.has_value());

  // Errors too.
  r.payload = Json{{"text", "hi"}}.dump();
  out = handle(r);
  BOOST_TEST(out.size() == 1u, topics_of(out));
  BOOST_REQUIRE(out.size() == 1u);
  BOOST_TEST(out[0].topic == "navietakie/v1/replies/client-1/v5");
  BOOST_CHECK(out[0].correlation_data == r.correlation_data);
  check_error(Json::parse(out[0].payload), "invalid_request");
}

BOOST_FIXTURE_TEST_CASE(v5_response_topic_wins_over_reply_to, EngineFixture) {
  Request r = request("BK1", "send_message",
                      {{"sender", "driver"}, {"text", "hi"}, {"reply_to", "elsewhere/r"}, {"correlation_id", "c"}});
  r.response_topic = "navietakie/v1/replies/client-1/v5";
  r.correlation_data = "corr";
  auto out = handle(r);
  BOOST_TEST(on(out, "elsewhere/r").empty(), topics_of(out));
  BOOST_TEST(one(out, "navietakie/v1/replies/client-1/v5").at("ok") == true);
}

BOOST_FIXTURE_TEST_CASE(errors_without_reply_address_go_to_the_booking_errors_topic, EngineFixture) {
  const Request r = request("BK1", "send_message", {{"sender", "driver"}, {"correlation_id", "c-9"}});
  auto out = handle(r);
  BOOST_TEST(out.size() == 1u, topics_of(out));
  const Json error = one(out, topic("BK1", "errors"));
  check_error(error, "invalid_request");
  BOOST_TEST(error.at("request_topic") == r.topic);
  BOOST_TEST(error.at("correlation_id") == "c-9");
  BOOST_TEST(error.at("error").at("message").get<std::string>().find("'text'") != std::string::npos);
  // Exactly the reply object plus request_topic.
  Json stripped = error;
  stripped.erase("request_topic");
  stripped.erase("correlation_id");
  stripped["error"].erase("message");
  BOOST_TEST(stripped == Json({{"ok", false}, {"error", {{"code", "invalid_request"}}}}));
  BOOST_TEST(!out[0].retain);
}

BOOST_FIXTURE_TEST_CASE(invalid_booking_code_without_reply_address_goes_to_global_errors, EngineFixture) {
  for (const std::string& booking : {std::string("bad.code"), std::string("-lead"), std::string(65, 'a')}) {
    const Request r = request(booking, "send_message", {{"sender", "driver"}, {"text", "hi"}});
    auto out = handle(r);
    BOOST_TEST(out.size() == 1u, topics_of(out));
    const Json error = one(out, kPrefix + "/errors");
    check_error(error, "invalid_booking_code");
    BOOST_TEST(error.at("request_topic") == r.topic);
  }
}

// PROTOCOL.md: "A request without a reply address that fails is reported on
// {prefix}/bookings/{code}/errors"; only invalid booking codes go to {prefix}/errors.
BOOST_FIXTURE_TEST_CASE(invalid_json_and_too_large_on_a_valid_booking_go_to_its_errors_topic, EngineFixture) {
  for (const std::string& payload : {std::string("not json"), std::string(65 * 1024 + 1, '{')}) {
    BOOST_TEST_CONTEXT("payload of " << payload.size() << " bytes") {
      const Request r{topic("BK1", "send_message"), payload, std::nullopt, std::nullopt, "client-1"};
      auto out = handle(r);
      BOOST_TEST(out.size() == 1u, topics_of(out));
      BOOST_TEST(on(out, topic("BK1", "errors")).size() == 1u, topics_of(out));
      BOOST_TEST(on(out, kPrefix + "/errors").empty(), topics_of(out));
    }
  }
}

// An unusable reply_to means there is no reply address: the error goes to the booking's errors topic.
BOOST_FIXTURE_TEST_CASE(invalid_reply_to_on_a_valid_booking_goes_to_its_errors_topic, EngineFixture) {
  for (const Json& bad : {Json("a/+"), Json("a/#"), Json(""), Json(5), Json("$SYS/x")}) {
    BOOST_TEST_CONTEXT("reply_to " << bad.dump()) {
      auto out = handle(request("BK1", "send_message", {{"sender", "driver"}, {"text", "hi"}, {"reply_to", bad}}));
      BOOST_TEST(out.size() == 1u, topics_of(out));
      BOOST_TEST(on(out, topic("BK1", "events/message")).empty());
      auto errors = on(out, topic("BK1", "errors"));
      BOOST_TEST(errors.size() == 1u, topics_of(out));
      if (errors.size() == 1u) {
        check_error(Json::parse(errors[0].payload), "invalid_request");
        BOOST_TEST(Json::parse(errors[0].payload).at("error").at("message").get<std::string>().find("'reply_to'") !=
                   std::string::npos);
      }
    }
  }
  BOOST_TEST(get("BK1", Json::object()).at("last_seq") == 0);
}

// In every mode, a reply never goes to a topic the system consumes or publishes: the request would
// inject text into another booking's events or errors, or loop back in as a request. `forbidden`,
// on the requester's booking's errors topic, and nothing is stored or published at the address.
BOOST_FIXTURE_TEST_CASE(a_system_topic_as_reply_address_is_forbidden_and_never_published_to, EngineFixture) {
  const std::vector<std::string> targets = {
      topic("BK2", "events/message"), topic("BK2", "events/presence"),
      topic("BK2", "events/call"),    topic("BK2", "events"),
      topic("BK2", "errors"),         topic("BK2", "send_message"),
      topic("bad.code", "events/x"),  kPrefix + "/errors",
      kPrefix + "/metrics/bridge-1",
  };
  for (const auto& target : targets) {
    BOOST_TEST_CONTEXT("reply address " << target) {
      for (const bool v5 : {true, false}) {
        Request r = request("BK1", "send_message", {{"sender", "driver"}, {"text", "injected"}});
        if (v5) {
          r.response_topic = target;
          r.correlation_data = "chosen";
        } else {
          r.payload =
              Json{{"sender", "driver"}, {"text", "injected"}, {"reply_to", target}, {"correlation_id", "c"}}.dump();
        }
        auto out = handle(r);
        BOOST_TEST(on(out, target).empty(), topics_of(out));
        BOOST_TEST(out.size() == 1u, topics_of(out));
        const auto errors = on(out, topic("BK1", "errors"));
        BOOST_REQUIRE(errors.size() == 1u);
        check_error(Json::parse(errors[0].payload), "forbidden");
        BOOST_CHECK(!errors[0].correlation_data.has_value());
      }
    }
  }
  BOOST_TEST(get("BK1", Json::object()).at("last_seq") == 0);
  // Other topics of the prefix stay usable in open mode.
  Request r = request("BK1", "send_message", {{"sender", "driver"}, {"text", "fine"}});
  r.response_topic = topic("BK1", "reply");
  BOOST_TEST(one(handle(r), topic("BK1", "reply")).at("ok") == true);
}

// The host's policy (EngineOptions::reply_allowed) refuses a reply address after the payload's own
// checks (`invalid_request` first, then `forbidden`), before anything is read.
BOOST_AUTO_TEST_CASE(a_reply_address_the_host_refuses_is_forbidden_in_the_documented_order) {
  EngineFixture f;
  std::vector<std::tuple<std::string, std::string, std::string>> asked;
  f.options.require_identity = true;
  f.options.reply_allowed = [&](const Identity& identity, const std::string& client_id, const std::string& t) {
    asked.emplace_back(identity.subject, client_id, t);
    return t.rfind(kPrefix + "/replies/" + client_id + "/", 0) == 0;
  };
  f.restart(false);
  const Identity driver{Principal::driver, "drv-1", "BK1"};
  Request r = request("BK1", "send_message", {{"sender", "driver"}, {"text", "hi"}});
  r.identity = driver;
  r.client_id = "phone-1";
  r.response_topic = kPrefix + "/replies/victim/1";
  auto out = f.handle(r);
  BOOST_TEST(on(out, *r.response_topic).empty(), topics_of(out));
  check_error(one(out, topic("BK1", "errors")), "forbidden");
  BOOST_REQUIRE(asked.size() == 1u);
  BOOST_TEST(std::get<0>(asked[0]) == "drv-1");
  BOOST_TEST(std::get<1>(asked[0]) == "phone-1");
  // A payload error comes first, and is not published at the refused address either.
  r.payload = Json{{"text", "no sender"}}.dump();
  out = f.handle(r);
  BOOST_TEST(on(out, *r.response_topic).empty(), topics_of(out));
  check_error(one(out, topic("BK1", "errors")), "invalid_request");
  // Its own namespace is answered there.
  r.payload = Json{{"sender", "driver"}, {"text", "hi"}}.dump();
  r.response_topic = kPrefix + "/replies/phone-1/1";
  const Json reply = one(f.handle(r), *r.response_topic);
  BOOST_TEST(reply.at("ok") == true);
  BOOST_TEST(reply.at("message").at("seq") == 1);  // the refused ones stored nothing
}

BOOST_FIXTURE_TEST_CASE(non_request_topics_are_ignored, EngineFixture) {
  const Json body = {{"sender", "driver"}, {"text", "hi"}, {"reply_to", kReplyTo}};
  for (const std::string& t : {topic("BK1", "events/message"), topic("BK1", "errors"), std::string("other/topic"),
                               topic("BK1", "send_message/x"), kPrefix + "/errors"}) {
    auto out = handle(Request{t, body.dump(), std::nullopt, std::nullopt, "c"});
    BOOST_TEST(out.empty(), t << ": " << topics_of(out));
  }
  BOOST_TEST(send("BK1", "first").at("message").at("seq") == 1);
}

// ---- error precedence ----

namespace {
// Sends with a v5 response topic (so routing is not in question) and returns the error code.
std::string error_code_for(EngineFixture& f, const std::string& booking, const std::string& payload,
                           std::optional<std::string> response_topic = std::string("resp/t")) {
  Request r{topic(booking, "send_message"), payload, std::move(response_topic), std::nullopt, "c"};
  auto out = f.handle(r);
  BOOST_REQUIRE_MESSAGE(out.size() == 1u, topics_of(out));
  const Json j = Json::parse(out[0].payload);
  BOOST_REQUIRE_MESSAGE(j.at("ok") == false, j.dump());
  return j.at("error").at("code").get<std::string>();
}
}  // namespace

BOOST_FIXTURE_TEST_CASE(error_precedence, EngineFixture) {
  const std::string too_large_garbage(64 * 1024 + 1, '{');
  BOOST_TEST(error_code_for(*this, "bad.code", too_large_garbage) == "payload_too_large");
  BOOST_TEST(error_code_for(*this, "bad.code", "not json") == "invalid_json");
  BOOST_TEST(error_code_for(*this, "bad.code", "{}") == "invalid_booking_code");
  BOOST_TEST(error_code_for(*this, "bad.code", "[1,2]") == "invalid_booking_code");
  BOOST_TEST(error_code_for(*this, "BK1", "[1,2]") == "invalid_request");
  BOOST_TEST(error_code_for(*this, "BK1", "\"text\"") == "invalid_request");
  BOOST_TEST(error_code_for(*this, "BK1", "{}") == "invalid_request");
  // A 3.1.1 correlation_id must be a string.
  check_error(ask("BK1", "send_message", {{"sender", "driver"}, {"text", "hi"}, {"correlation_id", 5}}),
              "invalid_request");
  BOOST_TEST(get("BK1", Json::object()).at("last_seq") == 0);
}

// A payload with invalid UTF-8 is invalid_json like any other: reported, never thrown out of
// handle() (which would lose the replies and events of a batch that has already committed).
BOOST_FIXTURE_TEST_CASE(invalid_utf8_payload_is_reported_not_thrown, EngineFixture) {
  std::size_t broadcast = 0;
  for (const std::string& payload : {std::string("{\"text\":\"\xff\"}"), std::string("{\"text\":\"\xc3\x28\"}"),
                                     std::string("\xff"), std::string("{\"a\":\"\xed\xa0\x80\"}")}) {
    BOOST_TEST_CONTEXT("payload of " << payload.size() << " bytes") {
      // Answered on a v5 response topic.
      Request r{topic("BK1", "send_message"), payload, std::string("resp/t"), std::nullopt, "c"};
      std::vector<Publish> out;
      BOOST_CHECK_NO_THROW(out = handle(r));
      BOOST_TEST(out.size() == 1u);
      if (out.size() == 1u) check_error(Json::parse(out[0].payload), "invalid_json");
      // Without a reply address, after a valid request in the same batch: that one is committed,
      // so its reply and event must come out.
      r.response_topic.reset();
      out.clear();
      BOOST_CHECK_NO_THROW(
          out = engine->handle({asking("BK1", "send_message", {{"sender", "driver"}, {"text", "ok"}}), r}));
      BOOST_TEST(on(out, kReplyTo).size() == 1u);
      broadcast += on(out, topic("BK1", "events/message")).size();
      BOOST_TEST(on(out, topic("BK1", "errors")).size() + on(out, kPrefix + "/errors").size() == 1u);
    }
  }
  // Every stored message was broadcast.
  BOOST_TEST(get("BK1", Json::object()).at("last_seq") == broadcast);
}

BOOST_FIXTURE_TEST_CASE(invalid_booking_code_with_invalid_utf8_in_the_topic_is_reported, EngineFixture) {
  const Request r{topic("caf\xc3\x28", "send_message"), R"({"sender":"driver","text":"hi"})", std::nullopt,
                  std::nullopt, "c"};
  std::vector<Publish> out;
  BOOST_CHECK_NO_THROW(out = handle(r));
  BOOST_TEST(out.size() == 1u);
  if (out.size() == 1u) {
    BOOST_TEST(out[0].topic == kPrefix + "/errors");
    BOOST_CHECK_NO_THROW(check_error(Json::parse(out[0].payload), "invalid_booking_code"));
  }
}

// Precedence puts invalid_booking_code before invalid_request and payload_too_large before
// everything, whatever made the request invalid (here: its reply address).
BOOST_FIXTURE_TEST_CASE(error_precedence_with_a_bad_reply_address, EngineFixture) {
  BOOST_TEST(error_code_for(*this, "bad.code", R"({"sender":"driver","text":"hi","reply_to":"a/+"})", std::nullopt) ==
             "invalid_booking_code");
  Request r{topic("BK1", "send_message"), std::string(64 * 1024 + 1, 'x'), std::string("a/#"), std::nullopt, "c"};
  auto out = handle(r);
  BOOST_REQUIRE(out.size() == 1u);
  BOOST_TEST(Json::parse(out[0].payload).at("error").at("code") == "payload_too_large");
}

BOOST_AUTO_TEST_CASE(payload_limit_is_inclusive_and_configurable) {
  EngineOptions options;
  options.max_payload_bytes = 100;
  EngineFixture f(options);
  std::string payload = Json{{"sender", "driver"}, {"text", ""}}.dump();
  payload.insert(payload.size() - 2, std::string(100 - payload.size(), 'x'));
  BOOST_REQUIRE(payload.size() == 100u);
  auto out = f.handle(Request{topic("BK1", "send_message"), payload, std::string("resp/t"), std::nullopt, "c"});
  BOOST_TEST(one(out, "resp/t").at("ok") == true);
  payload.insert(payload.size() - 2, "x");
  out = f.handle(Request{topic("BK1", "send_message"), payload, std::string("resp/t"), std::nullopt, "c"});
  check_error(one(out, "resp/t"), "payload_too_large");
}

BOOST_AUTO_TEST_CASE(text_limit_is_configurable) {
  EngineOptions options;
  options.max_text_bytes = 10;
  EngineFixture f(options);
  BOOST_TEST(f.send("BK1", std::string(10, 't')).at("ok") == true);
  const Json reply = f.send("BK1", std::string(11, 't'));
  check_error(reply, "invalid_request");
  BOOST_TEST(reply.at("error").at("message").get<std::string>().find("'text'") != std::string::npos);
}

// ---- get_message ----

BOOST_FIXTURE_TEST_CASE(get_message_pages, EngineFixture) {
  Json page = get("BK1", Json::object());
  BOOST_TEST(page.at("ok") == true);
  BOOST_TEST(page.at("messages") == Json::array());
  BOOST_TEST(page.at("has_more") == false);
  BOOST_TEST(page.at("last_seq") == 0);

  for (int i = 1; i <= 5; ++i) {
    now = kT0 + i * 1000;
    send("BK1", "m" + std::to_string(i), i % 2 == 0 ? "passenger" : "driver");
  }
  send("BK2", "other booking");

  page = get("BK1", {{"limit", 2}});
  BOOST_TEST(seqs(page) == std::vector<std::uint64_t>({4, 5}), boost::test_tools::per_element());
  BOOST_TEST(page.at("has_more") == true);
  BOOST_TEST(page.at("last_seq") == 5);
  page = get("BK1", {{"limit", 2}, {"before_seq", 4}});
  BOOST_TEST(seqs(page) == std::vector<std::uint64_t>({2, 3}), boost::test_tools::per_element());
  BOOST_TEST(page.at("has_more") == true);
  page = get("BK1", {{"limit", 2}, {"before_seq", 2}});
  BOOST_TEST(seqs(page) == std::vector<std::uint64_t>({1}), boost::test_tools::per_element());
  BOOST_TEST(page.at("has_more") == false);
  page = get("BK1", {{"limit", 2}, {"after_seq", 0}});
  BOOST_TEST(seqs(page) == std::vector<std::uint64_t>({1, 2}), boost::test_tools::per_element());
  BOOST_TEST(page.at("has_more") == true);
  page = get("BK1", {{"limit", 2}, {"after_seq", 4}});
  BOOST_TEST(seqs(page) == std::vector<std::uint64_t>({5}), boost::test_tools::per_element());
  BOOST_TEST(page.at("has_more") == false);
  page = get("BK1", {{"after_seq", 5}});
  BOOST_TEST(page.at("messages") == Json::array());
  BOOST_TEST(page.at("last_seq") == 5);
  page = get("BK1", {{"sender", "passenger"}, {"limit", 1}});
  BOOST_TEST(seqs(page) == std::vector<std::uint64_t>({4}), boost::test_tools::per_element());
  BOOST_TEST(page.at("has_more") == true);
  page = get("BK1", {{"since", kT0 + 2000}, {"until", kT0 + 3000}});
  BOOST_TEST(seqs(page) == std::vector<std::uint64_t>({2, 3}), boost::test_tools::per_element());
  page = get("BK1", {{"types", {"call"}}});
  BOOST_TEST(page.at("messages") == Json::array());
  BOOST_TEST(page.at("has_more") == false);
  BOOST_TEST(page.at("last_seq") == 5);
  // Messages are returned as stored.
  page = get("BK1", {{"limit", 1}});
  BOOST_TEST(page.at("messages").at(0).at("text") == "m5");
  BOOST_TEST(page.at("messages").at(0).at("ts") == kT0 + 5000);

  check_error(get("BK1", {{"before_seq", 3}, {"after_seq", 1}}), "invalid_request");
  check_error(get("BK1", {{"types", {"video"}}}), "invalid_request");
  check_error(get("BK1", {{"limit", 0}}), "invalid_request");
  check_error(get("BK1", {{"limit", 201}}), "invalid_request");
  BOOST_TEST(get("BK1", {{"limit", 200}}).at("ok") == true);
}

BOOST_FIXTURE_TEST_CASE(get_message_publishes_only_the_reply, EngineFixture) {
  send("BK1", "hi");
  auto out = handle(asking("BK1", "get_message", Json::object()));
  BOOST_TEST(out.size() == 1u, topics_of(out));
}

// ---- batches ----

BOOST_FIXTURE_TEST_CASE(a_batch_of_200_sends_gets_seq_1_to_200_in_order, EngineFixture) {
  std::vector<Request> batch;
  for (int i = 0; i < 200; ++i) {
    batch.push_back(
        asking("BK1", "send_message",
               {{"sender", "driver"}, {"text", "m" + std::to_string(i)}, {"correlation_id", std::to_string(i)}}));
  }
  const auto batches_before = engine->metrics().batches.load();
  auto out = engine->handle(batch);
  BOOST_TEST(engine->metrics().batches.load() == batches_before + 1);
  auto replies = on(out, kReplyTo);
  auto events = on(out, topic("BK1", "events/message"));
  BOOST_REQUIRE(replies.size() == 200u);
  BOOST_REQUIRE(events.size() == 200u);
  for (std::size_t i = 0; i < 200; ++i) {
    const Json reply = Json::parse(replies[i].payload);
    BOOST_TEST(reply.at("correlation_id") == std::to_string(i));
    BOOST_TEST(reply.at("message").at("seq") == i + 1);
    BOOST_TEST(reply.at("message").at("text") == "m" + std::to_string(i));
    BOOST_TEST(Json::parse(events[i].payload) == reply.at("message"));
  }
  const Json page = get("BK1", {{"limit", 200}});
  BOOST_TEST(seqs(page) == range(1, 200), boost::test_tools::per_element());
  BOOST_TEST(page.at("has_more") == false);
}

BOOST_FIXTURE_TEST_CASE(a_failed_request_in_a_batch_leaves_no_gap, EngineFixture) {
  auto out = engine->handle({asking("BK1", "send_message", {{"sender", "driver"}, {"text", "a"}}),
                             asking("BK1", "send_message", {{"sender", "driver"}}),
                             asking("BK2", "send_message", {{"sender", "driver"}, {"text", "x"}}),
                             asking("BK1", "send_message", {{"sender", "driver"}, {"text", "b"}})});
  auto replies = on(out, kReplyTo);
  BOOST_REQUIRE(replies.size() == 4u);
  BOOST_TEST(Json::parse(replies[0].payload).at("message").at("seq") == 1);
  check_error(Json::parse(replies[1].payload), "invalid_request");
  BOOST_TEST(Json::parse(replies[2].payload).at("message").at("seq") == 1);
  BOOST_TEST(Json::parse(replies[3].payload).at("message").at("seq") == 2);
  BOOST_TEST(on(out, topic("BK1", "events/message")).size() == 2u);
}

// ---- make_call ----

BOOST_FIXTURE_TEST_CASE(call_start_accept_end, EngineFixture) {
  std::vector<Publish> out;
  Json reply = call("BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}}, &out);
  BOOST_TEST(reply.at("ok") == true);
  Json c = reply.at("call");
  BOOST_TEST(c.at("call_id") == "c-1");
  BOOST_TEST(c.at("state") == "ringing");
  BOOST_TEST(c.at("from") == "driver");
  BOOST_TEST(c.at("to") == "passenger");
  BOOST_TEST(c.at("end_reason").is_null());
  BOOST_TEST(c.at("created_at") == kT0);
  BOOST_TEST(!c.contains("connected_at"));
  BOOST_TEST(out.size() == 3u, topics_of(out));
  BOOST_TEST(one(out, topic("BK1", "events/call")) == c);
  Json m = one(out, topic("BK1", "events/message"));
  BOOST_TEST(m.at("type") == "call");
  BOOST_TEST(m.at("sender") == "driver");
  BOOST_TEST(m.at("seq") == 1);
  BOOST_TEST(m.at("data").at("call_id") == "c-1");
  BOOST_TEST(m.at("data").at("state") == "ringing");
  BOOST_TEST(m.at("data").at("end_reason").is_null());
  BOOST_CHECK(engine->next_deadline() == std::optional<Millis>(kT0 + 30'000));

  now = kT0 + 4'000;
  reply = call("BK1", {{"action", "accept"}, {"by", "passenger"}, {"call_id", "c-1"}}, &out);
  c = reply.at("call");
  BOOST_TEST(c.at("state") == "connected");
  BOOST_TEST(c.at("connected_at") == kT0 + 4'000);
  BOOST_TEST(one(out, topic("BK1", "events/call")) == c);
  m = one(out, topic("BK1", "events/message"));
  BOOST_TEST(m.at("sender") == "passenger");
  BOOST_TEST(m.at("seq") == 2);
  BOOST_TEST(m.at("data").at("state") == "connected");
  BOOST_CHECK(!engine->next_deadline().has_value());  // no longer ringing

  now = kT0 + 64'000;
  reply = call("BK1", {{"action", "end"}, {"by", "driver"}, {"call_id", "c-1"}}, &out);
  c = reply.at("call");
  BOOST_TEST(c.at("state") == "ended");
  BOOST_TEST(c.at("end_reason") == "completed");
  BOOST_TEST(c.at("ended_at") == kT0 + 64'000);
  BOOST_TEST(c.at("duration_ms") == 60'000);
  BOOST_TEST(one(out, topic("BK1", "events/call")) == c);
  m = one(out, topic("BK1", "events/message"));
  BOOST_TEST(m.at("sender") == "driver");
  BOOST_TEST(m.at("data").at("state") == "ended");
  BOOST_TEST(m.at("data").at("end_reason") == "completed");

  // The call log is get_message with types ["call"].
  const Json log = get("BK1", {{"types", {"call"}}});
  BOOST_TEST(seqs(log) == range(1, 3), boost::test_tools::per_element());
  BOOST_TEST(call("BK1", {{"action", "get"}, {"call_id", "c-1"}}).at("call") == c);
  check_error(call("BK1", {{"action", "get"}}), "not_found");  // nothing active
  // Nothing rings any more.
  now = kT0 + 1'000'000;
  BOOST_TEST(engine->expire_calls().empty());
}

BOOST_FIXTURE_TEST_CASE(call_decline_and_cancel_messages_name_the_actor, EngineFixture) {
  std::vector<Publish> out;
  call("BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});
  now += 2'000;
  Json c = call("BK1", {{"action", "decline"}, {"by", "passenger"}, {"call_id", "c-1"}}, &out).at("call");
  BOOST_TEST(c.at("end_reason") == "declined");
  BOOST_TEST(c.at("ended_at") == now);
  BOOST_TEST(!c.contains("connected_at"));
  BOOST_TEST(c.at("duration_ms") == 0);
  BOOST_TEST(one(out, topic("BK1", "events/message")).at("sender") == "passenger");

  call("BK1", {{"action", "start"}, {"by", "passenger"}, {"call_id", "c-2"}});
  c = call("BK1", {{"action", "cancel"}, {"by", "passenger"}, {"call_id", "c-2"}}, &out).at("call");
  BOOST_TEST(c.at("end_reason") == "cancelled");
  Json m = one(out, topic("BK1", "events/message"));
  BOOST_TEST(m.at("sender") == "passenger");
  BOOST_TEST(m.at("data").at("end_reason") == "cancelled");
  BOOST_CHECK(!engine->next_deadline().has_value());
}

BOOST_FIXTURE_TEST_CASE(call_errors, EngineFixture) {
  std::vector<Publish> out;
  call("BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});
  const auto last_seq = get("BK1", Json::object()).at("last_seq");

  Json reply = call("BK1", {{"action", "start"}, {"by", "passenger"}, {"call_id", "c-2"}}, &out);
  check_error(reply, "busy");
  BOOST_TEST(reply.at("error").at("call_id") == "c-1");
  BOOST_TEST(out.size() == 1u, topics_of(out));
  check_error(call("BK1", {{"action", "start"}, {"by", "passenger"}}), "busy");

  check_error(call("BK1", {{"action", "accept"}, {"by", "driver"}, {"call_id", "c-1"}}, &out), "forbidden");
  BOOST_TEST(out.size() == 1u, topics_of(out));
  check_error(call("BK1", {{"action", "cancel"}, {"by", "passenger"}, {"call_id", "c-1"}}), "forbidden");
  check_error(call("BK1", {{"action", "end"}, {"by", "driver"}, {"call_id", "c-1"}}), "invalid_state");
  check_error(call("BK1", {{"action", "accept"}, {"by", "passenger"}, {"call_id", "nope"}}), "not_found");
  check_error(call("BK1", {{"action", "get"}, {"call_id", "nope"}}), "not_found");
  check_error(call("BK2", {{"action", "get"}, {"call_id", "c-1"}}), "not_found");  // calls are per booking
  check_error(call("BK1", {{"action", "accept"}, {"by", "passenger"}}), "invalid_request");
  check_error(call("BK1", {{"action", "start"}, {"by", "system"}}), "invalid_request");
  // invalid_request before busy.
  check_error(call("BK1", {{"action", "start"}}), "invalid_request");

  BOOST_TEST(get("BK1", Json::object()).at("last_seq") == last_seq);  // no failed action left a trace
  BOOST_TEST(call("BK1", {{"action", "get"}}).at("call").at("state") == "ringing");
  // Another booking may call at the same time.
  BOOST_TEST(call("BK2", {{"action", "start"}, {"by", "driver"}}).at("ok") == true);
}

BOOST_FIXTURE_TEST_CASE(retried_start_returns_the_same_call_without_events, EngineFixture) {
  const Json first = call("BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}}).at("call");
  now += 1'000;
  std::vector<Publish> out;
  const Json again = call("BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}}, &out);
  BOOST_TEST(again.at("ok") == true);
  BOOST_TEST(again.at("call") == first);
  BOOST_TEST(out.size() == 1u, topics_of(out));
  BOOST_TEST(get("BK1", Json::object()).at("last_seq") == 1);
}

BOOST_FIXTURE_TEST_CASE(get_without_call_id_returns_the_active_call, EngineFixture) {
  const Json started = call("BK1", {{"action", "start"}, {"by", "passenger"}}).at("call");
  const std::string id = started.at("call_id").get<std::string>();
  BOOST_TEST(valid_printable_key(id));  // made by the system
  BOOST_TEST(call("BK1", {{"action", "get"}}).at("call") == started);
  BOOST_TEST(call("BK1", {{"action", "get"}, {"by", "driver"}}).at("call") == started);
  now += 1'000;
  const Json connected = call("BK1", {{"action", "accept"}, {"by", "driver"}, {"call_id", id}}).at("call");
  BOOST_TEST(call("BK1", {{"action", "get"}}).at("call") == connected);
}

// ---- ring timeout ----

BOOST_FIXTURE_TEST_CASE(ring_timeout_ends_the_call_missed, EngineFixture) {
  BOOST_CHECK(!engine->next_deadline().has_value());
  call("BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});
  BOOST_CHECK(engine->next_deadline() == std::optional<Millis>(kT0 + 30'000));

  now = kT0 + 29'999;
  BOOST_TEST(engine->expire_calls().empty());
  BOOST_TEST(call("BK1", {{"action", "get"}}).at("call").at("state") == "ringing");

  now = kT0 + 45'000;  // late: ended_at is still the deadline
  auto out = engine->expire_calls();
  BOOST_TEST(out.size() == 2u, topics_of(out));
  const Json c = one(out, topic("BK1", "events/call"));
  BOOST_TEST(c.at("call_id") == "c-1");
  BOOST_TEST(c.at("state") == "ended");
  BOOST_TEST(c.at("end_reason") == "missed");
  BOOST_TEST(c.at("ended_at") == kT0 + 30'000);
  BOOST_TEST(!c.contains("connected_at"));
  BOOST_TEST(c.at("duration_ms") == 0);
  const Json m = one(out, topic("BK1", "events/message"));
  BOOST_TEST(m.at("type") == "call");
  BOOST_TEST(m.at("sender") == "system");
  BOOST_TEST(m.at("data").at("state") == "ended");
  BOOST_TEST(m.at("data").at("end_reason") == "missed");
  BOOST_TEST(m.at("seq") == 2);
  BOOST_CHECK(!engine->next_deadline().has_value());
  BOOST_TEST(engine->metrics().calls_missed.load() == 1u);

  BOOST_TEST(engine->expire_calls().empty());  // once only
  BOOST_TEST(call("BK1", {{"action", "get"}, {"call_id", "c-1"}}).at("call") == c);
  check_error(call("BK1", {{"action", "accept"}, {"by", "passenger"}, {"call_id", "c-1"}}), "invalid_state");
  BOOST_TEST(call("BK1", {{"action", "start"}, {"by", "passenger"}}).at("ok") == true);  // not busy any more
}

BOOST_AUTO_TEST_CASE(ring_timeout_is_configurable_and_due_at_the_deadline) {
  EngineOptions options;
  options.call_ring_timeout_ms = 5'000;
  EngineFixture f(options);
  f.call("BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "a"}});
  f.now = kT0 + 1'000;
  f.call("BK2", {{"action", "start"}, {"by", "driver"}, {"call_id", "b"}});
  BOOST_CHECK(f.engine->next_deadline() == std::optional<Millis>(kT0 + 5'000));
  f.now = kT0 + 5'000;
  auto out = f.engine->expire_calls();
  BOOST_TEST(one(out, topic("BK1", "events/call")).at("ended_at") == kT0 + 5'000);
  BOOST_TEST(on(out, topic("BK2", "events/call")).empty());
  BOOST_CHECK(f.engine->next_deadline() == std::optional<Millis>(kT0 + 6'000));
  f.now = kT0 + 7'000;
  out = f.engine->expire_calls();
  BOOST_TEST(one(out, topic("BK2", "events/call")).at("ended_at") == kT0 + 6'000);
  BOOST_CHECK(!f.engine->next_deadline().has_value());
}

BOOST_FIXTURE_TEST_CASE(answered_calls_do_not_expire, EngineFixture) {
  call("BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});
  call("BK2", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-2"}});
  now += 1'000;
  call("BK1", {{"action", "accept"}, {"by", "passenger"}, {"call_id", "c-1"}});
  call("BK2", {{"action", "cancel"}, {"by", "driver"}, {"call_id", "c-2"}});
  BOOST_CHECK(!engine->next_deadline().has_value());
  now += 100'000;
  BOOST_TEST(engine->expire_calls().empty());
  BOOST_TEST(call("BK1", {{"action", "get"}}).at("call").at("state") == "connected");
}

// expire_calls() ends at most a bounded number per pass; next_deadline() stays due until all are.
BOOST_FIXTURE_TEST_CASE(many_overdue_calls_all_expire, EngineFixture) {
  std::vector<Request> batch;
  for (int i = 0; i < 300; ++i) {
    batch.push_back(request("B" + std::to_string(i), "make_call", {{"action", "start"}, {"by", "driver"}}));
  }
  engine->handle(batch);
  now = kT0 + 60'000;
  BOOST_TEST(engine->expire_calls().size() / 2 == EngineOptions{}.batch_max);  // a call and a message event each
  const std::size_t missed = EngineOptions{}.batch_max + expire_overdue().size() / 2;
  BOOST_TEST(missed == 300u);
  BOOST_CHECK(!engine->next_deadline().has_value());
  BOOST_TEST(engine->metrics().calls_missed.load() == 300u);
}

BOOST_FIXTURE_TEST_CASE(start_arms_every_overdue_call_and_expiry_ends_them_after_a_restart, EngineFixture) {
  std::vector<Request> batch;
  for (int i = 0; i < 300; ++i) {
    batch.push_back(request("B" + std::to_string(i), "make_call", {{"action", "start"}, {"by", "passenger"}}));
  }
  engine->handle(batch);
  now = kT0 + 60'000;
  restart(true);
  auto out = engine->start();
  BOOST_TEST(on(out, topic("B0", "events/call")).empty());  // armed, not ended: the loop ends them
  BOOST_CHECK(engine->next_deadline() == std::optional<Millis>(kT0 + 30'000));
  out = expire_overdue();
  std::size_t call_events = 0;
  for (const auto& p : out) {
    if (p.topic.size() > 12 && p.topic.compare(p.topic.size() - 12, 12, "/events/call") == 0) {
      ++call_events;
      BOOST_TEST(Json::parse(p.payload).at("ended_at") == kT0 + 30'000);
    }
  }
  BOOST_TEST(call_events == 300u);
  BOOST_CHECK(!engine->next_deadline().has_value());
}

BOOST_FIXTURE_TEST_CASE(an_empty_batch_publishes_nothing, EngineFixture) {
  BOOST_TEST(engine->handle({}).empty());
  BOOST_TEST(engine->expire_calls().empty());
  BOOST_TEST(engine->start().empty());
}

// ---- restart ----

BOOST_FIXTURE_TEST_CASE(restart_rearms_a_ringing_call, EngineFixture) {
  handle(request("BK1", "presence", {{"role", "driver"}, {"online", true}}));
  call("BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});

  now = kT0 + 10'000;
  restart(false);
  BOOST_CHECK(!engine->next_deadline().has_value());  // not yet started
  auto out = engine->start();
  BOOST_TEST(on(out, topic("BK1", "events/call")).empty(), topics_of(out));
  const auto presence = on(out, topic("BK1", "events/presence"));
  BOOST_REQUIRE(presence.size() == 1u);
  BOOST_TEST(presence[0].retain);
  BOOST_TEST(Json::parse(presence[0].payload).at("driver") == Json({{"online", true}, {"since", kT0}}));
  BOOST_CHECK(engine->next_deadline() == std::optional<Millis>(kT0 + 30'000));

  now = kT0 + 31'000;
  out = engine->expire_calls();
  const Json c = one(out, topic("BK1", "events/call"));
  BOOST_TEST(c.at("end_reason") == "missed");
  BOOST_TEST(c.at("ended_at") == kT0 + 30'000);
  BOOST_TEST(one(out, topic("BK1", "events/message")).at("sender") == "system");
}

BOOST_FIXTURE_TEST_CASE(restart_with_a_reopened_store_expires_overdue_calls, EngineFixture) {
  handle(request("BK1", "presence", {{"role", "passenger"}, {"online", true}}));
  handle(request("BK2", "presence", {{"role", "driver"}, {"online", true}}));
  call("BK1", {{"action", "start"}, {"by", "passenger"}, {"call_id", "c-1"}});
  call("BK2", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-2"}});
  now += 1'000;
  call("BK2", {{"action", "accept"}, {"by", "passenger"}, {"call_id", "c-2"}});

  now = kT0 + 600'000;
  restart(true);
  auto out = engine->start();
  BOOST_TEST(on(out, topic("BK1", "events/call")).empty());
  auto expired = expire_overdue();
  out.insert(out.end(), expired.begin(), expired.end());
  const Json c = one(out, topic("BK1", "events/call"));
  BOOST_TEST(c.at("call_id") == "c-1");
  BOOST_TEST(c.at("end_reason") == "missed");
  BOOST_TEST(c.at("ended_at") == kT0 + 30'000);
  const Json m = one(out, topic("BK1", "events/message"));
  BOOST_TEST(m.at("sender") == "system");
  BOOST_TEST(m.at("data").at("end_reason") == "missed");
  BOOST_TEST(on(out, topic("BK2", "events/call")).empty());  // connected: untouched
  BOOST_TEST(on(out, topic("BK1", "events/presence")).size() == 1u);
  BOOST_TEST(on(out, topic("BK2", "events/presence")).size() == 1u);
  for (const auto& p : on(out, topic("BK2", "events/presence"))) {
    BOOST_TEST(p.retain);
    BOOST_TEST(Json::parse(p.payload).at("driver").at("online") == true);
    BOOST_TEST(Json::parse(p.payload).at("passenger") == Json({{"online", false}, {"since", nullptr}}));
  }
  BOOST_CHECK(!engine->next_deadline().has_value());
  BOOST_TEST(engine->metrics().calls_missed.load() == 1u);
  // The store agrees, and the history has every state.
  BOOST_TEST(call("BK1", {{"action", "get"}, {"call_id", "c-1"}}).at("call") == c);
  BOOST_TEST(call("BK2", {{"action", "get"}}).at("call").at("state") == "connected");
  BOOST_TEST(seqs(get("BK1", {{"types", {"call"}}})) == range(1, 2), boost::test_tools::per_element());
  // A second start finds nothing left to do.
  restart(false);
  out = engine->start();
  BOOST_TEST(on(out, topic("BK1", "events/call")).empty());
  BOOST_TEST(on(out, topic("BK1", "events/presence")).size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(restart_keeps_history_and_seq, EngineFixture) {
  send("BK1", "a");
  send("BK1", "b");
  restart(true);
  engine->start();
  BOOST_TEST(send("BK1", "c").at("message").at("seq") == 3);
  const Json page = get("BK1", Json::object());
  BOOST_TEST(page.at("messages").at(0).at("text") == "a");
  BOOST_TEST(seqs(page) == range(1, 3), boost::test_tools::per_element());
}

// ---- presence ----

BOOST_FIXTURE_TEST_CASE(a_disconnected_client_goes_offline_without_a_will, EngineFixture) {
  // "drv-phone" is the MQTT client id a host that sees disconnects (the plugin) reports.
  ask("BK1", "presence", {{"role", "driver"}, {"online", true}}, nullptr, "drv-phone");
  ask("BK2", "presence", {{"role", "driver"}, {"online", true}, {"client_id", "drv-42"}}, nullptr, "drv-phone");
  ask("BK1", "presence", {{"role", "passenger"}, {"online", true}}, nullptr, "pax-phone");
  now = kT0 + 7'000;
  BOOST_TEST(engine->disconnected({"somebody-else"}).empty());
  auto out = engine->disconnected({"drv-phone"});
  BOOST_REQUIRE(out.size() == 2u);  // BK1 and BK2, both declared by that MQTT client
  for (const auto& p : out) {
    BOOST_TEST(p.retain);
    Json presence = Json::parse(p.payload);
    BOOST_TEST(presence.at("driver") == Json({{"online", false}, {"since", kT0 + 7'000}}), p.payload);
  }
  Json bk1 = Json::parse(on(out, topic("BK1", "events/presence")).at(0).payload);
  BOOST_TEST(bk1.at("passenger").at("online") == true);
  BOOST_TEST(engine->disconnected({"drv-phone"}).empty());  // already handled
}

BOOST_AUTO_TEST_CASE(offline_at_start_marks_every_stored_connection_offline) {
  EngineFixture f;
  f.ask("BK1", "presence", {{"role", "driver"}, {"online", true}}, nullptr, "drv-phone");
  f.options.offline_at_start = true;
  f.now = kT0 + 9'000;
  f.restart(true);
  auto out = f.engine->start();
  auto events = on(out, topic("BK1", "events/presence"));
  BOOST_REQUIRE(events.size() == 1u);
  BOOST_TEST(events[0].retain);
  BOOST_TEST(Json::parse(events[0].payload).at("driver") == Json({{"online", false}, {"since", kT0 + 9'000}}));
}

BOOST_FIXTURE_TEST_CASE(presence_follows_the_role_across_clients, EngineFixture) {
  const Json never = {{"online", false}, {"since", nullptr}};
  std::vector<Publish> out;
  Json reply = ask("BK1", "presence", {{"role", "driver"}, {"online", true}}, &out, "drv-phone");
  BOOST_TEST(reply.at("ok") == true);
  Json p = reply.at("presence");
  BOOST_TEST(p.at("booking_code") == "BK1");
  BOOST_TEST(p.at("driver") == Json({{"online", true}, {"since", kT0}}));
  BOOST_TEST(p.at("passenger") == never);
  auto events = on(out, topic("BK1", "events/presence"));
  BOOST_REQUIRE(events.size() == 1u);
  BOOST_TEST(events[0].retain);
  BOOST_TEST(Json::parse(events[0].payload) == p);

  // A second driver client: still online, since unchanged.
  now = kT0 + 1'000;
  p = ask("BK1", "presence", {{"role", "driver"}, {"online", true}}, nullptr, "drv-tablet").at("presence");
  BOOST_TEST(p.at("driver") == Json({{"online", true}, {"since", kT0}}));
  // One of them leaves: the role is online while any of its clients is.
  now = kT0 + 2'000;
  p = ask("BK1", "presence", {{"role", "driver"}, {"online", false}}, nullptr, "drv-phone").at("presence");
  BOOST_TEST(p.at("driver") == Json({{"online", true}, {"since", kT0}}));
  // The passenger comes, with a client_id in the payload.
  now = kT0 + 2'500;
  p = ask("BK1", "presence", {{"role", "passenger"}, {"online", true}, {"client_id", "pax-app"}}).at("presence");
  BOOST_TEST(p.at("passenger") == Json({{"online", true}, {"since", kT0 + 2'500}}));
  // The last driver client leaves: now offline, since moves.
  now = kT0 + 3'000;
  p = ask("BK1", "presence", {{"role", "driver"}, {"online", false}}, nullptr, "drv-tablet").at("presence");
  BOOST_TEST(p.at("driver") == Json({{"online", false}, {"since", kT0 + 3'000}}));
  BOOST_TEST(p.at("passenger") == Json({{"online", true}, {"since", kT0 + 2'500}}));
  // A repeated offline (a Will after a clean offline) changes nothing.
  now = kT0 + 4'000;
  p = ask("BK1", "presence", {{"role", "driver"}, {"online", false}}, nullptr, "drv-tablet").at("presence");
  BOOST_TEST(p.at("driver") == Json({{"online", false}, {"since", kT0 + 3'000}}));
  // Back online.
  now = kT0 + 5'000;
  p = ask("BK1", "presence", {{"role", "driver"}, {"online", true}}, nullptr, "drv-phone").at("presence");
  BOOST_TEST(p.at("driver") == Json({{"online", true}, {"since", kT0 + 5'000}}));
  // Other bookings are unaffected.
  p = ask("BK2", "presence", {{"role", "passenger"}, {"online", false}}).at("presence");
  BOOST_TEST(p.at("driver") == never);
  BOOST_TEST(p.at("passenger") == Json({{"online", false}, {"since", kT0 + 5'000}}));
}

BOOST_FIXTURE_TEST_CASE(presence_errors, EngineFixture) {
  check_error(ask("BK1", "presence", {{"role", "system"}, {"online", true}}), "invalid_request");
  check_error(ask("BK1", "presence", {{"role", "driver"}}), "invalid_request");
  auto out = handle(asking("BK1", "presence", {{"online", true}}));
  BOOST_TEST(on(out, topic("BK1", "events/presence")).empty());
}

// ---- metrics ----

BOOST_FIXTURE_TEST_CASE(metrics_count_errors_by_code, EngineFixture) {
  send("BK1", "ok");
  handle(request("BK1", "send_message", {{"sender", "driver"}}));                          // invalid_request
  handle(asking("BK1", "send_message", {{"text", "x"}}));                                  // invalid_request
  handle(Request{topic("BK1", "send_message"), "nope", std::nullopt, std::nullopt, "c"});  // invalid_json
  handle(request("bad.code", "get_message", Json::object()));                              // invalid_booking_code
  call("BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});
  call("BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-2"}});  // busy
  call("BK1", {{"action", "get"}, {"call_id", "zz"}});                       // not_found
  handle(Request{"not/a/request", "{}", std::nullopt, std::nullopt, "c"});   // ignored: no error
  BOOST_TEST(errors_counted(*engine, ErrorCode::invalid_request) == 2u);
  BOOST_TEST(errors_counted(*engine, ErrorCode::invalid_json) == 1u);
  BOOST_TEST(errors_counted(*engine, ErrorCode::invalid_booking_code) == 1u);
  BOOST_TEST(errors_counted(*engine, ErrorCode::busy) == 1u);
  BOOST_TEST(errors_counted(*engine, ErrorCode::not_found) == 1u);
  BOOST_TEST(errors_counted(*engine, ErrorCode::forbidden) == 0u);
  BOOST_TEST(errors_counted(*engine, ErrorCode::unavailable) == 0u);
  const Json j = Json::parse(engine->metrics().to_json());
  BOOST_TEST(j.at("errors").at("invalid_request") == 2);
  BOOST_TEST(j.at("errors").at("busy") == 1);
  BOOST_TEST(j.at("errors").at("internal") == 0);
  BOOST_TEST(j.at("messages_stored") == 2);  // "ok" and the call's ringing message
  BOOST_TEST(j.at("requests").get<std::uint64_t>() >= 8u);
}

BOOST_FIXTURE_TEST_CASE(request_filters_cover_every_action, EngineFixture) {
  const auto filters = engine->request_filters();
  BOOST_TEST(filters.size() == wire::kActions.size());
  for (const char* leaf : {"send_message", "get_message", "make_call", "presence", "mark_read", "typing", "close", "signal"}) {
    BOOST_TEST(std::count(filters.begin(), filters.end(), kPrefix + "/bookings/+/" + leaf) == 1);
  }
}

// ---- a full store ----

// A tiny map fills up: the request that does not fit is `unavailable`, nothing is broadcast for
// it, and what was stored before stays readable and intact.
// LMDB only: a map size is LMDB's (test_postgres covers a database that goes away).
BOOST_AUTO_TEST_CASE(a_full_store_answers_unavailable_and_keeps_earlier_messages,
                     *boost::unit_test::precondition(navietakie::test::LmdbOnly{})) {
  EngineFixture f(EngineOptions{}, std::size_t{64} * 1024);
  std::vector<std::string> stored;
  std::optional<Json> failure;
  std::vector<Publish> failed_out;
  for (int i = 0; i < 500 && !failure; ++i) {
    const std::string text = std::to_string(i) + std::string(4000, static_cast<char>('a' + i % 26));
    auto out = f.handle(asking("BK1", "send_message", {{"sender", "driver"}, {"text", text}}));
    const Json reply = one(out, kReplyTo);
    if (reply.at("ok") == true) {
      BOOST_REQUIRE(reply.at("message").at("seq") == stored.size() + 1);
      BOOST_REQUIRE(on(out, topic("BK1", "events/message")).size() == 1u);
      stored.push_back(text);
    } else {
      failure = reply;
      failed_out = out;
    }
  }
  BOOST_REQUIRE_MESSAGE(failure.has_value(), "a 64 KiB map never filled up");
  BOOST_TEST_MESSAGE(stored.size() << " messages fit before the map was full");
  check_error(*failure, "unavailable");
  BOOST_TEST(failed_out.size() == 1u, topics_of(failed_out));  // the reply only: no broadcast
  BOOST_TEST(errors_counted(*f.engine, ErrorCode::unavailable) == 1u);

  // Reads still work and see exactly what was acknowledged.
  const Json page = f.get("BK1", {{"limit", 200}});
  BOOST_TEST(page.at("ok") == true, page.dump().substr(0, 300));
  BOOST_TEST(page.at("last_seq") == stored.size());
  BOOST_REQUIRE(page.at("messages").size() == stored.size());
  for (std::size_t i = 0; i < stored.size(); ++i) {
    BOOST_TEST(page.at("messages").at(i).at("seq") == i + 1);
    BOOST_TEST(page.at("messages").at(i).at("text") == stored[i]);
  }
  // A batch with a request that does not fit.
  const std::string big(4000, 'z');
  auto out = f.engine->handle({asking("BK1", "send_message", {{"sender", "driver"}, {"text", big}}),
                               asking("BK1", "get_message", {{"limit", 1}})});
  auto replies = on(out, kReplyTo);
  BOOST_REQUIRE(replies.size() == 2u);
  check_error(Json::parse(replies[0].payload), "unavailable");
  BOOST_TEST(on(out, topic("BK1", "events/message")).empty());
  // (The get in that batch may be `unavailable` too: one commit per batch, and LMDB may refuse
  // the commit itself when the map is full.) On its own it is served, and nothing changed.
  const Json after = f.get("BK1", {{"limit", 200}});
  BOOST_TEST(after.at("ok") == true);
  BOOST_TEST(after.at("last_seq") == stored.size());
}

BOOST_AUTO_TEST_SUITE_END()

// ---- read receipts and typing (issue 13) ----

BOOST_AUTO_TEST_SUITE(receipts)

namespace {

Json read_of(const Json& reply) { return reply.at("read"); }

}  // namespace

BOOST_FIXTURE_TEST_CASE(mark_read_stores_replies_and_publishes_retained, EngineFixture) {
  for (int i = 0; i < 3; ++i) send("BK1", "m" + std::to_string(i));
  now = kT0 + 50;
  std::vector<Publish> out;
  const Json reply = ask("BK1", "mark_read", {{"role", "passenger"}, {"seq", 2}}, &out);
  BOOST_TEST(reply.at("ok") == true, reply.dump());
  const Json expected = {{"booking_code", "BK1"},
                         {"driver", {{"seq", 0}, {"at", nullptr}}},
                         {"passenger", {{"seq", 2}, {"at", kT0 + 50}}}};
  BOOST_TEST(read_of(reply) == expected, read_of(reply).dump());
  const auto events = on(out, topic("BK1", "events/read"));
  BOOST_REQUIRE(events.size() == 1u);
  BOOST_TEST(events[0].retain);
  BOOST_TEST(events[0].qos == 1);
  BOOST_TEST(Json::parse(events[0].payload) == expected);
  // Durable: a restart reads it back, and start() republishes it retained.
  restart(true);
  const auto started = engine->start();
  const auto again = on(started, topic("BK1", "events/read"));
  BOOST_REQUIRE(again.size() == 1u);
  BOOST_TEST(again[0].retain);
  BOOST_TEST(Json::parse(again[0].payload) == expected);
}

BOOST_FIXTURE_TEST_CASE(the_read_horizon_never_moves_back, EngineFixture) {
  for (int i = 0; i < 5; ++i) send("BK1", "m" + std::to_string(i));
  now = kT0 + 10;
  ask("BK1", "mark_read", {{"role", "driver"}, {"seq", 4}});
  now = kT0 + 20;
  std::vector<Publish> out;
  for (int seq : {1, 4}) {  // lower, then the same: nothing changes, not even `at`
    const Json reply = ask("BK1", "mark_read", {{"role", "driver"}, {"seq", seq}}, &out);
    BOOST_TEST(reply.at("ok") == true);
    BOOST_TEST(read_of(reply).at("driver") == Json({{"seq", 4}, {"at", kT0 + 10}}), reply.dump());
    BOOST_TEST(on(out, topic("BK1", "events/read")).empty(), topics_of(out));
  }
  const Json forward = ask("BK1", "mark_read", {{"role", "driver"}, {"seq", 5}}, &out);
  BOOST_TEST(read_of(forward).at("driver") == Json({{"seq", 5}, {"at", kT0 + 20}}));
  BOOST_TEST(on(out, topic("BK1", "events/read")).size() == 1u);
  // The other party's horizon is its own.
  BOOST_TEST(read_of(forward).at("passenger") == Json({{"seq", 0}, {"at", nullptr}}));
}

BOOST_FIXTURE_TEST_CASE(mark_read_above_last_seq_is_invalid_request_naming_seq, EngineFixture) {
  send("BK1", "one");
  std::vector<Publish> out;
  const Json reply = ask("BK1", "mark_read", {{"role", "driver"}, {"seq", 2}}, &out);
  check_error(reply, "invalid_request");
  BOOST_TEST(reply.at("error").at("message").get<std::string>().find("'seq'") != std::string::npos, reply.dump());
  BOOST_TEST(on(out, topic("BK1", "events/read")).empty());
  // A booking with no messages: only seq 0 is in range (and changes nothing).
  check_error(ask("BK2", "mark_read", {{"role", "driver"}, {"seq", 1}}), "invalid_request");
  const Json zero = ask("BK2", "mark_read", {{"role", "driver"}, {"seq", 0}}, &out);
  BOOST_TEST(zero.at("ok") == true);
  BOOST_TEST(read_of(zero).at("driver") == Json({{"seq", 0}, {"at", nullptr}}));
  BOOST_TEST(on(out, topic("BK2", "events/read")).empty());
  // Field rules.
  check_error(ask("BK1", "mark_read", {{"role", "driver"}}), "invalid_request");
  check_error(ask("BK1", "mark_read", {{"role", "driver"}, {"seq", -1}}), "invalid_request");
  check_error(ask("BK1", "mark_read", {{"role", "driver"}, {"seq", "1"}}), "invalid_request");
  check_error(ask("BK1", "mark_read", {{"role", "system"}, {"seq", 1}}), "invalid_request");
  check_error(ask("BK1", "mark_read", {{"seq", 1}}), "invalid_request");
}

BOOST_AUTO_TEST_CASE(with_authentication_a_party_marks_and_types_only_as_itself) {
  EngineFixture f;
  f.options.require_identity = true;
  f.restart(false);
  Request send = asking("BK1", "send_message", {{"sender", "driver"}, {"text", "hi"}});
  send.identity = Identity{Principal::driver, "drv-1", "BK1"};
  BOOST_REQUIRE(one(f.handle(send), kReplyTo).at("ok") == true);
  for (const char* action : {"mark_read", "typing"}) {
    const Json other = std::string(action) == "typing" ? Json{{"role", "passenger"}, {"typing", true}}
                                                       : Json{{"role", "passenger"}, {"seq", 1}};
    const Json own = std::string(action) == "typing" ? Json{{"role", "driver"}, {"typing", true}}
                                                     : Json{{"role", "driver"}, {"seq", 1}};
    Request r = asking("BK1", action, other);
    r.identity = Identity{Principal::driver, "drv-1", "BK1"};
    auto out = f.handle(r);
    check_error(one(out, kReplyTo), "forbidden");
    BOOST_TEST(on(out, topic("BK1", std::string("events/") + (std::string(action) == "typing" ? "typing" : "read")))
                   .empty());
    r = asking("BK1", action, own);
    r.identity = Identity{Principal::driver, "drv-1", "BK1"};
    BOOST_TEST(one(f.handle(r), kReplyTo).at("ok") == true, action);
    // Another booking's identity is refused before anything of this booking is read.
    r.identity = Identity{Principal::driver, "drv-2", "BK2"};
    check_error(one(f.handle(r), kReplyTo), "forbidden");
    // A service may act for either party.
    r = asking("BK1", action, other);
    r.identity = Identity{Principal::service, "support", ""};
    BOOST_TEST(one(f.handle(r), kReplyTo).at("ok") == true, action);
    // No identity at all.
    check_error(one(f.handle(asking("BK1", action, own)), kReplyTo), "forbidden");
  }
  // invalid_request ranks before forbidden: a wrong role with seq out of range names seq.
  Request both = asking("BK1", "mark_read", {{"role", "passenger"}, {"seq", 9}});
  both.identity = Identity{Principal::driver, "drv-1", "BK1"};
  check_error(one(f.handle(both), kReplyTo), "invalid_request");
}

BOOST_FIXTURE_TEST_CASE(get_message_carries_both_read_horizons, EngineFixture) {
  send("BK1", "a");
  send("BK1", "b");
  const Json before = get("BK1", Json::object());
  BOOST_TEST(read_of(before) == Json({{"booking_code", "BK1"},
                                      {"driver", {{"seq", 0}, {"at", nullptr}}},
                                      {"passenger", {{"seq", 0}, {"at", nullptr}}}}),
             before.dump());
  now = kT0 + 7;
  ask("BK1", "mark_read", {{"role", "passenger"}, {"seq", 2}});
  const Json after = get("BK1", {{"after_seq", 0}});
  BOOST_TEST(read_of(after).at("passenger") == Json({{"seq", 2}, {"at", kT0 + 7}}), after.dump());
  // An empty booking has the object too.
  BOOST_TEST(read_of(get("BK9", Json::object())).at("booking_code") == "BK9");
}

BOOST_FIXTURE_TEST_CASE(typing_is_relayed_at_qos_0_not_stored_not_retained, EngineFixture) {
  now = kT0 + 3;
  std::vector<Publish> out;
  const Json reply = ask("BK1", "typing", {{"role", "driver"}, {"typing", true}}, &out);
  BOOST_TEST(reply == Json({{"ok", true}, {"relayed", true}}), reply.dump());
  const auto events = on(out, topic("BK1", "events/typing"));
  BOOST_REQUIRE(events.size() == 1u);
  BOOST_TEST(events[0].qos == 0);
  BOOST_TEST(!events[0].retain);
  BOOST_TEST(Json::parse(events[0].payload) ==
             Json({{"booking_code", "BK1"}, {"role", "driver"}, {"typing", true}, {"ts", kT0 + 3}}));
  // Nothing stored: no message, no horizon, nothing republished at start.
  BOOST_TEST(get("BK1", Json::object()).at("last_seq") == 0);
  BOOST_TEST(engine->metrics().messages_stored.load() == 0u);
  restart(true);
  BOOST_TEST(on(engine->start(), topic("BK1", "events/typing")).empty());
  // Without a reply address: the event only.
  out = handle(request("BK1", "typing", {{"role", "passenger"}, {"typing", false}}));
  BOOST_TEST(out.size() == 1u, topics_of(out));
  check_error(ask("BK1", "typing", {{"role", "driver"}, {"typing", "yes"}}), "invalid_request");
  check_error(ask("BK1", "typing", {{"role", "driver"}}), "invalid_request");
}

BOOST_FIXTURE_TEST_CASE(typing_is_relayed_at_most_twice_per_second_per_role_and_booking, EngineFixture) {
  auto typing = [&](const std::string& booking, const std::string& role, std::size_t& events) {
    std::vector<Publish> out;
    const Json reply = ask(booking, "typing", {{"role", role}, {"typing", true}}, &out);
    BOOST_REQUIRE(reply.at("ok") == true);
    events += on(out, topic(booking, "events/typing")).size();
    return reply.at("relayed").get<bool>();
  };
  std::size_t events = 0;
  BOOST_TEST(typing("BK1", "driver", events));
  now += 100;
  BOOST_TEST(typing("BK1", "driver", events));
  now += 100;
  BOOST_TEST(!typing("BK1", "driver", events));  // third within a second: dropped, no error
  BOOST_TEST(!typing("BK1", "driver", events));
  BOOST_TEST(events == 2u);
  BOOST_TEST(engine->metrics().typing_dropped.load() == 2u);
  BOOST_TEST(errors_counted(*engine, ErrorCode::invalid_request) == 0u);
  // Other roles and bookings have their own allowance.
  BOOST_TEST(typing("BK1", "passenger", events));
  BOOST_TEST(typing("BK2", "driver", events));
  // Refill: a second after the first relay, one more goes out; after the second's, another.
  now = kT0 + 999;
  BOOST_TEST(!typing("BK1", "driver", events));
  now = kT0 + 1000;
  BOOST_TEST(typing("BK1", "driver", events));
  BOOST_TEST(!typing("BK1", "driver", events));
  now = kT0 + 1100;
  BOOST_TEST(typing("BK1", "driver", events));
  BOOST_TEST(engine->metrics().typing_dropped.load() == 4u);
  BOOST_TEST(Json::parse(engine->metrics().to_json()).at("typing_dropped") == 4);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- close and retention (docs/protocol.md, "close and retention"): the refusals of a closed
// booking per request type, the active call ended by close, closing twice, the retained
// events/booking, and the retention purge (only closed bookings past the limit, in bounded
// batches, its retained topics cleared).

namespace {

constexpr Millis kDay = 24 * 3600 * 1000;

struct CloseFixture : EngineFixture {
  explicit CloseFixture(EngineOptions engine_options = {}) : EngineFixture(std::move(engine_options)) {}

  // ask() with an identity, as a host that authenticates would hand it over.
  Json ask_as(const Identity& identity, const std::string& booking, const std::string& action, const Json& body) {
    Request r = asking(booking, action, body);
    r.identity = identity;
    return one(handle(r), kReplyTo);
  }
  Json close(const std::string& booking, Json body = Json::object(), std::vector<Publish>* out = nullptr) {
    return ask(booking, "close", body, out);
  }
  // What the engine loop does between request batches, while background work is due (bounded).
  std::vector<Publish> run_background(int* turns = nullptr) {
    std::vector<Publish> out;
    int pass = 0;
    const auto due = [this] {
      const auto call = engine->next_deadline();
      const auto purge = engine->next_purge();
      return (call && *call <= now) || (purge && *purge <= now);
    };
    for (; pass < 10000 && due(); ++pass) {
      auto more = engine->background();
      out.insert(out.end(), more.begin(), more.end());
    }
    if (turns) *turns = pass;
    return out;
  }
};

std::string error_code(const Json& reply) { return reply.at("error").at("code").get<std::string>(); }

}  // namespace

BOOST_AUTO_TEST_SUITE(close_and_retention)

BOOST_FIXTURE_TEST_CASE(close_replies_and_publishes_the_retained_booking_state, CloseFixture) {
  send("BK1", "hello");
  std::vector<Publish> out;
  Json reply = close("BK1", {{"reason", "trip completed"}}, &out);
  BOOST_TEST(reply.at("ok").get<bool>());
  const Json expected = {{"booking_code", "BK1"}, {"state", "closed"}, {"closed_at", kT0}, {"reason", "trip completed"}};
  BOOST_TEST(reply.at("booking") == expected);
  const auto events = on(out, topic("BK1", "events/booking"));
  BOOST_REQUIRE_EQUAL(events.size(), 1u);
  BOOST_TEST(events[0].retain);
  BOOST_TEST(Json::parse(events[0].payload) == expected);
  BOOST_TEST(engine->metrics().bookings_closed.load() == 1u);
}

BOOST_FIXTURE_TEST_CASE(closing_twice_answers_the_first_close_and_publishes_nothing, CloseFixture) {
  close("BK1", {{"reason", "first"}});
  now += 5000;
  std::vector<Publish> out;
  Json again = close("BK1", {{"reason", "second"}}, &out);
  BOOST_TEST(again.at("ok").get<bool>());
  BOOST_TEST(again.at("booking").at("closed_at").get<Millis>() == kT0);
  BOOST_TEST(again.at("booking").at("reason").get<std::string>() == "first");
  BOOST_TEST(on(out, topic("BK1", "events/booking")).empty());
}

BOOST_FIXTURE_TEST_CASE(a_closed_booking_refuses_writes_and_still_answers_reads, CloseFixture) {
  Json first = send("BK1", "before");
  Json call = ask("BK1", "make_call", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});
  ask("BK1", "make_call", {{"action", "accept"}, {"by", "passenger"}, {"call_id", "c-1"}});
  close("BK1");

  std::vector<Publish> out;
  Json refused = ask("BK1", "send_message", {{"sender", "driver"}, {"text", "after"}}, &out);
  BOOST_TEST(error_code(refused) == "booking_closed");
  BOOST_TEST(on(out, topic("BK1", "events/message")).empty());
  BOOST_TEST(error_code(ask("BK1", "make_call", {{"action", "start"}, {"by", "passenger"}})) == "booking_closed");
  // The other call actions keep their answers on the call close ended.
  BOOST_TEST(error_code(ask("BK1", "make_call", {{"action", "end"}, {"by", "driver"}, {"call_id", "c-1"}})) ==
             "invalid_state");
  Json got = ask("BK1", "make_call", {{"action", "get"}, {"call_id", "c-1"}});
  BOOST_TEST(got.at("ok").get<bool>());
  BOOST_TEST(got.at("call").at("end_reason").get<std::string>() == "booking_closed");
  // History stays readable: the message, the call's messages.
  Json page = ask("BK1", "get_message", Json::object());
  BOOST_TEST(page.at("ok").get<bool>());
  BOOST_TEST(page.at("messages").front().at("text").get<std::string>() == "before");
  // A resent message_id is no new write: its original, as before the close.
  Json resent = ask("BK1", "send_message",
                    {{"sender", "driver"}, {"text", "before"}, {"message_id", first.at("message").at("message_id")}});
  BOOST_TEST(resent.at("duplicate").get<bool>());
  // Presence is not a write of the booking's content: it goes on.
  BOOST_TEST(ask("BK1", "presence", {{"role", "driver"}, {"online", false}}).at("ok").get<bool>());
  // Another booking is untouched.
  BOOST_TEST(send("BK2", "elsewhere").at("ok").get<bool>());
  BOOST_TEST(engine->metrics().errors[static_cast<std::size_t>(ErrorCode::booking_closed)].load() == 2u);
  (void)call;
}

BOOST_AUTO_TEST_CASE(the_refusal_table_lists_every_write_of_the_contract) {
  for (const char* action : {"send_message", "signal", "typing", "mark_read"}) {
    BOOST_TEST(wire::refused_when_closed(action), action);
  }
  BOOST_TEST(wire::refused_when_closed("make_call", CallAction::start));
  for (CallAction other : {CallAction::accept, CallAction::decline, CallAction::cancel, CallAction::end, CallAction::get})
    BOOST_TEST(!wire::refused_when_closed("make_call", other));
  for (const char* action : {"get_message", "presence", "close"}) BOOST_TEST(!wire::refused_when_closed(action), action);
}

BOOST_FIXTURE_TEST_CASE(close_ends_a_ringing_call_and_disarms_its_timeout, CloseFixture) {
  ask("BK1", "make_call", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});
  now += 1000;
  std::vector<Publish> out;
  Json reply = close("BK1", Json::object(), &out);
  BOOST_TEST(reply.at("booking").at("state").get<std::string>() == "closed");
  Json ended = one(out, topic("BK1", "events/call"));
  BOOST_TEST(ended.at("state").get<std::string>() == "ended");
  BOOST_TEST(ended.at("end_reason").get<std::string>() == "booking_closed");
  BOOST_TEST(ended.at("ended_at").get<Millis>() == kT0 + 1000);
  BOOST_TEST(ended.at("duration_ms").get<Millis>() == 0);
  BOOST_TEST(one(out, topic("BK1", "events/message")).at("type").get<std::string>() == "call");
  // The ring deadline passes: nothing more happens to the call.
  now += 60'000;
  const auto later = engine->expire_calls();
  BOOST_TEST(on(later, topic("BK1", "events/call")).empty());
}

BOOST_FIXTURE_TEST_CASE(close_ends_a_connected_call_with_its_duration, CloseFixture) {
  ask("BK1", "make_call", {{"action", "start"}, {"by", "passenger"}, {"call_id", "c-1"}});
  now += 1000;
  ask("BK1", "make_call", {{"action", "accept"}, {"by", "driver"}, {"call_id", "c-1"}});
  now += 30'000;
  std::vector<Publish> out;
  close("BK1", Json::object(), &out);
  Json ended = one(out, topic("BK1", "events/call"));
  BOOST_TEST(ended.at("end_reason").get<std::string>() == "booking_closed");
  BOOST_TEST(ended.at("duration_ms").get<Millis>() == 30'000);
}

BOOST_FIXTURE_TEST_CASE(with_authentication_only_a_service_closes, CloseFixture) {
  const Identity driver{Principal::driver, "drv-1", "BK1"};
  const Identity service{Principal::service, "backoffice", ""};
  BOOST_TEST(error_code(ask_as(driver, "BK1", "close", Json::object())) == "forbidden");
  BOOST_TEST(ask_as(service, "BK1", "close", Json::object()).at("ok").get<bool>());
}

BOOST_FIXTURE_TEST_CASE(a_reason_must_be_a_short_string, CloseFixture) {
  Json r = close("BK1", {{"reason", 5}});
  BOOST_TEST(error_code(r) == "invalid_request");
  BOOST_TEST(r.at("error").at("message").get<std::string>().find("reason") != std::string::npos);
  BOOST_TEST(error_code(close("BK1", {{"reason", std::string(wire::kCloseReasonMaxBytes + 1, 'x')}})) ==
             "invalid_request");
  // Nothing was closed by the refused requests.
  BOOST_TEST(send("BK1", "still open").at("ok").get<bool>());
}

BOOST_FIXTURE_TEST_CASE(start_republishes_the_closed_state_retained, CloseFixture) {
  close("BK1", {{"reason", "done"}});
  restart(false);
  const auto out = engine->start();
  const auto events = on(out, topic("BK1", "events/booking"));
  BOOST_REQUIRE_EQUAL(events.size(), 1u);
  BOOST_TEST(events[0].retain);
  BOOST_TEST(Json::parse(events[0].payload).at("reason").get<std::string>() == "done");
  // And the refusal survives the restart.
  BOOST_TEST(error_code(send("BK1", "after restart")) == "booking_closed");
}

namespace {
EngineOptions retention(Millis days, std::size_t batch_keys) {
  EngineOptions o;
  o.retention_ms = days * kDay;
  o.purge_batch_keys = batch_keys;
  return o;
}
}  // namespace

struct RetentionFixture : CloseFixture {
  RetentionFixture() : CloseFixture(retention(30, 8)) {}
};

BOOST_FIXTURE_TEST_CASE(retention_purges_only_closed_bookings_past_the_limit, RetentionFixture) {
  for (int i = 0; i < 20; ++i) {
    send("OLD", "m" + std::to_string(i));
    send("OPEN", "m" + std::to_string(i));
  }
  ask("OLD", "make_call", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});
  ask("OLD", "presence", {{"role", "driver"}, {"online", true}});
  close("OLD");
  now += 10 * kDay;
  send("YOUNG", "recent");
  close("YOUNG");
  engine->start();
  run_background();
  // 10 days after the first close: nothing is old enough.
  BOOST_TEST(ask("OLD", "get_message", Json::object()).at("last_seq").get<std::uint64_t>() > 0u);

  now = kT0 + 30 * kDay + 1;  // OLD is past 30 days, YOUNG is not
  int turns = 0;
  const auto out = run_background(&turns);
  BOOST_TEST(engine->metrics().bookings_purged.load() == 1u);
  // At least 26 keys (rows): 22 messages (PostgreSQL; LMDB also their 22 ids), the call, the
  // connection, presence and state, 8 a transaction.
  BOOST_TEST(turns >= 4);
  BOOST_TEST(engine->metrics().purge_batches.load() >= 4u);
  store->read([&](const StoreReader& r) {
    BOOST_TEST(r.last_seq("OLD") == 0u);
    BOOST_TEST(!r.message_by_id("OLD", "nope"));
    BOOST_TEST(!r.call("OLD", "c-1"));
    BOOST_TEST(!r.active_call("OLD"));
    BOOST_TEST(r.connections("OLD").empty());
    BOOST_TEST(!r.presence("OLD"));
    BOOST_TEST(!r.booking_state("OLD"));
    BOOST_TEST(r.last_seq("OPEN") == 20u);
    BOOST_TEST(r.last_seq("YOUNG") == 1u);
    BOOST_TEST(r.booking_state("YOUNG").has_value());
  });
  // Its retained topics are cleared: empty retained payloads.
  for (const char* leaf : {"events/presence", "events/booking"}) {
    const auto cleared = on(out, topic("OLD", leaf));
    BOOST_REQUIRE_EQUAL(cleared.size(), 1u);
    BOOST_TEST(cleared[0].retain);
    BOOST_TEST(cleared[0].payload.empty());
  }
  BOOST_TEST(on(out, topic("YOUNG", "events/booking")).empty());

  // A later request on the purged code finds an empty, open booking: nothing old comes back.
  Json page = ask("OLD", "get_message", Json::object());
  BOOST_TEST(page.at("messages").empty());
  BOOST_TEST(page.at("last_seq").get<std::uint64_t>() == 0u);
  BOOST_TEST(send("OLD", "new life").at("message").at("seq").get<std::uint64_t>() == 1u);
}

BOOST_FIXTURE_TEST_CASE(each_purge_transaction_deletes_a_bounded_number_of_keys, RetentionFixture) {
  for (int i = 0; i < 50; ++i) send("BIG", "m" + std::to_string(i));
  close("BIG");
  now += 31 * kDay;
  // Drive the store directly with the same bound: no call deletes more than asked.
  std::vector<std::size_t> per_txn;
  for (int guard = 0; guard < 100; ++guard) {
    std::size_t n = 0;
    store->write([&](StoreWriter& w) { n = w.purge_booking("BIG", 8); });
    per_txn.push_back(n);
    if (n < 8) break;
  }
  for (std::size_t n : per_txn) BOOST_TEST(n <= 8u);
  BOOST_TEST(per_txn.size() >= 7u);  // 100 message keys and ids (LMDB), 50 rows (PostgreSQL), 8 a txn
  store->read([&](const StoreReader& r) {
    BOOST_TEST(r.last_seq("BIG") == 0u);
    BOOST_TEST(!r.booking_state("BIG"));
  });
}

BOOST_FIXTURE_TEST_CASE(retention_zero_keeps_closed_bookings_forever, CloseFixture) {
  options.retention_ms = 0;
  restart(false);
  send("BK1", "keep me");
  close("BK1");
  engine->start();
  now += 10'000 * kDay;
  run_background();
  BOOST_TEST(engine->metrics().bookings_purged.load() == 0u);
  BOOST_TEST(ask("BK1", "get_message", Json::object()).at("last_seq").get<std::uint64_t>() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- signal: WebRTC signalling relayed between the parties of the current call ----

BOOST_AUTO_TEST_SUITE(signal)

namespace {

// A call the driver started in BK1; its id.
std::string start_call(EngineFixture& f, const std::string& booking = "BK1") {
  const Json reply = f.call(booking, {{"action", "start"}, {"by", "driver"}});
  BOOST_REQUIRE_MESSAGE(reply.at("ok") == true, reply.dump());
  return reply.at("call").at("call_id").get<std::string>();
}

Json offer(const std::string& call_id, const std::string& by = "driver") {
  return {{"call_id", call_id}, {"by", by}, {"kind", "offer"}, {"sdp", "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}};
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(an_offer_is_relayed_on_events_signal_and_nothing_is_stored, EngineFixture) {
  const std::string call_id = start_call(*this);
  const auto last_seq = get("BK1", Json::object()).at("last_seq");
  std::vector<Publish> out;
  const Json reply = ask("BK1", "signal", offer(call_id), &out);
  BOOST_TEST(reply == (Json{{"ok", true}, {"relayed", true}}), reply.dump());
  const auto events = on(out, topic("BK1", "events/signal"));
  BOOST_REQUIRE(events.size() == 1u);
  BOOST_TEST(!events[0].retain);
  const Json event = Json::parse(events[0].payload);
  BOOST_TEST(event == (Json{{"booking_code", "BK1"},
                            {"call_id", call_id},
                            {"from", "driver"},
                            {"kind", "offer"},
                            {"sdp", "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"},
                            {"ts", kT0}}),
             event.dump());
  BOOST_TEST(out.size() == 2u, topics_of(out));  // the reply and the event, no message
  BOOST_TEST(get("BK1", Json::object()).at("last_seq") == last_seq);
  BOOST_TEST(engine->metrics().messages_stored.load() == 1u);  // the call's ringing message only
}

BOOST_FIXTURE_TEST_CASE(every_kind_is_relayed_while_ringing_and_connected, EngineFixture) {
  const std::string call_id = start_call(*this);
  const Json candidate = {{"candidate", "candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host"},
                          {"sdpMid", "0"},
                          {"sdpMLineIndex", 0}};
  std::vector<Publish> out;
  BOOST_TEST(ask("BK1", "signal", {{"call_id", call_id}, {"by", "driver"}, {"kind", "candidate"}, {"candidate", candidate}},
                 &out)
                 .at("ok") == true);
  BOOST_TEST(one(out, topic("BK1", "events/signal")).at("candidate") == candidate);
  BOOST_TEST(call("BK1", {{"action", "accept"}, {"call_id", call_id}, {"by", "passenger"}}).at("ok") == true);
  Json answer = offer(call_id, "passenger");
  answer["kind"] = "answer";
  BOOST_TEST(ask("BK1", "signal", answer, &out).at("ok") == true);
  const Json event = one(out, topic("BK1", "events/signal"));
  BOOST_TEST(event.at("from") == "passenger");
  BOOST_TEST(event.at("kind") == "answer");
  // A bare candidate line, and the empty one (end of candidates), are strings.
  for (const std::string line : {"candidate:2 1 udp 1 198.51.100.7 3478 typ relay", ""}) {
    BOOST_TEST(ask("BK1", "signal", {{"call_id", call_id}, {"by", "passenger"}, {"kind", "candidate"}, {"candidate", line}},
                   &out)
                   .at("ok") == true);
    BOOST_TEST(one(out, topic("BK1", "events/signal")).at("candidate") == line);
  }
  BOOST_TEST(ask("BK1", "signal", {{"call_id", call_id}, {"by", "driver"}, {"kind", "bye"}}, &out).at("ok") == true);
  const Json bye = one(out, topic("BK1", "events/signal"));
  BOOST_TEST(bye.at("kind") == "bye");
  BOOST_TEST(!bye.contains("sdp"));
  BOOST_TEST(!bye.contains("candidate"));
  BOOST_TEST(!bye.contains("reason"));
  // A bye may say why (the web app: `microphone`, its microphone was refused); nothing else may.
  BOOST_TEST(ask("BK1", "signal", {{"call_id", call_id}, {"by", "driver"}, {"kind", "bye"}, {"reason", "microphone"}},
                 &out).at("ok") == true);
  BOOST_TEST(one(out, topic("BK1", "events/signal")).at("reason") == "microphone");
}

// `bye` ends the media, not the call: the state machine stays the authority.
BOOST_FIXTURE_TEST_CASE(bye_leaves_the_call_record_as_it_was, EngineFixture) {
  const std::string call_id = start_call(*this);
  BOOST_TEST(call("BK1", {{"action", "accept"}, {"call_id", call_id}, {"by", "passenger"}}).at("ok") == true);
  std::vector<Publish> out;
  BOOST_TEST(ask("BK1", "signal", {{"call_id", call_id}, {"by", "passenger"}, {"kind", "bye"}}, &out).at("ok") == true);
  BOOST_TEST(on(out, topic("BK1", "events/call")).empty(), topics_of(out));
  const Json got = call("BK1", {{"action", "get"}, {"call_id", call_id}});
  BOOST_TEST(got.at("call").at("state") == "connected");
  // The call still ends as a call does; a bye crossing the `end` is still relayed.
  BOOST_TEST(call("BK1", {{"action", "end"}, {"call_id", call_id}, {"by", "driver"}}).at("ok") == true);
  BOOST_TEST(ask("BK1", "signal", {{"call_id", call_id}, {"by", "driver"}, {"kind", "bye"}}).at("ok") == true);
}

BOOST_FIXTURE_TEST_CASE(only_the_bookings_current_call, EngineFixture) {
  // No call at all, an unknown id, another booking's call.
  check_error(ask("BK1", "signal", offer("c-nope")), "not_found");
  const std::string other = start_call(*this, "BK2");
  check_error(ask("BK1", "signal", offer(other)), "not_found");
  // An earlier call while a newer one is active.
  const std::string first = start_call(*this);
  BOOST_TEST(call("BK1", {{"action", "cancel"}, {"call_id", first}, {"by", "driver"}}).at("ok") == true);
  const std::string second = start_call(*this);
  std::vector<Publish> out;
  const Json refused = ask("BK1", "signal", {{"call_id", first}, {"by", "driver"}, {"kind", "bye"}}, &out);
  check_error(refused, "not_found");
  BOOST_TEST(on(out, topic("BK1", "events/signal")).empty(), topics_of(out));
  BOOST_TEST(ask("BK1", "signal", offer(second)).at("ok") == true);
}

BOOST_FIXTURE_TEST_CASE(media_signals_only_while_ringing_or_connected, EngineFixture) {
  for (const std::string how : {"decline", "missed", "end"}) {
    const std::string call_id = start_call(*this);
    if (how == "decline") {
      BOOST_TEST(call("BK1", {{"action", "decline"}, {"call_id", call_id}, {"by", "passenger"}}).at("ok") == true);
    } else if (how == "missed") {
      now += options.call_ring_timeout_ms;
      BOOST_TEST(!expire_overdue().empty());
    } else {
      BOOST_TEST(call("BK1", {{"action", "accept"}, {"call_id", call_id}, {"by", "passenger"}}).at("ok") == true);
      BOOST_TEST(call("BK1", {{"action", "end"}, {"call_id", call_id}, {"by", "passenger"}}).at("ok") == true);
    }
    for (const std::string kind : {"offer", "answer"}) {
      Json body = offer(call_id);
      body["kind"] = kind;
      std::vector<Publish> out;
      check_error(ask("BK1", "signal", body, &out), "invalid_state");
      BOOST_TEST(on(out, topic("BK1", "events/signal")).empty(), how << ": " << topics_of(out));
    }
    check_error(ask("BK1", "signal", {{"call_id", call_id}, {"by", "driver"}, {"kind", "candidate"}, {"candidate", ""}}),
                "invalid_state");
    BOOST_TEST(ask("BK1", "signal", {{"call_id", call_id}, {"by", "driver"}, {"kind", "bye"}}).at("ok") == true, how);
  }
}

BOOST_FIXTURE_TEST_CASE(fields_and_sizes_are_invalid_requests_naming_the_field, EngineFixture) {
  const std::string call_id = start_call(*this);
  const auto refused = [&](Json body, const std::string& field) {
    std::vector<Publish> out;
    const Json reply = ask("BK1", "signal", body, &out);
    check_error(reply, "invalid_request");
    BOOST_TEST(reply.at("error").at("message").get<std::string>().find("'" + field + "'") != std::string::npos,
               body.dump().substr(0, 200) << " -> " << reply.dump().substr(0, 300));
    BOOST_TEST(on(out, topic("BK1", "events/signal")).empty());
  };
  Json body = offer(call_id);
  body.erase("kind");
  refused(body, "kind");
  body["kind"] = "hangup";
  refused(body, "kind");
  body = offer(call_id);
  body.erase("call_id");
  refused(body, "call_id");
  body["call_id"] = "has space";
  refused(body, "call_id");
  body = offer(call_id);
  body.erase("by");
  refused(body, "by");
  body["by"] = "system";  // not a party of any call
  refused(body, "by");
  body = offer(call_id);
  body.erase("sdp");
  refused(body, "sdp");
  body["sdp"] = 42;
  refused(body, "sdp");
  body["sdp"] = std::string(16 * 1024 + 1, 'a');
  refused(body, "sdp");
  body["sdp"] = std::string(16 * 1024, 'a');  // at the limit: relayed
  BOOST_TEST(ask("BK1", "signal", body).at("ok") == true);
  refused({{"call_id", call_id}, {"by", "driver"}, {"kind", "bye"}, {"sdp", "v=0"}}, "sdp");
  refused({{"call_id", call_id}, {"by", "driver"}, {"kind", "bye"}, {"reason", 1}}, "reason");
  refused({{"call_id", call_id}, {"by", "driver"}, {"kind", "bye"}, {"reason", std::string(65, 'r')}}, "reason");
  refused({{"call_id", call_id}, {"by", "driver"}, {"kind", "answer"}, {"sdp", "v=0"}, {"reason", "x"}}, "reason");
  refused({{"call_id", call_id}, {"by", "driver"}, {"kind", "candidate"}}, "candidate");
  refused({{"call_id", call_id}, {"by", "driver"}, {"kind", "candidate"}, {"candidate", 7}}, "candidate");
  refused({{"call_id", call_id}, {"by", "driver"}, {"kind", "candidate"}, {"candidate", {{"a", {{"b", 1}}}}}},
          "candidate");
  refused({{"call_id", call_id}, {"by", "driver"}, {"kind", "candidate"}, {"candidate", std::string(1023, 'c')}},
          "candidate");  // 1025 bytes as JSON text
  BOOST_TEST(ask("BK1", "signal",
                 {{"call_id", call_id}, {"by", "driver"}, {"kind", "candidate"}, {"candidate", std::string(1022, 'c')}})
                 .at("ok") == true);
  refused({{"call_id", call_id}, {"by", "driver"}, {"kind", "offer"}, {"sdp", "v=0"}, {"candidate", "x"}}, "candidate");
}

// With authentication on, a party signals only as itself, only in its own booking.
BOOST_FIXTURE_TEST_CASE(an_authenticated_party_signals_as_itself, EngineFixture) {
  const std::string call_id = start_call(*this);
  const Identity driver{Principal::driver, "drv-1", "BK1"};
  const Identity passenger_elsewhere{Principal::passenger, "pax-9", "BK2"};
  const Identity service{Principal::service, "support", ""};
  const auto signal_as = [&](const Identity& identity, const Json& body) {
    Request r = asking("BK1", "signal", body);
    r.identity = identity;
    return handle(r);
  };
  auto out = signal_as(driver, offer(call_id, "passenger"));
  check_error(one(out, kReplyTo), "forbidden");
  BOOST_TEST(on(out, topic("BK1", "events/signal")).empty());
  out = signal_as(passenger_elsewhere, offer(call_id, "passenger"));
  check_error(one(out, kReplyTo), "forbidden");
  // forbidden comes before not_found, and invalid_request before forbidden.
  check_error(one(signal_as(driver, offer("c-other", "passenger")), kReplyTo), "forbidden");
  Json bad = offer(call_id, "passenger");
  bad.erase("sdp");
  check_error(one(signal_as(driver, bad), kReplyTo), "invalid_request");
  out = signal_as(driver, offer(call_id, "driver"));
  BOOST_TEST(one(out, kReplyTo).at("ok") == true);
  BOOST_TEST(one(out, topic("BK1", "events/signal")).at("from") == "driver");
  BOOST_TEST(one(signal_as(service, offer(call_id, "passenger")), kReplyTo).at("ok") == true);
}

// ---- ICE servers in a party's make_call reply ----

BOOST_AUTO_TEST_CASE(a_party_gets_ice_servers_with_fresh_turn_credentials) {
  EngineOptions options;
  options.ice.stun_urls = {"stun:stun.example.org:3478"};
  options.ice.turn_urls = {"turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"};
  options.ice.turn_secret = "north-wind";
  options.ice.turn_ttl_s = 600;
  EngineFixture f(options);
  const Json started = f.call("BK1", {{"action", "start"}, {"by", "driver"}});
  const Json& ice = started.at("ice");
  BOOST_TEST(ice.at("ice_transport_policy") == "relay");
  BOOST_REQUIRE(ice.at("ice_servers").size() == 2u);
  BOOST_TEST(ice.at("ice_servers").at(0) == (Json{{"urls", {"stun:stun.example.org:3478"}}}));
  const Json& turn = ice.at("ice_servers").at(1);
  BOOST_TEST(turn.at("urls") == (Json{"turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"}));
  const std::string username = std::to_string(kT0 / 1000 + 600) + ":BK1.driver";
  BOOST_TEST(turn.at("username") == username);
  BOOST_TEST(turn.at("credential") == turn_rest_credential("north-wind", username));
  BOOST_TEST(ice.dump().find("north-wind") == std::string::npos);  // never the secret itself
  const std::string call_id = started.at("call").at("call_id").get<std::string>();
  // The callee's accept and a reloaded page's get carry the callee's own credentials.
  f.now += 5000;
  const Json accepted = f.call("BK1", {{"action", "accept"}, {"call_id", call_id}, {"by", "passenger"}});
  BOOST_TEST(accepted.at("ice").at("ice_servers").at(1).at("username") ==
             std::to_string(kT0 / 1000 + 5 + 600) + ":BK1.passenger");
  BOOST_TEST(f.call("BK1", {{"action", "get"}, {"by", "passenger"}}).contains("ice"));
  // Not for a get without a party, nor for the actions that end a call; never in an event.
  BOOST_TEST(!f.call("BK1", {{"action", "get"}}).contains("ice"));
  std::vector<Publish> out;
  const Json ended = f.call("BK1", {{"action", "end"}, {"call_id", call_id}, {"by", "driver"}}, &out);
  BOOST_TEST(!ended.contains("ice"));
  for (const auto& p : out) BOOST_TEST(p.payload.find("ice_servers") == std::string::npos, p.topic);
}

BOOST_AUTO_TEST_CASE(stun_only_leaves_the_transport_policy_open_and_no_ice_config_adds_nothing) {
  EngineOptions options;
  options.ice.stun_urls = {"stun:127.0.0.1:3478"};
  EngineFixture f(options);
  const Json ice = f.call("BK1", {{"action", "start"}, {"by", "driver"}}).at("ice");
  BOOST_TEST(ice == (Json{{"ice_servers", {{{"urls", {"stun:127.0.0.1:3478"}}}}}, {"ice_transport_policy", "all"}}),
             ice.dump());
  EngineFixture plain;
  BOOST_TEST(!plain.call("BK1", {{"action", "start"}, {"by", "driver"}}).contains("ice"));
}

// coturn's TURN REST scheme (turnserver's use-auth-secret): the password is
// base64(HMAC-SHA1(static-auth-secret, username)). Known answers, computed independently with
// `printf %s USERNAME | openssl dgst -sha1 -hmac SECRET -binary | base64`.
BOOST_AUTO_TEST_CASE(turn_rest_credentials_match_coturns_formula) {
  BOOST_TEST(turn_rest_username(1'764'160'000'123, 3600, "BK1.driver") == "1764163600:BK1.driver");
  BOOST_TEST(turn_rest_credential("north-wind", "1764163600:BK1.driver") == "1EzS8r7WewjSLrphRIx7IlxQUqQ=");
  BOOST_TEST(turn_rest_credential("key", "The quick brown fox jumps over the lazy dog") ==
             "3nybhbi3iqa8ino29wqQcBydtNk=");  // the usual HMAC-SHA1 example
}

BOOST_AUTO_TEST_SUITE_END()
