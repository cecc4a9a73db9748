// The wire contract (shared/PROTOCOL.md), tested from the outside: a real Mosquitto, a host of the
// handlers, and MQTT clients. Every test runs once per host in contract_hosts(); the tests of a
// suite share one system and keep apart by booking code.
#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "support/contract.hpp"
#include "core/ice.hpp"

using namespace navietakie::test;

namespace {

// The ring timeout of the shared system, long enough that no state-machine test races it.
constexpr int contract_ring_timeout_s = 30;
// The ring timeout of the system that tests missed calls.
constexpr int short_ring_timeout_s = 1;

System& contract_system(const HostSetup& host) {
  return shared_system("contract", system_options(host, contract_ring_timeout_s));
}

// Waits for the events/call event of `call_id` in `state`.
std::optional<Received> wait_call_event(TestClient& client, const std::string& code, const std::string& call_id,
                                        const std::string& state, Millis timeout = 5s) {
  return client.wait_for(
      on_topic_json(event_topic(code, "call"),
                    [&](const json& e) { return e.value("call_id", "") == call_id && e.value("state", "") == state; }),
      timeout);
}

// Waits for the `call`-type message of `call_id` in `state` on events/message.
std::optional<Received> wait_call_message(TestClient& client, const std::string& code, const std::string& call_id,
                                          const std::string& state, Millis timeout = 5s) {
  return client.wait_for(on_topic_json(event_topic(code, "message"),
                                       [&](const json& m) {
                                         return m.value("type", "") == "call" && m.contains("data") &&
                                                m["data"].value("call_id", "") == call_id &&
                                                m["data"].value("state", "") == state;
                                       }),
                         timeout);
}

// Sends a message and waits for its events/message broadcast: everything the bridge published before
// it (on the same booking) has reached `client` by then. `client` must follow the booking's events.
void fence(TestClient& client, const std::string& code) {
  const std::string id = "fence-" + random_hex(10);
  const json reply = send_message(client, code, json{{"sender", "system"}, {"type", "system"}, {"message_id", id}});
  BOOST_REQUIRE_MESSAGE(is_ok(reply), "fence message failed: " << reply.dump());
  BOOST_REQUIRE_MESSAGE(client.wait_for(on_topic_json(event_topic(code, "message"),
                                                      [&](const json& m) { return m.value("message_id", "") == id; }),
                                        5s),
                        "the fence message was not broadcast");
}

void check_ts_between(std::int64_t ts, std::int64_t before, std::int64_t after) {
  // Same machine, same clock: the server time lies between our readings (a few ms of slack).
  BOOST_CHECK_MESSAGE(ts >= before - 5 && ts <= after + 5,
                      "timestamp " << ts << " is not within [" << before << ", " << after << "]");
}

}  // namespace

// --- send_message ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(contract_send_message)

NT_CONTRACT_TEST(text_message_is_stored_replied_and_broadcast, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("send");
  client->subscribe(events_filter(code));

  const std::int64_t before = now_ms();
  const auto pending = client->send_request(request_topic(code, "send_message"),
                                            json{{"sender", "driver"},
                                                 {"sender_id", "drv-42"},
                                                 {"text", "I'm at gate B"},
                                                 {"data", {{"k", json::array({1, "two", nullptr})}}}}
                                                .dump());
  const json reply = client->await_reply(pending);
  const std::int64_t after = now_ms();

  NT_REQUIRE_OK(reply);
  BOOST_TEST(reply.value("duplicate", json()) == json(false));
  const json& message = reply["message"];
  BOOST_TEST(message.value("booking_code", "") == code);
  BOOST_TEST(message.value("seq", -1) == 1);
  BOOST_TEST(message.value("type", "") == "text");  // the default type
  BOOST_TEST(message.value("sender", "") == "driver");
  BOOST_TEST(message.value("sender_id", "") == "drv-42");
  BOOST_TEST(message.value("text", "") == "I'm at gate B");
  BOOST_TEST(message.value("data", json()) == (json{{"k", json::array({1, "two", nullptr})}}));  // carried as-is
  check_ts_between(message.value("ts", std::int64_t{0}), before, after);
  // No message_id given: the system made one (1 to 128 printable ASCII).
  const std::string id = message.value("message_id", "");
  BOOST_TEST(!id.empty());
  BOOST_TEST(id.size() <= 128u);
  BOOST_TEST(std::all_of(id.begin(), id.end(), [](char c) { return c >= 0x21 && c <= 0x7e; }));

  // The broadcast is the stored message, not retained, QoS 1; the reply is QoS 1 too.
  auto event = client->wait_for(on_topic(event_topic(code, "message")), 5s);
  BOOST_REQUIRE_MESSAGE(event, "no events/message broadcast");
  BOOST_TEST(event->body() == message);
  BOOST_TEST(!event->retained);
  BOOST_TEST(event->qos == 1);
  auto raw_reply = client->received(on_topic(pending.reply_topic));
  BOOST_REQUIRE(raw_reply.size() == 1u);
  BOOST_TEST(raw_reply[0].qos == 1);
  BOOST_TEST(!raw_reply[0].retained);
}

NT_CONTRACT_TEST(generated_message_ids_differ_and_seq_counts_up, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("ids");
  std::set<std::string> ids;
  for (int i = 1; i <= 3; ++i) {
    const json reply = send_message(*client, code, text_message("passenger", "hello " + std::to_string(i)));
    NT_REQUIRE_OK(reply);
    BOOST_TEST(reply["message"].value("seq", -1) == i);
    ids.insert(reply["message"].value("message_id", ""));
  }
  BOOST_TEST(ids.size() == 3u);
}

NT_CONTRACT_TEST(resend_with_same_message_id_returns_original_and_broadcasts_nothing, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("dup");
  client->subscribe(events_filter(code));
  const std::string id = "client-key-" + random_hex(6);

  json first_request = text_message("driver", "first text");
  first_request["message_id"] = id;
  const json first = send_message(*client, code, first_request);
  NT_REQUIRE_OK(first);
  BOOST_TEST(first.value("duplicate", json()) == json(false));
  BOOST_TEST(first["message"].value("message_id", "") == id);

  // A retry with other content (even another sender and type) still returns the original.
  const json second =
      send_message(*client, code, json{{"message_id", id}, {"sender", "passenger"}, {"text", "changed"}});
  NT_REQUIRE_OK(second);
  BOOST_TEST(second.value("duplicate", json()) == json(true));
  BOOST_TEST(second["message"] == first["message"]);

  fence(*client, code);
  const auto broadcasts = client->received(
      on_topic_json(event_topic(code, "message"), [&](const json& m) { return m.value("message_id", "") == id; }));
  BOOST_TEST(broadcasts.size() == 1u);
  // Nothing new was stored: the fence got seq 2.
  const json page = get_message(*client, code);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page.value("last_seq", -1) == 2);
}

NT_CONTRACT_TEST(call_and_system_types_are_accepted_without_text, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("types");

  const json system_message =
      send_message(*client, code, json{{"type", "system"}, {"sender", "system"}, {"text", "Trip started"}});
  NT_REQUIRE_OK(system_message);
  BOOST_TEST(system_message["message"].value("type", "") == "system");
  BOOST_TEST(system_message["message"].value("sender", "") == "system");

  const json bare_system = send_message(*client, code, json{{"type", "system"}, {"sender", "system"}});
  NT_CHECK_OK(bare_system);

  // An imported call record: stored as a message, the call state machine is not touched.
  const json imported_data{
      {"call_id", "pstn-1"}, {"state", "ended"}, {"end_reason", "completed"}, {"duration_ms", 61000}};
  const json imported =
      send_message(*client, code, json{{"type", "call"}, {"sender", "system"}, {"data", imported_data}});
  NT_REQUIRE_OK(imported);
  BOOST_TEST(imported["message"].value("type", "") == "call");
  BOOST_TEST(imported["message"].value("data", json()) == imported_data);
  const json active = make_call(*client, code, json{{"action", "get"}});
  NT_CHECK_ERROR(active, "not_found");
  NT_CHECK_ERROR(make_call(*client, code, json{{"action", "get"}, {"call_id", "pstn-1"}}), "not_found");
  NT_CHECK_OK(make_call(*client, code, call_request("start", "driver")));
}

