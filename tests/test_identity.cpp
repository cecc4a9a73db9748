// The Engine with authentication on: what a driver, a passenger and a service identity may ask,
// where `forbidden` falls in the error precedence, and that open mode is untouched. A real
// store (as in test_engine.cpp: LMDB, or PostgreSQL under test_engine_postgres) and a clock that
// moves only by hand.
#include <boost/test/unit_test.hpp>

#include "support/store_space.hpp"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/identity.hpp"
#include "core/engine.hpp"
#include "store/store.hpp"

using namespace navietakie;

namespace {

constexpr Millis kT0 = 1'764'160'000'000;
const std::string kPrefix = "navietakie/v1";
const std::string kReplyTo = "navietakie/v1/replies/client-1/r";

const Identity kDriver{Principal::driver, "drv-42", "BK1"};
const Identity kPassenger{Principal::passenger, "pax-7", "BK1"};
const Identity kService{Principal::service, "dispatch", ""};
const std::optional<Identity> kAnonymous{};

std::string topic(const std::string& booking, const std::string& leaf) {
  return kPrefix + "/bookings/" + booking + "/" + leaf;
}

std::vector<Publish> on(const std::vector<Publish>& out, const std::string& t) {
  std::vector<Publish> found;
  for (const auto& p : out) {
    if (p.topic == t) found.push_back(p);
  }
  return found;
}

std::uint64_t errors_counted(const Engine& engine, ErrorCode code) {
  return engine.metrics().errors[static_cast<std::size_t>(code)].load();
}

// A forbidden reply whose message names `field` (or says what was refused).
void check_forbidden(const Json& reply, const std::string& mentions) {
  BOOST_TEST(reply.at("ok") == false, reply.dump());
  BOOST_TEST(reply.at("error").at("code") == "forbidden", reply.dump());
  BOOST_TEST(reply.at("error").at("message").get<std::string>().find(mentions) != std::string::npos, reply.dump());
}

void check_error(const Json& reply, const std::string& code) {
  BOOST_TEST(reply.at("ok") == false, reply.dump());
  BOOST_TEST(reply.at("error").at("code") == code, reply.dump());
}

void check_ok(const Json& reply) { BOOST_TEST(reply.at("ok") == true, reply.dump()); }

// A store, an engine with authentication on (unless a test says otherwise) and a hand-moved clock.
struct IdentityFixture {
  explicit IdentityFixture(bool require_identity = true) {
    options.require_identity = require_identity;
    store = space.open();
    engine = std::make_unique<Engine>(*store, options, [this] { return now; });
  }

  // Sends `body` as `as` (published by MQTT client `client_id`), answered on kReplyTo; returns the
  // reply, and everything published in `out`.
  Json ask(const std::optional<Identity>& as, const std::string& booking, const std::string& action, Json body,
           std::vector<Publish>* out = nullptr, const std::string& client_id = "client-1") {
    body["reply_to"] = kReplyTo;
    Request r{topic(booking, action), body.dump(), std::nullopt, std::nullopt, client_id, as};
    return reply_of(engine->handle({r}), out);
  }

  // The same with a raw payload (for payloads that are not JSON objects).
  Json ask_raw(const std::optional<Identity>& as, const std::string& booking, const std::string& action,
               const std::string& payload) {
    Request r{topic(booking, action), payload, kReplyTo, std::string("corr"), "client-1", as};
    return reply_of(engine->handle({r}), nullptr);
  }

  Json send(const std::optional<Identity>& as, const std::string& booking, const Json& body,
            std::vector<Publish>* out = nullptr) {
    return ask(as, booking, "send_message", body, out);
  }
  Json call(const std::optional<Identity>& as, const std::string& booking, const Json& body,
            std::vector<Publish>* out = nullptr) {
    return ask(as, booking, "make_call", body, out);
  }
  // The booking's history, read by a service (which may read any booking).
  Json history(const std::string& booking) { return ask(kService, booking, "get_message", {{"limit", 200}}); }

  EngineOptions options;
  Millis now = kT0;
  navietakie::test::StoreSpace space;  // before store: outlives it
  std::unique_ptr<Store> store;
  std::unique_ptr<Engine> engine;

 private:
  static Json reply_of(std::vector<Publish> published, std::vector<Publish>* out) {
    auto replies = on(published, kReplyTo);
    BOOST_REQUIRE_MESSAGE(replies.size() == 1u, replies.size() << " replies, expected 1");
    Json reply = Json::parse(replies.front().payload);
    if (out) *out = std::move(published);
    return reply;
  }
};

struct OpenModeFixture : IdentityFixture {
  OpenModeFixture() : IdentityFixture(false) {}
};

const Json kDriverText = {{"sender", "driver"}, {"text", "at gate B"}};

}  // namespace

