// A car unit in edge mode under navietakie-sim load while its link to the cloud is cut and restored
// again and again (issue 16). Two brokers with the plugin on this machine: the cloud, and the car
// linked to it through a LinkProxy the test cuts. The simulator's drivers use the car, its
// passengers the cloud; the simulator checks every reply and event (a send answered "queued":true
// is settled by its events). Afterwards each booking's history is read on the cloud and, with the
// link cut once more, from the car's replica: the same messages, each once, in the cloud's seq order.
#include <boost/test/unit_test.hpp>

#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/link_proxy.hpp"
#include "support/system.hpp"

using namespace navietakie::test;

namespace {

constexpr int kBookings = 8;
constexpr int kCuts = 4;
constexpr auto kLinkUp = 5s;
constexpr auto kLinkDown = 4s;

SystemOptions plugin_system(std::vector<std::string> extra_conf = {}) {
  SystemOptions options;
  options.host = Host::plugin;
  options.plugin_path = NAVIETAKIE_PLUGIN_SO;
  options.extra_plugin_conf = std::move(extra_conf);
  return options;
}

// Sleeps `span` in short steps; false as soon as `process` has exited.
bool sleep_while_running(Process& process, Millis span) {
  for (Millis slept{0}; slept < span; slept += 100ms) {
    if (!process.alive()) return false;
    std::this_thread::sleep_for(100ms);
  }
  return process.alive();
}

// The sim's --json summary: the last line of its stdout.
json last_json_line(const std::string& out) {
  std::istringstream lines(out);
  std::string line;
  std::string last;
  while (std::getline(lines, line)) {
    if (!line.empty() && line.front() == '{') last = line;
  }
  return json::parse(last, nullptr, false);
}

struct History {
  std::vector<std::pair<std::int64_t, std::string>> messages;  // seq, message_id, in reply order
  json last_page;
};

// Every message of `booking` through `client`, oldest first, page by page (bounded).
History read_history(TestClient& client, const std::string& booking) {
  History h;
  const std::string topic = "navietakie/v1/bookings/" + booking + "/get_message";
  std::int64_t after = 0;
  for (int page = 0; page < 100; ++page) {
    h.last_page = client.request(topic, {{"after_seq", after}, {"limit", 200}}, 10s);
    BOOST_REQUIRE_MESSAGE(h.last_page.value("ok", false), booking + ": " + h.last_page.dump());
    for (const auto& m : h.last_page["messages"]) {
      h.messages.emplace_back(m["seq"].get<std::int64_t>(), m.value("message_id", std::string()));
    }
    if (!h.last_page.value("has_more", false) || h.last_page["messages"].empty()) break;
    after = h.messages.back().first;
  }
  return h;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(edge_load)

BOOST_AUTO_TEST_CASE(sim_through_a_car_with_repeated_link_cuts, *boost::unit_test::timeout(240)) {
  System cloud(plugin_system());
  LinkProxy link(cloud.broker().port());
  System car(plugin_system({"plugin_opt_node_role edge",
                            "plugin_opt_upstream_url tcp://127.0.0.1:" + std::to_string(link.port()),
                            "plugin_opt_upstream_client_id navietakie-edge-load-test"}));

  const std::string prefix = "EL-" + random_hex(8);
  TempDir dir("nt-edge-load");
  Process sim({NAVIETAKIE_SIM_BIN, "--url", car.broker_uri(), "--passenger-url", cloud.broker_uri(), "--bookings",
               std::to_string(kBookings), "--booking-prefix", prefix, "--rate", "4", "--window", "2", "--duration",
               "40", "--history-every", "0", "--calls", "0", "--reply-timeout", "20", "--seed", "16", "--json",
               "--quiet"},
              {dir.file("sim.out"), dir.file("sim.err"), 10s});

  int cuts = 0;
  while (cuts < kCuts && sleep_while_running(sim, kLinkUp)) {
    link.cut();
    ++cuts;
    const bool running = sleep_while_running(sim, kLinkDown);
    link.restore();
    if (!running) break;
  }
  const auto exit_code = sim.wait_exit(150s);
  const std::string out = read_file(dir.file("sim.out"));
  const std::string err = file_tail(dir.file("sim.err"), 40);
  BOOST_TEST_MESSAGE("sim: " << out);
  BOOST_TEST(cuts == kCuts, "the simulator ended before every cut: " << err);
  BOOST_REQUIRE_MESSAGE(exit_code.value_or(-1) == 0, "sim exit " << exit_code.value_or(-1) << "\n"
                                                                   << out << "\n"
                                                                   << err << "\n"
                                                                   << car.describe());
  const json summary = last_json_line(out);
  BOOST_REQUIRE(summary.is_object());
  BOOST_TEST(summary.value("ok", false));
  BOOST_TEST(summary.value("violations", json::object()).empty(), summary.dump());
  BOOST_TEST(summary.value("sent", 0) > 200);
  // The cuts took: some sends were answered from the car's outbox, and the car linked up again
  // after each cut.
  BOOST_TEST(summary.value("queued", 0) > 0, summary.dump());
  BOOST_TEST(link.accepted() >= static_cast<std::size_t>(kCuts + 1));

  // Exactly once, in the cloud's seq order, on both sides: the cloud's history, and the car's
  // replica (the link cut, so the car answers from it and says how far it is complete).
  TestClient on_cloud(cloud.broker_uri());
  std::vector<History> cloud_histories;
  for (int b = 0; b < kBookings; ++b) cloud_histories.push_back(read_history(on_cloud, prefix + "-" + std::to_string(b)));
  link.cut();
  TestClient on_car(car.broker_uri());
  std::size_t total = 0;
  for (int b = 0; b < kBookings; ++b) {
    const std::string booking = prefix + "-" + std::to_string(b);
    const History& up = cloud_histories[static_cast<std::size_t>(b)];
    BOOST_TEST_CONTEXT(booking) {
      std::set<std::string> ids;
      for (std::size_t i = 0; i < up.messages.size(); ++i) {
        BOOST_TEST(up.messages[i].first == static_cast<std::int64_t>(i + 1));
        BOOST_TEST(ids.insert(up.messages[i].second).second, "stored twice: " << up.messages[i].second);
      }
      BOOST_TEST(up.last_page.value("last_seq", -1) == static_cast<std::int64_t>(up.messages.size()));
      const History replica = read_history(on_car, booking);
      BOOST_TEST(replica.last_page.value("replica_until_seq", -1) == static_cast<std::int64_t>(up.messages.size()),
                 replica.last_page.dump().substr(0, 300));
      BOOST_TEST((replica.messages == up.messages), "the car's replica differs from the cloud's history");
      total += up.messages.size();
    }
  }
  BOOST_TEST(total == summary.value("sent", std::size_t{0}));
  link.restore();
}

BOOST_AUTO_TEST_SUITE_END()
