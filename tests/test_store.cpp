// The store against a real environment in a fresh temp dir per test: LMDB, and PostgreSQL when
// NAVIETAKIE_TEST_STORE=postgres (ctest test_store_postgres; tests/support/store_space.hpp).
#include <boost/test/unit_test.hpp>

#include "support/store_space.hpp"
#include "temp_dir.hpp"

#include <lmdb.h>
#include <stdlib.h>  // mkdtemp

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "store/keys.hpp"
#include "store/serialize.hpp"
#include "store/store.hpp"

using namespace navietakie;

namespace {

using TempDir = navietakie::test::UnitTempDir;

std::unique_ptr<Store> open_store(const std::string& dir, std::size_t map_size = std::size_t{64} << 20,
                                  SyncMode sync = SyncMode::nosync) {
  LmdbOptions options;
  options.dir = dir;
  options.map_size_bytes = map_size;
  options.sync = sync;
  return open_lmdb_store(options);
}

// Message seq of a booking: types cycle text, call, system by seq % 3 (1 -> call, 2 -> system,
// 0 -> text); senders alternate (odd -> driver, even -> passenger); ts = 1000 * seq.
Message make_message(const std::string& booking, std::uint64_t seq) {
  Message m;
  m.booking_code = booking;
  m.seq = seq;
  m.message_id = "m-" + std::to_string(seq);
  switch (seq % 3) {
    case 1: m.type = MessageType::call; break;
    case 2: m.type = MessageType::system; break;
    default: m.type = MessageType::text; break;
  }
  m.sender = seq % 2 == 1 ? Role::driver : Role::passenger;
  if (seq % 5 == 0) m.sender_id = "id-" + std::to_string(seq);
  m.text = "hello " + std::to_string(seq);
  m.ts = static_cast<Millis>(1000 * seq);
  return m;
}

void append_messages(Store& store, const std::string& booking, std::uint64_t count) {
  store.write([&](StoreWriter& w) {
    const std::uint64_t first = w.last_seq(booking) + 1;
    for (std::uint64_t seq = first; seq < first + count; ++seq) w.append_message(make_message(booking, seq));
  });
}

template <class T>
T read_value(const Store& store, const std::function<T(const StoreReader&)>& fn) {
  T out{};
  store.read([&](const StoreReader& r) { out = fn(r); });
  return out;
}

HistoryPage history(const Store& store, const std::string& booking, const HistoryQuery& q) {
  return read_value<HistoryPage>(store, [&](const StoreReader& r) { return r.history(booking, q); });
}

std::uint64_t last_seq(const Store& store, const std::string& booking) {
  return read_value<std::uint64_t>(store, [&](const StoreReader& r) { return r.last_seq(booking); });
}

std::vector<std::uint64_t> seqs(const HistoryPage& page) {
  std::vector<std::uint64_t> out;
  for (const auto& m : page.messages) out.push_back(m.seq);
  return out;
}

std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t s = first; s <= last; ++s) out.push_back(s);
  return out;
}

HistoryQuery query(std::size_t limit) {
  HistoryQuery q;
  q.limit = limit;
  return q;
}

Call make_call(const std::string& booking, const std::string& id, CallState state) {
  Call c;
  c.booking_code = booking;
  c.call_id = id;
  c.state = state;
  c.created_at = 1000;
  c.ring_deadline = 31000;
  if (state != CallState::ringing) c.connected_at = 2000;
  if (state == CallState::ended) {
    c.ended_at = 5000;
    c.end_reason = EndReason::completed;
  }
  return c;
}

std::vector<std::string> call_ids(const std::vector<Call>& calls) {
  std::vector<std::string> out;
  for (const auto& c : calls) out.push_back(c.call_id);
  return out;
}

bool is_full(const StoreError& e) { return e.kind() == StoreError::Kind::full; }
bool is_io(const StoreError& e) { return e.kind() == StoreError::Kind::io; }