NT_CONTRACT_TEST(text_type_needs_non_empty_text, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("notext");
  NT_CHECK_ERROR_NAMING(send_message(*client, code, json{{"sender", "driver"}}), "invalid_request", "text");
  NT_CHECK_ERROR_NAMING(send_message(*client, code, json{{"sender", "driver"}, {"type", "text"}}), "invalid_request",
                        "text");
  NT_CHECK_ERROR_NAMING(send_message(*client, code, text_message("driver", "")), "invalid_request", "text");
  const json page = get_message(*client, code);
  BOOST_TEST(page.value("last_seq", -1) == 0);
}

NT_CONTRACT_TEST(text_limit_is_4096_bytes_of_utf8, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("limit");
  std::string e_acute_2048;
  for (int i = 0; i < 2048; ++i) e_acute_2048 += "\xc3\xa9";  // 4096 bytes, 2048 characters

  NT_CHECK_OK(send_message(*client, code, text_message("driver", std::string(4096, 'a'))));
  NT_CHECK_OK(send_message(*client, code, text_message("driver", e_acute_2048)));
  NT_CHECK_ERROR_NAMING(send_message(*client, code, text_message("driver", std::string(4097, 'a'))), "invalid_request",
                        "text");
  NT_CHECK_ERROR_NAMING(send_message(*client, code, text_message("driver", e_acute_2048 + "\xc3\xa9")),
                        "invalid_request", "text");
  const json page = get_message(*client, code);
  BOOST_TEST(page.value("last_seq", -1) == 2);
}

NT_CONTRACT_TEST(binary_correlation_data_is_echoed_byte_for_byte, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("corr");
  client->subscribe(topic_prefix + "/replies/" + client->client_id() + "/#");
  const std::string reply_topic = client->next_reply_topic();
  const std::string correlation("\x00\x01\xfe\xff binary", 11);
  PublishOptions options;
  options.response_topic = reply_topic;
  options.correlation_data = correlation;
  client->publish(request_topic(code, "get_message"), "{}", options);
  auto reply = client->wait_for(on_topic(reply_topic), 5s);
  BOOST_REQUIRE_MESSAGE(reply, "no reply on " << reply_topic);
  BOOST_TEST(reply->correlation_data.value_or("<none>") == correlation);
  NT_CHECK_OK(reply->body());
}

BOOST_AUTO_TEST_SUITE_END()

// --- get_message -------------------------------------------------------------------------------------

