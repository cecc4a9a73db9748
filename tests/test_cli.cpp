// The system driven by the real mosquitto command-line tools, as an operator or a shell script
// would: mosquitto_pub / mosquitto_sub (3.1.1 style, reply_to + correlation_id) and mosquitto_rr
// (MQTT v5 request/response); navietakie-ctl's store tools on a live system. Also the self-tests
// of the harness against a plain mosquitto.
#include <lmdb.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <sstream>
#include <thread>

#include "store/keys.hpp"
#include "store/store.hpp"
#include "support/contract.hpp"
#include "store/store.hpp"

using namespace navietakie::test;

namespace {

// --- harness self-tests: a plain broker, no host ---------------------------------------------------

BOOST_AUTO_TEST_SUITE(harness)

BOOST_AUTO_TEST_CASE(free_port_is_bindable_and_temp_dir_cleans_up, *boost::unit_test::timeout(30)) {
  const int port = free_port();
  BOOST_TEST(port > 0);
  BOOST_TEST(port < 65536);
  std::string path;
  {
    TempDir dir("nt-harness");
    path = dir.path();
    std::filesystem::create_directories(dir.file("a/b/c"));
    write_file(dir.file("a/b/c/file.txt"), "content");
    BOOST_TEST(std::filesystem::exists(dir.file("a/b/c/file.txt")));
  }
  BOOST_TEST(!std::filesystem::exists(path));
}

BOOST_AUTO_TEST_CASE(process_stop_and_kill_are_bounded, *boost::unit_test::timeout(60)) {
  TempDir dir("nt-harness");
  {
    // Exits by itself: the exit code is kept.
    Process child({"sh", "-c", "echo out; echo err 1>&2; exit 3"}, {dir.file("exit.log"), "", 5s});
    BOOST_TEST(child.wait_exit(5s).value_or(-1) == 3);
    BOOST_TEST(!child.alive());
    const std::string log = read_file(dir.file("exit.log"));
    BOOST_TEST(log.find("out") != std::string::npos);
    BOOST_TEST(log.find("err") != std::string::npos);
  }
  {
    // SIGTERM ends a plain sleeper at once.
    Process child({"sleep", "30"}, {dir.file("term.log"), "", 5s});
    BOOST_TEST(child.alive());
    const auto start = std::chrono::steady_clock::now();
    child.stop();
    BOOST_TEST(!child.alive());
    BOOST_TEST(child.exit_code().value_or(-1) == 128 + SIGTERM);
    BOOST_TEST(((std::chrono::steady_clock::now() - start) < 2s));
  }
  {
    // A child that ignores SIGTERM is killed after the stop timeout.
    Process child({"sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"}, {dir.file("ignore.log"), "", 500ms});
    std::this_thread::sleep_for(100ms);  // let the shell install its trap
    const auto start = std::chrono::steady_clock::now();
    child.stop();
    const auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(!child.alive());
    BOOST_TEST(child.exit_code().value_or(-1) == 128 + SIGKILL);
    BOOST_TEST((took >= 400ms));
    BOOST_TEST((took < 3s));
  }
  {
    Process child({"sleep", "30"}, {dir.file("kill.log"), "", 5s});
    child.kill9();
    BOOST_TEST(child.exit_code().value_or(-1) == 128 + SIGKILL);
  }
  BOOST_CHECK_THROW(Process({"/nonexistent/program"}, {dir.file("none.log"), "", 1s}), std::system_error);
}

// The simulator's verdict is not a rubber stamp: against a broker with no navietakie behind it,
// nothing is answered, and it says so with exit code 1.
BOOST_AUTO_TEST_CASE(navietakie_sim_fails_when_nothing_answers, *boost::unit_test::timeout(60)) {
  TempDir dir("nt-harness");
  Broker broker(dir);
  broker.start();
  Process sim({NAVIETAKIE_SIM_BIN, "--url", broker.uri(), "--bookings", "2", "--rate", "5", "--duration", "2",
               "--reply-timeout", "2", "--json", "--quiet"},
              {dir.file("sim.out"), dir.file("sim.err"), 5s});
  BOOST_TEST(sim.wait_exit(40s).value_or(-1) == 1);
  const std::string out = read_file(dir.file("sim.out"));
  BOOST_TEST(out.find("\"ok\":false") != std::string::npos, out);
}

BOOST_AUTO_TEST_CASE(broker_pub_sub_round_trip_v5_and_v311, *boost::unit_test::timeout(60)) {
  TempDir dir("nt-harness");
  Broker broker(dir);
  broker.start();
  BOOST_TEST(broker.running());

  TestClient subscriber(broker.uri());
  subscriber.subscribe("harness/#");
  TestClient publisher(broker.uri(), ClientOptions{MqttVersion::v311, "", std::nullopt, "navietakie/v1", 5s});
  publisher.publish("harness/plain", R"({"n":1})");
  auto plain = subscriber.wait_for(on_topic("harness/plain"), 5s);
  BOOST_REQUIRE(plain);
  BOOST_TEST(plain->body()["n"] == 1);
  BOOST_TEST(plain->qos == 1);
  BOOST_TEST(!plain->retained);

  // v5 properties survive the broker; a retained message reaches a late subscriber flagged retained.
  PublishOptions with_properties;
  with_properties.response_topic = "harness/reply";
  with_properties.correlation_data = std::string("\x00\x01\xff", 3);
  subscriber.publish("harness/props", "p", with_properties);
  auto props = subscriber.wait_for(on_topic("harness/props"), 5s);
  BOOST_REQUIRE(props);
  BOOST_TEST(props->response_topic.value_or("") == "harness/reply");
  BOOST_TEST(props->correlation_data.value_or("") == std::string("\x00\x01\xff", 3));

  PublishOptions retained;
  retained.retain = true;
  publisher.publish("harness/retained", "kept", retained);
  TestClient late(broker.uri());
  late.subscribe("harness/retained");
  auto kept = late.wait_for(on_topic("harness/retained"), 5s);
  BOOST_REQUIRE(kept);
  BOOST_TEST(kept->retained);
  BOOST_TEST(kept->payload == "kept");

  // A Will is dropped on a normal disconnect.
  {
    TestClient polite(broker.uri(), ClientOptions{MqttVersion::v5, "", Will{"harness/will", "polite", 1, false},
                                                  "navietakie/v1", 5s});
    polite.disconnect();
  }
  subscriber.publish("harness/fence", "f");
  BOOST_REQUIRE(subscriber.wait_for(on_topic("harness/fence"), 5s));
  BOOST_TEST(subscriber.count(on_topic("harness/will")) == 0u);
  // ... and published when a client dies without DISCONNECT.
  auto abrupt = broker.start_abrupt_client("nt-abrupt-" + random_hex(6), Will{"harness/will", "dropped", 1, false});
  abrupt->kill9();
  auto will = subscriber.wait_for(on_topic("harness/will"), 5s);
  BOOST_REQUIRE(will);
  BOOST_TEST(will->payload == "dropped");

  // The broker restarts on the same port.
  broker.restart();
  BOOST_TEST(broker.running());
  TestClient after(broker.uri());
  after.subscribe("harness/again");
  after.publish("harness/again", "x");
  BOOST_TEST(after.wait_for(on_topic("harness/again"), 5s).has_value());
}

BOOST_AUTO_TEST_CASE(request_without_responder_times_out_bounded, *boost::unit_test::timeout(30)) {
  TempDir dir("nt-harness");
  Broker broker(dir);
  broker.start();
  TestClient client(broker.uri());
  const auto start = std::chrono::steady_clock::now();
  BOOST_CHECK_THROW(client.request("harness/nobody/home", json{{"a", 1}}, 300ms), std::runtime_error);
  BOOST_TEST(((std::chrono::steady_clock::now() - start) < 2s));

  // A responder thread answering v5 and 3.1.1 style requests, to test the request helpers.
  TestClient responder(broker.uri());
  responder.subscribe("harness/echo");
  std::atomic<bool> done{false};
  std::thread echo([&] {
    std::size_t answered = 0;
    while (!done) {
      auto requests = responder.wait_for_count(on_topic("harness/echo"), answered + 1, 100ms);
      for (std::size_t i = answered; i < requests.size(); ++i) {
        const Received& request = requests[i];
        json body = request.body();
        PublishOptions options;
        if (request.response_topic) {
          options.correlation_data = request.correlation_data;
          responder.publish(*request.response_topic, json{{"ok", true}, {"echo", body}}.dump(), options);
        } else {
          responder.publish(body["reply_to"].get<std::string>(),
                            json{{"ok", true}, {"correlation_id", body["correlation_id"]}}.dump(), options);
        }
      }
      answered = requests.size();
    }
  });
  const json v5 = client.request("harness/echo", json{{"x", 1}});
  BOOST_TEST(v5["echo"]["x"] == 1);
  TestClient old(broker.uri(), ClientOptions{MqttVersion::v311, "", std::nullopt, "navietakie/v1", 5s});
  const json v311 = old.request_v311("harness/echo", json{{"y", 2}});
  BOOST_TEST(is_ok(v311));
  done = true;
  echo.join();
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace

// --- the system driven by the mosquitto command-line tools -----------------------------------------

namespace {

System& cli_system(Host host) { return shared_system("cli", system_options(host)); }

struct CliResult {
  std::optional<int> exit_code;  // nullopt: it did not exit in time (and was killed)
  std::string out;
  std::string err;
};

// Runs a command-line tool to completion (bounded), stdout and stderr captured to files in `dir`.
CliResult run_tool(const TempDir& dir, std::vector<std::string> argv, Millis timeout = 15s) {
  static int runs = 0;
  const std::string base = dir.file("cli-" + std::to_string(++runs));
  Process process(std::move(argv), ProcessOptions{base + ".out", base + ".err", 2s});
  CliResult result;
  result.exit_code = process.wait_exit(timeout);
  if (!result.exit_code) process.kill9();
  result.out = read_file(base + ".out");
  result.err = read_file(base + ".err");
  return result;
}

// A mosquitto CLI tool (or the ctl) against a running system.
CliResult run_cli(System& system, std::vector<std::string> argv, Millis timeout = 15s) {
  return run_tool(system.dir(), std::move(argv), timeout);
}

// A started mosquitto_sub, subscribed (the broker logged its SUBSCRIBE) when this returns.
std::unique_ptr<Process> start_sub(System& system, const std::string& client_id, std::vector<std::string> args,
                                   const std::string& out_path) {
  std::vector<std::string> argv{"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(system.broker().port()), "-i",
                                client_id};
  argv.insert(argv.end(), args.begin(), args.end());
  auto process = std::make_unique<Process>(std::move(argv), ProcessOptions{out_path, out_path + ".err", 2s});
  if (!system.broker().wait_log_contains("Received SUBSCRIBE from " + client_id, 5s)) {
    throw std::runtime_error("mosquitto_sub " + client_id + " did not subscribe:\n" + process->describe());
  }
  return process;
}

std::vector<std::string> rr_args(System& system, const std::string& client_id, const std::string& request_topic_name,
                                 const std::string& response_topic, const json& body) {
  return {"mosquitto_rr",
          "-V",
          "5",
          "-h",
          "127.0.0.1",
          "-p",
          std::to_string(system.broker().port()),
          "-i",
          client_id,
          "-t",
          request_topic_name,
          "-e",
          response_topic,
          "-q",
          "1",
          "-m",
          body.dump(),
          "-W",
          "10"};
}

// The JSON a CLI tool printed (one payload, trailing newline).
json printed_json(const CliResult& result) {
  const json parsed = json::parse(result.out, nullptr, false);
  if (parsed.is_discarded()) {
    throw std::runtime_error("not JSON on stdout: '" + result.out + "' (stderr: '" + result.err + "')");
  }
  return parsed;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cli)

NT_HOST_TEST(mosquitto_pub_with_reply_to_gets_its_reply_on_mosquitto_sub, 60) {
  TestContext ctx(cli_system(host));
  System& system = ctx.system();
  const std::string code = booking("clipub");
  const std::string sub_id = "cli-sub-" + random_hex(6);
  const std::string reply_topic = topic_prefix + "/replies/" + sub_id + "/1";
  const std::string out = system.dir().file(sub_id + ".out");
  auto sub = start_sub(system, sub_id, {"-V", "mqttv311", "-t", reply_topic, "-C", "1", "-W", "10"}, out);

  const json body{
      {"sender", "driver"}, {"text", "from mosquitto_pub"}, {"reply_to", reply_topic}, {"correlation_id", "cli-1"}};
  const CliResult pub =
      run_cli(system, {"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(system.broker().port()), "-V",
                       "mqttv311", "-q", "1", "-t", request_topic(code, "send_message"), "-m", body.dump()});
  BOOST_REQUIRE_MESSAGE(pub.exit_code == 0, "mosquitto_pub failed: " << pub.err);

  BOOST_REQUIRE_MESSAGE(sub->wait_exit(15s) == 0, "mosquitto_sub got no reply:\n" << sub->describe());
  const json reply = json::parse(read_file(out));
  NT_REQUIRE_OK(reply);
  BOOST_TEST(reply.value("correlation_id", "") == "cli-1");
  BOOST_TEST(reply["message"].value("seq", -1) == 1);
  BOOST_TEST(reply["message"].value("text", "") == "from mosquitto_pub");
}

NT_HOST_TEST(mosquitto_rr_get_message_and_call_flow, 90) {
  TestContext ctx(cli_system(host));
  System& system = ctx.system();
  const std::string code = booking("clirr");
  const std::string rr_id = "cli-rr-" + random_hex(6);
  int n = 0;
  auto rr = [&](const std::string& action, const json& body) {
    const std::string response_topic = topic_prefix + "/replies/" + rr_id + "/" + std::to_string(++n);
    const CliResult result = run_cli(system, rr_args(system, rr_id, request_topic(code, action), response_topic, body));
    BOOST_REQUIRE_MESSAGE(result.exit_code == 0, "mosquitto_rr " << action << " failed (exit "
                                                                 << result.exit_code.value_or(-1)
                                                                 << "): " << result.err);
    return printed_json(result);
  };

  const json sent = rr("send_message", text_message("passenger", "via mosquitto_rr"));
  NT_REQUIRE_OK(sent);
  const json page = rr("get_message", {{"limit", 10}});
  NT_REQUIRE_OK(page);
  BOOST_TEST(page_seqs(page) == std::vector<std::int64_t>{1}, boost::test_tools::per_element());
  BOOST_TEST(page["messages"][0] == sent["message"]);
  BOOST_TEST(page.value("last_seq", -1) == 1);

  const json started = rr("make_call", call_request("start", "driver"));
  NT_REQUIRE_OK(started);
  const std::string call_id = started["call"].value("call_id", "");
  BOOST_TEST(started["call"].value("state", "") == "ringing");
  const json accepted = rr("make_call", call_request("accept", "passenger", call_id));
  NT_REQUIRE_OK(accepted);
  BOOST_TEST(accepted["call"].value("state", "") == "connected");
  std::this_thread::sleep_for(20ms);
  const json ended = rr("make_call", call_request("end", "driver", call_id));
  NT_REQUIRE_OK(ended);
  BOOST_TEST(ended["call"].value("state", "") == "ended");
  BOOST_TEST(ended["call"].value("end_reason", "") == "completed");
  BOOST_TEST(ended["call"].value("duration_ms", std::int64_t{0}) > 0);

  const json bad = rr("make_call", call_request("accept", "passenger", "no-such-call"));
  NT_CHECK_ERROR(bad, "not_found");
}

NT_HOST_TEST(mosquitto_pub_v5_properties_are_honoured, 60) {
  TestContext ctx(cli_system(host));
  System& system = ctx.system();
  const std::string code = booking("cliv5");
  const std::string sub_id = "cli-sub5-" + random_hex(6);
  const std::string reply_topic = topic_prefix + "/replies/" + sub_id + "/1";
  const std::string out = system.dir().file(sub_id + ".out");
  auto sub = start_sub(system, sub_id, {"-V", "mqttv5", "-t", reply_topic, "-C", "1", "-W", "10", "-F", "%D|%p"}, out);

  const CliResult pub = run_cli(system, {"mosquitto_pub",
                                         "-h",
                                         "127.0.0.1",
                                         "-p",
                                         std::to_string(system.broker().port()),
                                         "-V",
                                         "mqttv5",
                                         "-q",
                                         "1",
                                         "-t",
                                         request_topic(code, "presence"),
                                         "-D",
                                         "publish",
                                         "response-topic",
                                         reply_topic,
                                         "-D",
                                         "publish",
                                         "correlation-data",
                                         "cli-corr-5",
                                         "-m",
                                         R"({"role":"driver","online":true})"});
  BOOST_REQUIRE_MESSAGE(pub.exit_code == 0, "mosquitto_pub failed: " << pub.err);
  BOOST_REQUIRE_MESSAGE(sub->wait_exit(15s) == 0, "mosquitto_sub got no reply:\n" << sub->describe());
  const std::string printed = read_file(out);
  const auto bar = printed.find('|');
  BOOST_REQUIRE_MESSAGE(bar != std::string::npos, "unexpected output: " << printed);
  BOOST_TEST(printed.substr(0, bar) == "cli-corr-5");
  const json reply = json::parse(printed.substr(bar + 1));
  NT_REQUIRE_OK(reply);
  BOOST_TEST(reply["presence"]["driver"].value("online", json()) == json(true));

  // And the retained presence, as mosquitto_sub sees it.
  auto read_retained = [&] {
    const CliResult retained =
        run_cli(system, {"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(system.broker().port()), "-t",
                         event_topic(code, "presence"), "-C", "1", "-W", "10", "-F", "%r %p"});
    BOOST_REQUIRE_MESSAGE(retained.exit_code == 0, "no retained presence: " << retained.err);
    BOOST_REQUIRE_MESSAGE(retained.out.substr(0, 2) == "1 ", "not retained: " << retained.out);
    return json::parse(retained.out.substr(2));
  };
  if (host == Host::bridge) {
    BOOST_TEST(read_retained() == reply["presence"]);
    return;
  }
  // The plugin keyed the connection by mosquitto_pub's MQTT client id (no client_id in the payload),
  // so mosquitto_pub's DISCONNECT took the driver offline again.
  json presence = read_retained();
  for (int tries = 0; tries < 20 && presence["driver"].value("online", json()) != json(false); ++tries) {
    std::this_thread::sleep_for(100ms);
    presence = read_retained();
  }
  BOOST_CHECK_MESSAGE(presence["driver"].value("online", json()) == json(false),
                      "the driver is still online after mosquitto_pub disconnected: " << presence.dump());
  BOOST_TEST(presence["driver"].value("since", std::int64_t{0}) >=
             reply["presence"]["driver"].value("since", std::int64_t{0}));
}

NT_HOST_TEST(mosquitto_pub_without_reply_address_reports_on_errors_topic, 60) {
  TestContext ctx(cli_system(host));
  System& system = ctx.system();
  const std::string code = booking("clierr");
  const std::string sub_id = "cli-errsub-" + random_hex(6);
  const std::string out = system.dir().file(sub_id + ".out");
  auto sub = start_sub(system, sub_id, {"-t", errors_topic(code), "-C", "1", "-W", "10"}, out);

  const CliResult pub =
      run_cli(system, {"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(system.broker().port()), "-q", "1",
                       "-t", request_topic(code, "send_message"), "-m", "this is not json"});
  BOOST_REQUIRE_MESSAGE(pub.exit_code == 0, "mosquitto_pub failed: " << pub.err);
  BOOST_REQUIRE_MESSAGE(sub->wait_exit(15s) == 0, "nothing on the errors topic:\n" << sub->describe());
  const json error = json::parse(read_file(out));
  NT_CHECK_ERROR(error, "invalid_json");
  BOOST_TEST(error.value("request_topic", "") == request_topic(code, "send_message"));
}

// An operator with authentication on: navietakie-ctl mints and checks tokens, mosquitto_rr uses them.
NT_HOST_TEST(navietakie_ctl_tokens_work_with_mosquitto_rr, 90) {
  SystemOptions options = system_options(host);
  options.secure = true;
  TestContext ctx(shared_system("cli", options));
  System& system = ctx.system();
  const std::string ctl = NAVIETAKIE_CTL_BIN;
  const std::string code = booking("clitok");

  const CliResult secret = run_cli(system, {ctl, "secret"});
  BOOST_TEST(secret.exit_code.value_or(-1) == 0);
  BOOST_TEST(secret.out.size() == 65u);  // 64 hex characters and a newline

  const CliResult minted = run_cli(system, {ctl, "token", "--secret-file", system.secret_path(), "--sub", "drv-cli",
                                            "--role", "driver", "--booking", code, "--ttl", "600"});
  BOOST_REQUIRE_MESSAGE(minted.exit_code == 0, minted.err);
  const std::string token = minted.out.substr(0, minted.out.find('\n'));
  const CliResult verified = run_cli(system, {ctl, "verify", "--secret-file", system.secret_path(), token});
  BOOST_TEST(verified.exit_code.value_or(-1) == 0);
  BOOST_TEST(printed_json(verified) == (json{{"sub", "drv-cli"}, {"role", "driver"}, {"booking", code}}));
  const CliResult tampered = run_cli(system, {ctl, "verify", "--secret-file", system.secret_path(), token + "x"});
  BOOST_TEST(tampered.exit_code.value_or(-1) == 1);
  BOOST_TEST(tampered.err.find("bad_signature") != std::string::npos, tampered.err);
  const CliResult bad_role = run_cli(system, {ctl, "token", "--secret-file", system.secret_path(), "--sub", "x",
                                              "--role", "admin", "--booking", code});
  BOOST_TEST(bad_role.exit_code.value_or(-1) == 2);
  BOOST_TEST(bad_role.out.empty());

  const std::string rr_id = "drv-cli-phone";
  std::vector<std::string> argv =
      rr_args(system, rr_id, request_topic(code, "send_message"), topic_prefix + "/replies/" + rr_id + "/1",
              text_message("driver", "with a token"));
  argv.insert(argv.end(), {"-u", "drv-cli", "-P", token});
  const CliResult rr = run_cli(system, argv);
  BOOST_REQUIRE_MESSAGE(rr.exit_code == 0, "mosquitto_rr failed: " << rr.err);
  const json reply = printed_json(rr);
  NT_REQUIRE_OK(reply);
  BOOST_TEST(reply["message"].value("sender_id", "") == "drv-cli");
  // Without the token, mosquitto_rr cannot even connect.
  const CliResult anonymous =
      run_cli(system, rr_args(system, "anon-cli", request_topic(code, "send_message"),
                              topic_prefix + "/replies/anon-cli/1", text_message("driver", "x")));
  BOOST_TEST(anonymous.exit_code.value_or(0) != 0);
  const bool said_why = anonymous.err.find("ot authori") != std::string::npos;
  BOOST_TEST(said_why, anonymous.err);
}

// navietakie-sim, the simulator and load generator: a short verified run with chat, history and
// calls of every outcome passes (exit 0, "ok":true, no violations) against each host.
NT_HOST_TEST(navietakie_sim_verifies_a_short_run, 120) {
  SystemOptions options = system_options(host, 2);  // short ring timeout: missed calls end quickly
  TestContext ctx(shared_system("cli-sim", options));
  System& system = ctx.system();
  const CliResult run =
      run_cli(system,
              {NAVIETAKIE_SIM_BIN, "--url", system.broker_uri(), "--bookings", "4", "--rate", "10", "--duration", "6",
               "--calls", "20", "--ring-timeout", "2", "--history-every", "1", "--json", "--quiet"},
              90s);
  BOOST_TEST(run.exit_code.value_or(-1) == 0, run.err);
  const json summary = printed_json(run);
  BOOST_TEST(summary.value("ok", false));
  BOOST_TEST(summary.value("violations", json::object()).empty(), summary.dump());
  BOOST_TEST(summary.value("confirmed", 0) > 100);
  BOOST_TEST(summary.value("confirmed", 0) == summary.value("sent", -1));
  BOOST_TEST(summary["calls"].value("started", 0) > 0);
}

#ifdef NAVIETAKIE_BENCH_RR_BIN
// bench_rr --event-confirmed (scripts/bench's plugin_event_confirmed): send_message without a reply
// address, each confirmed by its events/message; a refused request, which only the booking's
// errors topic reports, fails at once instead of hanging the run.
NT_HOST_TEST(bench_rr_event_confirmed_counts_events_and_refusals, 120) {
  TestContext ctx(cli_system(host));
  System& system = ctx.system();
  const CliResult confirmed = run_cli(system,
                                      {NAVIETAKIE_BENCH_RR_BIN, "--url", system.broker_uri(), "--count", "200",
                                       "--window", "8", "--booking", booking("rrevent"), "--event-confirmed"},
                                      60s);
  BOOST_TEST(confirmed.exit_code.value_or(-1) == 0, confirmed.err);
  const json counted = printed_json(confirmed);
  BOOST_TEST(counted.value("replies", 0) == 200, counted.dump());
  BOOST_TEST(counted.value("errors", -1) == 0, counted.dump());

  const CliResult refused =
      run_cli(system,
              {NAVIETAKIE_BENCH_RR_BIN, "--url", system.broker_uri(), "--count", "20", "--window", "4", "--booking",
               booking("rrrefused"), "--event-confirmed", "--payload", R"({"sender":"nobody","text":"x"})"},
              60s);
  BOOST_TEST(refused.exit_code.value_or(-1) == 1, refused.err);
  const json failed = printed_json(refused);
  BOOST_TEST(failed.value("replies", -1) == 0, failed.dump());
  BOOST_TEST(failed.value("errors", 0) == 20, failed.dump());
  BOOST_TEST(failed.value("timeouts", -1) == 0, failed.dump());  // each one ended by its refusal
  BOOST_TEST(refused.err.find("invalid_request") != std::string::npos, refused.err);
}
#endif

BOOST_AUTO_TEST_SUITE_END()

// navietakie-ctl close / purge against a stopped LMDB store: close as the `close` request does
// (twice: the first close), purge deletes every key of the booking, and both refuse a store that
// another process has open.
BOOST_AUTO_TEST_CASE(navietakie_ctl_close_and_purge_a_stopped_store, *boost::unit_test::timeout(60)) {
  namespace nt = navietakie;
  TempDir dir("nt-ctl-close");
  const std::string data = dir.file("data");
  const std::string ctl = NAVIETAKIE_CTL_BIN;
  const auto run = [&](std::vector<std::string> argv) { return run_tool(dir, std::move(argv), 20s); };
  const auto open = [&] {
    nt::LmdbOptions options;
    options.dir = data;
    options.map_size_bytes = std::size_t{64} << 20;
    return nt::open_lmdb_store(options);
  };
  {
    auto store = open();
    store->write([](nt::StoreWriter& w) {
      for (std::uint64_t seq = 1; seq <= 3; ++seq) {
        nt::Message m;
        m.booking_code = "BK1";
        m.seq = seq;
        m.message_id = "m-" + std::to_string(seq);
        m.text = "hello";
        m.ts = 1000;
        w.append_message(m);
      }
    });
    // A host has the store open: both commands refuse, and say why.
    for (const char* command : {"close", "purge"}) {
      const CliResult busy = run({ctl, command, "BK1", "--data-dir", data});
      BOOST_TEST(busy.exit_code.value_or(-1) == 1, command);
      BOOST_TEST(busy.err.find("in use by process") != std::string::npos, busy.err);
    }
  }
  const CliResult closed = run({ctl, "close", "BK1", "--data-dir", data, "--reason", "passenger request"});
  BOOST_REQUIRE_MESSAGE(closed.exit_code == 0, closed.err);
  const json state = json::parse(closed.out);
  BOOST_TEST(state.value("state", "") == "closed");
  BOOST_TEST(state.value("reason", "") == "passenger request");
  const CliResult again = run({ctl, "close", "BK1", "--data-dir", data, "--reason", "other"});
  BOOST_REQUIRE_MESSAGE(again.exit_code == 0, again.err);
  BOOST_TEST(json::parse(again.out) == state);
  {
    auto store = open();
    store->read([](const nt::StoreReader& r) {
      BOOST_TEST(r.booking_state("BK1").has_value());
      BOOST_TEST(r.last_seq("BK1") == 3u);
    });
  }
  const CliResult purged = run({ctl, "purge", "BK1", "--data-dir", data});
  BOOST_REQUIRE_MESSAGE(purged.exit_code == 0, purged.err);
  BOOST_TEST(json::parse(purged.out).value("deleted_keys", 0) == 7);  // 3 messages, 3 ids, the state
  {
    auto store = open();
    store->read([](const nt::StoreReader& r) {
      BOOST_TEST(!r.booking_state("BK1").has_value());
      BOOST_TEST(r.last_seq("BK1") == 0u);
      BOOST_TEST(!r.message_by_id("BK1", "m-1").has_value());
    });
  }
  const CliResult bad = run({ctl, "purge", "not a code", "--data-dir", data});
  BOOST_TEST(bad.exit_code.value_or(-1) == 2);
}


// --- navietakie-ctl's store tools: backup, verify, export, stats ---------------------------------

namespace {

// The records of a store, changed behind its back for `verify` to find: the test-only path to a
// broken store (nothing in navietakie writes one).
class RawLmdb {
 public:
  explicit RawLmdb(const std::string& dir) {
    check(mdb_env_create(&env_));
    check(mdb_env_set_maxdbs(env_, 16));
    check(mdb_env_open(env_, dir.c_str(), 0, 0644));
    check(mdb_txn_begin(env_, nullptr, 0, &txn_));
  }
  ~RawLmdb() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
    mdb_env_close(env_);
  }
  RawLmdb(const RawLmdb&) = delete;
  RawLmdb& operator=(const RawLmdb&) = delete;

  void put(const char* db, const std::string& key, const std::string& value) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{value.size(), const_cast<char*>(value.data())};
    check(mdb_put(txn_, dbi(db), &k, &v, 0));
  }
  void del(const char* db, const std::string& key) {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    check(mdb_del(txn_, dbi(db), &k, nullptr));
  }
  void commit() { check(mdb_txn_commit(std::exchange(txn_, nullptr))); }

 private:
  static void check(int rc) {
    if (rc != MDB_SUCCESS) throw std::runtime_error(std::string("lmdb: ") + mdb_strerror(rc));
  }
  MDB_dbi dbi(const char* name) {
    MDB_dbi handle = 0;
    check(mdb_dbi_open(txn_, name, 0, &handle));
    return handle;
  }
  MDB_env* env_ = nullptr;
  MDB_txn* txn_ = nullptr;
};

navietakie::Message stored_text(const std::string& booking, std::uint64_t seq) {
  navietakie::Message message;
  message.booking_code = booking;
  message.seq = seq;
  message.message_id = booking + "-" + std::to_string(seq);
  message.text = "message " + std::to_string(seq);
  message.ts = 1764160000000 + static_cast<std::int64_t>(seq);
  return message;
}

std::vector<json> json_lines(const std::string& text) {
  std::vector<json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  return lines;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ctl_store)

// backup while the plugin host commits messages: a consistent, compacted copy that verifies clean,
// whose booking is a gapless prefix of what was acknowledged; export prints exactly what
// get_message shows; stats counts them.
BOOST_AUTO_TEST_CASE(backup_verify_export_stats_on_a_live_system, *boost::unit_test::timeout(180)) {
#ifndef NAVIETAKIE_PLUGIN_SO
  BOOST_TEST_MESSAGE("skipped: needs the plugin host");
  return;
#else
  TestContext ctx(shared_system("cli-store", system_options(Host::plugin)));
  System& system = ctx.system();
  const std::string ctl = NAVIETAKIE_CTL_BIN;
  const std::string code = booking("ctlstore");
  auto client = ctx.client();

  // A writer that keeps the store busy: one acknowledged message after another until told to stop.
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> acknowledged{0};
  std::thread writer([&] {
    try {
      for (int i = 1; i <= 5000 && !stop; ++i) {
        const json reply = client->request(request_topic(code, "send_message"),
                                           json{{"sender", "driver"}, {"text", "live " + std::to_string(i)}}, 10s);
        if (!is_ok(reply)) break;
        acknowledged = reply["message"]["seq"].get<std::uint64_t>();
      }
    } catch (const std::exception& error) {  // a reply that never came: the counts below fail
      BOOST_TEST_MESSAGE("writer stopped: " << error.what());
    }
  });
  struct Join {  // on every way out of the test
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Join() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } join{stop, writer};
  for (int i = 0; i < 200 && acknowledged < 20; ++i) std::this_thread::sleep_for(50ms);
  BOOST_REQUIRE(acknowledged >= 20u);

  const std::string backup_dir = system.dir().file("backup");
  const std::uint64_t before = acknowledged;
  const CliResult backup = run_cli(system, {ctl, "backup", "--data-dir", system.data_dir(), backup_dir}, 60s);
  BOOST_REQUIRE_MESSAGE(backup.exit_code == 0, backup.err);
  BOOST_TEST(backup.out.find("written to " + backup_dir + "/data.mdb") != std::string::npos, backup.out);
  for (int i = 0; i < 200 && acknowledged < before + 20; ++i) std::this_thread::sleep_for(50ms);
  BOOST_TEST(acknowledged >= before + 20);  // the host kept committing: the backup blocked nobody
  const CliResult again = run_cli(system, {ctl, "backup", "--data-dir", system.data_dir(), backup_dir});
  BOOST_TEST(again.exit_code.value_or(0) != 0);  // never over an existing copy
  BOOST_TEST(again.err.find("exists") != std::string::npos, again.err);

  const CliResult verify_copy = run_cli(system, {ctl, "verify", backup_dir}, 60s);
  BOOST_TEST(verify_copy.exit_code.value_or(-1) == 0, verify_copy.out << verify_copy.err);
  const CliResult copy_export =
      run_cli(system, {ctl, "export", "--data-dir", backup_dir, code}, 60s);
  BOOST_REQUIRE_MESSAGE(copy_export.exit_code == 0, copy_export.err);
  const auto copied = json_lines(copy_export.out);
  BOOST_TEST(copied.size() >= before);  // everything acknowledged before the copy began
  for (std::size_t i = 0; i < copied.size(); ++i) BOOST_TEST(copied[i]["seq"] == i + 1);

  stop = true;
  writer.join();
  auto reader = ctx.client();
  const json last = reader->request(request_topic(code, "get_message"), json{{"limit", 1}});
  NT_REQUIRE_OK(last);
  const std::uint64_t total = last["last_seq"].get<std::uint64_t>();
  BOOST_TEST(total >= acknowledged);
  BOOST_TEST(copied.size() <= total);

  const CliResult verify_live = run_cli(system, {ctl, "verify", system.data_dir()}, 60s);
  BOOST_TEST(verify_live.exit_code.value_or(-1) == 0, verify_live.out << verify_live.err);
  BOOST_TEST(verify_live.out.find(": ok (") != std::string::npos, verify_live.out);

  // export: the messages exactly as get_message shows them.
  const CliResult exported = run_cli(system, {ctl, "export", "--data-dir", system.data_dir(), code}, 60s);
  BOOST_REQUIRE_MESSAGE(exported.exit_code == 0, exported.err);
  const auto lines = json_lines(exported.out);
  BOOST_TEST(lines.size() == total);
  const json newest = reader->request(request_topic(code, "get_message"), json{{"limit", 5}});
  NT_REQUIRE_OK(newest);
  BOOST_REQUIRE(newest["messages"].size() == 5u);
  for (std::size_t i = 0; i < 5; ++i) BOOST_TEST(lines[lines.size() - 5 + i] == newest["messages"][i]);
  const CliResult tail = run_cli(system, {ctl, "export", "--data-dir", system.data_dir(), "--after-seq",
                                          std::to_string(total - 2), code});
  BOOST_TEST(json_lines(tail.out).size() == 2u);

  const CliResult stats = run_cli(system, {ctl, "stats", "--json", system.data_dir()});
  BOOST_REQUIRE_MESSAGE(stats.exit_code == 0, stats.err);
  const json figures = printed_json(stats);
  BOOST_TEST(figures["messages"].get<std::uint64_t>() >= total);
  BOOST_TEST(figures["bookings"].get<std::uint64_t>() >= 1u);
  BOOST_TEST(figures["used_bytes"].get<std::uint64_t>() > 0u);
  BOOST_TEST(figures["used_bytes"].get<std::uint64_t>() <= figures["map_size_bytes"].get<std::uint64_t>());
  BOOST_TEST(figures["databases"]["messages"]["entries"] == figures["messages"]);
  const CliResult stats_text = run_cli(system, {ctl, "stats", system.data_dir()});
  BOOST_TEST(stats_text.out.find("map_used") != std::string::npos, stats_text.out);
#endif
}

// verify finds what is wrong in a store (a gap, a record that does not decode, an index entry
// missing) and says so with exit 1; 0 on a sound store; 2 when there is no store. The tools refuse
// a PostgreSQL store and a bad booking code clearly.
BOOST_AUTO_TEST_CASE(verify_reports_a_broken_store_and_the_tools_refuse_clearly, *boost::unit_test::timeout(60)) {
  TempDir dir("navietakie-ctl-verify");
  const std::string store_dir = dir.file("store");
  {
    navietakie::LmdbOptions options;
    options.dir = store_dir;
    options.map_size_bytes = std::size_t{64} << 20;
    auto store = navietakie::open_lmdb_store(options);
    store->write([](navietakie::StoreWriter& writer) {
      for (const char* code : {"BK-GAP", "BK-BAD", "BK-IDX", "BK-OK"}) {
        for (std::uint64_t seq = 1; seq <= 6; ++seq) writer.append_message(stored_text(code, seq));
      }
    });
  }
  const std::string ctl = NAVIETAKIE_CTL_BIN;
  const auto run = [&](std::vector<std::string> argv) { return run_tool(dir, std::move(argv), 30s); };
  const CliResult sound = run({ctl, "verify", store_dir});
  BOOST_TEST(sound.exit_code.value_or(-1) == 0, sound.out << sound.err);

  {
    RawLmdb raw(store_dir);
    raw.del(navietakie::keys::db::messages, navietakie::keys::message("BK-GAP", 3));
    raw.del(navietakie::keys::db::message_ids, navietakie::keys::message_id("BK-GAP", "BK-GAP-3"));
    raw.put(navietakie::keys::db::messages, navietakie::keys::message("BK-BAD", 5), "not a record");
    raw.del(navietakie::keys::db::message_ids, navietakie::keys::message_id("BK-IDX", "BK-IDX-2"));
    raw.commit();
  }
  const CliResult broken = run({ctl, "verify", store_dir});
  BOOST_TEST(broken.exit_code.value_or(-1) == 1, broken.out << broken.err);
  BOOST_TEST(broken.out.find("BK-GAP: gap after seq 2 (next is 4)") != std::string::npos, broken.out);
  BOOST_TEST(broken.out.find("BK-BAD seq 5: does not decode") != std::string::npos, broken.out);
  BOOST_TEST(broken.out.find("BK-IDX seq 2: message_id 'BK-IDX-2' is not in the message_id index") !=
                 std::string::npos,
             broken.out);
  BOOST_TEST(broken.out.find("BK-OK") == std::string::npos, broken.out);
  BOOST_TEST(broken.out.find("3 problems") != std::string::npos, broken.out);
  // export stops at a record it cannot decode, saying so; stats still reads the figures.
  const CliResult bad_export = run({ctl, "export", "--data-dir", store_dir, "BK-BAD"});
  BOOST_TEST(bad_export.exit_code.value_or(0) == 1);
  BOOST_TEST(json_lines(bad_export.out).size() == 4u);
  const CliResult stats = run({ctl, "stats", "--json", store_dir});
  BOOST_TEST(printed_json(stats)["bookings"] == 4);
  BOOST_TEST(printed_json(stats)["messages"] == 23);

  const CliResult missing = run({ctl, "verify", dir.file("no-such-store")});
  BOOST_TEST(missing.exit_code.value_or(-1) == 2);
  BOOST_TEST(missing.err.find("cannot open") != std::string::npos, missing.err);
  const CliResult bad_code = run({ctl, "export", "--data-dir", store_dir, "BK/../x"});
  BOOST_TEST(bad_code.exit_code.value_or(-1) == 2);
  BOOST_TEST(bad_code.err.find("not a booking code") != std::string::npos, bad_code.err);
  const std::string settings = dir.file("pg.conf");
  write_file(settings, "store_backend postgres\npostgres_url postgresql://localhost/navietakie\n");
  const CliResult postgres = run({ctl, "backup", "--settings", settings, dir.file("pg-backup")});
  BOOST_TEST(postgres.exit_code.value_or(-1) == 2);
  BOOST_TEST(postgres.err.find("pg_dump") != std::string::npos, postgres.err);
}

BOOST_AUTO_TEST_SUITE_END()