// Writes one raw key/value, bypassing the store (to plant what the store must refuse).
void raw_put(const std::string& dir, const char* db, const std::string& key, const std::string& value) {
  MDB_env* env = nullptr;
  BOOST_REQUIRE(mdb_env_create(&env) == 0);
  mdb_env_set_maxdbs(env, 16);
  BOOST_REQUIRE(mdb_env_open(env, dir.c_str(), 0, 0644) == 0);
  MDB_txn* txn = nullptr;
  BOOST_REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
  MDB_dbi dbi = 0;
  BOOST_REQUIRE(mdb_dbi_open(txn, db, MDB_CREATE, &dbi) == 0);
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  BOOST_REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
  BOOST_REQUIRE(mdb_txn_commit(txn) == 0);
  mdb_env_close(env);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(store)

BOOST_AUTO_TEST_CASE(append_and_read_back) {
  test::StoreSpace space;
  auto store = space.open();
  append_messages(*store, "BK1", 3);
  store->read([](const StoreReader& r) {
    BOOST_TEST(r.last_seq("BK1") == 3U);
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
      const auto m = r.message("BK1", seq);
      BOOST_REQUIRE(m.has_value());
      BOOST_TEST((*m == make_message("BK1", seq)));
    }
    BOOST_TEST(!r.message("BK1", 4).has_value());
    BOOST_TEST(!r.message("BK1", 0).has_value());
    BOOST_TEST(!r.message("BK2", 1).has_value());
  });
}

BOOST_AUTO_TEST_CASE(last_seq_with_prefix_sharing_codes) {
  test::StoreSpace space;
  auto store = space.open();
  append_messages(*store, "BK1", 3);
  append_messages(*store, "BK10", 5);
  append_messages(*store, "BK", 2);
  BOOST_TEST(last_seq(*store, "BK1") == 3U);
  BOOST_TEST(last_seq(*store, "BK10") == 5U);
  BOOST_TEST(last_seq(*store, "BK") == 2U);
  // Absent bookings sorting before, between and after the others.
  for (const char* absent : {"A", "BK0", "BK100", "BK2", "Z", "zz"}) BOOST_TEST(last_seq(*store, absent) == 0U);

  const auto page = history(*store, "BK1", query(50));
  BOOST_TEST(seqs(page) == range(1, 3), boost::test_tools::per_element());
  for (const auto& m : page.messages) BOOST_TEST(m.booking_code == "BK1");
  BOOST_TEST(seqs(history(*store, "BK10", query(50))) == range(1, 5), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(append_checks_its_invariant) {
  test::StoreSpace space;
  auto store = space.open();
  append_messages(*store, "BK1", 2);
  BOOST_CHECK_THROW(store->write([](StoreWriter& w) { w.append_message(make_message("BK1", 4)); }),
                    std::logic_error);  // a gap
  BOOST_CHECK_THROW(store->write([](StoreWriter& w) { w.append_message(make_message("BK1", 2)); }),
                    std::logic_error);  // a repeat
  BOOST_CHECK_THROW(store->write([](StoreWriter& w) {
    Message m = make_message("BK1", 3);
    m.message_id = "m-1";  // already used
    w.append_message(m);
  }),
                    std::logic_error);
  BOOST_CHECK_THROW(store->write([](StoreWriter& w) { w.append_message(make_message("", 1)); }), std::invalid_argument);
  BOOST_TEST(last_seq(*store, "BK1") == 2U);
}

BOOST_AUTO_TEST_CASE(idempotency_lookup) {
  test::StoreSpace space;
  auto store = space.open();
  append_messages(*store, "BK1", 3);
  append_messages(*store, "BK10", 1);  // reuses "m-1" in another booking
  store->read([](const StoreReader& r) {
    const auto m = r.message_by_id("BK1", "m-2");
    BOOST_REQUIRE(m.has_value());
    BOOST_TEST((*m == make_message("BK1", 2)));
    BOOST_TEST(!r.message_by_id("BK1", "m-9").has_value());
    BOOST_TEST(!r.message_by_id("BK2", "m-1").has_value());
    const auto other = r.message_by_id("BK10", "m-1");
    BOOST_REQUIRE(other.has_value());
    BOOST_TEST(other->booking_code == "BK10");
  });
}

BOOST_AUTO_TEST_CASE(history_of_an_empty_booking) {
  test::StoreSpace space;
  auto store = space.open();
  append_messages(*store, "BK1", 3);
  HistoryQuery after0 = query(50);
  after0.after_seq = 0;
  HistoryQuery before = query(50);
  before.before_seq = 5;
  for (const auto& q : {query(50), after0, before}) {
    const auto page = history(*store, "BK10", q);
    BOOST_TEST(page.messages.empty());
    BOOST_TEST(!page.has_more);
    BOOST_TEST(page.last_seq == 0U);
  }
}

BOOST_AUTO_TEST_CASE(history_limit_bigger_than_count) {
  test::StoreSpace space;
  auto store = space.open();
  append_messages(*store, "BK1", 5);
  const auto page = history(*store, "BK1", query(50));
  BOOST_TEST(seqs(page) == range(1, 5), boost::test_tools::per_element());
  BOOST_TEST(!page.has_more);
  BOOST_TEST(page.last_seq == 5U);
  BOOST_TEST((page.messages[2] == make_message("BK1", 3)));
}

BOOST_AUTO_TEST_CASE(history_pages_backwards) {
  test::StoreSpace space;
  auto store = space.open();
  append_messages(*store, "BK1", 250);
  append_messages(*store, "BK10", 7);  // a neighbour whose keys sort right after

  auto page = history(*store, "BK1", query(100));
  BOOST_TEST(seqs(page) == range(151, 250), boost::test_tools::per_element());
  BOOST_TEST(page.has_more);
  BOOST_TEST(page.last_seq == 250U);

  HistoryQuery q = query(100);
  q.before_seq = page.messages.front().seq;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(51, 150), boost::test_tools::per_element());
  BOOST_TEST(page.has_more);

  q.before_seq = page.messages.front().seq;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(1, 50), boost::test_tools::per_element());
  BOOST_TEST(!page.has_more);
  BOOST_TEST(page.last_seq == 250U);

  // Exactly at the end: 50 older messages remain, a page of 50 has nothing beyond it.
  q = query(50);
  q.before_seq = 51;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(1, 50), boost::test_tools::per_element());
  BOOST_TEST(!page.has_more);
  q.before_seq = 52;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(2, 51), boost::test_tools::per_element());
  BOOST_TEST(page.has_more);
  q.before_seq = 1;
  page = history(*store, "BK1", q);
  BOOST_TEST(page.messages.empty());
  BOOST_TEST(!page.has_more);
  q.before_seq = 0;
  BOOST_TEST(history(*store, "BK1", q).messages.empty());
  q.before_seq = 1000;  // beyond the newest: the newest page
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(201, 250), boost::test_tools::per_element());
  BOOST_TEST(page.has_more);

  // Whole walk at the default limit: every message exactly once.
  std::vector<std::uint64_t> all;
  q = query(50);
  q.before_seq.reset();
  for (;;) {
    page = history(*store, "BK1", q);
    const auto page_seqs = seqs(page);
    all.insert(all.begin(), page_seqs.begin(), page_seqs.end());
    if (!page.has_more) break;
    q.before_seq = page.messages.front().seq;
  }
  BOOST_TEST(all == range(1, 250), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(history_pages_forwards) {
  test::StoreSpace space;
  auto store = space.open();
  append_messages(*store, "BK", 4);  // a neighbour whose keys sort right before
  append_messages(*store, "BK1", 250);

  HistoryQuery q = query(100);
  q.after_seq = 0;  // from the first
  auto page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(1, 100), boost::test_tools::per_element());
  BOOST_TEST(page.has_more);
  BOOST_TEST(page.last_seq == 250U);

  q.after_seq = page.messages.back().seq;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(101, 200), boost::test_tools::per_element());
  BOOST_TEST(page.has_more);

  q.after_seq = page.messages.back().seq;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(201, 250), boost::test_tools::per_element());
  BOOST_TEST(!page.has_more);

  q = query(50);
  q.after_seq = 200;  // exactly the last 50
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(201, 250), boost::test_tools::per_element());
  BOOST_TEST(!page.has_more);
  q.after_seq = 199;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(200, 249), boost::test_tools::per_element());
  BOOST_TEST(page.has_more);
  q.after_seq = 249;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(250, 250), boost::test_tools::per_element());
  BOOST_TEST(!page.has_more);
  q.after_seq = 250;
  page = history(*store, "BK1", q);
  BOOST_TEST(page.messages.empty());
  BOOST_TEST(!page.has_more);
  BOOST_TEST(page.last_seq == 250U);
  q.after_seq = UINT64_MAX;
  BOOST_TEST(history(*store, "BK1", q).messages.empty());
}

