// Authentication, per-booking access control and verified identity, against a real broker: every
// test runs on both hosts with authentication on (the plugin verifying tokens and enforcing the
// ACL; or the plugin in auth-only mode stamping identities for the bridge).
#include <thread>

#include "auth/jwt.hpp"
#include "support/contract.hpp"

#ifndef NAVIETAKIE_PLUGIN_SO
#error "NAVIETAKIE_PLUGIN_SO must name mosquitto_navietakie.so (set by tests/CMakeLists.txt)"
#endif

using namespace navietakie::test;
using navietakie::Identity;
using navietakie::Principal;

namespace {

constexpr int kRefused = 0x80;  // SUBACK / PUBACK reason codes from here up are refusals
constexpr int kNotAuthorized = 0x87;

SystemOptions secure_options(Host host) {
  SystemOptions options = system_options(host);
  options.secure = true;
  // No clock skew allowance, so that a token's expiry can be tested in seconds.
  options.extra_plugin_conf = {"plugin_opt_auth_leeway_s 0"};
  return options;
}

System& security_system(Host host) { return shared_system("security", secure_options(host)); }

Identity driver_of(const std::string& code) { return Identity{Principal::driver, "drv-" + random_hex(6), code}; }
Identity passenger_of(const std::string& code) { return Identity{Principal::passenger, "pax-" + random_hex(6), code}; }
Identity service(const std::string& subject) { return Identity{Principal::service, subject, ""}; }

std::unique_ptr<TestClient> connect_as(TestContext& ctx, const Identity& identity, ClientOptions options = {}) {
  return ctx.client(ctx.system().as(identity, std::move(options)));
}

// True if connecting with these options fails (CONNACK refused, within 3 s).
bool refused(const System& system, ClientOptions options) {
  options.connect_timeout = 3s;
  try {
    system.client(options);
  } catch (const std::exception&) {
    return true;
  }
  return false;
}

// True if connecting with these credentials fails; the broker log must then say why with
// `reason=<reason>`.
bool connect_refused(System& system, const std::string& username, const std::string& password) {
  ClientOptions options;
  options.username = username;
  options.password = password;
  return refused(system, options);
}

std::string base64url(const std::string& in) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  // Widened before shifting: with -fsanitize, g++ warns (-Wsign-conversion) about int shifts.
  const auto byte = [&in](std::size_t at) { return static_cast<unsigned>(static_cast<unsigned char>(in[at])); };
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned n = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    for (int shift : {18, 12, 6, 0}) out += table[(n >> shift) & 63];
  }
  if (i + 1 == in.size()) {
    const unsigned n = byte(i) << 16;
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
  } else if (i + 2 == in.size()) {
    const unsigned n = (byte(i) << 16) | (byte(i + 1) << 8);
    for (int shift : {18, 12, 6}) out += table[(n >> shift) & 63];
  }
  return out;
}

std::int64_t now_s() { return now_ms() / 1000; }

// A device's connection options: a client id of its own.
ClientOptions phone() {
  ClientOptions options;
  options.client_id = "phone-" + random_hex(6);
  return options;
}

// True if another subject, with a valid token of its own, cannot connect with the client id of
// `options`: it would kick the holder, inherit its session and read its reply topics.
bool another_subject_is_refused(TestContext& ctx, const ClientOptions& options) {
  return refused(ctx.system(), ctx.system().as(passenger_of(booking("sec-b")), options));
}

// Everything a booking holds, read by a service identity.
json history(TestContext& ctx, const std::string& code) {
  auto reader = ctx.client();
  return get_message(*reader, code, json{{"limit", 100}});
}

}  // namespace

BOOST_AUTO_TEST_SUITE(security)

