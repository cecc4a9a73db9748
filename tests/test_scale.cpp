// Scaling out, faults survived (issue 11): one PostgreSQL, one Mosquitto and three bridges on one
// share group, under navietakie-sim load (messages, history, calls that ring out) the whole time.
// Meanwhile one bridge is SIGKILLed and restarted, then another, then PostgreSQL itself is
// restarted. Afterwards the database is read directly:
//   - every message a probe client saw acknowledged is stored exactly once, under the seq its
//     reply named (no false success, also for the requests of the database restart);
//   - seqs are gapless per booking (1..last_seq, bookings.last_seq agrees), no message_id twice;
//   - no call is left ringing past its deadline, at most one is active per booking, and every
//     ended call has exactly one `ended` call message, with its end reason: each ring timeout fired
//     once, the calls that were ringing when a bridge was killed included;
// and the sim's own verification (--shared --resend-after: every acknowledged message stored once
// and seen by both parties, events and replies agree) must pass. The bridges that were not killed
// reconnect to the restarted database by themselves (`postgres_reconnected` in their logs), and
// the probe's requests succeed again within the bound the README states.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "support/contract.hpp"
#include "support/postgres.hpp"

using namespace navietakie::test;

namespace {

constexpr int kRingTimeoutS = 3;
constexpr int kBridges = 3;
constexpr double kLoadSeconds = 40;
// How long a request may keep failing once PostgreSQL accepts connections again: the store
// reconnects on the first request after the loss, then at most every reconnect_backoff_ms (500 ms),
// each try bounded by the URL's connect_timeout (2 s). Asserted generously (a loaded 2-core
// machine), measured and printed.
constexpr Millis kRecoveryBound = 10s;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start, Clock::time_point t) {
  return std::chrono::duration<double>(t - start).count();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

// One bridge of the share group; each start a new process (and log) under the same client id, so
// that it resumes its persistent session and gets the requests queued for it while it was dead.
class GroupBridge {
 public:
  GroupBridge(const TempDir& dir, std::string client_id, std::string broker_uri, std::string postgres_url)
      : dir_(dir), client_id_(std::move(client_id)), broker_uri_(std::move(broker_uri)),
        postgres_url_(std::move(postgres_url)) {}

  void start() {
    ++starts_;
    ProcessOptions options;
    options.stdout_path = dir_.file(client_id_ + "-" + std::to_string(starts_) + ".log");
    options.drop_env_prefix = "NAVIETAKIE_";  // every setting is a flag here
    process_ = std::make_unique<Process>(
        std::vector<std::string>{NAVIETAKIE_BRIDGE_BIN, "--broker_url", broker_uri_, "--client_id", client_id_,
                                 "--share_group", "scale", "--store_backend", "postgres", "--postgres_url",
                                 postgres_url_, "--call_ring_timeout_s", std::to_string(kRingTimeoutS),
                                 "--log_level", "info"},
        options);
  }
  void kill9() { process_->kill9(); }
  bool alive() { return process_ && process_->alive(); }
  pid_t pid() const { return process_->pid(); }
  int starts() const { return starts_; }
  const std::string& client_id() const { return client_id_; }
  bool log_contains(const std::string& text) const { return read_file(process_->log_path()).find(text) != std::string::npos; }
  std::string describe() { return process_ ? process_->describe(30) : client_id_ + ": never started\n"; }

 private:
  const TempDir& dir_;
  std::string client_id_, broker_uri_, postgres_url_;
  int starts_ = 0;
  std::unique_ptr<Process> process_;
};

// A client of its own booking sending one message every 100 ms the whole time, as a real client
// does: no reply within 2 s, or `unavailable`, and it sends the same message again (same
// message_id). It keeps what was acknowledged (message_id -> seq) and when each outcome came.
class Probe {
 public:
  struct Stats {
    std::map<std::string, std::int64_t> acked;  // message_id -> seq from its reply
    int unavailable = 0;
    int timeouts = 0;
    int other_errors = 0;
    std::vector<std::string> other_error_examples;
    std::vector<Clock::time_point> unavailable_at;
    // (sent, answered) of each acknowledged attempt, in order.
    std::vector<std::pair<Clock::time_point, Clock::time_point>> ok_at;
    int gave_up = 0;
  };

  Probe(const std::string& broker_uri, std::string code) : code_(std::move(code)), client_(broker_uri) {}

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  ~Probe() { stop(); }

  Stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  const std::string& code() const { return code_; }

 private:
  void run() {
    const std::string topic = request_topic(code_, "send_message");
    for (int n = 1; !stop_; ++n) {
      const std::string id = "probe-" + std::to_string(n);
      const std::string body = json{{"message_id", id}, {"sender", "driver"}, {"text", "probe " + std::to_string(n)}}.dump();
      bool done = false;
      for (int attempt = 0; attempt < 60 && !done; ++attempt) {
        const auto sent = Clock::now();
        auto reply = client_.try_await_reply(client_.send_request(topic, body), 2s);
        std::lock_guard<std::mutex> lock(mutex_);
        if (!reply) {
          ++stats_.timeouts;
        } else if (is_ok(*reply)) {
          stats_.acked[id] = reply->at("message").at("seq").get<std::int64_t>();
          stats_.ok_at.emplace_back(sent, Clock::now());
          done = true;
        } else if (error_code(*reply) == "unavailable") {
          ++stats_.unavailable;
          stats_.unavailable_at.push_back(Clock::now());
        } else {
          ++stats_.other_errors;
          if (stats_.other_error_examples.size() < 3) stats_.other_error_examples.push_back(reply->dump());
          done = true;
        }
        if (!done) std::this_thread::sleep_for(200ms);
      }
      if (!done) {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.gave_up;
      }
      std::this_thread::sleep_for(100ms);
    }
  }

  std::string code_;
  TestClient client_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mutex_;
  Stats stats_;
};

// The calls ringing right now (booking|call_id), read before a fault: their deadlines must still
// fire exactly once, whichever bridge is left to fire them.
std::set<std::string> ringing_calls(PostgresServer& pg) {
  auto rows = lines_of(pg.psql("SELECT booking_code || '|' || call_id FROM calls WHERE state = 'ringing'"));
  return {rows.begin(), rows.end()};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(scale)

BOOST_AUTO_TEST_CASE(three_bridges_on_one_postgres_survive_bridge_kills_and_a_database_restart,
                     *boost::unit_test::timeout(300)) {
  PostgresServer pg;
  TempDir dir("navietakie-scale");
  Broker broker(dir, test_broker_conf());
  broker.start();

  std::vector<std::unique_ptr<GroupBridge>> bridges;
  for (int i = 1; i <= kBridges; ++i) {
    bridges.push_back(std::make_unique<GroupBridge>(dir, "scale-bridge-" + std::to_string(i), broker.uri(), pg.url()));
    bridges.back()->start();
  }
  auto describe_all = [&] {
    std::string text = broker.describe() + pg.describe();
    for (auto& b : bridges) text += b->describe();
    return text;
  };
  // Ready when every bridge has migrated / opened the schema and subscribed: a probe request
  // answered, and each bridge's log says it started.
  {
    TestClient client(broker.uri());
    const auto deadline = Clock::now() + 20s;
    bool ready = false;
    while (!ready && Clock::now() < deadline) {
      ready = std::all_of(bridges.begin(), bridges.end(), [](auto& b) { return b->log_contains("engine_started"); }) &&
              client.try_await_reply(client.send_request(request_topic("scale-ready", "get_message"), "{}"), 1s);
      if (!ready) std::this_thread::sleep_for(200ms);
    }
    BOOST_REQUIRE_MESSAGE(ready, "the bridges did not come up\n" << describe_all());
  }

  // The load: 20 bookings, 5 messages/s each, history reads, 12 calls per booking per minute of
  // which half ring out (3 s ring timeout), for kLoadSeconds. --shared: events may come out of
  // order (several bridges); --resend-after: requests lost with a killed bridge, or answered
  // `unavailable` during the database restart, are sent again with the same message_id.
  ProcessOptions sim_options(dir.file("sim.json"), dir.file("sim.log"));
  sim_options.drop_env_prefix = "NAVIETAKIE_";
  Process sim({NAVIETAKIE_SIM_BIN, "--url", broker.uri(), "--bookings", "20", "--rate", "5", "--calls", "12",
               "--call-mix", "accept:1,decline:1,missed:2", "--ring-timeout", std::to_string(kRingTimeoutS),
               "--history-every", "3", "--duration", std::to_string(kLoadSeconds), "--reply-timeout", "20",
               "--shared", "--resend-after", "1500", "--resend-tries", "20", "--json", "--quiet", "--seed", "11"},
              sim_options);
  Probe probe(broker.uri(), booking("scale-probe"));
  probe.start();
  const auto t0 = Clock::now();
  auto at = [&](double s) {
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000)));
  };

  // The faults. Each kill is preceded by a read of the calls ringing then: they must end once.
  std::set<std::string> ringing_at_faults;
  int kills = 0;
  for (std::size_t victim : {std::size_t{0}, std::size_t{1}}) {
    at(victim == 0 ? 6 : 13);
    auto ringing = ringing_calls(pg);
    ringing_at_faults.insert(ringing.begin(), ringing.end());
    BOOST_TEST_MESSAGE("t=" << seconds_since(t0, Clock::now()) << " s: SIGKILL " << bridges[victim]->client_id()
                            << " (pid " << bridges[victim]->pid() << "), " << ringing.size() << " calls ringing");
    bridges[victim]->kill9();
    ++kills;
    at(victim == 0 ? 9 : 16);
    bridges[victim]->start();
  }

  at(20);
  {
    auto ringing = ringing_calls(pg);
    ringing_at_faults.insert(ringing.begin(), ringing.end());
  }
  std::vector<pid_t> pids_before_db_restart;
  for (auto& b : bridges) pids_before_db_restart.push_back(b->pid());
  const auto db_down = Clock::now();
  pg.stop();
  std::this_thread::sleep_for(2s);
  pg.start();
  const auto db_back = Clock::now();
  BOOST_TEST_MESSAGE("t=" << seconds_since(t0, db_down) << " s: PostgreSQL stopped; back at t="
                          << seconds_since(t0, db_back) << " s");

  // Every bridge reconnects by itself: the same processes (none restarted), each logging it.
  {
    const auto deadline = db_back + kRecoveryBound;
    auto all_reconnected = [&] {
      return std::all_of(bridges.begin(), bridges.end(), [](auto& b) { return b->log_contains("postgres_reconnected"); });
    };
    while (!all_reconnected() && Clock::now() < deadline) std::this_thread::sleep_for(100ms);
    BOOST_TEST(all_reconnected(), "a bridge did not reconnect to PostgreSQL by itself\n" << describe_all());
    for (std::size_t i = 0; i < bridges.size(); ++i) {
      BOOST_TEST(bridges[i]->alive());
      BOOST_TEST(bridges[i]->pid() == pids_before_db_restart[i]);
    }
  }

  // The load runs to its end, then drains (bounded: the sim's own drain, plus a margin).
  const auto sim_exit = sim.wait_exit(std::chrono::seconds(static_cast<int>(kLoadSeconds) + 120));
  probe.stop();
  const auto stats = probe.stats();
  BOOST_REQUIRE_MESSAGE(sim_exit.has_value(), "navietakie-sim did not finish\n" << sim.describe() << describe_all());
  const auto sim_lines = lines_of(read_file(sim.log_path()));
  BOOST_REQUIRE_MESSAGE(!sim_lines.empty(), "navietakie-sim printed no JSON\n" << sim.describe());
  const json summary = json::parse(sim_lines.back());
  BOOST_TEST(*sim_exit == 0, "navietakie-sim found violations: " << summary["violations"].dump() << "\n"
                                                                 << file_tail(dir.file("sim.log"), 40));
  BOOST_TEST(summary.value("ok", false));
  BOOST_TEST(summary.value("confirmed", 0) > 0);
  BOOST_TEST(summary["calls"].value("missed", 0) > 0);

  // Every ring deadline has passed (the sim cancels what it left ringing; a deadline reached in the
  // meantime fires): none may still ring past it.
  std::this_thread::sleep_for(std::chrono::seconds(kRingTimeoutS + 2));
  for (auto& b : bridges) BOOST_TEST(b->alive(), b->describe());

  // --- the database, read directly -------------------------------------------------------------
  // No false success: what the probe saw acknowledged is stored once, under the seq of its reply.
  std::map<std::string, std::int64_t> stored;
  for (const auto& row : lines_of(pg.psql("SELECT message_id || '|' || seq FROM messages WHERE booking_code = '" +
                                          probe.code() + "'"))) {
    const auto bar = row.rfind('|');
    stored[row.substr(0, bar)] = std::stoll(row.substr(bar + 1));
  }
  int acked_missing = 0;
  for (const auto& [id, seq] : stats.acked) {
    auto it = stored.find(id);
    if (it == stored.end() || it->second != seq) ++acked_missing;
  }
  BOOST_TEST(!stats.acked.empty());
  BOOST_TEST(acked_missing == 0, acked_missing << " acknowledged probe messages missing or under another seq");
  BOOST_TEST(stats.other_errors == 0, "probe errors other than unavailable: " << stats.other_error_examples.size());
  BOOST_TEST(stats.gave_up == 0);

  // Seqs gapless per booking and in agreement with bookings.last_seq; no message_id twice.
  BOOST_TEST(pg.psql("SELECT count(*) FROM (SELECT b.code FROM bookings b LEFT JOIN messages m ON m.booking_code = "
                     "b.code GROUP BY b.code, b.last_seq HAVING count(m.seq) <> b.last_seq OR "
                     "coalesce(min(m.seq), 1) <> 1 OR coalesce(max(m.seq), 0) <> b.last_seq) gaps") == "0\n");
  BOOST_TEST(pg.psql("SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM bookings b WHERE b.code = "
                     "m.booking_code AND m.seq BETWEEN 1 AND b.last_seq)") == "0\n");
  BOOST_TEST(pg.psql("SELECT count(*) FROM (SELECT 1 FROM messages GROUP BY booking_code, message_id HAVING count(*) "
                     "> 1) twice") == "0\n");

  // Calls: none ringing past its deadline, at most one active per booking.
  BOOST_TEST(pg.psql("SELECT count(*) FROM calls WHERE state = 'ringing' AND ring_deadline < "
                     "(extract(epoch FROM clock_timestamp()) * 1000)::bigint - 1000") == "0\n");
  BOOST_TEST(pg.psql("SELECT count(*) FROM (SELECT 1 FROM calls WHERE state <> 'ended' GROUP BY booking_code HAVING "
                     "count(*) > 1) several") == "0\n");
  // Each ended call has exactly one `ended` call message with its end reason (a ring timeout fired
  // twice would store two; a lost one, none and a call still ringing).
  BOOST_TEST(pg.psql("SELECT count(*) FROM calls c WHERE c.state = 'ended' AND (SELECT count(*) FROM messages m WHERE "
                     "m.booking_code = c.booking_code AND m.type = 'call' AND m.data::json->>'call_id' = c.call_id AND "
                     "m.data::json->>'state' = 'ended') <> 1") == "0\n");
  BOOST_TEST(pg.psql("SELECT count(*) FROM calls c WHERE c.state = 'ended' AND NOT EXISTS (SELECT 1 FROM messages m "
                     "WHERE m.booking_code = c.booking_code AND m.type = 'call' AND m.data::json->>'call_id' = "
                     "c.call_id AND m.data::json->>'state' = 'ended' AND m.data::json->>'end_reason' = c.end_reason)") ==
             "0\n");
  const int missed_calls = std::stoi(pg.psql("SELECT count(*) FROM calls WHERE end_reason = 'missed'"));
  BOOST_TEST(missed_calls > 0);
  // The calls ringing when a fault struck (their starting bridge possibly the one killed) all left
  // `ringing`: ended, or answered. One answered may still be `connected`: when the sim's `end` was
  // lost with a killed bridge, the sim gives the call up (it never resends a call action), and
  // nothing in the system ends a connected call by itself.
  int fault_calls_ended = 0, fault_calls_missed = 0, fault_calls_connected = 0;
  std::string still_ringing;
  for (const auto& key : ringing_at_faults) {
    const auto bar = key.find('|');
    const auto row = pg.psql("SELECT state || '|' || end_reason FROM calls WHERE booking_code = '" + key.substr(0, bar) +
                             "' AND call_id = '" + key.substr(bar + 1) + "'");
    if (row.rfind("ended|", 0) == 0) {
      ++fault_calls_ended;
    } else if (row.rfind("connected|", 0) == 0) {
      ++fault_calls_connected;
    } else {
      still_ringing += "  " + key + ": " + (row.empty() ? std::string("(no row)\n") : row);
    }
    if (row == "ended|missed\n") ++fault_calls_missed;
  }
  BOOST_TEST(still_ringing.empty(), "calls ringing at a fault that never left ringing:\n" << still_ringing);
  BOOST_TEST(fault_calls_connected <= summary.value("calls_abandoned", 0),
             fault_calls_connected << " calls still connected, more than the sim gave up");

  // --- numbers ---------------------------------------------------------------------------------
  double last_unavailable_after_back = 0, first_ok_after_back = -1;
  for (auto t : stats.unavailable_at) {
    if (t > db_back) last_unavailable_after_back = std::max(last_unavailable_after_back, seconds_since(db_back, t));
  }
  // Recovery: the first request sent once the database was back that was acknowledged.
  for (const auto& [sent, answered] : stats.ok_at) {
    if (sent >= db_back) {
      first_ok_after_back = seconds_since(db_back, answered);
      break;
    }
  }
  BOOST_TEST(first_ok_after_back >= 0, "no probe request succeeded after the database restart");
  BOOST_TEST(first_ok_after_back * 1000 < static_cast<double>(kRecoveryBound.count()));
  std::cout << "test_scale: sim confirmed=" << summary.value("confirmed", 0) << " sent=" << summary.value("sent", 0)
            << " resends=" << summary.value("resends", 0) << " unavailable=" << summary.value("unavailable", 0)
            << " reordered=" << summary.value("reordered", 0) << " gap_fetches=" << summary.value("gap_fetches", 0)
            << " events_recovered=" << summary.value("events_recovered", 0)
            << " calls_abandoned=" << summary.value("calls_abandoned", 0) << " calls=" << summary["calls"].dump()
            << "\ntest_scale: bridge kills=" << kills << ", PostgreSQL restart down "
            << seconds_since(db_down, db_back) << " s; probe acked=" << stats.acked.size()
            << " unavailable=" << stats.unavailable << " timeouts=" << stats.timeouts
            << " last unavailable " << last_unavailable_after_back << " s after the database was back, first ok "
            << first_ok_after_back << " s after; calls ringing at a fault=" << ringing_at_faults.size()
            << " (ended " << fault_calls_ended << ", missed " << fault_calls_missed << ", still connected "
            << fault_calls_connected << "), missed calls in all="
            << missed_calls << std::endl;
}

BOOST_AUTO_TEST_SUITE_END()
