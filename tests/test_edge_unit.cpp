// The edge node's logic that stands alone: the replica's gap tracking (replica_until_seq) and the
// outbox (arrival order, one entry per message_id, durable across a reopen).
#include <boost/test/unit_test.hpp>

#include "edge/edge_store.hpp"
#include "edge/replica.hpp"
#include "support/processes.hpp"

namespace nt = navietakie;
using navietakie::test::TempDir;

namespace {

nt::Message message(const std::string& booking, std::uint64_t seq) {
  nt::Message m;
  m.booking_code = booking;
  m.seq = seq;
  m.message_id = "m-" + std::to_string(seq);
  m.text = "hello";
  m.ts = 1764160000000;
  return m;
}

std::vector<std::uint64_t> seqs(const std::vector<nt::Message>& messages) {
  std::vector<std::uint64_t> out;
  for (const auto& m : messages) out.push_back(m.seq);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(edge_replica)

BOOST_AUTO_TEST_CASE(in_order_messages_are_appended_and_repeats_ignored) {
  nt::ReplicaTracker t;
  t.set_until("B1", 0);
  auto first = t.receive(message("B1", 1));
  BOOST_TEST(seqs(first.append) == std::vector<std::uint64_t>{1}, boost::test_tools::per_element());
  BOOST_TEST(!first.gap);
  t.applied("B1", 1);
  BOOST_TEST(t.until("B1") == 1u);
  auto repeat = t.receive(message("B1", 1));  // a catch-up page overlapping an event
  BOOST_TEST(repeat.append.empty());
  BOOST_TEST(!repeat.gap);
}

BOOST_AUTO_TEST_CASE(a_gap_holds_later_messages_until_it_is_filled) {
  nt::ReplicaTracker t;
  t.set_until("B1", 2);
  auto past_gap = t.receive(message("B1", 5));
  BOOST_TEST(past_gap.append.empty());
  BOOST_TEST(past_gap.gap);  // catch up from until() = 2
  BOOST_TEST(t.until("B1") == 2u);  // replica_until_seq does not move past a hole
  BOOST_TEST(t.receive(message("B1", 4)).gap);
  auto filled = t.receive(message("B1", 3));
  BOOST_TEST(seqs(filled.append) == (std::vector<std::uint64_t>{3, 4, 5}), boost::test_tools::per_element());
  BOOST_TEST(!filled.gap);
  t.applied("B1", 5);
  BOOST_TEST(t.until("B1") == 5u);
}

BOOST_AUTO_TEST_CASE(bookings_are_tracked_apart) {
  nt::ReplicaTracker t;
  t.set_until("A", 10);
  BOOST_TEST(t.until("B") == 0u);
  BOOST_TEST(seqs(t.receive(message("B", 1)).append) == std::vector<std::uint64_t>{1}, boost::test_tools::per_element());
  BOOST_TEST(t.receive(message("A", 12)).gap);
  t.set_catching_up("A", true);
  BOOST_TEST(t.catching_up("A"));
  BOOST_TEST(!t.catching_up("B"));
  t.reset_catch_ups();
  BOOST_TEST(!t.catching_up("A"));
}

BOOST_AUTO_TEST_CASE(message_records_are_read_as_the_cloud_writes_them) {
  auto m = nt::message_from_json(nt::to_json(message("B1", 7)));
  BOOST_REQUIRE(m.has_value());
  BOOST_TEST((*m == message("B1", 7)));
  BOOST_TEST(!nt::message_from_json(nt::Json{{"booking_code", "B1"}}).has_value());
  nt::Json no_seq = nt::to_json(message("B1", 7));
  no_seq.erase("seq");  // a queued reply's record: never stored in the replica
  BOOST_TEST(!nt::message_from_json(no_seq).has_value());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(edge_outbox)

BOOST_AUTO_TEST_CASE(entries_keep_arrival_order_and_one_per_message_id_across_a_reopen) {
  TempDir dir("navietakie-edge-outbox");
  const std::string path = dir.file("edge");
  {
    nt::EdgeStore store(path, std::size_t{8} << 20, nt::SyncMode::nosync);
    auto added = store.add_outbox({{0, "B1", "m-a", "{\"text\":\"a\"}"}, {0, "B2", "m-b", "{}"}, {0, "B1", "m-c", "{}"}});
    BOOST_TEST(added.size() == 3u);
    BOOST_TEST(added[0].key < added[1].key);
    BOOST_TEST(added[1].key < added[2].key);
    // A retry of a waiting message_id adds nothing: the waiting entry comes back.
    auto again = store.add_outbox({{0, "B1", "m-a", "{\"text\":\"changed\"}"}});
    BOOST_TEST(again[0].key == added[0].key);
    BOOST_TEST(again[0].payload == "{\"text\":\"a\"}");
    // The same message_id in another booking is another message.
    BOOST_TEST(store.add_outbox({{0, "B2", "m-a", "{}"}})[0].key > added[2].key);
    store.add_booking("B1");
    store.add_booking("B1");
    store.put_presence("B1", "{\"booking_code\":\"B1\"}");
  }
  nt::EdgeStore reopened(path, std::size_t{8} << 20, nt::SyncMode::nosync);
  auto waiting = reopened.outbox();
  std::vector<std::string> ids;
  for (const auto& e : waiting) ids.push_back(e.booking + "/" + e.message_id);
  BOOST_TEST(ids == (std::vector<std::string>{"B1/m-a", "B2/m-b", "B1/m-c", "B2/m-a"}), boost::test_tools::per_element());
  reopened.remove_outbox("B2", "m-b");  // confirmed by the cloud
  reopened.remove_outbox("B2", "m-b");  // twice: nothing
  BOOST_TEST(!reopened.outbox_entry("B2", "m-b").has_value());
  BOOST_TEST(reopened.outbox_entry("B1", "m-c").has_value());
  BOOST_TEST(reopened.outbox().size() == 3u);
  // New keys continue after the highest: arrival order holds across a restart.
  auto later = reopened.add_outbox({{0, "B1", "m-d", "{}"}});
  BOOST_TEST(later[0].key > waiting.back().key);
  BOOST_TEST(reopened.bookings() == std::vector<std::string>{"B1"}, boost::test_tools::per_element());
  BOOST_TEST(reopened.all_presence().size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_full_store_refuses_with_kind_full_and_keeps_what_it_had) {
  TempDir dir("navietakie-edge-full");
  nt::EdgeStore store(dir.file("edge"), std::size_t{1} << 20, nt::SyncMode::nosync);  // 1 MiB
  store.add_outbox({{0, "B1", "m-0", "{}"}});
  bool full = false;
  const std::string big(60000, 'x');
  for (int i = 1; i < 100 && !full; ++i) {
    try {
      store.add_outbox({{0, "B1", "m-" + std::to_string(i), big}});
    } catch (const nt::StoreError& e) {
      full = e.kind() == nt::StoreError::Kind::full;
      BOOST_TEST(full, e.what());
    }
  }
  BOOST_TEST(full);
  BOOST_TEST(store.outbox_entry("B1", "m-0").has_value());
}

BOOST_AUTO_TEST_SUITE_END()