BOOST_AUTO_TEST_CASE(history_filters_apply_before_the_limit) {
  test::StoreSpace space;
  auto store = space.open();
  append_messages(*store, "BK1", 250);

  // Calls are seq % 3 == 1: 1, 4, ..., 250 (84 of them).
  HistoryQuery q = query(50);
  q.types = {MessageType::call};
  auto page = history(*store, "BK1", q);
  BOOST_REQUIRE(page.messages.size() == 50U);
  BOOST_TEST(page.messages.front().seq == 103U);
  BOOST_TEST(page.messages.back().seq == 250U);
  BOOST_TEST(page.has_more);
  BOOST_TEST(page.last_seq == 250U);
  for (const auto& m : page.messages) BOOST_TEST((m.type == MessageType::call));
  q.before_seq = page.messages.front().seq;
  page = history(*store, "BK1", q);
  BOOST_TEST(page.messages.size() == 34U);
  BOOST_TEST(page.messages.front().seq == 1U);
  BOOST_TEST(!page.has_more);

  // has_more counts only matching messages: 249 and 250 exist but are not system messages.
  q = query(1);
  q.types = {MessageType::system};  // 2, 5, ..., 248
  q.after_seq = 245;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(248, 248), boost::test_tools::per_element());
  BOOST_TEST(!page.has_more);
  q.after_seq.reset();
  q.before_seq = 5;  // only 2 is older and matching; 1, 3, 4 are not
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(2, 2), boost::test_tools::per_element());
  BOOST_TEST(!page.has_more);

  // Several types, and a sender: text (seq % 3 == 0) or call (% 3 == 1), from the passenger (even).
  q = query(3);
  q.types = {MessageType::text, MessageType::call};
  q.sender = Role::passenger;
  q.after_seq = 0;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == (std::vector<std::uint64_t>{4, 6, 10}), boost::test_tools::per_element());
  BOOST_TEST(page.has_more);

  // since/until are inclusive ts bounds (ts = 1000 * seq).
  q = query(11);
  q.since = 100000;
  q.until = 110000;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(100, 110), boost::test_tools::per_element());
  BOOST_TEST(!page.has_more);
  q.limit = 10;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(101, 110), boost::test_tools::per_element());
  BOOST_TEST(page.has_more);
  q.after_seq = 0;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(100, 109), boost::test_tools::per_element());
  BOOST_TEST(page.has_more);
  q.after_seq = 100;
  page = history(*store, "BK1", q);
  BOOST_TEST(seqs(page) == range(101, 110), boost::test_tools::per_element());
  BOOST_TEST(!page.has_more);

  // Nothing matches: an empty page, but last_seq is still the booking's.
  q = query(50);
  q.sender = Role::system;
  page = history(*store, "BK1", q);
  BOOST_TEST(page.messages.empty());
  BOOST_TEST(!page.has_more);
  BOOST_TEST(page.last_seq == 250U);
}