NT_HOST_TEST(participants_use_their_own_booking, 60) {
  TestContext ctx(security_system(host));
  const std::string code = booking("sec");
  const Identity driver = driver_of(code);
  const Identity passenger = passenger_of(code);
  auto drv = connect_as(ctx, driver);
  auto pax = connect_as(ctx, passenger);
  BOOST_TEST(pax->subscribe_reason(events_filter(code)) < kRefused);
  BOOST_TEST(pax->subscribe_reason(errors_topic(code)) < kRefused);

  // The stored sender_id is the token's subject, given or not.
  const json sent = send_message(*drv, code, text_message("driver", "at the gate"));
  NT_REQUIRE_OK(sent);
  BOOST_TEST(sent["message"].value("sender_id", "") == driver.subject);
  BOOST_TEST(pax->wait_for(on_topic_json(event_topic(code, "message"),
                                         [&](const json& m) { return m.value("text", "") == "at the gate"; }),
                           5s)
                 .has_value());
  const json same_id =
      send_message(*drv, code, json{{"sender", "driver"}, {"sender_id", driver.subject}, {"text", "x"}});
  NT_CHECK_OK(same_id);

  const json page = get_message(*pax, code);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page_seqs(page).size() == 2u);

  const json started = make_call(*drv, code, call_request("start", "driver"));
  NT_REQUIRE_OK(started);
  const std::string call_id = started["call"].value("call_id", "");
  NT_CHECK_OK(make_call(*pax, code, call_request("accept", "passenger", call_id)));
  NT_CHECK_OK(make_call(*pax, code, call_request("end", "passenger", call_id)));

  const json online = set_presence(*pax, code, json{{"role", "passenger"}, {"online", true}});
  NT_REQUIRE_OK(online);
  BOOST_TEST(online["presence"]["passenger"].value("online", false));
}

NT_HOST_TEST(publishing_to_another_booking_is_refused_and_stores_nothing, 60) {
  TestContext ctx(security_system(host));
  const std::string mine = booking("sec-a");
  const std::string theirs = booking("sec-b");
  auto drv = connect_as(ctx, driver_of(mine));
  auto watcher = ctx.client();  // a service following the other booking
  watcher->subscribe(events_filter(theirs));

  for (const std::string action : {"send_message", "get_message", "make_call", "presence"}) {
    BOOST_TEST(
        drv->publish_reason(request_topic(theirs, action), text_message("driver", "hi").dump()) == kNotAuthorized,
        action);
  }
  // Topics that are not requests: events, errors, other namespaces.
  BOOST_TEST(drv->publish_reason(event_topic(mine, "message"), "{}") == kNotAuthorized);
  BOOST_TEST(drv->publish_reason(errors_topic(mine), "{}") == kNotAuthorized);
  BOOST_TEST(drv->publish_reason("elsewhere/topic", "{}") == kNotAuthorized);

  // A 3.1.1 client gets no reason code: its publish is dropped all the same.
  ClientOptions v311;
  v311.version = MqttVersion::v311;
  auto old = connect_as(ctx, driver_of(mine), v311);
  old->publish(request_topic(theirs, "send_message"), text_message("driver", "sneaky").dump());

  NT_CHECK_OK(send_message(*ctx.client(), theirs, text_message("driver", "fence")));
  const json page = history(ctx, theirs);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page_seqs(page) == std::vector<std::int64_t>{1});
  BOOST_TEST(watcher->count(on_topic(event_topic(theirs, "message"))) <= 1u);
}

NT_HOST_TEST(subscriptions_outside_the_booking_are_refused, 60) {
  TestContext ctx(security_system(host));
  const std::string mine = booking("sec-a");
  const std::string theirs = booking("sec-b");
  auto drv = connect_as(ctx, driver_of(mine));

  const std::vector<std::string> refused = {
      events_filter(theirs),
      event_topic(theirs, "message"),
      errors_topic(theirs),
      topic_prefix + "/bookings/+/events/#",
      topic_prefix + "/bookings/+/events/message",
      topic_prefix + "/bookings/" + mine + "/#",  // spans the booking's request topics
      request_topic(mine, "send_message"),
      topic_prefix + "/#",
      "#",
      "+/+/+/+/+",
      "$SYS/#",
      topic_prefix + "/replies/someone-else/#",
      topic_prefix + "/replies/+/#",
      topic_prefix + "/errors",
      "$share/g/" + events_filter(theirs),
  };
  for (const auto& filter : refused) BOOST_TEST(drv->subscribe_reason(filter) >= kRefused, filter);
  const std::vector<std::string> granted = {
      events_filter(mine),
      event_topic(mine, "presence"),
      errors_topic(mine),
      topic_prefix + "/replies/" + drv->client_id() + "/#",
  };
  for (const auto& filter : granted) BOOST_TEST(drv->subscribe_reason(filter) < kRefused, filter);

  // Nothing of the other booking arrives, whatever was tried.
  NT_CHECK_OK(send_message(*ctx.client(), theirs, text_message("passenger", "private")));
  NT_CHECK_OK(send_message(*ctx.client(), mine, text_message("passenger", "mine")));
  BOOST_TEST(drv->wait_for(on_topic(event_topic(mine, "message")), 5s).has_value());
  BOOST_TEST(drv->count(on_topic(event_topic(theirs, "message"))) == 0u);
}

