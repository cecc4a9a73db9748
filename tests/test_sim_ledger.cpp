// navietakie-sim's checks (sim/ledger.*) without a broker: what a booking's subscribers may see when
// one host serves them, and when several hosts on a shared subscription do (events out of seq
// order, a missing seq read back with after_seq, a resent message answered duplicate:true), and
// that each relaxation still catches what it must: a seq never stored, a message stored twice.
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "sim/ledger.hpp"

namespace navietakie::sim {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

const std::string kCode = "BK-1";

struct Fixture {
  explicit Fixture(LedgerMode mode) : stats(progress), ledger(kCode, {"c-d", "c-p"}, stats, mode) {
    ledger.set_baseline(Role::driver, 0);
    ledger.set_baseline(Role::passenger, 0);
  }
  Progress progress;
  RunStats stats;
  BookingLedger ledger;
  Clock::time_point t0 = Clock::now();

  // A message of another writer (not one this ledger sent): only the seq checks apply to it.
  static json record(std::int64_t seq, const std::string& message_id = "") {
    return {{"booking_code", kCode},
            {"seq", seq},
            {"message_id", message_id.empty() ? "w-" + std::to_string(seq) : message_id},
            {"type", "text"},
            {"sender", "system"},
            {"text", "t" + std::to_string(seq)},
            {"ts", 1}};
  }
  void event(Role to, std::int64_t seq) { ledger.message_event(to, *read_message(record(seq)), t0); }
  void both(std::int64_t seq) {
    event(Role::driver, seq);
    event(Role::passenger, seq);
  }
  static json page(std::initializer_list<std::int64_t> seqs, std::int64_t last_seq, bool has_more = false) {
    json messages = json::array();
    for (auto seq : seqs) messages.push_back(record(seq));
    return {{"ok", true}, {"messages", messages}, {"has_more", has_more}, {"last_seq", last_seq}};
  }
  std::uint64_t count(const std::string& kind) const {
    auto it = stats.violations.find(kind);
    return it == stats.violations.end() ? 0 : it->second;
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(sim_ledger)

BOOST_AUTO_TEST_CASE(one_host_flags_an_event_that_arrives_after_a_higher_seq) {
  Fixture f({});
  f.both(2);
  f.both(1);
  f.ledger.finish(2);
  BOOST_TEST(f.count("seq_out_of_order") == 2u);
}

BOOST_AUTO_TEST_CASE(shared_subscriptions_accept_events_in_any_order_and_count_them) {
  Fixture f({true, false});
  f.both(3);
  f.both(1);
  f.both(2);
  f.ledger.finish(3);
  BOOST_TEST(f.stats.violations.empty());
  BOOST_TEST(f.stats.faults.reordered == 4u);
}

BOOST_AUTO_TEST_CASE(shared_subscriptions_still_report_a_seq_that_never_arrives) {
  Fixture f({true, false});
  f.both(1);
  f.both(3);
  f.ledger.finish(3);
  BOOST_TEST(f.count("seq_gap") == 2u);
}

BOOST_AUTO_TEST_CASE(a_missing_seq_is_read_back_with_after_seq_once_it_is_overdue) {
  Fixture f({true, false});
  f.both(1);
  f.both(3);
  BOOST_TEST(!f.ledger.catch_up_from(Role::driver, f.t0 + 100ms, 1s).has_value());
  const auto from = f.ledger.catch_up_from(Role::driver, f.t0 + 2s, 1s);
  BOOST_REQUIRE(from.has_value());
  BOOST_TEST(*from == 1);
  f.ledger.catch_up_page(Role::driver, Fixture::page({2, 3}, 3), 200, 1, f.t0 + 2s);
  BOOST_TEST(!f.ledger.catch_up_from(Role::driver, f.t0 + 3s, 1s).has_value());
  // The broadcast comes after all: a late event, not a redelivery, not a violation.
  f.event(Role::driver, 2);
  f.event(Role::passenger, 2);
  f.ledger.finish(3);
  BOOST_TEST(f.stats.violations.empty());
  BOOST_TEST(f.stats.redelivered == 0u);
}

BOOST_AUTO_TEST_CASE(a_seq_only_a_catch_up_found_is_a_violation_unless_faults_are_expected) {
  for (bool faults : {false, true}) {
    Fixture f({true, faults});
    f.both(1);
    f.both(3);
    for (Role r : {Role::driver, Role::passenger}) {
      f.ledger.catch_up_page(r, Fixture::page({2, 3}, 3), 200, 1, f.t0 + 2s);
    }
    f.ledger.finish(3);
    BOOST_TEST(f.count("event_not_broadcast") == (faults ? 0u : 2u));
    BOOST_TEST(f.stats.faults.events_recovered == (faults ? 2u : 0u));
    BOOST_TEST(f.count("seq_gap") == 0u);
  }
}

BOOST_AUTO_TEST_CASE(the_booking_last_seq_beyond_what_arrived_is_read_back) {
  Fixture f({true, true});
  f.both(1);
  f.ledger.note_last_seq(3, f.t0);
  const auto from = f.ledger.catch_up_from(Role::passenger, f.t0 + 2s, 1s);
  BOOST_REQUIRE(from.has_value());
  BOOST_TEST(*from == 1);
  f.ledger.catch_up_page(Role::passenger, Fixture::page({2, 3}, 3), 200, 1, f.t0 + 2s);
  BOOST_TEST(f.ledger.max_seen(Role::passenger) == 3);
}

BOOST_AUTO_TEST_CASE(a_catch_up_page_with_a_hole_or_the_wrong_start_is_a_violation) {
  Fixture f({true, true});
  f.both(1);
  f.both(4);
  f.ledger.catch_up_page(Role::driver, Fixture::page({2, 4}, 4), 200, 1, f.t0 + 2s);
  BOOST_TEST(f.count("history_gap") == 1u);
  f.ledger.catch_up_page(Role::passenger, Fixture::page({3, 4}, 4), 200, 1, f.t0 + 2s);
  BOOST_TEST(f.count("history_count") >= 1u);
}

BOOST_AUTO_TEST_CASE(a_resent_message_may_be_answered_duplicate_and_must_be_stored_once) {
  Fixture f({true, true});
  const std::string id = f.ledger.next_message_id(Role::driver);
  json sent = Fixture::record(1, id);
  sent["sender"] = "driver";
  f.ledger.message_sent(id, Role::driver, fnv1a("t1"), f.t0);
  f.ledger.message_resent(id);
  f.ledger.message_confirmed(id, *read_message(sent), true, f.t0, f.t0 + 1ms);
  BOOST_TEST(f.count("unexpected_duplicate") == 0u);
  f.ledger.message_event(Role::driver, *read_message(sent), f.t0);
  json again = sent;
  again["seq"] = 2;
  f.ledger.message_event(Role::driver, *read_message(again), f.t0);
  BOOST_TEST(f.count("duplicate_message") == 1u);
}

BOOST_AUTO_TEST_CASE(a_message_sent_once_and_answered_duplicate_is_a_violation) {
  Fixture f({true, true});
  const std::string id = f.ledger.next_message_id(Role::passenger);
  json sent = Fixture::record(1, id);
  sent["sender"] = "passenger";
  f.ledger.message_sent(id, Role::passenger, fnv1a("t1"), f.t0);
  f.ledger.message_confirmed(id, *read_message(sent), true, f.t0, f.t0 + 1ms);
  BOOST_TEST(f.count("unexpected_duplicate") == 1u);
}

// A call started and its start went unanswered (the host was killed after its commit): its ringing
// event may be lost with that host, so `ended` may be the first state a subscriber sees. A call
// still awaited gets no such pass.
BOOST_AUTO_TEST_CASE(an_abandoned_call_may_first_be_seen_ended_an_awaited_one_may_not) {
  Fixture f({true, true});
  const CallView ended{kCode, "call-1", "driver", "passenger", "ended", "missed"};
  f.ledger.expect_call("call-1", Role::driver, {"completed"});
  f.ledger.allow_any_end("call-1");
  f.ledger.call_event(Role::passenger, ended, 1);
  BOOST_TEST(f.count("call_state") == 0u);
  // Later steps are still checked: ended never goes back to ringing.
  f.ledger.call_event(Role::passenger, CallView{kCode, "call-1", "driver", "passenger", "ringing", ""}, 2);
  BOOST_TEST(f.count("call_state") == 1u);

  const CallView other{kCode, "call-2", "driver", "passenger", "ended", "missed"};
  f.ledger.expect_call("call-2", Role::driver, {});
  f.ledger.call_event(Role::driver, other, 3);
  BOOST_TEST(f.count("call_state") == 2u);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace navietakie::sim
