// What only the plugin host does: it consumes requests inside the broker (no other subscriber sees
// them, the publisher gets a success PUBACK), it sees who published and who disconnected, it reads
// its settings from `plugin_opt_<key>` lines and NAVIETAKIE_* variables and refuses bad ones at
// broker start, it keeps the broker serving other clients while it handles hostile input, and it
// has no memory errors or definite leaks under valgrind (suite plugin_valgrind, disabled by
// default: ctest runs it as its own entry, test_plugin_valgrind).
#include <algorithm>
#include <atomic>
#include <cctype>
#include <fstream>
#include <sstream>
#include <thread>

#include <lmdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/jwt.hpp"
#include "core/calls.hpp"
#include "store/keys.hpp"
#include "store/store.hpp"
#include "support/contract.hpp"

#ifndef NAVIETAKIE_PLUGIN_SO
#error "NAVIETAKIE_PLUGIN_SO must name mosquitto_navietakie.so (set by tests/CMakeLists.txt)"
#endif

using namespace navietakie::test;

namespace {

namespace utf = boost::unit_test;

System& plugin_system() { return shared_system("plugin", system_options(Host::plugin)); }

bool contains_ignoring_case(const std::string& haystack, const std::string& needle) {
  auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
  };
  return lower(haystack).find(lower(needle)) != std::string::npos;
}

// {prefix}/bookings/{code}/{action}: exactly one level after the booking code.
bool is_request_topic(const std::string& topic) {
  const std::string bookings = topic_prefix + "/bookings/";
  if (topic.rfind(bookings, 0) != 0) return false;
  const std::string rest = topic.substr(bookings.size());
  const auto slash = rest.find('/');
  if (slash == std::string::npos || rest.find('/', slash + 1) != std::string::npos) return false;
  const std::string action = rest.substr(slash + 1);
  return action == "send_message" || action == "get_message" || action == "make_call" || action == "presence";
}

// Publishes a v5 request (Response Topic + Correlation Data) and waits for the publish to complete:
// at QoS 1 the PUBACK, at QoS 2 the PUBCOMP. A PUBACK/PUBREC with an error reason code fails the
// token (Paho C reports it as a failure), which fails the test here.
PendingRequest publish_v5_request_checked(TestClient& client, const std::string& topic, const std::string& payload,
                                          int qos) {
  client.subscribe(topic_prefix + "/replies/" + client.client_id() + "/#");
  PendingRequest pending{topic, client.next_reply_topic(), client.next_correlation(), false};
  PublishOptions options;
  options.qos = qos;
  options.response_topic = pending.reply_topic;
  options.correlation_data = pending.correlation;
  auto token = client.publish_async(topic, payload, options);
  try {
    BOOST_REQUIRE_MESSAGE(token->wait_for(5s), "the publish of a qos " << qos << " request did not complete");
  } catch (const mqtt::exception& e) {
    BOOST_FAIL("the broker refused a qos " << qos << " request: " << e.what() << " (reason code " << e.get_reason_code()
                                           << ")");
  }
  BOOST_CHECK_MESSAGE(static_cast<int>(token->get_reason_code()) < 0x80,
                      "publish completed with reason code " << static_cast<int>(token->get_reason_code()));
  return pending;
}

// An MQTT 3.1.1 client written by hand on a TCP socket: it CONNECTs (no Will), PUBLISHes at QoS 0,
// and can close its socket without a DISCONNECT, which no Paho client can be made to do.
class RawMqttClient {
 public:
  RawMqttClient(int port, const std::string& client_id) : fd_(connect_loopback(port)) {
    std::string connect = utf8("MQTT");
    connect += std::string{'\x04', '\x02', '\x00', '\x3c'};  // 3.1.1, clean session, keep-alive 60 s
    connect += utf8(client_id);
    send_packet('\x10', connect);
    char connack[4] = {};
    std::size_t got = 0;
    while (got < sizeof connack) {
      const ssize_t n = ::recv(fd_, connack + got, sizeof connack - got, 0);
      BOOST_REQUIRE_MESSAGE(n > 0, "no CONNACK");
      got += static_cast<std::size_t>(n);
    }
    BOOST_REQUIRE_MESSAGE(connack[0] == '\x20' && connack[3] == '\x00', "connection refused");
  }
  ~RawMqttClient() { drop(); }
  RawMqttClient(const RawMqttClient&) = delete;
  RawMqttClient& operator=(const RawMqttClient&) = delete;