BOOST_AUTO_TEST_SUITE(engine_identity)

// ---- the booking ----

BOOST_FIXTURE_TEST_CASE(a_participant_acts_on_its_own_booking, IdentityFixture) {
  check_ok(send(kDriver, "BK1", kDriverText));
  check_ok(send(kPassenger, "BK1", {{"sender", "passenger"}, {"text", "coming"}}));
  check_ok(ask(kPassenger, "BK1", "get_message", Json::object()));
  check_ok(call(kDriver, "BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}}));
  check_ok(call(kPassenger, "BK1", {{"action", "accept"}, {"by", "passenger"}, {"call_id", "c-1"}}));
  check_ok(call(kPassenger, "BK1", {{"action", "get"}}));
  check_ok(call(kPassenger, "BK1", {{"action", "end"}, {"by", "passenger"}, {"call_id", "c-1"}}));
  check_ok(ask(kDriver, "BK1", "presence", {{"role", "driver"}, {"online", true}}));
  BOOST_TEST(history("BK1").at("last_seq") == 5);  // two texts, three call states
  BOOST_TEST(errors_counted(*engine, ErrorCode::forbidden) == 0u);
}

BOOST_FIXTURE_TEST_CASE(another_booking_is_forbidden_for_every_action, IdentityFixture) {
  check_ok(send(kService, "BK2", {{"sender", "system"}, {"type", "system"}, {"text", "trip booked"}}));
  const std::vector<std::pair<std::string, Json>> requests = {
      {"send_message", kDriverText},
      {"get_message", Json::object()},
      {"make_call", {{"action", "start"}, {"by", "driver"}}},
      {"make_call", {{"action", "get"}}},
      {"presence", {{"role", "driver"}, {"online", true}}},
  };
  for (const auto& [action, body] : requests) {
    std::vector<Publish> out;
    const Json reply = ask(kDriver, "BK2", action, body, &out);
    check_forbidden(reply, "booking");
    BOOST_TEST(reply.dump().find("messages") == std::string::npos);  // nothing read
    BOOST_TEST(out.size() == 1u, action);                            // the reply only: no event
  }
  BOOST_TEST(history("BK2").at("last_seq") == 1);  // nothing stored
  check_error(call(kService, "BK2", {{"action", "get"}}), "not_found");
  BOOST_TEST(errors_counted(*engine, ErrorCode::forbidden) == 5u);
}

BOOST_FIXTURE_TEST_CASE(a_service_acts_on_any_booking, IdentityFixture) {
  for (const char* booking : {"BK1", "BK2", "other-9"}) {
    check_ok(send(kService, booking, kDriverText));
    check_ok(ask(kService, booking, "get_message", Json::object()));
    check_ok(call(kService, booking, {{"action", "start"}, {"by", "passenger"}}));
    check_ok(ask(kService, booking, "presence", {{"role", "passenger"}, {"online", true}}));
  }
}

BOOST_FIXTURE_TEST_CASE(an_identity_is_enforced_even_when_not_required, OpenModeFixture) {
  check_forbidden(send(kDriver, "BK2", kDriverText), "booking");
  check_forbidden(send(kDriver, "BK1", {{"sender", "passenger"}, {"text", "x"}}), "'sender'");
  const Json ok = send(kDriver, "BK1", kDriverText);
  BOOST_TEST(ok.at("message").at("sender_id") == "drv-42", ok.dump());
  check_ok(send(kAnonymous, "BK2", kDriverText));  // and a request without one is open mode
}

// ---- send_message ----

BOOST_FIXTURE_TEST_CASE(sender_must_be_the_participants_own_role, IdentityFixture) {
  check_forbidden(send(kDriver, "BK1", {{"sender", "passenger"}, {"text", "x"}}), "'sender'");
  check_forbidden(send(kPassenger, "BK1", kDriverText), "'sender'");
  check_forbidden(send(kDriver, "BK1", {{"sender", "system"}, {"text", "x"}}), "'sender'");
  check_forbidden(send(kPassenger, "BK1", {{"sender", "system"}, {"type", "system"}, {"text", "x"}}), "'sender'");
  BOOST_TEST(history("BK1").at("last_seq") == 0);
}

BOOST_FIXTURE_TEST_CASE(call_and_system_types_are_for_services_only, IdentityFixture) {
  check_forbidden(send(kDriver, "BK1", {{"sender", "driver"}, {"type", "system"}, {"text", "x"}}), "'type'");
  check_forbidden(send(kDriver, "BK1", {{"sender", "driver"}, {"type", "call"}, {"data", {{"call_id", "ext-1"}}}}),
                  "'type'");
  check_forbidden(send(kPassenger, "BK1", {{"sender", "passenger"}, {"type", "call"}}), "'type'");
  check_ok(send(kDriver, "BK1", {{"sender", "driver"}, {"type", "text"}, {"text", "explicit text"}}));
  BOOST_TEST(history("BK1").at("last_seq") == 1);
}

BOOST_FIXTURE_TEST_CASE(a_participants_sender_id_must_be_its_subject, IdentityFixture) {
  check_forbidden(send(kDriver, "BK1", {{"sender", "driver"}, {"sender_id", "pax-7"}, {"text", "x"}}), "'sender_id'");
  check_forbidden(send(kPassenger, "BK1", {{"sender", "passenger"}, {"sender_id", "drv-42"}, {"text", "x"}}),
                  "'sender_id'");
  check_ok(send(kDriver, "BK1", {{"sender", "driver"}, {"sender_id", "drv-42"}, {"text", "x"}}));
}

BOOST_FIXTURE_TEST_CASE(the_stored_sender_id_is_the_subject, IdentityFixture) {
  std::vector<Publish> out;
  const Json reply = send(kDriver, "BK1", kDriverText, &out);  // no sender_id in the payload
  BOOST_TEST(reply.at("message").at("sender_id") == "drv-42", reply.dump());
  const auto events = on(out, topic("BK1", "events/message"));
  BOOST_REQUIRE(events.size() == 1u);
  BOOST_TEST(Json::parse(events[0].payload) == reply.at("message"));
  // A service keeps the sender_id it relays for; without one, its own subject is stored.
  const Json by_service = send(kService, "BK1", {{"sender", "system"}, {"type", "system"}, {"text", "fare set"}});
  BOOST_TEST(by_service.at("message").at("sender_id") == "dispatch", by_service.dump());
  const Json relayed = send(kService, "BK1", {{"sender", "driver"}, {"sender_id", "drv-7"}, {"text", "relayed"}});
  BOOST_TEST(relayed.at("message").at("sender_id") == "drv-7", relayed.dump());
  // As read back, by a participant of the booking.
  const Json page = ask(kPassenger, "BK1", "get_message", Json::object());
  BOOST_REQUIRE(page.at("messages").size() == 3u);
  BOOST_TEST(page.at("messages").at(0).at("sender_id") == "drv-42");
  BOOST_TEST(page.at("messages").at(1).at("sender_id") == "dispatch");
  BOOST_TEST(page.at("messages").at(2).at("sender_id") == "drv-7");
}

BOOST_FIXTURE_TEST_CASE(a_service_may_send_system_and_call_messages_as_anyone, IdentityFixture) {
  check_ok(send(kService, "BK1", {{"sender", "system"}, {"type", "system"}, {"text", "driver assigned"}}));
  check_ok(send(kService, "BK1",
                {{"sender", "passenger"}, {"type", "call"}, {"data", {{"call_id", "pstn-1"}, {"state", "ended"}}}}));
  check_ok(send(kService, "BK2", {{"sender", "driver"}, {"text", "on behalf of the driver"}}));
  const Json page = ask(kService, "BK1", "get_message", {{"types", {"call"}}});
  BOOST_REQUIRE(page.at("messages").size() == 1u);
  BOOST_TEST(page.at("messages").at(0).at("sender") == "passenger");
  // Importing a call record does not touch the call state machine.
  check_error(call(kService, "BK1", {{"action", "get"}}), "not_found");
}

BOOST_FIXTURE_TEST_CASE(a_forbidden_resend_reads_nothing, IdentityFixture) {
  const Json first = send(kPassenger, "BK1", {{"message_id", "m-1"}, {"sender", "passenger"}, {"text", "first"}});
  check_ok(first);
  // The same message_id, but from a request the identity may not make: forbidden, not the original.
  const Json spoof = send(kDriver, "BK1", {{"message_id", "m-1"}, {"sender", "passenger"}, {"text", "x"}});
  check_forbidden(spoof, "'sender'");
  BOOST_TEST(!spoof.contains("message"), spoof.dump());
  check_forbidden(send(kDriver, "BK2", {{"message_id", "m-1"}, {"sender", "driver"}, {"text", "x"}}), "booking");
  // A permitted resend is still answered with the original.
  const Json again = send(kPassenger, "BK1", {{"message_id", "m-1"}, {"sender", "passenger"}, {"text", "second"}});
  BOOST_TEST(again.at("duplicate") == true);
  BOOST_TEST(again.at("message") == first.at("message"));
}

// ---- make_call ----

BOOST_FIXTURE_TEST_CASE(by_must_be_the_participants_own_role, IdentityFixture) {
  check_forbidden(call(kDriver, "BK1", {{"action", "start"}, {"by", "passenger"}, {"call_id", "c-1"}}), "'by'");
  check_ok(call(kDriver, "BK1", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}}));
  // The driver names the callee's role to accept its own call: contradicts the credentials.
  check_forbidden(call(kDriver, "BK1", {{"action", "accept"}, {"by", "passenger"}, {"call_id", "c-1"}}), "'by'");
  // Its own role, but the state machine's wrong party: the existing forbidden.
  check_forbidden(call(kDriver, "BK1", {{"action", "accept"}, {"by", "driver"}, {"call_id", "c-1"}}), "callee");
  check_forbidden(call(kPassenger, "BK1", {{"action", "cancel"}, {"by", "passenger"}, {"call_id", "c-1"}}), "caller");
  check_forbidden(call(kPassenger, "BK1", {{"action", "get"}, {"by", "driver"}}), "'by'");
  check_ok(call(kPassenger, "BK1", {{"action", "get"}}));  // `by` is optional for get
  // `by` missing where it is required stays invalid_request.
  check_error(call(kPassenger, "BK1", {{"action", "accept"}, {"call_id", "c-1"}}), "invalid_request");
  const Json accepted = call(kPassenger, "BK1", {{"action", "accept"}, {"by", "passenger"}, {"call_id", "c-1"}});
  BOOST_TEST(accepted.at("call").at("state") == "connected", accepted.dump());
  check_forbidden(call(kPassenger, "BK1", {{"action", "end"}, {"by", "driver"}, {"call_id", "c-1"}}), "'by'");
  check_ok(call(kDriver, "BK1", {{"action", "end"}, {"by", "driver"}, {"call_id", "c-1"}}));
}

