// `navietakie-ctl broker-conf`, the generator's command line (what scripts/run, scripts/bench and
// the browser test call): the conf it writes starts a broker that serves, and bad input is refused
// with exit code 2 and a message naming it.
#include <optional>
#include <string>
#include <vector>

#include "support/contract.hpp"

#ifndef NAVIETAKIE_PLUGIN_SO
#error "test_ctl_broker_conf needs the plugin (NAVIETAKIE_PLUGIN_SO)"
#endif

namespace utf = boost::unit_test;
using namespace navietakie::test;

namespace {

struct CtlRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

CtlRun broker_conf(const TempDir& dir, std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), {NAVIETAKIE_CTL_BIN, "broker-conf"});
  const std::string log = dir.file("ctl-" + random_hex(6) + ".log");
  Process ctl(arguments, ProcessOptions(log));
  const auto exit_code = ctl.wait_exit(10s);
  BOOST_REQUIRE_MESSAGE(exit_code, "navietakie-ctl broker-conf did not exit:\n" << ctl.describe());
  return {*exit_code, read_file(log)};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ctl_broker_conf)

BOOST_AUTO_TEST_CASE(the_conf_it_writes_serves_tcp_and_websockets, *utf::timeout(60)) {
  TempDir dir("nt-ctl-conf");
  const int mqtt_port = free_port();
  int ws_port = free_port();
  for (int tries = 0; tries < 10 && ws_port == mqtt_port; ++tries) ws_port = free_port();
  const std::string conf_path = dir.file("mosquitto.conf");
  const CtlRun ctl =
      broker_conf(dir, {"--mqtt-port", std::to_string(mqtt_port), "--ws-port", std::to_string(ws_port), "--bind",
                        "127.0.0.1", "--user", current_user_name(), "--plugin", NAVIETAKIE_PLUGIN_SO, "--plugin-opt",
                        "data_dir=" + dir.file("data"), "--plugin-opt", "max_payload_bytes=4096", "--out", conf_path});
  BOOST_REQUIRE_MESSAGE(ctl.exit_code == 0, ctl.output);
  const std::string conf = read_file(conf_path);
  // Derived from the plugin's own max_payload_bytes: 200 * (4096 + 1024) + 64 KiB, in MiB.
  BOOST_TEST(conf.find("\nmax_packet_size 2097152\n") != std::string::npos, conf);

  ProcessOptions broker_options(dir.file("mosquitto.log"));
  broker_options.extra_env = plugin_broker_env();  // the sanitizer build's plugin needs its runtime
  Process broker({find_executable("mosquitto"), "-c", conf_path}, broker_options);
  BOOST_REQUIRE_MESSAGE(wait_for_tcp(mqtt_port, 5s) && wait_for_tcp(ws_port, 5s), broker.describe());
  for (const std::string& uri :
       {"tcp://127.0.0.1:" + std::to_string(mqtt_port), "ws://127.0.0.1:" + std::to_string(ws_port)}) {
    BOOST_TEST_CONTEXT(uri) {
      TestClient client(uri);
      const auto page = first_reply(client, request_topic(booking("ctlconf"), "get_message"), "{}");
      BOOST_REQUIRE_MESSAGE(page, "no reply over " << uri << ":\n" << broker.describe());
      NT_CHECK_OK(*page);
    }
  }
  broker.stop();
  BOOST_TEST(broker.exit_code().value_or(-1) == 0);
}

BOOST_AUTO_TEST_CASE(bad_input_is_refused_naming_it, *utf::timeout(60)) {
  TempDir dir("nt-ctl-conf");
  struct Case {
    std::vector<std::string> arguments;
    std::string named;
  };
  const std::vector<Case> cases{
      {{"--plugin", "p.so", "--plugin-opt", "bogus_key=1"}, "bogus_key"},
      {{"--plugin-opt", "sync=full"}, "without a plugin"},
      {{"--plugin", "p.so", "--plugin-opt", "novalue"}, "KEY=VALUE"},
      {{"--mqtts-port", "8883"}, "certfile and keyfile"},
      {{"--mqtt-port", "0"}, "--mqtt-port"},
      {{"--ws-port", "1883"}, "used twice"},
      {{"--max-packet-size", "10"}, "--max-packet-size"},
      {{"--allow-anonymous", "maybe"}, "--allow-anonymous"},
      {{"--plugin-settings", dir.file("missing.conf")}, "missing.conf"},
      {{"--bogus"}, "--bogus"},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.named) {
      const CtlRun run = broker_conf(dir, c.arguments);
      BOOST_TEST(run.exit_code == 2);
      BOOST_TEST(run.output.find(c.named) != std::string::npos, run.output);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