NT_HOST_TEST(payload_that_contradicts_the_token_is_forbidden, 60) {
  TestContext ctx(security_system(host));
  const std::string code = booking("sec");
  const Identity driver = driver_of(code);
  auto drv = connect_as(ctx, driver);

  NT_CHECK_ERROR(send_message(*drv, code, text_message("passenger", "I am the passenger")), "forbidden");
  NT_CHECK_ERROR(send_message(*drv, code, json{{"sender", "system"}, {"type", "system"}, {"text", "x"}}), "forbidden");
  NT_CHECK_ERROR(send_message(*drv, code, json{{"sender", "driver"}, {"type", "call"}}), "forbidden");
  NT_CHECK_ERROR(send_message(*drv, code, json{{"sender", "driver"}, {"sender_id", "drv-other"}, {"text", "x"}}),
                 "forbidden");
  NT_CHECK_ERROR(make_call(*drv, code, call_request("start", "passenger")), "forbidden");
  NT_CHECK_ERROR(set_presence(*drv, code, json{{"role", "passenger"}, {"online", true}}), "forbidden");
  NT_CHECK_ERROR(set_presence(*drv, code, json{{"role", "driver"}, {"online", true}, {"client_id", "not-me"}}),
                 "forbidden");
  // A spoof is still a request: a bad payload is reported as such first (error precedence).
  NT_CHECK_ERROR(drv->request_raw(request_topic(code, "send_message"), "{not json"), "invalid_json");

  const json page = history(ctx, code);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page_seqs(page).empty());
}

NT_HOST_TEST(bad_tokens_are_refused_at_connect_with_a_logged_reason, 90) {
  TestContext ctx(security_system(host));
  System& system = ctx.system();
  const std::string code = booking("sec");
  const std::string secret = navietakie::read_secret_file(system.secret_path());
  const Identity driver = driver_of(code);

  const std::string valid = system.token(driver);
  const std::string expired = navietakie::mint_token(driver, secret, now_s() - 60);
  const std::string not_yet = navietakie::mint_token(driver, secret, now_s() + 3600, now_s() + 600);
  const std::string wrong_secret = navietakie::mint_token(driver, std::string(64, 'x'), now_s() + 3600);
  // The same claims with another booking, under the valid signature.
  const auto dot1 = valid.find('.');
  const auto dot2 = valid.find('.', dot1 + 1);
  const std::string tampered_claims = base64url(
      json{{"sub", driver.subject}, {"role", "driver"}, {"booking", "OTHER"}, {"exp", now_s() + 3600}}.dump());
  const std::string tampered = valid.substr(0, dot1 + 1) + tampered_claims + valid.substr(dot2);
  const std::string alg_none =
      base64url(R"({"alg":"none","typ":"JWT"})") + "." +
      base64url(json{{"sub", driver.subject}, {"role", "service"}, {"exp", now_s() + 3600}}.dump()) + ".";
  const std::string oversize = valid + std::string(5000, 'A');

  const std::vector<std::pair<std::string, std::string>> cases = {
      {"expired", expired},
      {"not_yet_valid", not_yet},
      {"bad_signature", wrong_secret},
      {"bad_signature", tampered},
      {"bad_algorithm", alg_none},
      {"oversize", oversize},
      {"malformed", "not-a-token"},
      {"missing", ""},
  };
  for (const auto& [reason, token] : cases) {
    BOOST_TEST(connect_refused(system, driver.subject, token), reason);
    BOOST_TEST(system.broker().wait_log_contains("reason=" + reason, 5s), reason);
  }
  // The log names the reason, never the token.
  const std::string log = read_file(system.broker().log_path());
  BOOST_TEST(log.find(valid.substr(dot1 + 1, dot2 - dot1 - 1)) == std::string::npos);
  BOOST_TEST(log.find(tampered_claims) == std::string::npos);
  // And a valid token still gets in.
  BOOST_TEST(!connect_refused(system, driver.subject, valid));
}