BOOST_FIXTURE_TEST_CASE(a_service_may_act_as_either_party, IdentityFixture) {
  check_ok(call(kService, "BK1", {{"action", "start"}, {"by", "passenger"}, {"call_id", "c-1"}}));
  check_ok(call(kService, "BK1", {{"action", "accept"}, {"by", "driver"}, {"call_id", "c-1"}}));
  check_ok(call(kService, "BK1", {{"action", "end"}, {"by", "passenger"}, {"call_id", "c-1"}}));
  // The state machine still applies to a service.
  check_ok(call(kService, "BK2", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-2"}}));
  check_forbidden(call(kService, "BK2", {{"action", "accept"}, {"by", "driver"}, {"call_id", "c-2"}}), "callee");
}

// ---- presence ----

BOOST_FIXTURE_TEST_CASE(presence_is_for_the_publishers_own_role_and_connection, IdentityFixture) {
  std::vector<Publish> out;
  check_forbidden(ask(kDriver, "BK1", "presence", {{"role", "passenger"}, {"online", false}}, &out, "drv-phone"),
                  "'role'");
  BOOST_TEST(on(out, topic("BK1", "events/presence")).empty());
  check_forbidden(ask(kDriver, "BK1", "presence", {{"role", "driver"}, {"online", false}, {"client_id", "drv-tablet"}},
                      &out, "drv-phone"),
                  "'client_id'");
  BOOST_TEST(on(out, topic("BK1", "events/presence")).empty());
  check_ok(ask(kDriver, "BK1", "presence", {{"role", "driver"}, {"online", true}, {"client_id", "drv-phone"}}, &out,
               "drv-phone"));
  BOOST_TEST(on(out, topic("BK1", "events/presence")).size() == 1u);
  const Json p = ask(kPassenger, "BK1", "presence", {{"role", "passenger"}, {"online", true}}, nullptr, "pax-phone");
  BOOST_TEST(p.at("presence").at("passenger").at("online") == true, p.dump());
  // A service declares any role, for any connection.
  const Json by_service = ask(kService, "BK1", "presence",
                              {{"role", "driver"}, {"online", false}, {"client_id", "drv-phone"}}, nullptr, "ops-1");
  BOOST_TEST(by_service.at("presence").at("driver").at("online") == false, by_service.dump());
}

// ---- authentication required ----

BOOST_FIXTURE_TEST_CASE(no_identity_is_forbidden_when_authentication_is_on, IdentityFixture) {
  const std::vector<std::pair<std::string, Json>> requests = {
      {"send_message", kDriverText},
      {"get_message", Json::object()},
      {"make_call", {{"action", "start"}, {"by", "driver"}}},
      {"presence", {{"role", "driver"}, {"online", true}}},
  };
  for (const auto& [action, body] : requests) {
    std::vector<Publish> out;
    check_forbidden(ask(kAnonymous, "BK1", action, body, &out), "not authenticated");
    BOOST_TEST(out.size() == 1u, action);
  }
  // Without a reply address: on the booking's errors topic, counted.
  const Request silent{topic("BK1", "send_message"), kDriverText.dump(), std::nullopt, std::nullopt, "c", std::nullopt};
  const auto out = engine->handle({silent});
  BOOST_REQUIRE(out.size() == 1u);
  BOOST_TEST(out[0].topic == topic("BK1", "errors"));
  BOOST_TEST(Json::parse(out[0].payload).at("error").at("code") == "forbidden");
  BOOST_TEST(errors_counted(*engine, ErrorCode::forbidden) == 5u);
  BOOST_TEST(Json::parse(engine->metrics().to_json()).at("errors").at("forbidden") == 5);
  BOOST_TEST(history("BK1").at("last_seq") == 0);
}

BOOST_FIXTURE_TEST_CASE(open_mode_is_unchanged, OpenModeFixture) {
  const Json m =
      send(kAnonymous, "BK1", {{"sender", "system"}, {"type", "system"}, {"sender_id", "any"}, {"text", "x"}});
  BOOST_TEST(m.at("message").at("sender_id") == "any", m.dump());
  check_ok(call(kAnonymous, "BK1", {{"action", "start"}, {"by", "passenger"}}));
  check_ok(ask(kAnonymous, "BK1", "presence", {{"role", "driver"}, {"online", true}, {"client_id", "whoever"}}));
  BOOST_TEST(errors_counted(*engine, ErrorCode::forbidden) == 0u);
}

// ---- precedence ----

BOOST_FIXTURE_TEST_CASE(a_malformed_payload_is_invalid_before_it_is_forbidden, IdentityFixture) {
  // Another booking (forbidden), but the payload is wrong first.
  check_error(ask_raw(kDriver, "BK2", "send_message", "not json"), "invalid_json");
  check_error(ask_raw(kDriver, "BK2", "send_message", "[1,2]"), "invalid_request");
  check_error(ask(kDriver, "BK2", "send_message", {{"text", "no sender"}}), "invalid_request");
  check_error(ask(kDriver, "BK2", "get_message", {{"limit", 0}}), "invalid_request");
  check_error(ask(kDriver, "BK2", "make_call", {{"action", "ring"}}), "invalid_request");
  check_error(ask(kDriver, "BK2", "presence", {{"role", "driver"}}), "invalid_request");
  // Its own booking, a contradicting field, and an invalid one.
  check_error(send(kDriver, "BK1", {{"sender", "passenger"}, {"text", 42}}), "invalid_request");
  check_error(send(kPassenger, "BK1", {{"sender", "passenger"}, {"type", "fax"}}), "invalid_request");
  // No identity at all, and an invalid payload.
  check_error(ask_raw(kAnonymous, "BK1", "send_message", "{"), "invalid_json");
  check_error(ask(kAnonymous, "BK1", "make_call", {{"action", "accept"}}), "invalid_request");
  BOOST_TEST(errors_counted(*engine, ErrorCode::forbidden) == 0u);
}

BOOST_FIXTURE_TEST_CASE(forbidden_comes_before_not_found_and_busy, IdentityFixture) {
  check_ok(call(kService, "BK2", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-2"}}));
  // Unknown call_id, on a booking the driver may not use.
  check_forbidden(call(kDriver, "BK2", {{"action", "accept"}, {"by", "driver"}, {"call_id", "nope"}}), "booking");
  check_forbidden(call(kDriver, "BK2", {{"action", "get"}, {"call_id", "nope"}}), "booking");
  // An active call there: forbidden, not busy.
  check_forbidden(call(kDriver, "BK2", {{"action", "start"}, {"by", "driver"}}), "booking");
  // Its own booking, unknown call_id, a contradicting `by`.
  check_forbidden(call(kDriver, "BK1", {{"action", "accept"}, {"by", "passenger"}, {"call_id", "nope"}}), "'by'");
  check_error(call(kDriver, "BK1", {{"action", "get"}, {"call_id", "nope"}}), "not_found");
  BOOST_TEST(errors_counted(*engine, ErrorCode::not_found) == 1u);
  BOOST_TEST(errors_counted(*engine, ErrorCode::busy) == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
