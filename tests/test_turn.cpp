// The TURN credentials navietakie hands to a call's parties (core/ice.hpp) against a real coturn
// (Debian coturn: turnserver, turnutils_uclient), started by tests/support/turn.sh, the helper the
// relay-only browser test uses too: coturn allocates a relay for them, and refuses a wrong
// password and an expired username.
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <thread>

#include "core/ice.hpp"
#include "support/processes.hpp"

using namespace navietakie;
using namespace navietakie::test;

namespace {

struct Turn {
  TempDir dir{"navietakie-turn-test"};
  std::unique_ptr<Process> server;
  int port = 0;
  std::string secret;
  std::string ice_servers;

  Turn() {
    server = std::make_unique<Process>(
        std::vector<std::string>{std::string(NAVIETAKIE_SOURCE_DIR) + "/tests/support/turn.sh"},
        ProcessOptions(dir.file("turn.out"), dir.file("turn.log")));
    nlohmann::json started;
    for (int i = 0; i < 300 && !started.is_object(); ++i) {  // bounded: 30 s
      BOOST_REQUIRE_MESSAGE(server->alive(), server->describe());
      started = nlohmann::json::parse(read_file(dir.file("turn.out")), nullptr, false);
      if (!started.is_object()) std::this_thread::sleep_for(100ms);
    }
    BOOST_REQUIRE_MESSAGE(started.is_object(), "turn.sh printed no JSON line\n" << server->describe());
    port = started.at("port").get<int>();
    secret = started.at("secret").get<std::string>();
    ice_servers = started.at("ice_servers").get<std::string>();
    BOOST_REQUIRE_MESSAGE(wait_for_tcp(port, 30s), "turnserver did not listen\n" << file_tail(dir.file("turn.log")));
  }

  // turnutils_uclient's exit code for a relay allocated with these credentials (and a few
  // messages echoed through it).
  int allocate(const std::string& username, const std::string& password) {
    Process client({"turnutils_uclient", "-y", "-n", "1", "-m", "1", "-l", "100", "-u", username, "-w", password, "-p",
                    std::to_string(port), "127.0.0.1"},
                   ProcessOptions(dir.file("uclient.log")));
    const auto code = client.wait_exit(60s);
    BOOST_REQUIRE_MESSAGE(code.has_value(), "turnutils_uclient did not finish\n" << client.describe());
    return *code;
  }
};

std::chrono::milliseconds now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(turn)

BOOST_AUTO_TEST_CASE(coturn_accepts_the_derived_credentials_and_refuses_others) {
  Turn turn;
  BOOST_TEST(turn.ice_servers == "turn:127.0.0.1:" + std::to_string(turn.port) + "?transport=udp,turn:127.0.0.1:" +
                                     std::to_string(turn.port) + "?transport=tcp");
  const navietakie::Millis now = now_ms().count();
  const std::string username = turn_rest_username(now, 600, "BK1.driver");
  BOOST_TEST(turn.allocate(username, turn_rest_credential(turn.secret, username)) == 0);
  BOOST_TEST(turn.allocate(username, turn_rest_credential(turn.secret + "x", username)) != 0);
  const std::string expired = turn_rest_username(now, -60, "BK1.driver");
  BOOST_TEST(turn.allocate(expired, turn_rest_credential(turn.secret, expired)) != 0);
  // Stopped by the script's pid: turnserver goes with it.
  turn.server->stop();
  BOOST_TEST(turn.server->exit_code().has_value());
}

BOOST_AUTO_TEST_SUITE_END()
