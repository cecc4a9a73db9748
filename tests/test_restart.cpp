// Durability across restarts: the host stopped gracefully or killed, and the broker restarted under
// a running host. Each test owns its system, since it stops parts of it.
//
// For the plugin host the host IS the broker: stopping it ends every client connection (the tests
// connect new clients afterwards), events published while the plugin starts reach nobody (the tests
// read the stored state instead), and a broker start means nobody is connected (every stored
// connection is marked offline).
#include <thread>

#include "support/contract.hpp"

using namespace navietakie::test;

namespace {

// Retries a v5 request (1 s per try) until it is answered or `timeout` passes; for hosts that are
// reconnecting.
std::optional<json> request_until_answered(TestClient& client, const std::string& topic, const json& body,
                                           Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto reply = client.try_await_reply(client.send_request(topic, body.dump()), 1s)) return reply;
  }
  return std::nullopt;
}

void sleep_until_ms(std::int64_t epoch_ms) {
  const std::int64_t now = now_ms();
  if (epoch_ms > now) std::this_thread::sleep_for(Millis(epoch_ms - now));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(restart)

NT_HOST_TEST(history_seq_calls_and_presence_survive_a_graceful_restart, 120) {
  System system(system_options(host));
  TestContext ctx(system);
  auto client = ctx.client();
  const std::string code = booking("durable");

  json first = text_message("driver", "before restart 1");
  first["message_id"] = "durable-1";
  NT_REQUIRE_OK(send_message(*client, code, first));
  NT_REQUIRE_OK(send_message(*client, code, text_message("passenger", "before restart 2")));
  NT_REQUIRE_OK(send_message(*client, code, text_message("driver", "before restart 3")));
  const json started = make_call(*client, code, call_request("start", "driver"));
  NT_REQUIRE_OK(started);
  const std::string call_id = started["call"].value("call_id", "");
  const json accepted = make_call(*client, code, call_request("accept", "passenger", call_id));
  NT_REQUIRE_OK(accepted);
  const json presence = set_presence(*client, code, {{"role", "driver"}, {"online", true}, {"client_id", "drv-phone"}});
  NT_REQUIRE_OK(presence);
  const json history_before = get_message(*client, code);
  NT_REQUIRE_OK(history_before);
  BOOST_REQUIRE_EQUAL(history_before.value("last_seq", -1), 5);  // 3 texts, ringing, connected

  auto observer = ctx.client();
  observer->subscribe(event_topic(code, "presence"));
  const std::size_t presence_seen = observer->wait_for_count(on_topic(event_topic(code, "presence")), 1, 5s).size();
  BOOST_REQUIRE_EQUAL(presence_seen, 1u);  // the retained one

  const std::int64_t stopped_at = now_ms();
  system.stop_host();
  BOOST_CHECK_MESSAGE(system.host_exit_code() == 0,
                      "SIGTERM should end the host cleanly, exit code " << system.host_exit_code().value_or(-1));
  system.start_host();

  if (host == Host::bridge) {
    // The retained presence is published again when the host starts.
    const auto republished = observer->wait_for_count(on_topic(event_topic(code, "presence")), presence_seen + 1, 10s);
    BOOST_REQUIRE_MESSAGE(republished.size() == presence_seen + 1, "presence was not republished at start");
    BOOST_TEST(republished.back().body() == presence["presence"]);
  } else {
    // The broker (without persistence) forgot its retained messages and every connection: the
    // plugin marked the driver's phone offline and published the presence, retained, at start.
    client = ctx.client();
    observer = ctx.client();
    observer->subscribe(event_topic(code, "presence"));
    const auto retained = observer->wait_for(on_topic(event_topic(code, "presence")), 10s);
    BOOST_REQUIRE_MESSAGE(retained, "no retained presence after the plugin restarted");
    BOOST_TEST(retained->retained);
    const json after_start = retained->body();
    BOOST_TEST(after_start.value("booking_code", "") == code);
    BOOST_TEST(after_start["driver"].value("online", json()) == json(false));
    BOOST_TEST(after_start["driver"].value("since", std::int64_t{0}) >= stopped_at);
    BOOST_TEST(after_start["passenger"] == presence["presence"]["passenger"]);
  }

  // History and the seq counter.
  const json history_after = get_message(*client, code);
  NT_REQUIRE_OK(history_after);
  BOOST_TEST(history_after == history_before);
  const json next = send_message(*client, code, text_message("passenger", "after restart"));
  NT_REQUIRE_OK(next);
  BOOST_TEST(next["message"].value("seq", -1) == 6);
  // Idempotency keys too.
  const json resent = send_message(*client, code, first);
  NT_REQUIRE_OK(resent);
  BOOST_TEST(resent.value("duplicate", json()) == json(true));
  BOOST_TEST(resent["message"].value("seq", -1) == 1);

  // The call, still connected and still the active one.
  const json got = make_call(*client, code, json{{"action", "get"}, {"call_id", call_id}});
  NT_REQUIRE_OK(got);
  BOOST_TEST(got["call"] == accepted["call"]);
  const json active = make_call(*client, code, json{{"action", "get"}});
  NT_REQUIRE_OK(active);
  BOOST_TEST(active["call"].value("call_id", "") == call_id);
  NT_CHECK_ERROR(make_call(*client, code, call_request("start", "passenger")), "busy");
  const json ended = make_call(*client, code, call_request("end", "driver", call_id));
  NT_REQUIRE_OK(ended);
  BOOST_TEST(ended["call"].value("end_reason", "") == "completed");

  // The connections table: after a bridge restart the driver's phone is still online, and it going
  // offline is recorded; after a plugin (broker) restart it is already offline and stays so.
  const json offline = set_presence(*client, code, {{"role", "driver"}, {"online", false}, {"client_id", "drv-phone"}});
  NT_REQUIRE_OK(offline);
  BOOST_TEST(offline["presence"]["driver"].value("online", json()) == json(false));
  if (host == Host::bridge) BOOST_TEST(offline["presence"]["driver"].value("since", std::int64_t{0}) >= stopped_at);
}

NT_HOST_TEST(call_ringing_when_the_host_was_killed_ends_missed_after_restart, 120) {
  constexpr int ring_s = 2;
  System system(system_options(host, ring_s));
  TestContext ctx(system);
  auto client = ctx.client();
  const std::string code = booking("killed");
  client->subscribe(events_filter(code));

  const json started = make_call(*client, code, call_request("start", "passenger"));
  NT_REQUIRE_OK(started);
  const std::string call_id = started["call"].value("call_id", "");
  const std::int64_t created_at = started["call"].value("created_at", std::int64_t{0});
  system.kill_host();
  BOOST_TEST_REQUIRE(now_ms() < created_at + ring_s * 1000);  // killed while it was still ringing

  sleep_until_ms(created_at + ring_s * 1000 + 300);  // the deadline passes while the host is down
  system.start_host();

  if (host == Host::plugin) {
    // The engine loop ended the call right after the plugin started (overdue calls take the loop's
    // first turn), before any client could connect: read what was stored.
    client = ctx.client();
    const json got = make_call(*client, code, json{{"action", "get"}, {"call_id", call_id}});
    NT_REQUIRE_OK(got);
    BOOST_TEST(got["call"].value("state", "") == "ended");
    BOOST_TEST(got["call"].value("end_reason", "") == "missed");
    BOOST_TEST(got["call"].value("ended_at", std::int64_t{0}) == created_at + ring_s * 1000);  // its ring deadline
    const json log = get_message(*client, code, {{"types", {"call"}}});
    NT_REQUIRE_OK(log);
    BOOST_REQUIRE_EQUAL(log["messages"].size(), 2u);  // ringing, then missed
    const json& missed = log["messages"][1];
    BOOST_TEST(missed.value("sender", "") == "system");
    BOOST_TEST(missed["data"].value("call_id", "") == call_id);
    BOOST_TEST(missed["data"].value("end_reason", "") == "missed");
    NT_CHECK_OK(make_call(*client, code, call_request("start", "driver")));  // no longer busy
    return;
  }

  auto event = client->wait_for(
      on_topic_json(
          event_topic(code, "call"),
          [&](const json& e) { return e.value("call_id", "") == call_id && e.value("state", "") == "ended"; }),
      10s);
  BOOST_REQUIRE_MESSAGE(event, "no events/call for the overdue call after restart");
  BOOST_TEST(event->body().value("end_reason", "") == "missed");
  BOOST_TEST(event->body().value("ended_at", std::int64_t{0}) == created_at + ring_s * 1000);  // its ring deadline
  auto message = client->wait_for(on_topic_json(event_topic(code, "message"),
                                                [&](const json& m) {
                                                  return m.value("type", "") == "call" &&
                                                         m["data"].value("call_id", "") == call_id &&
                                                         m["data"].value("state", "") == "ended";
                                                }),
                                  5s);
  BOOST_REQUIRE(message);
  BOOST_TEST(message->body().value("sender", "") == "system");
  BOOST_TEST(message->body()["data"].value("end_reason", "") == "missed");
  const json got = make_call(*client, code, json{{"action", "get"}, {"call_id", call_id}});
  NT_REQUIRE_OK(got);
  BOOST_TEST(got["call"].value("end_reason", "") == "missed");
}

NT_HOST_TEST(ring_deadline_is_kept_across_a_quick_restart, 120) {
  constexpr int ring_s = 4;
  System system(system_options(host, ring_s));
  TestContext ctx(system);
  auto client = ctx.client();
  const std::string code = booking("rearm");
  client->subscribe(event_topic(code, "call"));

  const json started = make_call(*client, code, call_request("start", "driver"));
  NT_REQUIRE_OK(started);
  const std::string call_id = started["call"].value("call_id", "");
  const std::int64_t created_at = started["call"].value("created_at", std::int64_t{0});
  system.kill_host();
  system.start_host();
  BOOST_TEST_REQUIRE(now_ms() < created_at + ring_s * 1000);  // back before the deadline
  if (host == Host::plugin) {                                 // the broker went down with the plugin: connect again
    client = ctx.client();
    client->subscribe(event_topic(code, "call"));
  }

  const json ringing = make_call(*client, code, json{{"action", "get"}, {"call_id", call_id}});
  NT_REQUIRE_OK(ringing);
  BOOST_TEST(ringing["call"].value("state", "") == "ringing");
  auto event = client->wait_for(
      on_topic_json(
          event_topic(code, "call"),
          [&](const json& e) { return e.value("call_id", "") == call_id && e.value("state", "") == "ended"; }),
      Millis(ring_s * 1000 + 5000));
  BOOST_REQUIRE_MESSAGE(event, "the re-armed ring timeout did not fire");
  BOOST_TEST(now_ms() >= created_at + ring_s * 1000);
  BOOST_TEST(event->body().value("end_reason", "") == "missed");
  BOOST_TEST(event->body().value("ended_at", std::int64_t{0}) == created_at + ring_s * 1000);
}

// Bridge: it reconnects and resubscribes by itself. Plugin: the broker restart is a host restart
// that keeps the data dir.
NT_HOST_TEST(host_reconnects_and_resubscribes_after_a_broker_restart, 120) {
  System system(system_options(host));
  TestContext ctx(system);
  const std::string code = booking("broker");
  {
    auto client = ctx.client();
    NT_REQUIRE_OK(send_message(*client, code, text_message("driver", "before broker restart")));
  }
  system.restart_broker();

  auto client = ctx.client();
  client->subscribe(events_filter(code));
  const auto page = request_until_answered(*client, request_topic(code, "get_message"), json::object(), 30s);
  BOOST_REQUIRE_MESSAGE(page, "the host did not answer within 30 s of the broker restart");
  NT_CHECK_OK(*page);
  BOOST_TEST(page->value("last_seq", -1) == 1);
  BOOST_TEST(system.host_alive());

  const json sent = send_message(*client, code, text_message("passenger", "after broker restart"));
  NT_REQUIRE_OK(sent);
  BOOST_TEST(sent["message"].value("seq", -1) == 2);
  auto event = client->wait_for(on_topic(event_topic(code, "message")), 5s);
  BOOST_REQUIRE_MESSAGE(event, "no events/message after the broker restart");
  BOOST_TEST(event->body() == sent["message"]);
  NT_CHECK_OK(make_call(*client, code, call_request("start", "driver")));
}

// The bridge's broker session outlives the bridge: requests published while it is stopped are
// queued by the broker and answered once it is back (regression: Paho C++ 1.2.0 dropped the Session
// Expiry of the CONNECT, so a clean stop ended the session and those requests were lost).
BOOST_AUTO_TEST_CASE(requests_published_while_the_bridge_is_stopped_are_answered_after_it_starts,
                     *boost::unit_test::timeout(120)) {
  System system(system_options(Host::bridge));
  TestContext ctx(system);
  auto client = ctx.client();
  const std::string code = booking("away");
  NT_REQUIRE_OK(send_message(*client, code, text_message("driver", "before")));
  system.stop_host();
  BOOST_REQUIRE(system.host_exit_code() == 0);
  const auto pending = client->send_request(request_topic(code, "send_message"),
                                            text_message("passenger", "while the bridge was away").dump());
  BOOST_TEST(!client->try_await_reply(pending, 1s).has_value());  // nobody is there to answer
  system.start_host();
  const json reply = client->await_reply(pending, 10s);
  NT_REQUIRE_OK(reply);
  BOOST_TEST(reply["message"].value("seq", 0) == 2);
}

BOOST_AUTO_TEST_SUITE_END()