NT_HOST_TEST(a_client_id_cannot_be_taken_over_by_another_subject, 60) {
  TestContext ctx(security_system(host));
  const std::string code = booking("sec");
  const Identity owner = driver_of(code);
  const ClientOptions options = phone();
  auto first = connect_as(ctx, owner, options);
  BOOST_TEST(another_subject_is_refused(ctx, options));
  BOOST_TEST(ctx.system().broker().wait_log_contains("reason=client_id_taken", 5s));
  BOOST_TEST(first->connected());

  // The phone reconnects before the broker noticed its old socket died: the broker closes the old
  // connection after the new one authenticated. The id stays with the live connection.
  auto reconnected = connect_as(ctx, owner, options);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (first->connected() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  BOOST_REQUIRE(!first->connected());  // the broker closed it: its DISCONNECT event has run
  BOOST_TEST(another_subject_is_refused(ctx, options));
  BOOST_TEST(reconnected->connected());
  // Nor can the other subject listen on the owner's replies under an id of its own.
  auto thief = connect_as(ctx, passenger_of(booking("sec-b")));
  BOOST_TEST(thief->subscribe_reason(topic_prefix + "/replies/" + options.client_id + "/#") >= kRefused);
  // The owner's live connection is served, and its replies reach it alone.
  NT_CHECK_OK(send_message(*reconnected, code, text_message("driver", "still here")));
  BOOST_TEST(thief->received().empty());

  // The owner itself may reconnect with the same id (a new token, same subject), as often as it likes.
  reconnected->disconnect();
  auto again = connect_as(ctx, owner, options);
  BOOST_TEST(again->connected());
  NT_CHECK_OK(get_message(*again, code));
  // A client id with '/' would widen its reply namespace: refused.
  ClientOptions slash;
  slash.client_id = "a/b";
  slash.connect_timeout = 3s;
  BOOST_CHECK_THROW(connect_as(ctx, owner, slash), std::exception);
}

// What a connection may receive is worked out when it authenticates (the plugin keeps it per
// session): a phone whose next token is for another booking resumes its session, subscription to
// the old booking included, and from then on receives the new booking's events and not the old's.
NT_HOST_TEST(a_resumed_session_with_another_token_receives_only_what_the_new_token_allows, 60) {
  TestContext ctx(security_system(host));
  const std::string first_booking = booking("sec-a");
  const std::string next_booking = booking("sec-b");
  const Identity first = driver_of(first_booking);
  const Identity next{Principal::driver, first.subject, next_booking};  // the same driver, a new ride
  ClientOptions options = phone();
  options.clean_start = false;
  auto before = connect_as(ctx, first, options);
  BOOST_REQUIRE(before->subscribe_reason(events_filter(first_booking)) < kRefused);
  before->disconnect();

  auto after = connect_as(ctx, next, options);
  BOOST_TEST(after->subscribe_reason(events_filter(first_booking)) >= kRefused);
  BOOST_REQUIRE(after->subscribe_reason(events_filter(next_booking)) < kRefused);
  // The old booking's event goes out first: had the resumed subscription been served with the old
  // token's access, it would arrive before the new booking's.
  NT_REQUIRE_OK(send_message(*connect_as(ctx, passenger_of(first_booking)), first_booking,
                             text_message("passenger", "old ride")));
  NT_REQUIRE_OK(send_message(*connect_as(ctx, passenger_of(next_booking)), next_booking,
                             text_message("passenger", "new ride")));
  BOOST_TEST(after->wait_for(on_topic(event_topic(next_booking, "message")), 5s).has_value());
  BOOST_TEST(after->count(on_topic(event_topic(first_booking, "message"))) == 0u);
  // And it may publish for the new booking only.
  NT_CHECK_OK(send_message(*after, next_booking, text_message("driver", "on my way")));
  BOOST_TEST(after->publish_reason(request_topic(first_booking, "send_message"),
                                   text_message("driver", "x").dump()) == kNotAuthorized);
}

// A reply address the requester may not use is `forbidden`, reported on its own booking's errors
// topic; nothing is published at the address: no text of its choosing in another booking's events
// or errors, in the global errors, nor in another client's replies (with chosen correlation data).
NT_HOST_TEST(replies_go_only_where_the_requester_may_read, 90) {
  TestContext ctx(security_system(host));
  const std::string mine = booking("sec-a");
  const std::string theirs = booking("sec-b");
  auto pax = connect_as(ctx, passenger_of(mine));
  pax->subscribe(errors_topic(mine));
  auto watcher = ctx.client();  // a service following the other booking and the global errors
  watcher->subscribe(events_filter(theirs));
  watcher->subscribe(errors_topic(theirs));
  watcher->subscribe(topic_prefix + "/errors");
  auto victim = ctx.client();  // another client, listening on its own reply namespace
  const std::string victim_replies = topic_prefix + "/replies/" + victim->client_id();
  victim->subscribe(victim_replies + "/#");

  const std::vector<std::string> targets = {
      event_topic(theirs, "message"), event_topic(theirs, "presence"),
      errors_topic(theirs),           topic_prefix + "/errors",
      victim_replies + "/1",          request_topic(theirs, "send_message"),
      event_topic(mine, "message"),   "elsewhere/outside",
  };
  std::size_t refused = 0;
  for (const auto& target : targets) {
    for (const bool v5 : {true, false}) {
      BOOST_TEST_CONTEXT((v5 ? "response topic " : "reply_to ") << target) {
        json body = text_message("passenger", "injected");
        PublishOptions options;
        if (v5) {
          options.response_topic = target;
          options.correlation_data = "chosen";
        } else {
          body["reply_to"] = target;
          body["correlation_id"] = "chosen";
        }
        pax->publish(request_topic(mine, "send_message"), body.dump(), options);
        const auto errors = pax->wait_for_count(on_topic(errors_topic(mine)), ++refused, 5s);
        BOOST_REQUIRE_EQUAL(errors.size(), refused);
        NT_CHECK_ERROR(errors.back().body(), "forbidden");
      }
    }
  }
  // A service is held to its grants too (and never to an event topic, which its grants cover).
  auto ops = ctx.client();
  ops->subscribe(errors_topic(mine));
  for (const std::string& target : {victim_replies + "/2", event_topic(mine, "presence")}) {
    PublishOptions options;
    options.response_topic = target;
    options.correlation_data = "chosen";
    ops->publish(request_topic(mine, "get_message"), "{}", options);
  }
  const auto service_errors = ops->wait_for_count(on_topic(errors_topic(mine)), 2, 5s);
  BOOST_REQUIRE_EQUAL(service_errors.size(), 2u);
  for (const auto& error : service_errors) NT_CHECK_ERROR(error.body(), "forbidden");

  // Nothing reached any target, nothing was stored.
  BOOST_TEST(watcher->received().empty(), watcher->received().size() << " messages");
  BOOST_TEST(victim->received().empty(), victim->received().size() << " messages");
  const json page = history(ctx, mine);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page_seqs(page).empty());
}

