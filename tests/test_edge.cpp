// Edge mode end to end (docs/edge.md): two brokers on this machine, the cloud (the plugin, the
// authority) and the car (the plugin with node_role edge, linked to the cloud). A passenger on the
// cloud and a driver on the car chat both ways; then the cloud broker stops (the link is cut)
// while the driver goes on sending (answered `queued`), make_call fails `unavailable` and
// get_message is answered from the replica; the cloud comes back on the same port and data dir,
// the car drains its outbox and catches up, and every message is on both sides exactly once, in
// the cloud's seq order.
#include <map>
#include <set>
#include <thread>

#include "support/contract.hpp"

using namespace navietakie::test;

namespace {

constexpr int kOfflineMessages = 5;

// The car: the plugin in edge mode, linked to `cloud`.
SystemOptions car_options(const System& cloud, const std::string& car_id, std::vector<std::string> more = {}) {
  SystemOptions options = system_options(Host::plugin);
  options.extra_plugin_conf = {"plugin_opt_node_role edge", "plugin_opt_upstream_url " + cloud.broker_uri(),
                               "plugin_opt_upstream_client_id " + car_id};
  options.extra_plugin_conf.insert(options.extra_plugin_conf.end(), more.begin(), more.end());
  return options;
}

// Every message of the booking through get_message after_seq paging (at most 20 pages).
std::vector<json> whole_history(TestClient& client, const std::string& code, json* last_reply = nullptr) {
  std::vector<json> all;
  std::int64_t after = 0;
  for (int page = 0; page < 20; ++page) {
    json reply = get_message(client, code, json{{"after_seq", after}, {"limit", 200}});
    BOOST_REQUIRE_MESSAGE(is_ok(reply), reply.dump());
    for (const auto& m : reply["messages"]) {
      all.push_back(m);
      after = m["seq"].get<std::int64_t>();
    }
    if (last_reply) *last_reply = reply;
    if (!reply.value("has_more", false)) break;
  }
  return all;
}

// The history is seq 1..n, gapless, each message_id once, and matches `expected_ids` in order.
void check_history(const std::vector<json>& history, const std::vector<std::string>& expected_ids,
                   const std::string& side) {
  std::vector<std::string> ids;
  for (std::size_t i = 0; i < history.size(); ++i) {
    BOOST_TEST(history[i]["seq"].get<std::size_t>() == i + 1, side << " seq at " << i);
    ids.push_back(history[i]["message_id"].get<std::string>());
  }
  BOOST_TEST(ids == expected_ids, side << ": history in the cloud's order, each once");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(edge)

BOOST_TEST_DECORATOR(*boost::unit_test::timeout(240))
BOOST_AUTO_TEST_CASE(messages_both_ways_survive_a_cut_link_exactly_once_in_seq_order) {
  System cloud(system_options(Host::plugin));
  const std::string car_id = "car-" + random_hex(6);
  System car(car_options(cloud, car_id));
  BOOST_REQUIRE_MESSAGE(car.broker().wait_log_contains("upstream_connected", 20s), car.describe());

  const std::string code = booking("EDGE");
  auto passenger = cloud.client();
  passenger->subscribe(events_filter(code));
  auto driver = car.client();
  driver->subscribe(events_filter(code));  // the car follows the booking upstream from here

  std::vector<std::string> expected;  // message_ids in the order the cloud must store them
  // Link up: the driver gets the cloud's own reply, with the real seq.
  json d1 = send_message(*driver, code, json{{"message_id", "d-1"}, {"sender", "driver"}, {"text", "on my way"}});
  BOOST_REQUIRE_MESSAGE(is_ok(d1), d1.dump() << car.describe());
  BOOST_TEST(!d1.contains("queued"));
  BOOST_TEST(d1["message"]["seq"] == 1);
  expected.push_back("d-1");
  BOOST_TEST(passenger->wait_for(on_topic_json(event_topic(code, "message"),
                                               [](const json& m) { return m.value("message_id", "") == "d-1"; }),
                                 10s)
                 .has_value());
  json p1 = send_message(*passenger, code, json{{"message_id", "p-1"}, {"sender", "passenger"}, {"text", "ok"}});
  NT_REQUIRE_OK(p1);
  expected.push_back("p-1");
  BOOST_TEST(driver->wait_for(on_topic_json(event_topic(code, "message"),
                                            [](const json& m) { return m.value("message_id", "") == "p-1" && m["seq"] == 2; }),
                              10s)
                 .has_value(),
             "the passenger's message reaches the driver on the car");

  // Cut the link: the cloud broker stops.
  cloud.broker().stop();
  BOOST_REQUIRE_MESSAGE(car.broker().wait_log_contains("upstream_lost", 30s), car.describe());
  for (int i = 2; i < 2 + kOfflineMessages; ++i) {
    const std::string id = "d-" + std::to_string(i);
    json queued = send_message(*driver, code, json{{"message_id", id}, {"sender", "driver"}, {"text", "offline " + id}});
    BOOST_REQUIRE_MESSAGE(is_ok(queued), queued.dump());
    BOOST_TEST(queued.value("queued", false) == true, queued.dump());
    BOOST_TEST(queued["message"]["message_id"] == id);
    BOOST_TEST(!queued["message"].contains("seq"), "no seq before the cloud stored it");
    BOOST_TEST(queued.value("duplicate", true) == false);
    expected.push_back(id);
  }
  // A retry of a queued message while offline: queued again, never twice in the outbox.
  json retried = send_message(*driver, code, json{{"message_id", "d-2"}, {"sender", "driver"}, {"text", "offline d-2"}});
  BOOST_TEST(retried.value("queued", false) == true, retried.dump());
  // A message without a message_id: the car names it, so the outbox and the cloud agree on it.
  json unnamed = send_message(*driver, code, json{{"sender", "driver"}, {"text", "named by the car"}});
  BOOST_REQUIRE_MESSAGE(is_ok(unnamed), unnamed.dump());
  const std::string unnamed_id = unnamed["message"]["message_id"].get<std::string>();
  BOOST_TEST(!unnamed_id.empty());
  expected.push_back(unnamed_id);

  json call = make_call(*driver, code, call_request("start", "driver"));
  NT_CHECK_ERROR(call, "unavailable");
  BOOST_TEST(error_message(call) == "no link to the operator");

  json offline_page = get_message(*driver, code);
  NT_REQUIRE_OK(offline_page);
  BOOST_TEST(offline_page.value("replica_until_seq", -1) == 2, offline_page.dump());
  BOOST_TEST(page_seqs(offline_page) == (std::vector<std::int64_t>{1, 2}), boost::test_tools::per_element());
  BOOST_TEST(driver->count(on_topic(event_topic(code, "message"))) == 2u, "nothing confirmed while the link is down");

  // The cloud comes back on the same port and data dir; the car reconnects and drains in order.
  cloud.broker().start();
  cloud.wait_ready(20s);
  const std::size_t total = expected.size();
  auto confirmed = driver->wait_for_count(on_topic(event_topic(code, "message")), total, 40s);
  BOOST_REQUIRE_MESSAGE(confirmed.size() == total, "events on the car: " << confirmed.size() << "\n" << car.describe());

  // Each queued message moved to confirmed: exactly one event on the car, with the cloud's seq.
  std::map<std::string, int> events_per_id;
  std::vector<std::string> event_order;
  for (const auto& e : driver->received(on_topic(event_topic(code, "message")))) {
    const json m = e.body();
    ++events_per_id[m["message_id"].get<std::string>()];
    event_order.push_back(m["message_id"].get<std::string>());
    BOOST_TEST(m["seq"].is_number_unsigned());
  }
  for (const auto& id : expected) BOOST_TEST(events_per_id[id] == 1, id << " confirmed exactly once on the car");
  BOOST_TEST(event_order == expected, "the car's events in the cloud's seq order");

  // A retry of a confirmed message: the original, as the cloud answers it.
  json retry_up = send_message(*driver, code, json{{"message_id", "d-2"}, {"sender", "driver"}, {"text", "offline d-2"}});
  BOOST_TEST(retry_up.value("duplicate", false) == true, retry_up.dump());
  BOOST_TEST(retry_up["message"]["seq"] == 3);

  // The cloud's history: everything, once, in order (drained in arrival order).
  auto passenger_again = cloud.client();
  check_history(whole_history(*passenger_again, code), expected, "cloud");

  // A message from the passenger after the reconnect reaches the car too.
  NT_REQUIRE_OK(send_message(*passenger_again, code, json{{"message_id", "p-2"}, {"sender", "passenger"}, {"text", "see you"}}));
  expected.push_back("p-2");
  BOOST_TEST(driver->wait_for(on_topic_json(event_topic(code, "message"),
                                            [](const json& m) { return m.value("message_id", "") == "p-2"; }),
                              10s)
                 .has_value());

  // The car's replica: cut the link again and read it all from the car.
  cloud.broker().stop();
  BOOST_REQUIRE(car.broker().wait_log_contains("upstream_lost", 30s));
  json last;
  auto replica = whole_history(*driver, code, &last);
  check_history(replica, expected, "car replica");
  BOOST_TEST(last.value("replica_until_seq", -1) == static_cast<int>(expected.size()), last.dump());
  // Offline too, a retry of a confirmed message gets the original from the replica, not `queued`.
  json retry_down = send_message(*driver, code, json{{"message_id", "d-3"}, {"sender", "driver"}, {"text", "offline d-3"}});
  BOOST_TEST(retry_down.value("duplicate", false) == true, retry_down.dump());
  BOOST_TEST(!retry_down.contains("queued"));
  BOOST_TEST(retry_down["message"]["seq"] == 4);
}

// Authentication on both sides: the car presents a service token upstream, its driver a driver
// token of the car's own key. The outbox survives a restart of the car while the link is down.
BOOST_TEST_DECORATOR(*boost::unit_test::timeout(240))
BOOST_AUTO_TEST_CASE(with_authentication_the_outbox_survives_a_car_restart_while_offline) {
  SystemOptions cloud_options = system_options(Host::plugin);
  cloud_options.secure = true;
  System cloud(cloud_options);
  const std::string car_id = "car-" + random_hex(6);
  const std::string token_file = cloud.dir().file("car.jwt");
  write_file(token_file, cloud.token(navietakie::Identity{navietakie::Principal::service, car_id, ""}) + "\n");
  SystemOptions options = car_options(cloud, car_id, {"plugin_opt_upstream_token_file " + token_file});
  options.secure = true;
  System car(options);
  BOOST_REQUIRE_MESSAGE(car.broker().wait_log_contains("upstream_connected", 20s), car.describe());

  const std::string code = booking("EDGEAUTH");
  const navietakie::Identity driver_identity{navietakie::Principal::driver, "drv-1", code};
  auto passenger = cloud.client(cloud.as(navietakie::Identity{navietakie::Principal::passenger, "pas-1", code}));
  passenger->subscribe(events_filter(code));
  auto driver = car.client(car.as(driver_identity));
  driver->subscribe(events_filter(code));

  json d1 = send_message(*driver, code, json{{"message_id", "d-1"}, {"sender", "driver"}, {"text", "hello"}});
  BOOST_REQUIRE_MESSAGE(is_ok(d1), d1.dump() << car.describe());
  BOOST_TEST(d1["message"]["seq"] == 1);
  BOOST_TEST(d1["message"]["sender_id"] == "drv-1", "the cloud stores the car's local identity");
  // The car holds its local clients to their identity, as the cloud would.
  NT_CHECK_ERROR(send_message(*driver, code, text_message("passenger", "not me")), "forbidden");

  cloud.broker().stop();
  BOOST_REQUIRE(car.broker().wait_log_contains("upstream_lost", 30s));
  for (const std::string id : {"d-2", "d-3"}) {
    json queued = send_message(*driver, code, json{{"message_id", id}, {"sender", "driver"}, {"text", id}});
    BOOST_TEST(queued.value("queued", false) == true, queued.dump());
  }
  driver.reset();
  car.restart_host();  // the car restarts with two messages in its outbox and no link
  cloud.broker().start();
  cloud.wait_ready(20s);

  auto passenger_again = cloud.client(cloud.as(navietakie::Identity{navietakie::Principal::passenger, "pas-1", code}));
  std::vector<json> history;
  for (int tries = 0; tries < 60 && history.size() < 3; ++tries) {
    history = whole_history(*passenger_again, code);
    if (history.size() < 3) std::this_thread::sleep_for(500ms);
  }
  check_history(history, {"d-1", "d-2", "d-3"}, "cloud");
  for (const auto& m : history) BOOST_TEST(m["sender_id"] == "drv-1");
  // The restarted car followed the booking again: its replica is complete.
  BOOST_REQUIRE_MESSAGE(
      car.broker().wait_log_contains("event=replica_stored booking=" + code + " until=3", 20s), car.describe());
  cloud.broker().stop();
  BOOST_REQUIRE(car.broker().wait_log_contains("upstream_lost", 30s));
  auto driver_again = car.client(car.as(driver_identity));
  json last;
  const std::vector<json> replica = whole_history(*driver_again, code, &last);
  check_history(replica, {"d-1", "d-2", "d-3"}, "car replica");
  BOOST_TEST(last.value("replica_until_seq", -1) == 3, last.dump());
}

// Presence goes through the cloud (the authority): a local client's online state reaches the
// passenger, its disconnect is sent upstream as offline, and the car republishes the cloud's
// retained presence to its local clients.
BOOST_TEST_DECORATOR(*boost::unit_test::timeout(120))
BOOST_AUTO_TEST_CASE(presence_is_forwarded_and_a_local_disconnect_goes_offline_upstream) {
  System cloud(system_options(Host::plugin));
  System car(car_options(cloud, "car-" + random_hex(6)));
  BOOST_REQUIRE_MESSAGE(car.broker().wait_log_contains("upstream_connected", 20s), car.describe());
  const std::string code = booking("EDGEPRES");
  auto passenger = cloud.client();
  passenger->subscribe(event_topic(code, "presence"));
  auto driver = car.client();
  driver->subscribe(events_filter(code));
  json online = set_presence(*driver, code, json{{"role", "driver"}, {"online", true}});
  BOOST_REQUIRE_MESSAGE(is_ok(online), online.dump());
  BOOST_TEST(online["presence"]["driver"]["online"] == true);
  const auto driver_online = [](bool state) {
    return [state](const json& p) { return p.contains("driver") && p["driver"].value("online", !state) == state; };
  };
  BOOST_TEST(passenger->wait_for(on_topic_json(event_topic(code, "presence"), driver_online(true)), 10s).has_value());
  auto on_car = driver->wait_for(on_topic_json(event_topic(code, "presence"), driver_online(true)), 10s);
  BOOST_TEST(on_car.has_value(), "the cloud's presence republished on the car");
  // A later local subscriber gets it retained from the car's broker.
  auto head_unit = car.client();
  head_unit->subscribe(event_topic(code, "presence"));
  auto retained = head_unit->wait_for(on_topic(event_topic(code, "presence")), 10s);
  BOOST_REQUIRE(retained.has_value());
  BOOST_TEST(retained->retained);
  driver->disconnect();  // no Will: the car's DISCONNECT event alone sends it offline upstream
  BOOST_TEST(passenger->wait_for(on_topic_json(event_topic(code, "presence"), driver_online(false)), 10s).has_value(),
             car.describe());
}

// The bridge is a cloud host only: it refuses node_role edge and says where edge mode runs.
BOOST_AUTO_TEST_CASE(the_bridge_refuses_the_edge_role, *boost::unit_test::timeout(30)) {
  TempDir dir("navietakie-edge-bridge");
  Process bridge({NAVIETAKIE_BRIDGE_BIN, "--node_role", "edge", "--upstream_url", "tcp://127.0.0.1:1"},
                 ProcessOptions(dir.file("bridge.log")));
  BOOST_TEST(bridge.wait_exit(10s).value_or(-1) == 2);
  const std::string log = read_file(dir.file("bridge.log"));
  BOOST_TEST(log.find("plugin_opt_node_role edge") != std::string::npos, log);
}

BOOST_AUTO_TEST_CASE(bad_input_on_the_car_gets_the_usual_errors_without_the_cloud) {
  System cloud(system_options(Host::plugin));
  System car(car_options(cloud, "car-" + random_hex(6)));
  auto driver = car.client();
  const std::string code = booking("EDGEBAD");
  NT_CHECK_ERROR(driver->request_raw(request_topic(code, "send_message"), "not json"), "invalid_json");
  NT_CHECK_ERROR_NAMING(send_message(*driver, code, json{{"sender", "driver"}}), "invalid_request", "text");
  NT_CHECK_ERROR(driver->request(request_topic("bad.code", "send_message"), text_message("driver", "x")),
                 "invalid_booking_code");
  // 3.1.1 style: the reply address and correlation_id travel in the payload, answered the same.
  json v311 = driver->request_v311(request_topic(code, "send_message"), text_message("driver", "hi from 3.1.1"));
  NT_CHECK_OK(v311);
  BOOST_TEST(v311.contains("correlation_id"));
}

// `signal` through the car: checked there, forwarded, relayed by the cloud to the other party and
// back down to the car's clients; link down, `unavailable`.
BOOST_AUTO_TEST_CASE(signals_from_the_car_reach_the_cloud_and_come_back_down) {
  auto cloud = std::make_unique<System>(system_options(Host::plugin));
  System car(car_options(*cloud, "car-" + random_hex(6)));
  BOOST_REQUIRE_MESSAGE(car.broker().wait_log_contains("upstream_connected", 20s), car.describe());
  const std::string code = booking("EDGESIG");
  auto passenger = cloud->client();
  passenger->subscribe(event_topic(code, "signal"));
  auto driver = car.client();
  driver->subscribe(events_filter(code));
  const json started = make_call(*driver, code, call_request("start", "driver"));
  BOOST_REQUIRE_MESSAGE(is_ok(started), started.dump());
  const std::string call_id = started["call"].value("call_id", "");
  NT_CHECK_ERROR_NAMING(driver->request(request_topic(code, "signal"), {{"call_id", call_id}, {"by", "driver"}, {"kind", "offer"}}),
                        "invalid_request", "sdp");
  const json offer = {{"call_id", call_id}, {"by", "driver"}, {"kind", "offer"}, {"sdp", "v=0\r\n"}};
  NT_CHECK_OK(driver->request(request_topic(code, "signal"), offer));
  const auto at_cloud = passenger->wait_for(on_topic(event_topic(code, "signal")), 10s);
  BOOST_REQUIRE_MESSAGE(at_cloud, "the cloud did not relay the car's offer");
  BOOST_TEST(at_cloud->body().value("from", "") == "driver");
  BOOST_TEST(driver->wait_for(on_topic(event_topic(code, "signal")), 10s).has_value(), "events/signal on the car");
  // The cloud's rules: another call is not_found there, answered through the car.
  NT_CHECK_ERROR(driver->request(request_topic(code, "signal"),
                                 {{"call_id", "c-other"}, {"by", "driver"}, {"kind", "bye"}}),
                 "not_found");
  cloud.reset();  // the link is cut
  const json down = driver->request(request_topic(code, "signal"), offer, 15s);
  NT_CHECK_ERROR(down, "unavailable");
}

BOOST_AUTO_TEST_SUITE_END()