  void publish_qos0(const std::string& topic, const std::string& payload) {
    send_packet('\x30', utf8(topic) + payload);
  }
  // close() without DISCONNECT: the broker sees the connection drop.
  void drop() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  static std::string utf8(const std::string& s) {
    return std::string{static_cast<char>(s.size() >> 8), static_cast<char>(s.size() & 0xff)} + s;
  }
  void send_packet(char type, const std::string& body) {
    std::string packet(1, type);
    std::size_t length = body.size();
    do {  // the Remaining Length varint
      char byte = static_cast<char>(length % 128);
      length /= 128;
      if (length > 0) byte = static_cast<char>(byte | '\x80');
      packet.push_back(byte);
    } while (length > 0);
    packet += body;
    BOOST_REQUIRE(::send(fd_, packet.data(), packet.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(packet.size()));
  }

  int fd_;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(plugin_routing)

BOOST_AUTO_TEST_CASE(requests_are_consumed_with_a_success_puback_and_events_reach_subscribers, *utf::timeout(60)) {
  TestContext ctx(plugin_system());
  const std::string code = booking("consumed");
  auto sniffer = ctx.client();
  sniffer->subscribe("#");
  auto v5 = ctx.client();

  // v5 requests at QoS 1 and 2: the publish succeeds and the reply comes.
  for (int qos : {1, 2}) {
    BOOST_TEST_CONTEXT("qos " << qos) {
      const auto pending =
          publish_v5_request_checked(*v5, request_topic(code, "send_message"),
                                     text_message("driver", "v5 qos " + std::to_string(qos)).dump(), qos);
      NT_CHECK_OK(v5->await_reply(pending));
    }
  }
  const auto page = publish_v5_request_checked(*v5, request_topic(code, "get_message"), "{}", 1);
  NT_CHECK_OK(v5->await_reply(page));
  // A failing request is consumed too (its error is the reply, not a PUBACK error).
  const auto bad = publish_v5_request_checked(*v5, request_topic(code, "send_message"), "not json", 1);
  NT_CHECK_ERROR(v5->await_reply(bad), "invalid_json");
  // A 3.1.1 request (reply_to in the payload) and one without any reply address.
  ClientOptions old_options;
  old_options.version = MqttVersion::v311;
  auto old = ctx.client(old_options);
  NT_CHECK_OK(old->request_v311(request_topic(code, "make_call"), call_request("start", "passenger")));
  old->publish(request_topic(code, "presence"), R"({"role":"passenger","online":true})");
  v5->publish(request_topic(code, "send_message"), text_message("passenger", "no reply address").dump());

  // The last request's broadcast is the fence: everything before it has reached the sniffer.
  BOOST_REQUIRE_MESSAGE(
      sniffer->wait_for(on_topic_json(event_topic(code, "message"),
                                      [](const json& m) { return m.value("text", "") == "no reply address"; }),
                        5s),
      "the # subscriber did not get events/message");
  std::vector<std::string> leaked;
  for (const auto& m : sniffer->received()) {
    if (is_request_topic(m.topic)) leaked.push_back(m.topic + " " + m.payload.substr(0, 80));
  }
  BOOST_CHECK_MESSAGE(leaked.empty(), "request payloads reached a # subscriber: "
                                          << leaked.size() << ", first: " << (leaked.empty() ? "" : leaked.front()));
  // ... but the events did: 3 stored texts + the call's ringing message, the call, the presence.
  BOOST_TEST(sniffer->count(on_topic(event_topic(code, "message"))) == 4u);
  BOOST_TEST(sniffer->count(on_topic(event_topic(code, "call"))) == 1u);
  BOOST_TEST(sniffer->wait_for(on_topic(event_topic(code, "presence")), 5s).has_value());
  // And the broker denied nothing.
  BOOST_TEST(read_file(ctx.system().broker().log_path()).find("Denied PUBLISH") == std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(plugin_presence)

BOOST_AUTO_TEST_CASE(a_clean_disconnect_without_will_takes_the_connection_offline, *utf::timeout(60)) {
  TestContext ctx(plugin_system());
  const std::string code = booking("disc");
  auto observer = ctx.client();
  observer->subscribe(event_topic(code, "presence"));
  const auto passenger_offline = on_topic_json(
      event_topic(code, "presence"), [](const json& p) { return p["passenger"].value("online", true) == false; });

  // Two devices of the passenger, neither with a Will nor a client_id in the payload: each is
  // keyed by its MQTT client id.
  auto phone = ctx.client();
  auto tablet = ctx.client();
  const json phone_online = set_presence(*phone, code, {{"role", "passenger"}, {"online", true}});
  NT_REQUIRE_OK(phone_online);
  BOOST_TEST(phone_online["presence"]["passenger"].value("online", json()) == json(true));
  NT_REQUIRE_OK(set_presence(*tablet, code, {{"role", "passenger"}, {"online", true}}));

  // The phone leaves: the tablet keeps the role online.
  phone->disconnect();
  std::this_thread::sleep_for(500ms);  // no event marks "nothing changed"; give the disconnect time
  const json probe = set_presence(*observer, code, {{"role", "driver"}, {"online", false}, {"client_id", "probe"}});
  NT_REQUIRE_OK(probe);
  BOOST_CHECK_MESSAGE(probe["presence"]["passenger"].value("online", json()) == json(true),
                      "one of two connections left and the role went offline: " << probe.dump());
  BOOST_TEST(observer->count(passenger_offline) == 0u);

  // The tablet leaves too, cleanly and without a Will: the role goes offline, retained.
  tablet->disconnect();
  auto offline = observer->wait_for(passenger_offline, 5s);
  BOOST_REQUIRE_MESSAGE(offline, "the passenger is still online after both of its clients disconnected");
  BOOST_TEST(offline->body()["passenger"].value("since", std::int64_t{0}) >=
             phone_online["presence"]["passenger"].value("since", std::int64_t{0}));
  auto late = ctx.client();
  late->subscribe(event_topic(code, "presence"));
  auto retained = late->wait_for(on_topic(event_topic(code, "presence")), 5s);
  BOOST_REQUIRE(retained);
  BOOST_TEST(retained->retained);
  BOOST_TEST(retained->body()["passenger"].value("online", json()) == json(false));
}

BOOST_AUTO_TEST_CASE(a_dropped_connection_without_will_goes_offline_too, *utf::timeout(60)) {
  TestContext ctx(plugin_system());
  const std::string code = booking("drop");
  auto observer = ctx.client();
  observer->subscribe(event_topic(code, "presence"));
  RawMqttClient device(ctx.system().broker().port(), "nt-raw-" + random_hex(6));
  device.publish_qos0(request_topic(code, "presence"), R"({"role":"driver","online":true})");
  BOOST_REQUIRE_MESSAGE(
      observer->wait_for(on_topic_json(event_topic(code, "presence"),
                                       [](const json& p) { return p["driver"].value("online", false) == true; }),
                         5s),
      "the raw client's presence was not handled");
  device.drop();
  BOOST_CHECK_MESSAGE(
      observer->wait_for(on_topic_json(event_topic(code, "presence"),
                                       [](const json& p) { return p["driver"].value("online", true) == false; }),
                         5s),
      "the driver is still online after its connection dropped (no Will, no DISCONNECT)");
}

BOOST_AUTO_TEST_CASE(a_broker_start_marks_every_stored_connection_offline, *utf::timeout(90)) {
  System system(system_options(Host::plugin));
  TestContext ctx(system);
  const std::string code = booking("start");
  auto client = ctx.client();
  const json online = set_presence(*client, code, {{"role", "driver"}, {"online", true}, {"client_id", "car-unit"}});
  NT_REQUIRE_OK(online);
  BOOST_TEST(online["presence"]["driver"].value("online", json()) == json(true));
  // Killed with the client still connected: no DISCONNECT is handled, only the start can fix the table.
  system.kill_host();
  const std::int64_t restarted_at = now_ms();
  system.start_host();
  client = ctx.client();
  client->subscribe(event_topic(code, "presence"));
  auto retained = client->wait_for(on_topic(event_topic(code, "presence")), 5s);
  BOOST_REQUIRE_MESSAGE(retained, "no retained presence after the broker started");
  BOOST_TEST(retained->body()["driver"].value("online", json()) == json(false));
  BOOST_TEST(retained->body()["driver"].value("since", std::int64_t{0}) >= restarted_at);
  const json again = set_presence(*client, code, {{"role", "driver"}, {"online", true}, {"client_id", "car-unit"}});
  NT_REQUIRE_OK(again);
  BOOST_TEST(again["presence"]["driver"].value("online", json()) == json(true));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(plugin_config)

struct BadConfig {
  std::string name;
  std::vector<std::string> conf;  // plugin_opt_ lines
  std::vector<std::string> env;   // NAME=value
  std::string key;                // the log must name it (case-insensitive)
};

BOOST_AUTO_TEST_CASE(a_bad_setting_stops_the_broker_at_start_naming_the_key, *utf::timeout(120)) {
  const std::vector<BadConfig> cases{
      {"plugin_opt value not a number", {"plugin_opt_call_ring_timeout_s abc"}, {}, "call_ring_timeout_s"},
      {"plugin_opt unknown key", {"plugin_opt_bogus_key x"}, {}, "bogus_key"},
      {"plugin_opt value out of range", {"plugin_opt_map_size_mb 0"}, {}, "map_size_mb"},
      {"plugin_opt bad choice", {"plugin_opt_sync sometimes"}, {}, "sync"},
      {"environment value not a number", {}, {"NAVIETAKIE_CALL_RING_TIMEOUT_S=abc"}, "call_ring_timeout_s"},
      {"environment unknown variable", {}, {"NAVIETAKIE_BOGUS_KEY=x"}, "bogus_key"},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.name) {
      TempDir dir("nt-plugin-config");
      std::vector<std::string> conf{"plugin " + std::string(NAVIETAKIE_PLUGIN_SO),
                                    "plugin_opt_data_dir " + dir.file("data")};
      conf.insert(conf.end(), c.conf.begin(), c.conf.end());
      BrokerLaunch launch;
      launch.env = c.env;
      Broker broker(dir, conf, launch);
      const auto started = std::chrono::steady_clock::now();
      broker.spawn();
      const auto exit_code = broker.wait_exit(10s);
      BOOST_CHECK_MESSAGE(exit_code.has_value(), "mosquitto still runs 10 s after a bad setting:\n"
                                                     << broker.describe());
      if (!exit_code) continue;  // the Broker's destructor stops it
      BOOST_TEST(*exit_code != 0);
      BOOST_TEST(((std::chrono::steady_clock::now() - started) < 5s));
      const std::string log = read_file(broker.log_path());
      BOOST_CHECK_MESSAGE(log.find("navietakie:") != std::string::npos && contains_ignoring_case(log, c.key),
                          "the log does not say 'navietakie:' and name " << c.key << ":\n"
                                                                         << log);
    }
  }
}

// A store whose ringing-call index names a call that is not there: the engine cannot re-arm the
// ring timeouts (Engine::start throws), so the plugin's init fails and the broker does not start.
BOOST_AUTO_TEST_CASE(an_engine_that_cannot_start_stops_the_broker_at_start_saying_why, *utf::timeout(60)) {
  TempDir dir("nt-plugin-start");
  const std::string data = dir.file("data");
  const navietakie::Call call = navietakie::start_call("BK1", "c-1", navietakie::Role::driver, 1'000, 30'000);
  {
    auto store = navietakie::open_lmdb_store(navietakie::LmdbOptions{data});
    store->write([&](navietakie::StoreWriter& w) { w.put_call(call); });
  }
  {  // drop the call record, keep its ringing index entry
    MDB_env* env = nullptr;
    BOOST_REQUIRE(mdb_env_create(&env) == 0);
    BOOST_REQUIRE(mdb_env_set_maxdbs(env, 16) == 0);
    BOOST_REQUIRE(mdb_env_set_mapsize(env, std::size_t{1} << 30) == 0);
    BOOST_REQUIRE(mdb_env_open(env, data.c_str(), 0, 0644) == 0);
    MDB_txn* txn = nullptr;
    BOOST_REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
    MDB_dbi calls = 0;
    BOOST_REQUIRE(mdb_dbi_open(txn, navietakie::keys::db::calls, 0, &calls) == 0);
    std::string key = navietakie::keys::call("BK1", "c-1");
    MDB_val k{key.size(), key.data()};
    BOOST_REQUIRE(mdb_del(txn, calls, &k, nullptr) == 0);
    BOOST_REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
  }
  Broker broker(dir, {"plugin " + std::string(NAVIETAKIE_PLUGIN_SO), "plugin_opt_data_dir " + data});
  broker.spawn();
  const auto exit_code = broker.wait_exit(10s);
  BOOST_REQUIRE_MESSAGE(exit_code.has_value(), "mosquitto still runs with an engine that cannot start:\n"
                                                   << broker.describe());
  BOOST_TEST(*exit_code != 0);
  const std::string log = read_file(broker.log_path());
  BOOST_TEST(log.find("navietakie: cannot start") != std::string::npos, log);
  BOOST_TEST(log.find("ringing index names a missing call") != std::string::npos, log);
}

// config/mosquitto.conf as shipped, with only its paths and ports made local: it starts, loads the
// plugin, and serves on both listeners; then the same with its commented secure setup switched on
// (a secret file, allow_anonymous false), where a client needs a token on both listeners.
BOOST_DATA_TEST_CASE(the_shipped_mosquitto_conf_starts_and_serves, bdata::make({false, true}), secure) {
  TempDir dir("nt-shipped-conf");
  const std::string shipped = read_file(std::string(NAVIETAKIE_SOURCE_DIR) + "/config/mosquitto.conf");
  BOOST_REQUIRE(!shipped.empty());
  const std::string secret_path = dir.file("jwt.secret");
  write_file(secret_path, navietakie::generate_secret() + "\n");
  const int mqtt_port = free_port();
  const int ws_port = free_port();
  std::istringstream in(shipped);
  std::string conf;
  int replaced = 0;
  for (std::string line; std::getline(in, line);) {
    if (line == "listener 1883")
      line = "listener " + std::to_string(mqtt_port) + " 127.0.0.1", ++replaced;
    else if (line == "listener 9001")
      line = "listener " + std::to_string(ws_port) + " 127.0.0.1", ++replaced;
    else if (line.rfind("plugin ", 0) == 0)
      line = "plugin " + std::string(NAVIETAKIE_PLUGIN_SO), ++replaced;
    else if (line.rfind("plugin_opt_data_dir ", 0) == 0)
      line = "plugin_opt_data_dir " + dir.file("data"), ++replaced;
    else if (line.rfind("http_dir ", 0) == 0)
      line = "http_dir " + std::string(NAVIETAKIE_SOURCE_DIR) + "/web/public", ++replaced;
    else if (secure && line == "allow_anonymous true")
      line = "allow_anonymous false", ++replaced;
    else if (secure && line.rfind("#plugin_opt_auth_jwt_secret_file ", 0) == 0)
      line = "plugin_opt_auth_jwt_secret_file " + secret_path, ++replaced;
    else if (secure && line.rfind("#plugin_opt_auth_service_grants ", 0) == 0)
      line = line.substr(1), ++replaced;
    conf += line + "\n";
  }
  BOOST_REQUIRE_EQUAL(replaced, secure ? 8 : 5);
  conf += "user " + current_user_name() + "\n";
  write_file(dir.file("mosquitto.conf"), conf);
  ProcessOptions broker_options(dir.file("mosquitto.log"), "", 5s);
  broker_options.extra_env = plugin_broker_env();
  Process broker({find_executable("mosquitto"), "-c", dir.file("mosquitto.conf")}, broker_options);
  BOOST_REQUIRE_MESSAGE(wait_for_tcp(mqtt_port, 5s) && wait_for_tcp(ws_port, 5s), broker.describe());
  const std::string code = booking("shipped");
  for (const std::string& uri :
       {"tcp://127.0.0.1:" + std::to_string(mqtt_port), "ws://127.0.0.1:" + std::to_string(ws_port)}) {
    BOOST_TEST_CONTEXT(uri) {
      ClientOptions options;
      if (secure) {
        const navietakie::Identity driver{navietakie::Principal::driver, "drv-shipped", code};
        const auto now =
            std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
        options.username = driver.subject;
        options.password = navietakie::mint_token(driver, navietakie::read_secret_file(secret_path), now.count() + 600);
        ClientOptions anonymous;
        anonymous.connect_timeout = 3s;
        BOOST_CHECK_THROW(TestClient(uri, anonymous), std::exception);
      }
      TestClient client(uri, options);
      const auto reply =
          first_reply(client, request_topic(code, "send_message"), text_message("driver", "shipped conf").dump());
      BOOST_REQUIRE_MESSAGE(reply, "no reply over " << uri << ":\n" << broker.describe());
      NT_CHECK_OK(*reply);
    }
  }
  broker.stop();
  BOOST_TEST(broker.exit_code().value_or(-1) == 0);
}

BOOST_AUTO_TEST_CASE(environment_overrides_plugin_opt_lines, *utf::timeout(60)) {
  SystemOptions options = system_options(Host::plugin, 30);  // plugin_opt_call_ring_timeout_s 30
  options.broker_launch.env = {"NAVIETAKIE_CALL_RING_TIMEOUT_S=7"};
  System system(options);
  TestContext ctx(system);
  auto client = ctx.client();
  const json started = make_call(*client, booking("envring"), call_request("start", "driver"));
  NT_REQUIRE_OK(started);
  const json& call = started["call"];
  BOOST_TEST(call.value("ring_deadline", std::int64_t{0}) - call.value("created_at", std::int64_t{0}) == 7000);
}

// Every key of the schema is accepted as a plugin_opt_ line (the bridge-only ones are ignored),
// and the limits and the prefix take effect.
BOOST_AUTO_TEST_CASE(every_key_is_accepted_and_the_limits_and_prefix_apply, *utf::timeout(60)) {
  SystemOptions options = system_options(Host::plugin);
  const std::string prefix = "nt-test/v9";
  options.extra_plugin_conf = {
      "plugin_opt_topic_prefix " + prefix,
      "plugin_opt_sync nosync",
      "plugin_opt_map_size_mb 64",
      "plugin_opt_max_payload_bytes 2048",
      "plugin_opt_max_text_bytes 100",
      "plugin_opt_environment ci",
      "plugin_opt_batch_max 8",
      "plugin_opt_broker_url tcp://ignored.invalid:1",
      "plugin_opt_client_id ignored",
      "plugin_opt_share_group ignored",
  };
  options.topic_prefix = prefix;  // for the readiness probe
  System system(options);
  TestContext ctx(system);
  ClientOptions client_options;
  client_options.topic_prefix = prefix;
  auto client = ctx.client(client_options);
  const std::string code = booking("keys");
  const std::string topic = prefix + "/bookings/" + code + "/send_message";
  NT_CHECK_OK(client->request(topic, text_message("driver", "moved")));
  BOOST_TEST(system.broker().wait_log_contains("environment=ci", 1s));
  NT_CHECK_ERROR_NAMING(client->request(topic, text_message("driver", std::string(101, 't'))), "invalid_request",
                        "text");
  NT_CHECK_OK(client->request(topic, text_message("driver", std::string(100, 't'))));
  NT_CHECK_ERROR(client->request_raw(topic, std::string(2049, ' ')), "payload_too_large");
  // The default prefix is an ordinary topic now: nobody answers there.
  BOOST_TEST(!client->try_await_reply(
      client->send_request(request_topic(code, "send_message"), text_message("driver", "old prefix").dump()), 1s));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(plugin_isolation)

// Requests that each fail, several of them expensive to refuse (large, deeply nested).
std::vector<std::pair<std::string, std::string>> bad_requests(const std::string& code) {
  const std::string deep =
      R"({"sender":"driver","text":"deep","data":)" + std::string(5000, '[') + std::string(5000, ']') + "}";
  std::vector<std::pair<std::string, std::string>> out{
      {request_topic(code, "send_message"), "not json"},
      {request_topic(code, "send_message"), std::string(70 * 1024, 'x')},
      {request_topic(code, "send_message"), deep},
      {request_topic(code, "send_message"), std::string("{\"sender\":\"driver\",\"text\":\"\xff\xfe\"}")},
      {request_topic(code, "send_message"), R"({"sender":"nobody","text":"x"})"},
      {request_topic(code, "send_message"), R"({"sender":"driver"})"},
      {request_topic(code, "send_message"), R"({"sender":"driver","text":"x","data":[]})"},
      {request_topic(code, "send_message"), "[1,2,3]"},
      {request_topic(code, "get_message"), R"({"limit":0})"},
      {request_topic(code, "get_message"), R"({"limit":1e999})"},
      {request_topic(code, "get_message"), R"({"before_seq":2,"after_seq":1})"},
      {request_topic(code, "make_call"), R"({"action":"fly","by":"driver"})"},
      {request_topic(code, "make_call"), R"({"action":"accept","by":"passenger","call_id":"nope"})"},
      {request_topic(code, "presence"), R"({"role":"system","online":true})"},
      {request_topic(code, "presence"), R"({"role":"driver","online":null})"},
      {topic_prefix + "/bookings/bad.code/send_message", R"({"sender":"driver","text":"x"})"},
  };
  return out;
}

BOOST_AUTO_TEST_CASE(plain_pub_sub_keeps_working_during_hostile_input, *utf::timeout(120)) {
  TestContext ctx(plugin_system());
  const std::string code = booking("noisy");
  auto attacker = ctx.client();
  std::atomic<bool> attacking{true};
  std::atomic<std::size_t> answered{0};
  std::size_t sent = 0;
  std::string attack_failure;
  std::thread attack([&] {
    try {
      for (int round = 0; round < 4; ++round) {
        std::vector<PendingRequest> pending;
        for (const auto& [topic, payload] : bad_requests(code))
          pending.push_back(attacker->send_request(topic, payload));
        sent += pending.size();
        for (const auto& request : pending) {
          const json reply = attacker->await_reply(request, 10s);
          if (is_ok(reply)) throw std::runtime_error("a bad request was accepted: " + request.request_topic);
          ++answered;
        }
      }
    } catch (const std::exception& e) {
      attack_failure = e.what();
    }
    attacking = false;
  });

  // Meanwhile two other clients talk on an unrelated topic, one v5 and one 3.1.1, both ways.
  auto alice = ctx.client();
  ClientOptions bob_options;
  bob_options.version = MqttVersion::v311;
  auto bob = ctx.client(bob_options);
  const std::string base = "plain/" + random_hex(8);
  alice->subscribe(base + "/to-alice");
  bob->subscribe(base + "/to-bob");
  int round_trips = 0;
  Millis slowest{0};
  while (attacking || round_trips < 10) {
    const std::string n = std::to_string(round_trips);
    const auto start = std::chrono::steady_clock::now();
    alice->publish(base + "/to-bob", "ping " + n);
    const bool pinged =
        bob->wait_for([&](const Received& m) { return m.topic == base + "/to-bob" && m.payload == "ping " + n; }, 5s)
            .has_value();
    bob->publish(base + "/to-alice", "pong " + n);
    const bool ponged =
        alice
            ->wait_for([&](const Received& m) { return m.topic == base + "/to-alice" && m.payload == "pong " + n; }, 5s)
            .has_value();
    const auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - start);
    BOOST_REQUIRE_MESSAGE(pinged && ponged, "round trip " << n << " lost a message during hostile input");
    slowest = std::max(slowest, took);
    ++round_trips;
  }
  attack.join();
  BOOST_TEST_MESSAGE(round_trips << " round trips during " << sent << " bad requests, slowest " << slowest.count()
                                 << " ms");
  BOOST_CHECK_MESSAGE(attack_failure.empty(), attack_failure);
  BOOST_TEST(sent >= 30u);
  BOOST_TEST(answered.load() == sent);
  BOOST_CHECK_MESSAGE(slowest < 1s, "a plain round trip took " << slowest.count() << " ms during hostile input");
  BOOST_TEST(ctx.system().host_alive());
}

BOOST_AUTO_TEST_CASE(a_flood_past_queue_max_is_answered_unavailable_and_others_are_served, *utf::timeout(120)) {
  // A queue of one and a durable commit per request: many clients publishing at once overrun it.
  SystemOptions options = system_options(Host::plugin);
  options.extra_plugin_conf = {"plugin_opt_queue_max 1", "plugin_opt_batch_max 1", "plugin_opt_sync full"};
  System system(options);
  TestContext ctx(system);
  const std::string code = booking("flood");
  std::vector<std::unique_ptr<TestClient>> flooders;
  for (int i = 0; i < 16; ++i) flooders.push_back(ctx.client());
  std::vector<std::vector<PendingRequest>> pending(flooders.size());
  for (int round = 0; round < 16; ++round) {
    for (std::size_t c = 0; c < flooders.size(); ++c) {
      const json body = {{"sender", "driver"}, {"text", "flood " + std::to_string(round)}};
      pending[c].push_back(flooders[c]->send_request(request_topic(code, "send_message"), body.dump()));
    }
  }
  std::size_t ok = 0;
  std::size_t overloaded = 0;
  for (std::size_t c = 0; c < flooders.size(); ++c) {
    for (const auto& request : pending[c]) {
      const json reply = flooders[c]->await_reply(request, 30s);  // every request is answered
      if (is_ok(reply)) {
        ++ok;
      } else {
        BOOST_TEST(error_code(reply) == "unavailable", reply.dump());
        BOOST_TEST(error_message(reply).find("overloaded") != std::string::npos, reply.dump());
        ++overloaded;
      }
    }
  }
  BOOST_TEST_MESSAGE(ok << " stored, " << overloaded << " refused as overloaded");
  BOOST_TEST(overloaded > 0u);
  BOOST_TEST(ok > 0u);
  // Another client, once the flood is over, is served as usual, and the history holds exactly
  // what was acknowledged.
  auto other = ctx.client();
  const json page = other->request(request_topic(code, "get_message"), {{"limit", 1}});
  BOOST_TEST(is_ok(page), page.dump());
  BOOST_TEST(page.value("last_seq", json()) == json(ok), page.dump());
  // Logged, but in aggregate: at most one `overloaded` line a second with the count, not a line per
  // refused request (a flood must not flood the log as well).
  BOOST_TEST(system.broker().wait_log_contains("event=overloaded refused=", 5s));
  std::ifstream log(system.broker().log_path());
  std::size_t overload_lines = 0;
  std::size_t per_request_lines = 0;
  for (std::string line; std::getline(log, line);) {
    if (line.find("event=overloaded") != std::string::npos) ++overload_lines;
    if (line.find("event=request") != std::string::npos && line.find("error=unavailable") != std::string::npos) {
      ++per_request_lines;
    }
  }
  BOOST_TEST(overload_lines >= 1u);
  BOOST_TEST(overload_lines < overloaded);
  BOOST_TEST(per_request_lines == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

// --- memory check ------------------------------------------------------------------------------------

namespace {

// One valgrind report: the lines between two blank `==pid==` lines.
struct ValgrindBlock {
  std::string headline;
  std::string text;
};

std::vector<ValgrindBlock> valgrind_blocks(const std::string& log) {
  std::vector<ValgrindBlock> blocks;
  ValgrindBlock current;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    // "==1234== text": strip the pid prefix; a line with nothing after it ends a block.
    std::string body = line;
    if (line.rfind("==", 0) == 0) {
      const auto end = line.find("==", 2);
      body = end == std::string::npos ? std::string() : line.substr(end + 2);
    }
    if (body.find_first_not_of(' ') == std::string::npos) {
      if (!current.text.empty()) blocks.push_back(current);
      current = {};
      continue;
    }
    body.erase(0, body.find_first_not_of(' '));
    if (current.text.empty()) current.headline = body;
    current.text += body + "\n";
  }
  if (!current.text.empty()) blocks.push_back(current);
  return blocks;
}

bool is_memory_error(const ValgrindBlock& block) {
  const std::string& h = block.headline;
  return h.rfind("Invalid ", 0) == 0 || h.rfind("Mismatched ", 0) == 0 ||
         h.find("uninitialised") != std::string::npos || h.find("overlap") != std::string::npos ||
         h.find("definitely lost") != std::string::npos;
}

bool mentions_navietakie(const ValgrindBlock& block) { return block.text.find("navietakie") != std::string::npos; }

// The broker of `options` runs under valgrind, its report in `valgrind_log`.
SystemOptions under_valgrind(SystemOptions options, const std::string& valgrind_log) {
  const std::string valgrind = find_executable("valgrind");
  BOOST_REQUIRE_MESSAGE(::access(valgrind.c_str(), X_OK) == 0,
                        "valgrind not found (scripts/lib/deps.sh installs it: apt-get install valgrind)");
  options.broker_launch.wrapper = {valgrind,
                                   "--error-exitcode=99",
                                   "--leak-check=full",
                                   "--errors-for-leak-kinds=definite",
                                   "--show-leak-kinds=definite",
                                   "--num-callers=40",
                                   "--log-file=" + valgrind_log};
  // valgrind runs mosquitto some 20-50 times slower.
  options.broker_launch.start_timeout = 60s;
  options.broker_launch.stop_timeout = 120s;
  options.ready_timeout = 60s;
  return options;
}

// Stops the broker (SIGTERM: mosquitto shuts down, unloads the plugin, valgrind checks for leaks)
// and fails the test for every memory error or definite leak in navietakie's code.
void check_valgrind_verdict(System& system, const std::string& valgrind_log) {
  system.broker().stop();
  const std::optional<int> exit_code = system.broker().exit_code();
  const std::string log = read_file(valgrind_log);
  BOOST_REQUIRE_MESSAGE(exit_code.has_value(), "valgrind did not exit");
  BOOST_REQUIRE_MESSAGE(log.find("ERROR SUMMARY") != std::string::npos, "valgrind did not finish its report (exit code "
                                                                            << *exit_code << "):\n"
                                                                            << log);

  std::vector<std::string> ours;
  std::vector<std::string> theirs;
  for (const auto& block : valgrind_blocks(log)) {
    if (!is_memory_error(block)) continue;
    (mentions_navietakie(block) ? ours : theirs).push_back(block.text);
  }
  for (const auto& report : ours) BOOST_ERROR("valgrind, in navietakie:\n" << report);
  if (!theirs.empty()) {
    BOOST_TEST_MESSAGE(theirs.size() << " valgrind report(s) outside navietakie (ignored), first:\n" << theirs.front());
  }
  // 99: valgrind found errors; acceptable only when every one of them is outside navietakie.
  BOOST_CHECK_MESSAGE(*exit_code != 99 || (ours.empty() && !theirs.empty()),
                      "valgrind exit code 99 but no report was parsed:\n"
                          << log);
  BOOST_CHECK_MESSAGE(*exit_code == 0 || *exit_code == 99, "mosquitto under valgrind exited with " << *exit_code);
  if (!ours.empty() || (*exit_code != 0 && *exit_code != 99)) std::cerr << "--- valgrind log ---\n" << log << std::endl;
}

}  // namespace

// The report parser the memory check relies on, on a made-up log.
BOOST_AUTO_TEST_CASE(valgrind_reports_are_split_and_attributed, *utf::timeout(10)) {
  const std::string log =
      "==77== Memcheck, a memory error detector\n"
      "==77== \n"
      "==77== Invalid read of size 8\n"
      "==77==    at 0x4A: navietakie::Engine::handle(std::vector<navietakie::Request> const&) (engine.cpp:10)\n"
      "==77==    by 0x4B: ??? (in /build/plugin/mosquitto_navietakie.so)\n"
      "==77== \n"
      "==77== 16 bytes in 1 blocks are definitely lost in loss record 1 of 2\n"
      "==77==    at 0x4C: malloc (vg_replace_malloc.c:381)\n"
      "==77==    by 0x4D: config__read (in /usr/sbin/mosquitto)\n"
      "==77==\n"
      "==77== HEAP SUMMARY:\n"
      "==77==     in use at exit: 0 bytes in 0 blocks\n";
  const auto blocks = valgrind_blocks(log);
  std::vector<const ValgrindBlock*> errors;
  for (const auto& block : blocks) {
    if (is_memory_error(block)) errors.push_back(&block);
  }
  BOOST_REQUIRE_EQUAL(errors.size(), 2u);
  BOOST_TEST(errors[0]->headline == "Invalid read of size 8");
  BOOST_TEST(mentions_navietakie(*errors[0]));
  BOOST_TEST(errors[1]->headline == "16 bytes in 1 blocks are definitely lost in loss record 1 of 2");
  BOOST_TEST(!mentions_navietakie(*errors[1]));
}

BOOST_AUTO_TEST_SUITE(plugin_valgrind, *utf::disabled())

BOOST_AUTO_TEST_CASE(no_memory_errors_or_definite_leaks_in_the_plugin, *utf::timeout(540)) {
  TempDir valgrind_dir("nt-valgrind");
  const std::string valgrind_log = valgrind_dir.file("valgrind.log");
  System system(under_valgrind(system_options(Host::plugin, 2), valgrind_log));
  {
    TestContext ctx(system);
    auto client = ctx.client();
    const std::string code = booking("valgrind");
    client->subscribe(events_filter(code));
    auto slow = [&](const std::string& action, const json& body) {
      return client->request(request_topic(code, action), body, 20s);
    };
    json first = text_message("driver", "under valgrind");
    first["message_id"] = "vg-1";
    NT_CHECK_OK(slow("send_message", first));
    NT_CHECK_OK(slow("send_message", text_message("passenger", "second")));
    const json dup = slow("send_message", first);
    BOOST_TEST(dup.value("duplicate", json()) == json(true));
    NT_CHECK_OK(slow("get_message", {{"limit", 10}}));
    NT_CHECK_OK(slow("get_message", {{"after_seq", 0}, {"types", {"text"}}, {"sender", "driver"}}));
    const json started = slow("make_call", call_request("start", "driver"));
    NT_CHECK_OK(started);
    const std::string call_id = started["call"].value("call_id", "");
    NT_CHECK_OK(slow("make_call", call_request("accept", "passenger", call_id)));
    NT_CHECK_OK(slow("make_call", call_request("end", "passenger", call_id)));
    // A call nobody answers: the ring timer fires inside the broker.
    const json ringing = slow("make_call", call_request("start", "passenger"));
    NT_CHECK_OK(ringing);
    BOOST_CHECK_MESSAGE(client->wait_for(on_topic_json(event_topic(code, "call"),
                                                       [&](const json& e) {
                                                         return e.value("call_id", "") ==
                                                                    ringing["call"].value("call_id", "") &&
                                                                e.value("end_reason", json()) == json("missed");
                                                       }),
                                         20s),
                        "the unanswered call did not end missed");
    NT_CHECK_OK(slow("presence", {{"role", "driver"}, {"online", true}, {"client_id", "vg-phone"}}));
    {
      auto device = ctx.client();  // keyed by its MQTT client id, then gone without a Will
      NT_CHECK_OK(device->request(request_topic(code, "presence"), json{{"role", "passenger"}, {"online", true}}, 20s));
      device->disconnect();
    }
    ClientOptions old_options;
    old_options.version = MqttVersion::v311;
    auto old = ctx.client(old_options);
    NT_CHECK_OK(old->request_v311(request_topic(code, "get_message"), json::object(), 20s));
    // Bad requests: each refused path once.
    NT_CHECK_ERROR(client->request_raw(request_topic(code, "send_message"), "not json", 20s), "invalid_json");
    NT_CHECK_ERROR(client->request_raw(request_topic(code, "send_message"), std::string(70 * 1024, 'x'), 20s),
                   "payload_too_large");
    NT_CHECK_ERROR(slow("send_message", json{{"text", "no sender"}}), "invalid_request");
    NT_CHECK_ERROR(client->request(topic_prefix + "/bookings/bad.code/send_message", text_message("driver", "x"), 20s),
                   "invalid_booking_code");
    NT_CHECK_ERROR(slow("make_call", call_request("accept", "passenger", "nope")), "not_found");
    client->subscribe(errors_topic(code));
    client->publish(request_topic(code, "send_message"), R"({"sender":"driver","text":"x","reply_to":"a/+/b"})");
    BOOST_CHECK(client->wait_for(on_topic(errors_topic(code)), 20s).has_value());
  }
  check_valgrind_verdict(system, valgrind_log);
}

// The authentication paths: BASIC_AUTH (accepted and refused tokens), ACL checks (granted and
// denied), identities on requests; on the bridge host the auth-only plugin's stamping of request
// properties and of Wills.
BOOST_DATA_TEST_CASE(no_memory_errors_or_definite_leaks_with_authentication, bdata::make(contract_hosts()), host) {
  TempDir valgrind_dir("nt-valgrind");
  const std::string valgrind_log = valgrind_dir.file("valgrind.log");
  SystemOptions options = under_valgrind(system_options(host), valgrind_log);
  options.secure = true;
  System system(options);
  {
    TestContext ctx(system);
    const std::string code = booking("valgrind");
    const navietakie::Identity driver{navietakie::Principal::driver, "drv-vg", code};
    auto drv = ctx.client(system.as(driver));
    BOOST_TEST(drv->subscribe_reason(events_filter(code)) < 0x80);
    BOOST_TEST(drv->subscribe_reason(topic_prefix + "/bookings/+/events/#") >= 0x80);
    NT_CHECK_OK(drv->request(request_topic(code, "send_message"), text_message("driver", "authenticated"), 20s));
    NT_CHECK_ERROR(drv->request(request_topic(code, "send_message"), text_message("passenger", "spoof"), 20s),
                   "forbidden");
    BOOST_TEST(drv->publish_reason(request_topic("other", "send_message"), "{}") == 0x87);
    PublishOptions forged;
    forged.user_properties = {{"navietakie-identity", "{}"}, {"other", "kept"}};
    drv->publish_reason(request_topic(code, "get_message"), "{}", forged);
    // Refused at connect: a bad signature, and no token at all.
    for (const std::string& password : {system.token(driver) + "x", std::string()}) {
      ClientOptions bad = system.as(driver);
      bad.password = password;
      BOOST_CHECK_THROW(ctx.client(bad), std::exception);
    }
    // A Will on the presence topic, sent when the connection drops.
    auto abrupt = system.broker().start_abrupt_client(
        "vg-car", Will{request_topic(code, "presence"), json{{"role", "driver"}, {"online", false}}.dump(), 1, false},
        driver.subject, system.token(driver));
    abrupt->kill9();
    BOOST_TEST(system.broker().wait_log_contains("vg-car", 20s));
    NT_CHECK_OK(drv->request(request_topic(code, "get_message"), json::object(), 20s));
  }
  check_valgrind_verdict(system, valgrind_log);
}

BOOST_AUTO_TEST_SUITE_END()