// A request published with the retain flag is handled once. Bridge: the auth-only plugin clears
// the flag, so the broker keeps no copy to hand the bridge (with the publisher's stamp) at each of
// its reconnects; the embedded plugin consumes requests.
NT_HOST_TEST(a_retained_request_is_never_replayed, 120) {
  TestContext ctx(security_system(host));
  const std::string code = booking("sec");
  auto drv = connect_as(ctx, driver_of(code));
  drv->subscribe(events_filter(code));
  PublishOptions retained;
  retained.retain = true;
  drv->publish(request_topic(code, "send_message"), text_message("driver", "once").dump(), retained);
  drv->publish(request_topic(code, "make_call"), call_request("start", "driver").dump(), retained);
  drv->publish(request_topic(code, "presence"), json{{"role", "driver"}, {"online", true}}.dump(), retained);
  BOOST_REQUIRE_EQUAL(drv->wait_for_count(on_topic(event_topic(code, "message")), 2, 5s).size(), 2u);
  BOOST_REQUIRE(drv->wait_for(on_topic(event_topic(code, "presence")), 5s).has_value());
  if (host == Host::bridge) {
    for (int reconnect = 0; reconnect < 2; ++reconnect) {
      ctx.system().restart_host();
      // Had the broker kept a copy, the bridge would have been handed it at its resubscription
      // (and ignored it); a round trip later, nothing of the kind was delivered.
      NT_CHECK_OK(get_message(*drv, code));
      BOOST_TEST(ctx.system().describe().find("retained_request_ignored") == std::string::npos);
    }
  }
  const json page = history(ctx, code);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page_seqs(page) == (std::vector<std::int64_t>{1, 2}));
  BOOST_TEST(drv->count(on_topic(event_topic(code, "message"))) == 2u);
  BOOST_TEST(drv->count(on_topic(event_topic(code, "call"))) == 1u);
}