BOOST_AUTO_TEST_CASE(history_rejects_both_cursors) {
  test::StoreSpace space;
  auto store = space.open();
  HistoryQuery q = query(10);
  q.before_seq = 5;
  q.after_seq = 1;
  BOOST_CHECK_THROW(history(*store, "BK1", q), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(put_call_keeps_the_indexes) {
  test::StoreSpace space;
  auto store = space.open();
  auto put = [&](const Call& c) { store->write([&](StoreWriter& w) { w.put_call(c); }); };
  auto active = [&](const std::string& booking) {
    return read_value<std::optional<Call>>(*store, [&](const StoreReader& r) { return r.active_call(booking); });
  };
  auto ringing = [&] {
    return call_ids(read_value<std::vector<Call>>(*store, [](const StoreReader& r) { return r.ringing_calls(); }));
  };

  BOOST_TEST(!active("BK1").has_value());
  BOOST_TEST(ringing().empty());

  put(make_call("BK1", "c-1", CallState::ringing));
  put(make_call("BK10", "c-9", CallState::ringing));
  BOOST_TEST((active("BK1") == make_call("BK1", "c-1", CallState::ringing)));
  BOOST_TEST(ringing() == (std::vector<std::string>{"c-1", "c-9"}), boost::test_tools::per_element());

  put(make_call("BK1", "c-1", CallState::connected));
  BOOST_TEST((active("BK1") == make_call("BK1", "c-1", CallState::connected)));
  BOOST_TEST(ringing() == (std::vector<std::string>{"c-9"}), boost::test_tools::per_element());

  // A second active call in the booking would break the one-active-call index.
  BOOST_CHECK_THROW(put(make_call("BK1", "c-2", CallState::ringing)), std::logic_error);

  put(make_call("BK1", "c-1", CallState::ended));
  BOOST_TEST(!active("BK1").has_value());
  BOOST_TEST(ringing() == (std::vector<std::string>{"c-9"}), boost::test_tools::per_element());
  store->read([](const StoreReader& r) {
    const auto c = r.call("BK1", "c-1");
    BOOST_REQUIRE(c.has_value());
    BOOST_TEST((c->state == CallState::ended));
    BOOST_TEST(c->duration_ms() == 3000);
    BOOST_TEST(!r.call("BK1", "c-9").has_value());
  });

  // A new call after the end; ending a call declined straight from ringing clears both indexes.
  put(make_call("BK1", "c-2", CallState::ringing));
  BOOST_TEST(active("BK1")->call_id == "c-2");
  Call declined = make_call("BK1", "c-2", CallState::ringing);
  declined.state = CallState::ended;
  declined.end_reason = EndReason::declined;
  declined.ended_at = 3000;
  put(declined);
  BOOST_TEST(!active("BK1").has_value());
  BOOST_TEST(active("BK10")->call_id == "c-9");
  BOOST_TEST(ringing() == (std::vector<std::string>{"c-9"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(connections_and_presence_round_trip) {
  test::StoreSpace space;
  auto store = space.open();
  const Connection driver{"BK1", "drv-1", Role::driver, true, 100};
  const Connection passenger{"BK1", "pax-1", Role::passenger, true, 200};
  const Connection neighbour{"BK10", "drv-1", Role::driver, true, 300};
  Presence presence;
  presence.booking_code = "BK1";
  presence.driver = RolePresence{true, Millis{100}};
  Presence other;
  other.booking_code = "BK10";
  other.passenger = RolePresence{false, Millis{7}};
  store->write([&](StoreWriter& w) {
    w.put_connection(driver);
    w.put_connection(passenger);
    w.put_connection(neighbour);
    w.put_presence(presence);
    w.put_presence(other);
  });
  Connection offline = driver;
  offline.online = false;
  offline.since = 400;
  store->write([&](StoreWriter& w) { w.put_connection(offline); });  // replaces

  store->read([&](const StoreReader& r) {
    const auto conns = r.connections("BK1");
    BOOST_REQUIRE(conns.size() == 2U);
    BOOST_TEST((conns[0] == offline));
    BOOST_TEST((conns[1] == passenger));
    BOOST_TEST(r.connections("BK10").size() == 1U);
    BOOST_TEST(r.connections("BK").empty());
    BOOST_TEST((r.presence("BK1") == presence));
    BOOST_TEST(!r.presence("BK2").has_value());
    const auto all = r.all_presence();
    BOOST_REQUIRE(all.size() == 2U);
    BOOST_TEST((all[0] == presence));
    BOOST_TEST((all[1] == other));
  });
}

// LMDB only: the same data dir opened twice in one process, and the sync modes, are LMDB's.
BOOST_AUTO_TEST_CASE(everything_survives_a_reopen, *boost::unit_test::precondition(test::LmdbOnly{})) {
  TempDir dir;
  const Connection conn{"BK1", "drv-1", Role::driver, true, 100};
  Presence presence;
  presence.booking_code = "BK1";
  presence.driver = RolePresence{true, Millis{100}};
  {
    auto store = open_store(dir.path(), std::size_t{64} << 20, SyncMode::full);
    append_messages(*store, "BK1", 20);
    store->write([&](StoreWriter& w) {
      w.put_call(make_call("BK1", "c-1", CallState::ringing));
      w.put_connection(conn);
      w.put_presence(presence);
    });
    // The same data dir twice in one process would break LMDB's locking.
    BOOST_CHECK_EXCEPTION(open_store(dir.path()), StoreError, is_io);
  }
  auto store = open_store(dir.path(), std::size_t{64} << 20, SyncMode::nometasync);
  store->read([&](const StoreReader& r) {
    BOOST_TEST(r.last_seq("BK1") == 20U);
    BOOST_TEST((r.message("BK1", 20) == make_message("BK1", 20)));
    BOOST_TEST(r.message_by_id("BK1", "m-7")->seq == 7U);
    BOOST_TEST(r.active_call("BK1")->call_id == "c-1");
    BOOST_TEST(r.ringing_calls().size() == 1U);
    BOOST_TEST(r.connections("BK1").size() == 1U);
    BOOST_TEST((r.presence("BK1") == presence));
  });
  append_messages(*store, "BK1", 1);
  BOOST_TEST(last_seq(*store, "BK1") == 21U);
}

// LMDB only: a data dir is LMDB's.
BOOST_AUTO_TEST_CASE(creates_a_missing_data_dir, *boost::unit_test::precondition(test::LmdbOnly{})) {
  TempDir dir;
  const std::string nested = dir.path() + "/a/b/data";
  auto store = open_store(nested);
  append_messages(*store, "BK1", 1);
  BOOST_TEST(std::filesystem::exists(nested + "/data.mdb"));
}

// LMDB only: plants a version in LMDB's meta table (test_postgres has the PostgreSQL one).
BOOST_AUTO_TEST_CASE(refuses_a_newer_schema, *boost::unit_test::precondition(test::LmdbOnly{})) {
  TempDir dir;
  open_store(dir.path()).reset();  // writes this build's schema_version
  raw_put(dir.path(), keys::db::meta, std::string(keys::schema_version), keys::be64(99));
  BOOST_CHECK_EXCEPTION(open_store(dir.path()), StoreError, is_io);
}

// LMDB only: plants raw bytes in an LMDB table.
BOOST_AUTO_TEST_CASE(a_corrupt_record_reads_as_io_error, *boost::unit_test::precondition(test::LmdbOnly{})) {
  TempDir dir;
  {
    auto store = open_store(dir.path());
    append_messages(*store, "BK1", 2);
  }
  raw_put(dir.path(), keys::db::messages, keys::message("BK1", 2), "garbage bytes");
  auto store = open_store(dir.path());
  store->read([](const StoreReader& r) {
    BOOST_TEST(r.message("BK1", 1).has_value());
    BOOST_CHECK_EXCEPTION(r.message("BK1", 2), StoreError, is_io);
    BOOST_CHECK_EXCEPTION(r.history("BK1", HistoryQuery{}), StoreError, is_io);
  });
}

BOOST_AUTO_TEST_CASE(unit_rollback_keeps_the_rest_of_the_batch) {
  test::StoreSpace space;
  auto store = space.open();
  store->write([](StoreWriter& w) {
    w.unit([&] { w.append_message(make_message("BK1", 1)); });
    try {
      w.unit([&] {
        Message doomed = make_message("BK1", 2);
        doomed.message_id = "doomed";
        w.append_message(doomed);
        w.put_call(make_call("BK1", "c-1", CallState::ringing));
        BOOST_TEST(w.last_seq("BK1") == 2U);  // the unit sees its own writes
        BOOST_TEST(w.active_call("BK1").has_value());
        throw std::runtime_error("handler failed");
      });
      BOOST_FAIL("unit() must rethrow");
    } catch (const std::runtime_error& e) {
      BOOST_TEST(std::string(e.what()) == "handler failed");
    }
    BOOST_TEST(w.last_seq("BK1") == 1U);  // rolled back, the batch goes on
    BOOST_TEST(!w.active_call("BK1").has_value());
    w.unit([&] {
      w.append_message(make_message("BK1", 2));
      w.unit([&] { w.append_message(make_message("BK1", 3)); });  // units nest
    });
    BOOST_TEST(w.last_seq("BK1") == 3U);
  });
  store->read([](const StoreReader& r) {
    BOOST_TEST(r.last_seq("BK1") == 3U);
    BOOST_TEST((r.message("BK1", 2) == make_message("BK1", 2)));
    BOOST_TEST(!r.message_by_id("BK1", "doomed").has_value());
    BOOST_TEST(!r.active_call("BK1").has_value());
    BOOST_TEST(r.ringing_calls().empty());
  });

  // A write whose fn throws stores nothing.
  BOOST_CHECK_THROW(store->write([](StoreWriter& w) {
    w.append_message(make_message("BK1", 4));
    throw std::runtime_error("late failure");
  }),
                    std::runtime_error);
  BOOST_TEST(last_seq(*store, "BK1") == 3U);
}

// LMDB only: the map size is LMDB's (test_postgres covers a lost database).
BOOST_AUTO_TEST_CASE(map_full_fails_the_unit_and_reads_go_on, *boost::unit_test::precondition(test::LmdbOnly{})) {
  TempDir dir;
  // 1 MiB: room for the empty databases and a few dozen 16 KiB messages.
  auto store = open_store(dir.path(), std::size_t{1} << 20);
  append_messages(*store, "BK1", 5);
  auto big = [](std::uint64_t seq) {
    Message m = make_message("BK1", seq);
    m.text = std::string(16 * 1024, 'x');
    return m;
  };

  // Each batch: small and big messages, one unit each. When a big one no longer fits, the batch
  // goes on with one more small unit and commits whatever fit.
  std::uint64_t committed = 5;
  bool full = false;
  bool failed_batch_committed = false;
  std::uint64_t kept_after_failure = 0;
  for (int batch = 0; !full && batch < 200; ++batch) {
    std::uint64_t appended = 0;
    try {
      store->write([&](StoreWriter& w) {
        auto try_append = [&](bool large) {
          const std::uint64_t seq = committed + appended + 1;
          try {
            w.unit([&] { w.append_message(large ? big(seq) : make_message("BK1", seq)); });
            ++appended;
            return true;
          } catch (const StoreError& e) {
            BOOST_TEST(is_full(e), e.what());
            return false;
          }
        };
        for (int i = 0; i < 4 && !full; ++i) {
          try_append(false);
          full = !try_append(true);
        }
        if (full) {
          // The txn outlives its failed unit: reads still answer, and see the units that held.
          BOOST_TEST(w.last_seq("BK1") == committed + appended);
          const std::uint64_t before = appended;
          try_append(false);
          kept_after_failure = appended - before;
        }
      });
      committed += appended;
      failed_batch_committed = full;
    } catch (const StoreError& e) {
      BOOST_TEST(is_full(e), e.what());  // the commit itself found no room: the batch is gone
      full = true;
    }
  }
  BOOST_TEST_MESSAGE("map full after " << committed << " committed messages; failing batch "
                                       << (failed_batch_committed ? "committed" : "lost at commit") << ", "
                                       << kept_after_failure << " unit(s) after the failure kept");
  BOOST_REQUIRE(full);
  BOOST_TEST(committed > 5U);
  // A 16 KiB message needs 5 overflow pages, a small one a fraction of a page: when a big unit no
  // longer fits there is still room for the small ones and the commit, so nothing else is lost.
  BOOST_TEST(failed_batch_committed);
  BOOST_TEST(kept_after_failure == 1U);

  auto check_reads = [&] {
    store->read([&](const StoreReader& r) {
      BOOST_TEST(r.last_seq("BK1") == committed);
      BOOST_TEST((r.message("BK1", 1) == make_message("BK1", 1)));
      BOOST_TEST(r.message("BK1", committed).has_value());
      BOOST_TEST(!r.message("BK1", committed + 1).has_value());
      BOOST_TEST(r.history("BK1", query(10)).messages.size() == 10U);
    });
  };
  check_reads();

  // Outside a unit, a failed write fails the whole write() as full.
  BOOST_CHECK_EXCEPTION(store->write([&](StoreWriter& w) {
    Message huge = big(committed + 1);
    huge.text = std::string(512 * 1024, 'y');
    w.append_message(huge);
  }),
                        StoreError, is_full);
  // fn swallowing the failure does not let a poisoned txn commit.
  BOOST_CHECK_EXCEPTION(store->write([&](StoreWriter& w) {
    Message huge = big(committed + 1);
    huge.text = std::string(512 * 1024, 'y');
    try {
      w.append_message(huge);
    } catch (const StoreError&) {
    }
  }),
                        StoreError, is_full);
  check_reads();

  // A small write afterwards either fits or fails cleanly as full; it never breaks the store.
  Presence small;
  small.booking_code = "BK1";
  bool small_stored = false;
  try {
    store->write([&](StoreWriter& w) { w.put_presence(small); });
    small_stored = true;
  } catch (const StoreError& e) {
    BOOST_TEST(is_full(e), e.what());
  }
  BOOST_TEST_MESSAGE("small write after full: " << (small_stored ? "stored" : "refused as full"));
  check_reads();
  store->read([&](const StoreReader& r) { BOOST_TEST(r.presence("BK1").has_value() == small_stored); });
}

// Read receipts (issue 13): one record per booking, replaced whole, listed for the start-up
// republish; a unit that fails leaves the previous horizons. Runs on both backends.
BOOST_AUTO_TEST_CASE(read_receipts_round_trip) {
  test::StoreSpace space;
  auto store = space.open();
  ReadReceipts first{"BK1", RoleRead{3, Millis{100}}, RoleRead{}};
  const ReadReceipts other{"BK10", RoleRead{}, RoleRead{7, Millis{200}}};
  store->write([&](StoreWriter& w) {
    BOOST_TEST(!w.read_receipts("BK1").has_value());
    w.put_read_receipts(first);
    w.put_read_receipts(other);
    BOOST_TEST((w.read_receipts("BK1") == first));  // its own writes, inside the transaction
  });
  ReadReceipts moved = first;
  moved.passenger = RoleRead{std::uint64_t{1} << 40, Millis{300}};
  store->write([&](StoreWriter& w) {
    w.put_read_receipts(moved);  // replaces
    try {
      w.unit([&] {
        w.put_read_receipts(ReadReceipts{"BK1", RoleRead{9, Millis{9}}, RoleRead{9, Millis{9}}});
        throw std::runtime_error("rolled back");
      });
    } catch (const std::runtime_error&) {
    }
  });
  store->read([&](const StoreReader& r) {
    BOOST_TEST((r.read_receipts("BK1") == moved));
    BOOST_TEST((r.read_receipts("BK10") == other));
    BOOST_TEST(!r.read_receipts("BK").has_value());
    const auto all = r.all_read_receipts();
    BOOST_REQUIRE(all.size() == 2U);
    BOOST_TEST((all[0] == moved));
    BOOST_TEST((all[1] == other));
  });
}

// LMDB only: a version 1 dir (before close) is upgraded in place, its records kept.
BOOST_AUTO_TEST_CASE(upgrades_a_version_1_dir, *boost::unit_test::precondition(test::LmdbOnly{})) {
  TempDir dir;
  {
    auto store = open_store(dir.path());
    append_messages(*store, "BK1", 2);
  }
  raw_put(dir.path(), keys::db::meta, std::string(keys::schema_version), keys::be64(1));
  auto store = open_store(dir.path());
  BOOST_TEST(last_seq(*store, "BK1") == 2U);
  store->write([](StoreWriter& w) { w.put_booking_state(BookingState{"BK1", true, 1000, std::nullopt}); });
  store->read([](const StoreReader& r) { BOOST_TEST(r.booking_state("BK1").has_value()); });
}

// close: the booking state round-trips, closed_before orders by closed_at, and a purge removes
// every key of one booking (its neighbour "BK10" shares the prefix "BK1"), in bounded steps.
BOOST_AUTO_TEST_CASE(booking_state_and_closed_before) {
  test::StoreSpace space;
  auto store = space.open();
  store->write([](StoreWriter& w) {
    w.put_booking_state(BookingState{"BK2", true, 2000, std::nullopt});
    w.put_booking_state(BookingState{"BK1", true, 3000, std::string("done")});
    w.put_booking_state(BookingState{"BK3", true, 1000, std::nullopt});
  });
  store->read([](const StoreReader& r) {
    const auto state = r.booking_state("BK1");
    BOOST_REQUIRE(state.has_value());
    BOOST_TEST((*state == BookingState{"BK1", true, 3000, std::string("done")}));
    BOOST_TEST(!r.booking_state("BK4").has_value());
    BOOST_TEST(r.closed_bookings().size() == 3u);
    const auto before = r.closed_before(2500, 10);
    BOOST_REQUIRE_EQUAL(before.size(), 2u);
    BOOST_TEST(before[0].booking_code == "BK3");
    BOOST_TEST(before[1].booking_code == "BK2");
    BOOST_TEST(r.closed_before(2500, 1).size() == 1u);
  });
}

BOOST_AUTO_TEST_CASE(purge_booking_deletes_one_booking_in_bounded_steps) {
  test::StoreSpace space;
  auto store = space.open();
  for (const std::string booking : {"BK1", "BK10"}) {
    append_messages(*store, booking, 30);
    store->write([&](StoreWriter& w) {
      w.put_call(make_call(booking, "c-1", CallState::ended));
      w.put_call(make_call(booking, "c-2", CallState::ringing));
      w.put_connection(Connection{booking, "client-1", Role::driver, true, 1000});
      w.put_presence(Presence{booking, RolePresence{true, 1000}, RolePresence{}});
      w.put_booking_state(BookingState{booking, true, 5000, std::nullopt});
      w.put_read_receipts(ReadReceipts{booking, RoleRead{3, Millis{100}}, RoleRead{}});
    });
  }
  std::size_t steps = 0;
  for (std::size_t deleted = 5; deleted == 5 && steps < 100; ++steps) {
    store->write([&](StoreWriter& w) { deleted = w.purge_booking("BK1", 5); });
    BOOST_TEST(deleted <= 5u);
  }
  BOOST_TEST(steps > 6u);
  store->read([](const StoreReader& r) {
    BOOST_TEST(r.last_seq("BK1") == 0u);
    BOOST_TEST(!r.message("BK1", 1).has_value());
    BOOST_TEST(!r.message_by_id("BK1", "m-1").has_value());
    BOOST_TEST(!r.call("BK1", "c-1").has_value());
    BOOST_TEST(!r.active_call("BK1").has_value());
    BOOST_TEST(r.connections("BK1").empty());
    BOOST_TEST(!r.presence("BK1").has_value());
    BOOST_TEST(!r.booking_state("BK1").has_value());
    BOOST_TEST(!r.read_receipts("BK1").has_value());
    BOOST_TEST(r.closed_before(10000, 10).size() == 1u);
    for (const auto& call : r.ringing_calls()) BOOST_TEST(call.booking_code == "BK10");
    // The neighbour is whole.
    BOOST_TEST(r.last_seq("BK10") == 30u);
    BOOST_TEST(r.message_by_id("BK10", "m-1").has_value());
    BOOST_TEST(r.active_call("BK10").has_value());
    BOOST_TEST(r.connections("BK10").size() == 1u);
    BOOST_TEST(r.presence("BK10").has_value());
    BOOST_TEST(r.booking_state("BK10").has_value());
    BOOST_TEST(r.read_receipts("BK10").has_value());
  });
  // The code starts afresh.
  append_messages(*store, "BK1", 1);
  BOOST_TEST(last_seq(*store, "BK1") == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