namespace {

// Ten messages: seq 3 and 6 are `system` messages from `system`; the others are from the driver
// when seq is odd (1 5 7 9) and from the passenger when it is even (2 4 8 10). Returns the stored messages, index i
// holding seq i+1.
std::vector<json> populate_history(TestClient& client, const std::string& code) {
  std::vector<json> stored;
  for (int seq = 1; seq <= 10; ++seq) {
    json body;
    if (seq == 3 || seq == 6)
      body = json{{"type", "system"}, {"sender", "system"}, {"text", "note " + std::to_string(seq)}};
    else
      body = text_message(seq % 2 == 1 ? "driver" : "passenger", "text " + std::to_string(seq));
    const json reply = send_message(client, code, body);
    BOOST_REQUIRE_MESSAGE(is_ok(reply), "populate: " << reply.dump());
    BOOST_REQUIRE_EQUAL(reply["message"].value("seq", -1), seq);
    stored.push_back(reply["message"]);
    std::this_thread::sleep_for(2ms);  // spread the ts a little for the since/until checks
  }
  return stored;
}

using Seqs = std::vector<std::int64_t>;

// One get_message page over the 10-message history of populate_history(): the seqs, has_more,
// last_seq (the booking's highest, whatever the filter) and every message exactly as stored.
template <class Client>
void check_page(Client& client, const std::string& code, const std::vector<json>& stored, const json& request,
                const Seqs& seqs, bool has_more) {
  BOOST_TEST_CONTEXT("get_message " << request.dump()) {
    const json reply = get_message(client, code, request);
    NT_REQUIRE_OK(reply);
    BOOST_TEST(page_seqs(reply) == seqs, boost::test_tools::per_element());
    BOOST_TEST(reply.value("has_more", json()) == json(has_more));
    BOOST_TEST(reply.value("last_seq", -1) == 10);
    for (const auto& message : reply["messages"]) {
      const auto seq = message.value("seq", 0);
      if (seq >= 1 && seq <= 10) BOOST_TEST(message == stored[static_cast<std::size_t>(seq - 1)]);
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(contract_get_message)

NT_CONTRACT_TEST(pages_newest_before_seq_and_after_seq, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("pages");
  const std::vector<json> stored = populate_history(*client, code);

  auto page = [&](const json& request, const Seqs& seqs, bool has_more) {
    check_page(*client, code, stored, request, seqs, has_more);
  };

  // No cursor: the newest `limit`, ascending.
  page({{"limit", 3}}, {8, 9, 10}, true);
  page(json::object(), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, false);  // default limit 50
  page({{"limit", 10}}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, false);
  page({{"limit", 9}}, {2, 3, 4, 5, 6, 7, 8, 9, 10}, true);
  page({{"limit", 1}}, {10}, true);
  page({{"limit", 200}}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, false);
  // before_seq: scrolling back.
  page({{"before_seq", 8}, {"limit", 3}}, {5, 6, 7}, true);
  page({{"before_seq", 4}, {"limit", 3}}, {1, 2, 3}, false);
  page({{"before_seq", 3}, {"limit", 5}}, {1, 2}, false);
  page({{"before_seq", 1}}, {}, false);
  page({{"before_seq", 11}, {"limit", 2}}, {9, 10}, true);
  // after_seq: catching up; 0 reads from the first message.
  page({{"after_seq", 0}, {"limit", 3}}, {1, 2, 3}, true);
  page({{"after_seq", 6}, {"limit", 3}}, {7, 8, 9}, true);
  page({{"after_seq", 7}, {"limit", 3}}, {8, 9, 10}, false);
  page({{"after_seq", 10}}, {}, false);
  page({{"after_seq", 50}}, {}, false);
}

NT_CONTRACT_TEST(filters_apply_before_the_limit, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("filters");
  const std::vector<json> stored = populate_history(*client, code);

  auto page = [&](const json& request, const Seqs& seqs, bool has_more) {
    check_page(*client, code, stored, request, seqs, has_more);
  };

  // has_more counts only messages that pass the filters.
  page({{"types", {"system"}}, {"limit", 2}}, {3, 6}, false);
  page({{"types", {"system"}}, {"limit", 1}}, {6}, true);
  page({{"types", {"text", "system"}}}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, false);
  page({{"types", {"call"}}}, {}, false);
  page({{"sender", "passenger"}, {"limit", 3}}, {4, 8, 10}, true);
  page({{"sender", "passenger"}, {"before_seq", 5}}, {2, 4}, false);
  page({{"sender", "driver"}, {"after_seq", 4}, {"limit", 2}}, {5, 7}, true);
  page({{"sender", "driver"}, {"after_seq", 5}, {"limit", 2}}, {7, 9}, false);
  page({{"sender", "system"}, {"types", {"system"}}}, {3, 6}, false);
  page({{"sender", "driver"}, {"types", {"system"}}}, {}, false);

  // since / until bound ts, inclusive.
  auto ts = [&](std::size_t seq) { return stored[seq - 1].value("ts", std::int64_t{0}); };
  auto expected_between = [&](std::int64_t since, std::int64_t until) {
    Seqs seqs;
    for (const auto& m : stored) {
      if (m.value("ts", std::int64_t{0}) >= since && m.value("ts", std::int64_t{0}) <= until)
        seqs.push_back(m.value("seq", 0));
    }
    return seqs;
  };
  page({{"since", ts(4)}, {"until", ts(8)}}, expected_between(ts(4), ts(8)), false);
  page({{"since", ts(10)}}, expected_between(ts(10), ts(10)), false);
  page({{"until", ts(1)}}, expected_between(ts(1), ts(1)), false);
  page({{"since", ts(10) + 1}}, {}, false);
  page({{"until", ts(1) - 1}}, {}, false);
}

NT_CONTRACT_TEST(invalid_parameters_are_invalid_request, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("badget");
  NT_REQUIRE_OK(send_message(*client, code, text_message("driver", "one")));

  NT_CHECK_ERROR_NAMING(get_message(*client, code, {{"limit", 0}}), "invalid_request", "limit");
  NT_CHECK_ERROR_NAMING(get_message(*client, code, {{"limit", 201}}), "invalid_request", "limit");
  NT_CHECK_ERROR_NAMING(get_message(*client, code, {{"limit", -1}}), "invalid_request", "limit");
  NT_CHECK_ERROR_NAMING(get_message(*client, code, {{"before_seq", 5}, {"after_seq", 1}}), "invalid_request", "_seq");
  NT_CHECK_ERROR_NAMING(get_message(*client, code, {{"types", {"text", "video"}}}), "invalid_request", "types");
  NT_CHECK_ERROR_NAMING(get_message(*client, code, {{"sender", "pilot"}}), "invalid_request", "sender");
}

NT_CONTRACT_TEST(empty_booking_is_an_empty_page, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("empty");
  for (const json& request :
       {json::object(), json{{"after_seq", 0}}, json{{"before_seq", 5}}, json{{"types", {"call"}}}}) {
    const json reply = get_message(*client, code, request);
    NT_REQUIRE_OK(reply);
    BOOST_TEST(reply.value("messages", json()) == json::array());
    BOOST_TEST(reply.value("has_more", json()) == json(false));
    BOOST_TEST(reply.value("last_seq", -1) == 0);
  }
}

BOOST_AUTO_TEST_SUITE_END()

// --- make_call -----------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(contract_make_call)

NT_CONTRACT_TEST(start_accept_end_by_caller_is_completed, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("call");
  client->subscribe(events_filter(code));

  // start -> ringing
  std::int64_t before = now_ms();
  const json started = make_call(*client, code, call_request("start", "driver"));
  std::int64_t after = now_ms();
  NT_REQUIRE_OK(started);
  const json& ringing = started["call"];
  const std::string call_id = ringing.value("call_id", "");
  BOOST_REQUIRE(!call_id.empty());
  BOOST_TEST(ringing.value("booking_code", "") == code);
  BOOST_TEST(ringing.value("from", "") == "driver");
  BOOST_TEST(ringing.value("to", "") == "passenger");
  BOOST_TEST(ringing.value("state", "") == "ringing");
  const std::int64_t created_at = ringing.value("created_at", std::int64_t{0});
  check_ts_between(created_at, before, after);
  auto ringing_event = wait_call_event(*client, code, call_id, "ringing");
  BOOST_REQUIRE_MESSAGE(ringing_event, "no events/call for ringing");
  BOOST_TEST(ringing_event->body() == ringing);
  BOOST_TEST(ringing_event->qos == 1);
  auto ringing_message = wait_call_message(*client, code, call_id, "ringing");
  BOOST_REQUIRE_MESSAGE(ringing_message, "no call message for ringing");
  BOOST_TEST(ringing_message->body().value("sender", "") == "driver");
  BOOST_TEST(ringing_message->body()["data"].value("end_reason", json("missing")) == json(nullptr));

  // accept by the callee -> connected
  before = now_ms();
  const json accepted = make_call(*client, code, call_request("accept", "passenger", call_id));
  after = now_ms();
  NT_REQUIRE_OK(accepted);
  const json& connected = accepted["call"];
  BOOST_TEST(connected.value("state", "") == "connected");
  BOOST_TEST(connected.value("created_at", std::int64_t{0}) == created_at);
  const std::int64_t connected_at = connected.value("connected_at", std::int64_t{0});
  check_ts_between(connected_at, before, after);
  BOOST_REQUIRE(wait_call_event(*client, code, call_id, "connected"));
  auto connected_message = wait_call_message(*client, code, call_id, "connected");
  BOOST_REQUIRE(connected_message);
  BOOST_TEST(connected_message->body().value("sender", "") == "passenger");

  std::this_thread::sleep_for(50ms);

  // end by the caller -> ended, completed
  before = now_ms();
  const json ended_reply = make_call(*client, code, call_request("end", "driver", call_id));
  after = now_ms();
  NT_REQUIRE_OK(ended_reply);
  const json& ended = ended_reply["call"];
  BOOST_TEST(ended.value("state", "") == "ended");
  BOOST_TEST(ended.value("end_reason", "") == "completed");
  BOOST_TEST(ended.value("connected_at", std::int64_t{0}) == connected_at);
  const std::int64_t ended_at = ended.value("ended_at", std::int64_t{0});
  check_ts_between(ended_at, before, after);
  const std::int64_t duration = ended.value("duration_ms", std::int64_t{-1});
  BOOST_TEST(duration > 0);
  BOOST_TEST(duration >= 50);
  BOOST_TEST(duration == ended_at - connected_at);
  auto ended_event = wait_call_event(*client, code, call_id, "ended");
  BOOST_REQUIRE(ended_event);
  BOOST_TEST(ended_event->body() == ended);
  auto ended_message = wait_call_message(*client, code, call_id, "ended");
  BOOST_REQUIRE(ended_message);
  BOOST_TEST(ended_message->body().value("sender", "") == "driver");
  BOOST_TEST(ended_message->body()["data"].value("end_reason", "") == "completed");
  BOOST_TEST(ended_message->body()["data"].value("duration_ms", std::int64_t{-1}) == duration);

  // get returns the stored call; `by` is optional for get.
  const json got = make_call(*client, code, json{{"action", "get"}, {"call_id", call_id}});
  NT_REQUIRE_OK(got);
  BOOST_TEST(got["call"] == ended);
}

NT_CONTRACT_TEST(end_by_callee_is_completed_too, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("callee");
  client->subscribe(events_filter(code));
  const json started = make_call(*client, code, call_request("start", "passenger"));
  NT_REQUIRE_OK(started);
  const std::string call_id = started["call"].value("call_id", "");
  BOOST_TEST(started["call"].value("from", "") == "passenger");
  BOOST_TEST(started["call"].value("to", "") == "driver");
  NT_REQUIRE_OK(make_call(*client, code, call_request("accept", "driver", call_id)));
  std::this_thread::sleep_for(20ms);
  const json ended = make_call(*client, code, call_request("end", "driver", call_id));
  NT_REQUIRE_OK(ended);
  BOOST_TEST(ended["call"].value("end_reason", "") == "completed");
  BOOST_TEST(ended["call"].value("duration_ms", std::int64_t{0}) > 0);
  auto message = wait_call_message(*client, code, call_id, "ended");
  BOOST_REQUIRE(message);
  BOOST_TEST(message->body().value("sender", "") == "driver");
}

NT_CONTRACT_TEST(decline_by_callee_and_cancel_by_caller_end_unconnected_calls, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("decline");
  client->subscribe(events_filter(code));

  const json first = make_call(*client, code, call_request("start", "passenger"));
  NT_REQUIRE_OK(first);
  const std::string declined_id = first["call"].value("call_id", "");
  const json declined = make_call(*client, code, call_request("decline", "driver", declined_id));
  NT_REQUIRE_OK(declined);
  BOOST_TEST(declined["call"].value("state", "") == "ended");
  BOOST_TEST(declined["call"].value("end_reason", "") == "declined");
  BOOST_TEST(is_absent_or_null(declined["call"], "connected_at"));
  BOOST_TEST(declined["call"].value("duration_ms", std::int64_t{-1}) == 0);
  BOOST_REQUIRE(wait_call_event(*client, code, declined_id, "ended"));
  auto declined_message = wait_call_message(*client, code, declined_id, "ended");
  BOOST_REQUIRE(declined_message);
  BOOST_TEST(declined_message->body().value("sender", "") == "driver");
  BOOST_TEST(declined_message->body()["data"].value("end_reason", "") == "declined");

  const json second = make_call(*client, code, call_request("start", "driver"));
  NT_REQUIRE_OK(second);
  const std::string cancelled_id = second["call"].value("call_id", "");
  BOOST_TEST(cancelled_id != declined_id);
  const json cancelled = make_call(*client, code, call_request("cancel", "driver", cancelled_id));
  NT_REQUIRE_OK(cancelled);
  BOOST_TEST(cancelled["call"].value("state", "") == "ended");
  BOOST_TEST(cancelled["call"].value("end_reason", "") == "cancelled");
  BOOST_TEST(is_absent_or_null(cancelled["call"], "connected_at"));
  BOOST_TEST(cancelled["call"].value("duration_ms", std::int64_t{-1}) == 0);
  BOOST_REQUIRE(wait_call_event(*client, code, cancelled_id, "ended"));
  auto cancelled_message = wait_call_message(*client, code, cancelled_id, "ended");
  BOOST_REQUIRE(cancelled_message);
  BOOST_TEST(cancelled_message->body().value("sender", "") == "driver");
  BOOST_TEST(cancelled_message->body()["data"].value("end_reason", "") == "cancelled");
}

NT_CONTRACT_TEST(unanswered_call_ends_missed_at_its_ring_deadline, 60) {
  TestContext ctx(shared_system("contract-short-ring", system_options(host, short_ring_timeout_s)));
  auto client = ctx.client();
  const std::string code = booking("missed");
  client->subscribe(events_filter(code));

  const json started = make_call(*client, code, call_request("start", "driver"));
  NT_REQUIRE_OK(started);
  const std::string call_id = started["call"].value("call_id", "");
  const std::int64_t created_at = started["call"].value("created_at", std::int64_t{0});

  auto event = wait_call_event(*client, code, call_id, "ended", Millis(short_ring_timeout_s * 1000 + 5000));
  BOOST_REQUIRE_MESSAGE(event, "the ringing call did not end within its timeout + 5 s");
  BOOST_TEST(now_ms() >= created_at + short_ring_timeout_s * 1000);  // not before its deadline
  const json missed = event->body();
  BOOST_TEST(missed.value("end_reason", "") == "missed");
  BOOST_TEST(missed.value("ended_at", std::int64_t{0}) == created_at + short_ring_timeout_s * 1000);
  BOOST_TEST(is_absent_or_null(missed, "connected_at"));
  BOOST_TEST(missed.value("duration_ms", std::int64_t{-1}) == 0);

  auto message = wait_call_message(*client, code, call_id, "ended");
  BOOST_REQUIRE(message);
  BOOST_TEST(message->body().value("sender", "") == "system");
  BOOST_TEST(message->body()["data"].value("end_reason", "") == "missed");

  const json got = make_call(*client, code, json{{"action", "get"}, {"call_id", call_id}});
  NT_REQUIRE_OK(got);
  BOOST_TEST(got["call"] == missed);
  NT_CHECK_ERROR(make_call(*client, code, call_request("accept", "passenger", call_id)), "invalid_state");
  // The booking is free again.
  NT_CHECK_OK(make_call(*client, code, call_request("start", "passenger")));
}

NT_CONTRACT_TEST(second_start_while_active_is_busy_and_names_the_active_call, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("busy");
  const json started = make_call(*client, code, call_request("start", "driver"));
  NT_REQUIRE_OK(started);
  const std::string call_id = started["call"].value("call_id", "");

  for (const std::string by : {"passenger", "driver"}) {
    const json busy = make_call(*client, code, call_request("start", by));
    NT_CHECK_ERROR(busy, "busy");
    BOOST_TEST(busy["error"].value("call_id", "") == call_id);
  }
  NT_REQUIRE_OK(make_call(*client, code, call_request("accept", "passenger", call_id)));
  const json busy_connected = make_call(*client, code, call_request("start", "passenger"));
  NT_CHECK_ERROR(busy_connected, "busy");
  BOOST_TEST(busy_connected["error"].value("call_id", "") == call_id);

  NT_REQUIRE_OK(make_call(*client, code, call_request("end", "passenger", call_id)));
  const json next = make_call(*client, code, call_request("start", "passenger"));
  NT_REQUIRE_OK(next);
  BOOST_TEST(next["call"].value("call_id", "") != call_id);
}

NT_CONTRACT_TEST(transitions_outside_the_table_are_invalid_state, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("state");
  const json started = make_call(*client, code, call_request("start", "driver"));
  NT_REQUIRE_OK(started);
  const std::string id = started["call"].value("call_id", "");

  NT_CHECK_ERROR(make_call(*client, code, call_request("end", "driver", id)), "invalid_state");     // ringing
  NT_CHECK_ERROR(make_call(*client, code, call_request("end", "passenger", id)), "invalid_state");  // ringing
  NT_REQUIRE_OK(make_call(*client, code, call_request("accept", "passenger", id)));
  NT_CHECK_ERROR(make_call(*client, code, call_request("accept", "passenger", id)), "invalid_state");   // connected
  NT_CHECK_ERROR(make_call(*client, code, call_request("decline", "passenger", id)), "invalid_state");  // connected
  NT_CHECK_ERROR(make_call(*client, code, call_request("cancel", "driver", id)), "invalid_state");      // connected
  NT_REQUIRE_OK(make_call(*client, code, call_request("end", "passenger", id)));
  NT_CHECK_ERROR(make_call(*client, code, call_request("end", "driver", id)), "invalid_state");        // ended
  NT_CHECK_ERROR(make_call(*client, code, call_request("accept", "passenger", id)), "invalid_state");  // ended
  NT_CHECK_ERROR(make_call(*client, code, call_request("cancel", "driver", id)), "invalid_state");     // ended

  // The failed transitions changed nothing.
  const json got = make_call(*client, code, json{{"action", "get"}, {"call_id", id}});
  NT_REQUIRE_OK(got);
  BOOST_TEST(got["call"].value("end_reason", "") == "completed");
}

NT_CONTRACT_TEST(unknown_call_id_is_not_found, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("nf");
  const std::string other = booking("nf-other");
  NT_CHECK_ERROR(make_call(*client, code, call_request("accept", "passenger", "no-such-call")), "not_found");
  NT_CHECK_ERROR(make_call(*client, code, call_request("end", "driver", "no-such-call")), "not_found");
  NT_CHECK_ERROR(make_call(*client, code, json{{"action", "get"}, {"call_id", "no-such-call"}}), "not_found");
  // A call id is looked up in its own booking only.
  const json started = make_call(*client, other, call_request("start", "driver"));
  NT_REQUIRE_OK(started);
  const std::string id = started["call"].value("call_id", "");
  NT_CHECK_ERROR(make_call(*client, code, call_request("accept", "passenger", id)), "not_found");
  NT_CHECK_ERROR(make_call(*client, code, json{{"action", "get"}, {"call_id", id}}), "not_found");
}

NT_CONTRACT_TEST(action_by_the_wrong_party_is_forbidden, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("forbid");
  const json started = make_call(*client, code, call_request("start", "driver"));
  NT_REQUIRE_OK(started);
  const std::string id = started["call"].value("call_id", "");

  NT_CHECK_ERROR(make_call(*client, code, call_request("accept", "driver", id)), "forbidden");     // caller accepts
  NT_CHECK_ERROR(make_call(*client, code, call_request("decline", "driver", id)), "forbidden");    // caller declines
  NT_CHECK_ERROR(make_call(*client, code, call_request("cancel", "passenger", id)), "forbidden");  // callee cancels
  const json still = make_call(*client, code, json{{"action", "get"}, {"call_id", id}});
  NT_REQUIRE_OK(still);
  BOOST_TEST(still["call"].value("state", "") == "ringing");

  // forbidden comes before invalid_state in the error precedence.
  NT_REQUIRE_OK(make_call(*client, code, call_request("cancel", "driver", id)));
  NT_CHECK_ERROR(make_call(*client, code, call_request("accept", "driver", id)), "forbidden");
  NT_CHECK_ERROR(make_call(*client, code, call_request("cancel", "passenger", id)), "forbidden");
}

NT_CONTRACT_TEST(get_without_call_id_returns_the_active_call_or_not_found, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("active");
  NT_CHECK_ERROR(make_call(*client, code, json{{"action", "get"}}), "not_found");
  const json started = make_call(*client, code, call_request("start", "passenger"));
  NT_REQUIRE_OK(started);
  const json active = make_call(*client, code, json{{"action", "get"}});
  NT_REQUIRE_OK(active);
  BOOST_TEST(active["call"] == started["call"]);
  const json active_by = make_call(*client, code, json{{"action", "get"}, {"by", "driver"}});
  NT_REQUIRE_OK(active_by);
  BOOST_TEST(active_by["call"] == started["call"]);
  NT_REQUIRE_OK(make_call(*client, code, call_request("cancel", "passenger", started["call"].value("call_id", ""))));
  NT_CHECK_ERROR(make_call(*client, code, json{{"action", "get"}}), "not_found");
}

NT_CONTRACT_TEST(start_with_an_existing_client_call_id_replies_with_that_call, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("cid");
  client->subscribe(events_filter(code));
  const std::string id = "c-" + random_hex(8);

  json start = call_request("start", "driver");
  start["call_id"] = id;
  const json first = make_call(*client, code, start);
  NT_REQUIRE_OK(first);
  BOOST_TEST(first["call"].value("call_id", "") == id);
  const json again = make_call(*client, code, start);  // a retry of the same start
  NT_REQUIRE_OK(again);
  BOOST_TEST(again["call"] == first["call"]);

  NT_REQUIRE_OK(make_call(*client, code, call_request("cancel", "driver", id)));
  const json after_end = make_call(*client, code, start);  // that call, not a new one
  NT_REQUIRE_OK(after_end);
  BOOST_TEST(after_end["call"].value("call_id", "") == id);
  BOOST_TEST(after_end["call"].value("state", "") == "ended");

  fence(*client, code);
  BOOST_TEST(client->count(on_topic_json(event_topic(code, "call"),
                                         [&](const json& e) { return e.value("state", "") == "ringing"; })) == 1u);
  const json log = get_message(*client, code, {{"types", {"call"}}});
  NT_REQUIRE_OK(log);
  BOOST_TEST(log["messages"].size() == 2u);  // ringing, ended
}

NT_CONTRACT_TEST(call_log_is_get_message_with_types_call, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("log");

  const json first = make_call(*client, code, call_request("start", "driver"));
  NT_REQUIRE_OK(first);
  const std::string a = first["call"].value("call_id", "");
  NT_REQUIRE_OK(make_call(*client, code, call_request("accept", "passenger", a)));
  NT_REQUIRE_OK(send_message(*client, code, text_message("driver", "can you hear me?")));
  NT_REQUIRE_OK(make_call(*client, code, call_request("end", "passenger", a)));
  const json second = make_call(*client, code, call_request("start", "driver"));
  NT_REQUIRE_OK(second);
  const std::string b = second["call"].value("call_id", "");
  NT_REQUIRE_OK(make_call(*client, code, call_request("decline", "passenger", b)));

  const json log = get_message(*client, code, {{"types", {"call"}}});
  NT_REQUIRE_OK(log);
  BOOST_TEST(log.value("last_seq", -1) == 6);
  BOOST_TEST(log.value("has_more", json()) == json(false));
  struct Row {
    std::string call_id, state, sender;
    json end_reason;
  };
  const std::vector<Row> expected{{a, "ringing", "driver", nullptr},
                                  {a, "connected", "passenger", nullptr},
                                  {a, "ended", "passenger", "completed"},
                                  {b, "ringing", "driver", nullptr},
                                  {b, "ended", "passenger", "declined"}};
  BOOST_REQUIRE_EQUAL(log["messages"].size(), expected.size());
  std::int64_t previous_seq = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const json& m = log["messages"][i];
    BOOST_TEST_CONTEXT("call message " << i << ": " << m.dump()) {
      BOOST_TEST(m.value("type", "") == "call");
      BOOST_TEST(m.value("sender", "") == expected[i].sender);
      BOOST_TEST(m["data"].value("call_id", "") == expected[i].call_id);
      BOOST_TEST(m["data"].value("state", "") == expected[i].state);
      BOOST_TEST(m["data"].value("end_reason", json("missing")) == expected[i].end_reason);
      BOOST_TEST(m.value("seq", std::int64_t{0}) > previous_seq);
      previous_seq = m.value("seq", std::int64_t{0});
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

// --- presence ------------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(contract_presence)

NT_CONTRACT_TEST(online_and_offline_are_replied_and_retained, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("presence");
  client->subscribe(event_topic(code, "presence"));

  std::int64_t before = now_ms();
  const json online = set_presence(*client, code, {{"role", "driver"}, {"online", true}});
  std::int64_t after = now_ms();
  NT_REQUIRE_OK(online);
  const json& presence = online["presence"];
  BOOST_TEST(presence.value("booking_code", "") == code);
  BOOST_TEST(presence["driver"].value("online", json()) == json(true));
  check_ts_between(presence["driver"].value("since", std::int64_t{0}), before, after);
  // A role never seen.
  BOOST_TEST(presence.value("passenger", json()) == (json{{"online", false}, {"since", nullptr}}));

  auto event = client->wait_for(on_topic(event_topic(code, "presence")), 5s);
  BOOST_REQUIRE_MESSAGE(event, "no events/presence");
  BOOST_TEST(event->body() == presence);
  BOOST_TEST(event->qos == 1);

  // A subscriber that comes later gets it, retained.
  auto late = ctx.client();
  late->subscribe(event_topic(code, "presence"));
  auto retained = late->wait_for(on_topic(event_topic(code, "presence")), 5s);
  BOOST_REQUIRE_MESSAGE(retained, "no retained events/presence for a new subscriber");
  BOOST_TEST(retained->retained);
  BOOST_TEST(retained->body() == presence);

  before = now_ms();
  const json offline = set_presence(*client, code, {{"role", "driver"}, {"online", false}});
  after = now_ms();
  NT_REQUIRE_OK(offline);
  BOOST_TEST(offline["presence"]["driver"].value("online", json()) == json(false));
  check_ts_between(offline["presence"]["driver"].value("since", std::int64_t{0}), before, after);
  auto offline_event =
      client->wait_for(on_topic_json(event_topic(code, "presence"),
                                     [](const json& p) { return p["driver"].value("online", true) == false; }),
                       5s);
  BOOST_REQUIRE(offline_event);
  BOOST_TEST(offline_event->body() == offline["presence"]);

  auto later = ctx.client();
  later->subscribe(event_topic(code, "presence"));
  auto retained_offline = later->wait_for(on_topic(event_topic(code, "presence")), 5s);
  BOOST_REQUIRE(retained_offline);
  BOOST_TEST(retained_offline->body() == offline["presence"]);
}

NT_CONTRACT_TEST(a_role_is_online_while_any_of_its_clients_is, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("multi");
  auto driver = [&](const std::string& client_id, bool online) {
    const json reply = set_presence(*client, code, {{"role", "driver"}, {"online", online}, {"client_id", client_id}});
    BOOST_REQUIRE_MESSAGE(is_ok(reply), reply.dump());
    return reply["presence"]["driver"];
  };
  const json first = driver("phone", true);
  BOOST_TEST(first.value("online", json()) == json(true));
  const json second = driver("car-unit", true);
  BOOST_TEST(second.value("online", json()) == json(true));
  BOOST_CHECK_MESSAGE(second.value("since", json()) == first.value("since", json()),
                      "the role has been online since its first client connected: " << second.dump());
  BOOST_TEST(driver("phone", false).value("online", json()) == json(true));
  BOOST_TEST(driver("car-unit", false).value("online", json()) == json(false));
}

NT_CONTRACT_TEST(a_client_dying_with_a_will_goes_offline, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("will");
  client->subscribe(event_topic(code, "presence"));
  const std::string device = "nt-device-" + random_hex(6);

  // The device sets its Will to the presence topic with online:false, connects, says online:true.
  auto device_process = ctx.system().start_abrupt_client(
      device, Will{request_topic(code, "presence"),
                   json{{"role", "passenger"}, {"online", false}, {"client_id", device}}.dump(), 1, false});
  const json online = set_presence(*client, code, {{"role", "passenger"}, {"online", true}, {"client_id", device}});
  NT_REQUIRE_OK(online);
  BOOST_TEST(online["presence"]["passenger"].value("online", json()) == json(true));

  device_process->kill9();  // no DISCONNECT: the broker publishes the Will
  auto offline =
      client->wait_for(on_topic_json(event_topic(code, "presence"),
                                     [](const json& p) { return p["passenger"].value("online", true) == false; }),
                       10s);
  BOOST_REQUIRE_MESSAGE(offline, "presence did not go offline after the client died");
  BOOST_TEST(offline->body()["passenger"].value("since", std::int64_t{0}) >=
             online["presence"]["passenger"].value("since", std::int64_t{0}));
}

BOOST_AUTO_TEST_SUITE_END()

// --- reply addresses and errors ------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(contract_routing)

NT_CONTRACT_TEST(mqtt311_requests_use_reply_to_and_echo_correlation_id, 60) {
  TestContext ctx(contract_system(host));
  ClientOptions options;
  options.version = MqttVersion::v311;
  auto client = ctx.client(options);
  const std::string code = booking("v311");

  // request_v311 checks that the reply arrived on reply_to and echoes correlation_id.
  const json sent = client->request_v311(request_topic(code, "send_message"), text_message("passenger", "from 3.1.1"));
  NT_REQUIRE_OK(sent);
  BOOST_TEST(sent["message"].value("seq", -1) == 1);
  BOOST_TEST(sent["message"].value("text", "") == "from 3.1.1");
  const json page = client->request_v311(request_topic(code, "get_message"), json::object());
  NT_REQUIRE_OK(page);
  BOOST_TEST(page_seqs(page) == Seqs{1}, boost::test_tools::per_element());
  const json call = client->request_v311(request_topic(code, "make_call"), call_request("start", "passenger"));
  NT_REQUIRE_OK(call);

  // Errors echo it too.
  const json error = client->request_v311(request_topic(code, "send_message"), json{{"text", "no sender"}});
  NT_CHECK_ERROR_NAMING(error, "invalid_request", "sender");
  const json busy = client->request_v311(request_topic(code, "make_call"), call_request("start", "driver"));
  NT_CHECK_ERROR(busy, "busy");
}

NT_CONTRACT_TEST(failures_without_reply_address_go_to_the_booking_errors_topic, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("errs");
  client->subscribe(errors_topic(code));
  client->subscribe(event_topic(code, "message"));

  struct Case {
    std::string action, payload, code;
  };
  const std::vector<Case> cases{{"send_message", R"({"text":"no sender"})", "invalid_request"},
                                {"send_message", "not json", "invalid_json"},
                                {"make_call", R"({"action":"accept","by":"passenger","call_id":"nope"})", "not_found"},
                                {"get_message", R"({"limit":0})", "invalid_request"}};
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.action << " " << c.payload) {
      const std::string topic = request_topic(code, c.action);
      client->publish(topic, c.payload);  // no Response Topic, no reply_to
      auto error = client->wait_for(
          on_topic_json(
              errors_topic(code),
              [&](const json& e) { return e.value("request_topic", "") == topic && error_code(e) == c.code; }),
          5s);
      BOOST_CHECK_MESSAGE(error,
                          "no " << c.code << " error with request_topic " << topic << " on " << errors_topic(code));
      if (error) {
        BOOST_TEST(error->body().value("ok", json()) == json(false));
        BOOST_TEST(!error_message(error->body()).empty());
      }
    }
  }
  // A successful request without a reply address publishes nothing on errors.
  client->publish(request_topic(code, "send_message"), text_message("driver", "fine").dump());
  fence(*client, code);
  BOOST_TEST(client->count(on_topic(errors_topic(code))) == cases.size());
}

NT_CONTRACT_TEST(invalid_booking_code_errors_go_to_the_global_errors_topic, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  client->subscribe(global_errors_topic());
  const std::string topic = topic_prefix + "/bookings/bad.code-" + random_hex(4) + "/send_message";
  client->publish(topic, text_message("driver", "hello").dump());
  auto error = client->wait_for(
      on_topic_json(global_errors_topic(), [&](const json& e) { return e.value("request_topic", "") == topic; }), 5s);
  BOOST_REQUIRE_MESSAGE(error, "no error on " << global_errors_topic() << " for " << topic);
  NT_CHECK_ERROR(error->body(), "invalid_booking_code");

  // With a reply address the error is a reply.
  NT_CHECK_ERROR(client->request(topic, text_message("driver", "hello")), "invalid_booking_code");
}

NT_CONTRACT_TEST(v5_response_topic_wins_over_payload_reply_to, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("wins");
  const std::string payload_reply_to = client->next_reply_topic();
  json body = text_message("driver", "two addresses");
  body["reply_to"] = payload_reply_to;
  body["correlation_id"] = "payload-correlation";
  const json reply = client->request(request_topic(code, "send_message"), body);  // checks topic + correlation data
  NT_REQUIRE_OK(reply);
  // Another request-reply round trip: had a reply gone to reply_to, it would be here by now.
  NT_REQUIRE_OK(get_message(*client, code));
  BOOST_TEST(client->count(on_topic(payload_reply_to)) == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

// --- ordering and concurrency ------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(contract_order)

NT_CONTRACT_TEST(two_hundred_concurrent_sends_get_seq_1_to_200, 120) {
  TestContext ctx(contract_system(host));
  const std::string code = booking("burst");
  constexpr int clients_count = 4;
  constexpr int per_client = 50;
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < clients_count; ++i) clients.push_back(ctx.client());

  // Everything in flight at once: each client publishes its 50 without waiting, the clients in parallel.
  std::vector<std::vector<PendingRequest>> pending(clients_count);
  std::vector<std::thread> publishers;
  for (int i = 0; i < clients_count; ++i) {
    publishers.emplace_back([&, i] {
      for (int n = 0; n < per_client; ++n) {
        json body =
            text_message(i % 2 == 0 ? "driver" : "passenger", "burst " + std::to_string(i) + "/" + std::to_string(n));
        body["message_id"] = "burst-" + std::to_string(i) + "-" + std::to_string(n);
        pending[static_cast<std::size_t>(i)].push_back(
            clients[static_cast<std::size_t>(i)]->send_request(request_topic(code, "send_message"), body.dump()));
      }
    });
  }
  for (auto& t : publishers) t.join();

  std::map<std::int64_t, std::string> seq_to_id;
  std::size_t replies = 0;
  for (int i = 0; i < clients_count; ++i) {
    for (const auto& request : pending[static_cast<std::size_t>(i)]) {
      const json reply = clients[static_cast<std::size_t>(i)]->await_reply(request, 30s);
      NT_REQUIRE_OK(reply);
      ++replies;
      const auto seq = reply["message"].value("seq", std::int64_t{-1});
      BOOST_CHECK_MESSAGE(seq_to_id.emplace(seq, reply["message"].value("message_id", "")).second,
                          "seq " << seq << " given twice");
    }
  }
  BOOST_TEST(replies == 200u);
  BOOST_REQUIRE_EQUAL(seq_to_id.size(), 200u);
  BOOST_TEST(seq_to_id.begin()->first == 1);
  BOOST_TEST(seq_to_id.rbegin()->first == 200);  // 200 distinct seqs from 1 to 200: no gap

  // The history agrees, page by page.
  auto& reader = *clients.front();
  std::int64_t cursor = 0;
  for (int page_index = 0; page_index < 4; ++page_index) {
    const json page = get_message(reader, code, {{"after_seq", cursor}, {"limit", 50}});
    NT_REQUIRE_OK(page);
    BOOST_REQUIRE_EQUAL(page["messages"].size(), 50u);
    for (const auto& m : page["messages"]) {
      ++cursor;
      BOOST_TEST(m.value("seq", std::int64_t{-1}) == cursor);
      BOOST_TEST(m.value("message_id", "") == seq_to_id[cursor]);
    }
    BOOST_TEST(page.value("has_more", json()) == json(page_index < 3));
    BOOST_TEST(page.value("last_seq", -1) == 200);
  }
  const json newest = get_message(reader, code, {{"limit", 200}});
  NT_REQUIRE_OK(newest);
  BOOST_TEST(newest["messages"].size() == 200u);
  BOOST_TEST(newest.value("has_more", json()) == json(false));
}

NT_CONTRACT_TEST(one_connection_gets_seqs_in_publish_order, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("order");
  std::vector<PendingRequest> pending;
  for (int n = 0; n < 50; ++n) {
    json body = text_message("driver", "in order " + std::to_string(n));
    body["message_id"] = "order-" + std::to_string(n);
    pending.push_back(client->send_request(request_topic(code, "send_message"), body.dump()));
  }
  for (int n = 0; n < 50; ++n) {
    const json reply = client->await_reply(pending[static_cast<std::size_t>(n)], 20s);
    NT_REQUIRE_OK(reply);
    BOOST_TEST(reply["message"].value("message_id", "") == "order-" + std::to_string(n));
    BOOST_TEST(reply["message"].value("seq", -1) == n + 1);
  }
}

// Rate limits (docs/protocol.md "Rate limits"): a driver past its burst is refused `rate_limited`
// and nothing of the refused requests is stored; the passenger of the same booking, another MQTT
// client id, is served meanwhile. Authentication on, so that the bridge knows each publisher's
// client id (from the auth-only plugin's stamp) and the clients are participants, not services.
NT_HOST_TEST(a_client_past_its_burst_is_rate_limited_and_others_are_not, 120) {
  SystemOptions options = system_options(HostSetup{host, true}, contract_ring_timeout_s);
  options.rate_limit_per_s = 1;
  options.rate_limit_burst = 5;
  System system(options);
  TestContext ctx(system);
  const std::string code = booking("rate");
  auto driver =
      ctx.client(system.as(navietakie::Identity{navietakie::Principal::driver, "drv-" + random_hex(6), code}));
  auto passenger =
      ctx.client(system.as(navietakie::Identity{navietakie::Principal::passenger, "pax-" + random_hex(6), code}));

  // 30 requests at once, sends and reads: the bucket holds 5 and refills one a second, so the
  // first 5 are served and most of the rest refused, however slowly the machine runs.
  std::vector<PendingRequest> pending;
  for (int n = 0; n < 30; ++n) {
    if (n % 3 == 2) {
      pending.push_back(driver->send_request(request_topic(code, "get_message"), R"({"limit":1})"));
    } else {
      pending.push_back(driver->send_request(request_topic(code, "send_message"),
                                             text_message("driver", "flood " + std::to_string(n)).dump()));
    }
  }
  std::size_t stored = 0, limited = 0;
  for (std::size_t n = 0; n < pending.size(); ++n) {
    const json reply = driver->await_reply(pending[n], 30s);
    if (n < 5) NT_CHECK_OK(reply);
    if (is_ok(reply)) {
      if (reply.contains("message")) ++stored;
    } else {
      BOOST_TEST(is_error(reply, "rate_limited"), reply.dump());
      ++limited;
    }
  }
  BOOST_TEST(limited >= 10u, limited << " of 30 refused");

  // The passenger is served while the driver is refused; what the driver was refused is not stored.
  NT_REQUIRE_OK(send_message(*passenger, code, text_message("passenger", "not limited")));
  const json history = get_message(*passenger, code, {{"limit", 100}});
  NT_REQUIRE_OK(history);
  BOOST_TEST(history["messages"].size() == stored + 1, history.dump());
  BOOST_TEST(history.value("last_seq", -1) == static_cast<int>(stored + 1));
}

BOOST_AUTO_TEST_SUITE_END()

// --- read receipts and typing (v1.1) ------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(contract_receipts)

NT_CONTRACT_TEST(mark_read_is_replied_retained_monotonic_and_in_get_message, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("read");
  client->subscribe(event_topic(code, "read"));
  for (int n = 0; n < 3; ++n) NT_REQUIRE_OK(send_message(*client, code, text_message("driver", "m" + std::to_string(n))));

  const std::int64_t before = now_ms();
  const json marked = client->request(request_topic(code, "mark_read"), {{"role", "passenger"}, {"seq", 2}});
  const std::int64_t after = now_ms();
  NT_REQUIRE_OK(marked);
  const json& read = marked["read"];
  BOOST_TEST(read.value("booking_code", "") == code);
  BOOST_TEST(read["passenger"].value("seq", -1) == 2);
  check_ts_between(read["passenger"].value("at", std::int64_t{0}), before, after);
  BOOST_TEST(read.value("driver", json()) == (json{{"seq", 0}, {"at", nullptr}}));

  auto event = client->wait_for(on_topic(event_topic(code, "read")), 5s);
  BOOST_REQUIRE_MESSAGE(event, "no events/read");
  BOOST_TEST(event->body() == read);
  BOOST_TEST(event->qos == 1);

  // Lower: the same horizon back, and no event (the next event, for a higher seq, proves none came
  // in between: events of one booking arrive in order).
  const json lower = client->request(request_topic(code, "mark_read"), {{"role", "passenger"}, {"seq", 1}});
  NT_REQUIRE_OK(lower);
  BOOST_TEST(lower["read"] == read);
  const json higher = client->request(request_topic(code, "mark_read"), {{"role", "passenger"}, {"seq", 3}});
  NT_REQUIRE_OK(higher);
  const auto events = client->wait_for_count(on_topic(event_topic(code, "read")), 2, 5s);
  BOOST_REQUIRE(events.size() == 2u);
  BOOST_TEST(events[1].body() == higher["read"], "the lower mark_read published an event");

  // Above last_seq: invalid_request naming seq.
  BOOST_TEST(is_error_naming(client->request(request_topic(code, "mark_read"), {{"role", "driver"}, {"seq", 4}}),
                             "invalid_request", "seq"));

  // Retained for a later subscriber, and carried by get_message.
  auto late = ctx.client();
  late->subscribe(event_topic(code, "read"));
  auto retained = late->wait_for(on_topic(event_topic(code, "read")), 5s);
  BOOST_REQUIRE_MESSAGE(retained, "no retained events/read for a new subscriber");
  BOOST_TEST(retained->retained);
  BOOST_TEST(retained->body() == higher["read"]);
  const json page = get_message(*late, code, {{"after_seq", 0}});
  NT_REQUIRE_OK(page);
  BOOST_TEST(page["read"] == higher["read"]);
}

NT_CONTRACT_TEST(typing_is_relayed_at_qos_0_at_most_twice_a_second, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  auto watcher = ctx.client();
  const std::string code = booking("typing");
  watcher->subscribe(event_topic(code, "typing"), 1);

  const json first = client->request(request_topic(code, "typing"), {{"role", "driver"}, {"typing", true}});
  NT_REQUIRE_OK(first);
  BOOST_TEST(first.value("relayed", json()) == json(true));
  auto event = watcher->wait_for(on_topic(event_topic(code, "typing")), 5s);
  BOOST_REQUIRE_MESSAGE(event, "no events/typing");
  BOOST_TEST(event->qos == 0);  // subscribed at 1: the system published at 0
  BOOST_TEST(!event->retained);
  BOOST_TEST(event->body().value("booking_code", "") == code);
  BOOST_TEST(event->body().value("role", "") == "driver");
  BOOST_TEST(event->body().value("typing", json()) == json(true));
  BOOST_TEST(event->body().contains("ts"));

  // Five more at once: within one second at most one more goes out (two per second in all). The
  // replies say which; the rest are dropped without an error.
  int relayed = 1;
  for (int n = 0; n < 5; ++n) {
    const json reply = client->request(request_topic(code, "typing"), {{"role", "driver"}, {"typing", n % 2 == 0}});
    NT_REQUIRE_OK(reply);
    if (reply.value("relayed", false)) ++relayed;
  }
  BOOST_TEST(relayed <= 3);  // the window may have moved on once while these were answered
  BOOST_TEST(relayed >= 1);

  // Not stored, not retained.
  const json page = get_message(*client, code);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page.value("last_seq", -1) == 0);
  auto late = ctx.client();
  late->subscribe(event_topic(code, "typing"));
  BOOST_TEST(!late->wait_for(on_topic(event_topic(code, "typing")), 1s), "a typing event was retained");
  BOOST_TEST(is_error_naming(client->request(request_topic(code, "typing"), {{"role", "driver"}, {"typing", 1}}),
                             "invalid_request", "typing"));
}

BOOST_AUTO_TEST_SUITE_END()

// --- close (docs/protocol.md, close and retention) ----------------------------------------------------

BOOST_AUTO_TEST_SUITE(contract_close)

NT_CONTRACT_TEST(close_is_retained_refuses_writes_and_ends_the_active_call, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("close");
  client->subscribe(event_topic(code, "call"));
  NT_REQUIRE_OK(send_message(*client, code, text_message("driver", "before the close")));
  NT_REQUIRE_OK(make_call(*client, code, call_request("start", "driver", "c-close")));

  const json closed = client->request(request_topic(code, "close"), json{{"reason", "trip completed"}});
  NT_REQUIRE_OK(closed);
  const json& state = closed["booking"];
  BOOST_TEST(state.value("booking_code", "") == code);
  BOOST_TEST(state.value("state", "") == "closed");
  BOOST_TEST(state.value("reason", "") == "trip completed");
  BOOST_TEST(state["closed_at"].is_number_integer());

  auto ended = client->wait_for(
      on_topic_json(event_topic(code, "call"), [](const json& c) { return c.value("state", "") == "ended"; }), 10s);
  BOOST_REQUIRE_MESSAGE(ended, "no events/call for the call the close ended");
  BOOST_TEST(ended->body().value("end_reason", "") == "booking_closed");

  // Retained: a subscriber that comes later learns the booking is closed.
  auto late = ctx.client();
  late->subscribe(event_topic(code, "booking"));
  auto retained = late->wait_for(on_topic(event_topic(code, "booking")), 5s);
  BOOST_REQUIRE_MESSAGE(retained, "no retained events/booking");
  BOOST_TEST(retained->retained);
  BOOST_TEST(retained->body() == state);

  // Closing twice: the first close.
  const json again = client->request(request_topic(code, "close"), json{{"reason", "again"}});
  NT_REQUIRE_OK(again);
  BOOST_TEST(again["booking"] == state);

  BOOST_TEST(is_error(send_message(*client, code, text_message("driver", "after")), "booking_closed"));
  BOOST_TEST(is_error(make_call(*client, code, call_request("start", "passenger")), "booking_closed"));
  const json got = make_call(*client, code, json{{"action", "get"}, {"call_id", "c-close"}});
  NT_REQUIRE_OK(got);
  BOOST_TEST(got["call"].value("end_reason", "") == "booking_closed");
  const json history = get_message(*client, code);
  NT_REQUIRE_OK(history);
  BOOST_TEST(history["messages"].front().value("text", "") == "before the close");
}

NT_CONTRACT_TEST(close_reason_must_be_a_string, 60) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("closebad");
  BOOST_TEST(is_error_naming(client->request(request_topic(code, "close"), json{{"reason", 42}}), "invalid_request",
                            "reason"));
  NT_REQUIRE_OK(send_message(*client, code, text_message("driver", "still open")));
}

BOOST_AUTO_TEST_SUITE_END()

// --- signal (WebRTC signalling of the current call) ---------------------------------------------------

namespace {

inline json signal_request(TestClient& client, const std::string& code, const json& body) {
  return client.request(request_topic(code, "signal"), body);
}

const std::string kOfferSdp = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

// The next events/signal of `code` of this kind.
std::optional<Received> wait_signal(TestClient& client, const std::string& code, const std::string& kind) {
  return client.wait_for(
      on_topic_json(event_topic(code, "signal"), [&](const json& e) { return e.value("kind", "") == kind; }), 5s);
}

// A ringing call in a fresh booking, with `client` following its events; the call id.
std::string ringing_call(TestClient& client, const std::string& code) {
  client.subscribe(events_filter(code));
  const json started = make_call(client, code, call_request("start", "driver"));
  BOOST_REQUIRE_MESSAGE(is_ok(started), started.dump());
  return started["call"].value("call_id", "");
}

// The TURN settings of the ICE system: a fixed secret, so that the test can check the credential.
const std::string kTurnSecret = "contract-turn-secret";
const std::string kIceServers = "stun:127.0.0.1:3478,turn:127.0.0.1:3478?transport=udp";

System& ice_system(const HostSetup& setup) {
  SystemOptions options = system_options(setup, contract_ring_timeout_s);
  options.extra_host_args = {"--ice_servers", kIceServers, "--turn_secret", kTurnSecret, "--turn_ttl_s", "600"};
  options.extra_plugin_conf = {"plugin_opt_ice_servers " + kIceServers, "plugin_opt_turn_secret " + kTurnSecret,
                               "plugin_opt_turn_ttl_s 600"};
  return shared_system("contract-ice", options);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(contract_signal)

NT_CONTRACT_TEST(offer_answer_candidates_and_bye_are_relayed_and_leave_the_call_alone, 90) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("signal");
  const std::string call_id = ringing_call(*client, code);

  const std::int64_t before = now_ms();
  const json relayed = signal_request(*client, code, {{"call_id", call_id}, {"by", "driver"}, {"kind", "offer"}, {"sdp", kOfferSdp}});
  const std::int64_t after = now_ms();
  BOOST_TEST(relayed == (json{{"ok", true}, {"relayed", true}}), relayed.dump());
  const auto offer = wait_signal(*client, code, "offer");
  BOOST_REQUIRE_MESSAGE(offer, "no events/signal offer");
  BOOST_TEST(offer->qos == 1);
  BOOST_TEST(!offer->retained);
  json event = offer->body();
  check_ts_between(event.value("ts", std::int64_t{0}), before, after);
  event.erase("ts");
  BOOST_TEST(event == (json{{"booking_code", code}, {"call_id", call_id}, {"from", "driver"}, {"kind", "offer"},
                            {"sdp", kOfferSdp}}),
             event.dump());

  NT_REQUIRE_OK(make_call(*client, code, call_request("accept", "passenger", call_id)));
  NT_CHECK_OK(signal_request(*client, code,
                             {{"call_id", call_id}, {"by", "passenger"}, {"kind", "answer"}, {"sdp", kOfferSdp}}));
  const auto answer = wait_signal(*client, code, "answer");
  BOOST_REQUIRE_MESSAGE(answer, "no events/signal answer");
  BOOST_TEST(answer->body().value("from", "") == "passenger");
  const json candidate = {{"candidate", "candidate:1 1 udp 2122260223 127.0.0.1 54400 typ host"},
                          {"sdpMid", "0"},
                          {"sdpMLineIndex", 0},
                          {"usernameFragment", "abcd"}};
  NT_CHECK_OK(signal_request(*client, code,
                             {{"call_id", call_id}, {"by", "passenger"}, {"kind", "candidate"}, {"candidate", candidate}}));
  const auto relayed_candidate = wait_signal(*client, code, "candidate");
  BOOST_REQUIRE_MESSAGE(relayed_candidate, "no events/signal candidate");
  BOOST_TEST(relayed_candidate->body()["candidate"] == candidate);

  NT_CHECK_OK(signal_request(*client, code, {{"call_id", call_id}, {"by", "driver"}, {"kind", "bye"}}));
  BOOST_REQUIRE_MESSAGE(wait_signal(*client, code, "bye"), "no events/signal bye");
  // The call is as it was, and nothing was stored: the history holds the call's two messages only.
  const json got = make_call(*client, code, {{"action", "get"}, {"call_id", call_id}});
  NT_REQUIRE_OK(got);
  BOOST_TEST(got["call"].value("state", "") == "connected");
  const json page = get_message(*client, code);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page.value("last_seq", -1) == 2);
}

NT_CONTRACT_TEST(only_the_current_call_in_a_live_state_with_bounded_fields, 90) {
  TestContext ctx(contract_system(host));
  auto client = ctx.client();
  const std::string code = booking("sigrule");
  const std::string call_id = ringing_call(*client, code);
  const auto offer_of = [&](const std::string& id) {
    return json{{"call_id", id}, {"by", "driver"}, {"kind", "offer"}, {"sdp", kOfferSdp}};
  };
  NT_CHECK_ERROR(signal_request(*client, code, offer_of("c-not-this-one")), "not_found");
  json body = offer_of(call_id);
  body["sdp"] = std::string(16 * 1024 + 1, 's');
  NT_CHECK_ERROR_NAMING(signal_request(*client, code, body), "invalid_request", "sdp");
  NT_CHECK_ERROR_NAMING(signal_request(*client, code,
                                       {{"call_id", call_id},
                                        {"by", "driver"},
                                        {"kind", "candidate"},
                                        {"candidate", std::string(2048, 'c')}}),
                        "invalid_request", "candidate");
  NT_CHECK_ERROR_NAMING(signal_request(*client, code, {{"call_id", call_id}, {"by", "system"}, {"kind", "bye"}}),
                        "invalid_request", "by");
  NT_REQUIRE_OK(make_call(*client, code, call_request("cancel", "driver", call_id)));
  NT_CHECK_ERROR(signal_request(*client, code, offer_of(call_id)), "invalid_state");
  // A bye still goes through (it may cross the cancel); then a fence: nothing else was relayed.
  NT_CHECK_OK(signal_request(*client, code, {{"call_id", call_id}, {"by", "driver"}, {"kind", "bye"}}));
  fence(*client, code);
  const auto signals = client->count(on_topic(event_topic(code, "signal")));
  BOOST_TEST(signals == 1u, "only the bye was relayed");
}

// The parties' ICE servers come with their make_call replies, TURN credentials derived from the
// shared secret (the TURN REST scheme coturn checks: tests/test_turn.cpp), relay-only.
NT_CONTRACT_TEST(make_call_replies_carry_ice_servers_with_short_lived_turn_credentials, 90) {
  TestContext ctx(ice_system(host));
  auto client = ctx.client();
  const std::string code = booking("ice");
  const std::int64_t before_s = now_ms() / 1000;
  const json started = make_call(*client, code, call_request("start", "driver"));
  const std::int64_t after_s = now_ms() / 1000;
  NT_REQUIRE_OK(started);
  BOOST_REQUIRE_MESSAGE(started.contains("ice"), started.dump());
  const json& ice = started["ice"];
  BOOST_TEST(ice.value("ice_transport_policy", "") == "relay");
  BOOST_REQUIRE(ice["ice_servers"].size() == 2u);
  BOOST_TEST(ice["ice_servers"][0] == (json{{"urls", {"stun:127.0.0.1:3478"}}}));
  const json& turn = ice["ice_servers"][1];
  BOOST_TEST(turn["urls"] == (json{"turn:127.0.0.1:3478?transport=udp"}));
  const std::string username = turn.value("username", "");
  const auto colon = username.find(':');
  BOOST_REQUIRE(colon != std::string::npos);
  const std::int64_t expiry = std::stoll(username.substr(0, colon));
  BOOST_TEST(expiry >= before_s + 600);
  BOOST_TEST(expiry <= after_s + 600);
  BOOST_TEST(username.substr(colon + 1) == code + ".driver");
  BOOST_TEST(turn.value("credential", "") == navietakie::turn_rest_credential(kTurnSecret, username));
  BOOST_TEST(started.dump().find(kTurnSecret) == std::string::npos);
  const json accepted =
      make_call(*client, code, call_request("accept", "passenger", started["call"].value("call_id", "")));
  NT_REQUIRE_OK(accepted);
  BOOST_TEST(accepted["ice"]["ice_servers"][1].value("username", "").find(code + ".passenger") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