// A client that puts its token in the username gets it refused (no password) and not logged.
NT_HOST_TEST(a_token_given_as_username_never_reaches_the_log, 60) {
  TestContext ctx(security_system(host));
  System& system = ctx.system();
  const std::string token = system.token(driver_of(booking("sec")));
  ClientOptions options;
  options.client_id = "tok-" + random_hex(6);
  options.username = token;
  options.password = "";
  BOOST_TEST(refused(system, options));
  BOOST_TEST(system.broker().wait_log_contains("client_id=" + options.client_id, 5s));
  const std::string log = read_file(system.broker().log_path());
  const auto dot1 = token.find('.');
  const auto dot2 = token.find('.', dot1 + 1);
  BOOST_TEST(log.find(token.substr(dot1 + 1, dot2 - dot1 - 1)) == std::string::npos);  // the claims
  BOOST_TEST(log.find(token.substr(dot2 + 1)) == std::string::npos);                   // the signature
  BOOST_TEST(log.find("username=redacted:") != std::string::npos);
}

NT_HOST_TEST(a_client_is_disconnected_when_its_token_expires, 60) {
  TestContext ctx(security_system(host));
  const std::string code = booking("sec");
  const Identity driver = driver_of(code);
  ClientOptions options;
  options.username = driver.subject;
  options.password = ctx.system().token(driver, 2);
  auto drv = ctx.client(options);
  BOOST_TEST(drv->connected());
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (drv->connected() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(100ms);
  BOOST_TEST(!drv->connected());
  BOOST_TEST(ctx.system().broker().wait_log_contains("token_expired_disconnect", 2s));
}

NT_HOST_TEST(a_dropped_participant_goes_offline_through_its_will, 60) {
  // Its Will (presence offline) is a request like any other: with authentication on it carries the
  // participant's identity (bridge host: the auth-only plugin re-publishes it with the stamp).
  TestContext ctx(security_system(host));
  const std::string code = booking("sec");
  const Identity driver = driver_of(code);
  auto watcher = ctx.client();
  watcher->subscribe(event_topic(code, "presence"));
  const std::string client_id = "car-" + random_hex(6);
  auto abrupt = ctx.system().broker().start_abrupt_client(
      client_id, Will{request_topic(code, "presence"), json{{"role", "driver"}, {"online", false}}.dump(), 1, false},
      driver.subject, ctx.system().token(driver));
  // Declared online for that connection (by a service: mosquitto_sub cannot publish).
  NT_REQUIRE_OK(
      set_presence(*ctx.client(), code, json{{"role", "driver"}, {"online", true}, {"client_id", client_id}}));
  auto is_offline = [](const json& p) {
    return p.contains("driver") && p["driver"].value("online", true) == false && !p["driver"]["since"].is_null();
  };
  BOOST_TEST(watcher->count(on_topic_json(event_topic(code, "presence"), is_offline)) == 0u);
  abrupt->kill9();
  BOOST_TEST(watcher->wait_for(on_topic_json(event_topic(code, "presence"), is_offline), 10s).has_value());
}

NT_HOST_TEST(services_get_what_is_granted_and_may_speak_for_the_system, 60) {
  TestContext ctx(security_system(host));
  const std::string code = booking("sec");
  auto ops = ctx.client();  // a service identity with the default grants
  BOOST_TEST(ops->subscribe_reason(topic_prefix + "/bookings/+/events/#") < kRefused);
  BOOST_TEST(ops->subscribe_reason(topic_prefix + "/errors") < kRefused);
  BOOST_TEST(ops->subscribe_reason("$SYS/#") >= kRefused);
  BOOST_TEST(ops->subscribe_reason(topic_prefix + "/replies/someone-else/#") >= kRefused);
  BOOST_TEST(ops->subscribe_reason(topic_prefix + "/bookings/+/send_message") >= kRefused);
  BOOST_TEST(ops->publish_reason(event_topic(code, "message"), "{}") == kNotAuthorized);

  const json system_message =
      send_message(*ops, code, json{{"sender", "system"}, {"type", "system"}, {"text", "Trip started"}});
  NT_REQUIRE_OK(system_message);
  BOOST_TEST(ops->wait_for(on_topic(event_topic(code, "message")), 5s).has_value());
  // A service may act for a party (telephony, support tools) and keeps the sender_id it gives.
  const json relayed =
      send_message(*ops, code, json{{"sender", "driver"}, {"sender_id", "drv-9"}, {"text", "relayed"}});
  NT_REQUIRE_OK(relayed);
  BOOST_TEST(relayed["message"].value("sender_id", "") == "drv-9");
}

NT_HOST_TEST(a_client_made_identity_stamp_is_refused, 60) {
  TestContext ctx(security_system(host));
  const std::string code = booking("sec");
  auto drv = connect_as(ctx, driver_of(code));
  PublishOptions forged;
  forged.user_properties = {{"navietakie-identity", R"({"sub":"ops","role":"service"})"}};
  const std::string payload = json{{"sender", "system"}, {"type", "system"}, {"text", "forged"}}.dump();
  const int reason = drv->publish_reason(request_topic(code, "send_message"), payload, forged);
  if (host == Host::bridge) {
    // Auth-only plugin: the publish itself is refused.
    BOOST_TEST(reason == kNotAuthorized);
  } else {
    // Embedded: the stamp means nothing there; the request is handled as the driver's, and forbidden.
    BOOST_TEST(reason < kRefused);
  }
  const json page = history(ctx, code);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page_seqs(page).empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(security_setup)

BOOST_AUTO_TEST_CASE(config_grants_a_named_service_more, *boost::unit_test::timeout(60)) {
  SystemOptions options = system_options(Host::plugin);
  options.secure = true;
  options.extra_plugin_conf = {"plugin_opt_auth_service_grants ops:sub:$SYS/#, *:pub:{prefix}/bookings/+/get_message"};
  System system(options);
  TestContext ctx(system);
  auto ops = ctx.client(system.as(service("ops")));
  auto other = ctx.client(system.as(service("billing")));
  BOOST_TEST(ops->subscribe_reason("$SYS/broker/uptime") < kRefused);
  BOOST_TEST(other->subscribe_reason("$SYS/broker/uptime") >= kRefused);
  // Only get_message is granted to services here.
  const std::string code = booking("sec");
  BOOST_TEST(other->publish_reason(request_topic(code, "send_message"), text_message("driver", "x").dump()) ==
             kNotAuthorized);
  NT_CHECK_OK(get_message(*other, code));
}

BOOST_AUTO_TEST_CASE(open_mode_says_so_loudly, *boost::unit_test::timeout(60)) {
  for (Host host : contract_hosts()) {
    System system(system_options(host));
    TestContext ctx(system);
    const std::string where = host == Host::plugin ? read_file(system.broker().log_path()) : system.describe();
    BOOST_TEST(where.find("OPEN_MODE") != std::string::npos, host);
  }
}

// The bridge behind a broker without our plugin: a request published with the retain flag is
// stored by the broker and handed to the bridge at each resubscription, with the retain flag on.
// That is a stored copy, never run again.
BOOST_AUTO_TEST_CASE(a_bridge_behind_a_plain_broker_never_runs_a_retained_request, *boost::unit_test::timeout(120)) {
  System system(system_options(Host::bridge));
  TestContext ctx(system);
  const std::string code = booking("plain");
  auto client = ctx.client();
  client->subscribe(event_topic(code, "message"));
  PublishOptions retained;
  retained.retain = true;
  client->publish(request_topic(code, "send_message"), text_message("driver", "once").dump(), retained);
  BOOST_REQUIRE(client->wait_for(on_topic(event_topic(code, "message")), 5s).has_value());
  for (int reconnect = 0; reconnect < 2; ++reconnect) {
    system.restart_host();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (system.describe().find("retained_request_ignored") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(50ms);
    }
    BOOST_TEST(system.describe().find("retained_request_ignored") != std::string::npos, reconnect);
  }
  const json page = get_message(*client, code);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page_seqs(page) == std::vector<std::int64_t>{1});
  BOOST_TEST(client->count(on_topic(event_topic(code, "message"))) == 1u);
}

BOOST_AUTO_TEST_CASE(a_bad_secret_stops_the_broker_naming_the_key, *boost::unit_test::timeout(60)) {
  for (const bool exists : {false, true}) {
    TempDir dir("navietakie-sec");
    const std::string path = dir.file("jwt.secret");
    if (exists) write_file(path, "too-short\n");
    Broker broker(dir, {"plugin " + std::string(NAVIETAKIE_PLUGIN_SO), "plugin_opt_data_dir " + dir.file("data"),
                        "plugin_opt_auth_jwt_secret_file " + path});
    broker.spawn();
    BOOST_TEST(broker.wait_exit(10s).value_or(0) != 0, path);
    BOOST_TEST(broker.wait_log_contains("auth_jwt_secret_file", 1s), path);
    // The secret itself never reaches the log.
    BOOST_TEST(read_file(broker.log_path()).find("too-short") == std::string::npos);
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(security_public_key)

// A broker that holds only a public key: an RS256 token minted with the private half gets in, one
// that lives longer than auth_max_token_ttl_s is refused with its reason logged.
BOOST_AUTO_TEST_CASE(a_public_key_verifies_rs256_and_bounds_the_lifetime, *boost::unit_test::timeout(60)) {
  TempDir dir("navietakie-sec-pk");
  const std::string key = dir.file("jwt");
  for (std::vector<std::string> argv :
       {std::vector<std::string>{"openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                                 key + ".pem"},
        std::vector<std::string>{"openssl", "pkey", "-in", key + ".pem", "-pubout", "-out", key + ".pub"}}) {
    Process openssl(argv, ProcessOptions(dir.file("openssl.log")));
    BOOST_TEST_REQUIRE(openssl.wait_exit(30s).value_or(-1) == 0, openssl.describe());
  }
  Broker broker(dir,
                {"allow_anonymous false", "plugin " + std::string(NAVIETAKIE_PLUGIN_SO), "plugin_opt_handlers false",
                 "plugin_opt_auth_jwt_public_key_file " + key + ".pub", "plugin_opt_auth_max_token_ttl_s 3600"});
  broker.start();
  const navietakie::PemKey private_key = navietakie::read_private_key_file(key + ".pem");
  const Identity ops = service("ops-" + random_hex(6));
  const auto login = [&](const std::string& token) {
    ClientOptions options;
    options.username = ops.subject;
    options.password = token;
    options.connect_timeout = 3s;
    return std::make_unique<TestClient>(broker.uri(), options);
  };

  auto client = login(navietakie::mint_token(ops, private_key, now_s() + 3600, std::nullopt, now_s()));
  BOOST_TEST(client->connected());
  BOOST_TEST(client->subscribe_reason(errors_topic(booking("pk"))) < kRefused);  // the token's identity holds

  BOOST_CHECK_THROW(login(navietakie::mint_token(ops, private_key, now_s() + 3601, std::nullopt, now_s())),
                    std::exception);
  BOOST_TEST(broker.wait_log_contains("reason=ttl_too_long", 5s));
  // Signed with the public key's text as an HMAC secret: never tried against the public key.
  const std::string public_pem = read_file(key + ".pub");
  BOOST_CHECK_THROW(login(navietakie::mint_token(ops, public_pem, now_s() + 600)), std::exception);
  BOOST_TEST(broker.wait_log_contains("reason=bad_algorithm", 5s));

  // A bridge with only the public key cannot mint its own token: it says what it needs and stops.
  Process bridge({NAVIETAKIE_BRIDGE_BIN, "--broker_url", broker.uri(), "--data_dir", dir.file("bridge-data"),
                  "--auth_jwt_public_key_file", key + ".pub"},
                 ProcessOptions(dir.file("bridge.log")));
  BOOST_TEST(bridge.wait_exit(10s).value_or(0) != 0, bridge.describe());
  BOOST_TEST(read_file(dir.file("bridge.log")).find("'mqtt_password_file'") != std::string::npos, bridge.describe());
}

BOOST_AUTO_TEST_SUITE_END()
