// The engine loop (core/engine_loop.hpp) and the engine's commit-failure handling, against a real
// LMDB store wrapped in test decorators: a store whose commits of writes fail (as LMDB does with
// EIO on a full filesystem), and one whose commits wait at a gate (a slow disk), to fill the
// loop's queue deterministically.
#include <boost/test/unit_test.hpp>

#include "temp_dir.hpp"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/engine.hpp"
#include "core/engine_loop.hpp"
#include "store/store.hpp"

using namespace navietakie;
using namespace std::chrono_literals;

namespace {

const std::string kPrefix = "navietakie/v1";

std::string topic(const std::string& booking, const std::string& leaf) {
  return kPrefix + "/bookings/" + booking + "/" + leaf;
}

std::string reply_topic(const std::string& client) { return kPrefix + "/replies/" + client + "/r"; }

// A request answered on the client's reply topic (MQTT 3.1.1 style), published by `client`.
Request asking(const std::string& client, const std::string& booking, const std::string& action, Json body) {
  body["reply_to"] = reply_topic(client);
  return Request{topic(booking, action), body.dump(), std::nullopt, std::nullopt, client};
}

std::vector<Json> replies_to(const std::vector<Publish>& out, const std::string& client) {
  std::vector<Json> found;
  for (const auto& p : out) {
    if (p.topic == reply_topic(client)) found.push_back(Json::parse(p.payload));
  }
  return found;
}

std::size_t occurrences(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

// Forwards everything to a real writer and notes whether anything was written; while
// `fail_presence` is set, writing a booking's presence fails as a full store does.
class RecordingWriter : public StoreWriter {
 public:
  RecordingWriter(StoreWriter& inner, bool fail_presence) : inner_(inner), fail_presence_(fail_presence) {}
  bool wrote() const { return wrote_; }

  std::uint64_t last_seq(const std::string& b) const override { return inner_.last_seq(b); }
  std::optional<Message> message(const std::string& b, std::uint64_t seq) const override {
    return inner_.message(b, seq);
  }
  std::optional<Message> message_by_id(const std::string& b, const std::string& id) const override {
    return inner_.message_by_id(b, id);
  }
  HistoryPage history(const std::string& b, const HistoryQuery& q) const override { return inner_.history(b, q); }
  std::optional<Call> call(const std::string& b, const std::string& id) const override { return inner_.call(b, id); }
  std::optional<Call> active_call(const std::string& b) const override { return inner_.active_call(b); }
  std::vector<Call> ringing_calls() const override { return inner_.ringing_calls(); }
  std::vector<Connection> connections(const std::string& b) const override { return inner_.connections(b); }
  std::optional<Presence> presence(const std::string& b) const override { return inner_.presence(b); }
  std::vector<Presence> all_presence() const override { return inner_.all_presence(); }
  std::optional<BookingState> booking_state(const std::string& b) const override { return inner_.booking_state(b); }
  std::vector<BookingState> closed_bookings() const override { return inner_.closed_bookings(); }
  std::vector<BookingState> closed_before(Millis cutoff, std::size_t limit) const override {
    return inner_.closed_before(cutoff, limit);
  }
  std::optional<ReadReceipts> read_receipts(const std::string& b) const override { return inner_.read_receipts(b); }
  std::vector<ReadReceipts> all_read_receipts() const override { return inner_.all_read_receipts(); }

  // clang-format off
  void append_message(const Message& m) override { wrote_ = true; inner_.append_message(m); }
  void put_call(const Call& c) override { wrote_ = true; inner_.put_call(c); }
  void put_connection(const Connection& c) override { wrote_ = true; inner_.put_connection(c); }
  void put_read_receipts(const ReadReceipts& r) override { wrote_ = true; inner_.put_read_receipts(r); }
  void put_presence(const Presence& p) override {
    if (fail_presence_) throw StoreError(StoreError::Kind::full, "mdb_put: MDB_MAP_FULL: Environment mapsize limit reached");
    wrote_ = true;
    inner_.put_presence(p);
  }
  void put_booking_state(const BookingState& b) override { wrote_ = true; inner_.put_booking_state(b); }
  std::size_t purge_booking(const std::string& b, std::size_t n) override { wrote_ = true; return inner_.purge_booking(b, n); }
  // clang-format on
  void unit(const std::function<void()>& fn) override { inner_.unit(fn); }

 private:
  StoreWriter& inner_;
  const bool fail_presence_;
  bool wrote_ = false;
};

// An LMDB store in a temp dir whose commits can be made to fail or to wait.
class TestStore : public Store {
 public:
  TestStore() : inner_(open_lmdb_store(LmdbOptions{dir_.path(), std::size_t{64} << 20, SyncMode::nosync})) {}

  // While set, a transaction that wrote anything fails at its commit, as LMDB reports a failed
  // fdatasync: StoreError(io), nothing of it stored. Transactions that only read commit.
  bool fail_writes = false;
  std::size_t failed_commits = 0;
  bool fail_presence_writes = false;

  // While closed, every write() waits (bounded) before it runs.
  void close_gate() {
    std::lock_guard<std::mutex> lock(mutex_);
    gate_open_ = false;
  }
  void open_gate() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      gate_open_ = true;
    }
    changed_.notify_all();
  }
  // Waits until a write() is waiting at the closed gate.
  bool wait_for_writer_at_gate() {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, 5s, [this] { return writers_at_gate_ > 0; });
  }

  void write(const std::function<void(StoreWriter&)>& fn) override {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ++writers_at_gate_;
      changed_.notify_all();
      changed_.wait_for(lock, 10s, [this] { return gate_open_; });
      --writers_at_gate_;
    }
    inner_->write([&](StoreWriter& w) {
      RecordingWriter recording(w, fail_presence_writes);
      fn(recording);
      if (fail_writes && recording.wrote()) {
        ++failed_commits;
        throw StoreError(StoreError::Kind::io, "mdb_txn_commit: Input/output error");
      }
    });
  }
  void read(const std::function<void(const StoreReader&)>& fn) const override { inner_->read(fn); }

 private:
  test::UnitTempDir dir_;
  std::unique_ptr<Store> inner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool gate_open_ = true;
  int writers_at_gate_ = 0;
};

// A host that publishes from any thread (the bridge's kind): keeps what it was given.
class RecordingTransport : public EngineTransport {
 public:
  bool publish(const std::vector<Publish>& results) override {
    std::lock_guard<std::mutex> lock(mutex_);
    published_.insert(published_.end(), results.begin(), results.end());
    return true;
  }
  void wake() override {}
  std::vector<Publish> published() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return published_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Publish> published_;
};

// A host that publishes only from its own thread (the plugin's kind): counts the wake-ups.
class DeferringTransport : public EngineTransport {
 public:
  bool publish(const std::vector<Publish>&) override { return false; }
  void wake() override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++wakes_;
    woken_.notify_all();
  }
  int wakes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return wakes_;
  }
  bool wait_for_wake(int after) {
    std::unique_lock<std::mutex> lock(mutex_);
    return woken_.wait_for(lock, 5s, [&] { return wakes_ > after; });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable woken_;
  int wakes_ = 0;
};

// A store, an engine on it and a host of the bridge's kind; each test starts its own loop.
struct LoopFixture {
  static LoopOptions one_request_per_batch(std::size_t queue_max) {
    LoopOptions options;
    options.batch_max = 1;
    options.queue_max = queue_max;
    return options;
  }
  TestStore store;
  Engine engine{store, EngineOptions{}};
  RecordingTransport transport;
};

}  // namespace

// After a presence of `client` (online, in BK1) failed: the engine kept no trace of it. Another
// client (a service relaying for it) declares the same connection online; when `client`
// disconnects, nothing goes offline, since it never declared anything that was stored.
void expect_no_connection_left_for(const std::string& client, Engine& engine, Store& store) {
  auto relayed = engine.handle(
      {asking("relay", "BK1", "presence", {{"role", "driver"}, {"online", true}, {"client_id", client}})});
  BOOST_REQUIRE(replies_to(relayed, "relay").at(0).at("ok") == true);
  BOOST_TEST(engine.disconnected({client}).empty());
  std::vector<Connection> connections;
  store.read([&](const StoreReader& r) { connections = r.connections("BK1"); });
  BOOST_REQUIRE(connections.size() == 1u);
  BOOST_TEST(connections[0].online);
}

BOOST_AUTO_TEST_SUITE(engine_loop)

BOOST_AUTO_TEST_CASE(a_read_sharing_a_batch_with_a_failing_write_still_succeeds) {
  TestStore store;
  Engine engine(store, EngineOptions{});
  auto first = engine.handle({asking("c1", "BK1", "send_message", {{"sender", "driver"}, {"text", "stored"}})});
  BOOST_REQUIRE(replies_to(first, "c1").at(0).at("ok") == true);

  store.fail_writes = true;
  auto out = engine.handle({asking("c1", "BK1", "send_message", {{"sender", "driver"}, {"text", "lost"}}),
                            asking("c2", "BK1", "get_message", {{"limit", 10}}),
                            asking("c3", "BK2", "presence", {{"role", "driver"}, {"online", true}})});
  BOOST_TEST(store.failed_commits == 3u);  // the batch, then each write on its own

  const Json write = replies_to(out, "c1").at(0);
  BOOST_TEST(write.at("ok") == false);
  BOOST_TEST(write.at("error").at("code") == "unavailable");
  const std::string message = write.at("error").at("message");
  BOOST_TEST(occurrences(message, "storage") == 1u, message);
  BOOST_TEST(message.find("Input/output error") != std::string::npos, message);
  BOOST_TEST(replies_to(out, "c3").at(0).at("error").at("code") == "unavailable");

  const Json read = replies_to(out, "c2").at(0);
  BOOST_TEST(read.at("ok") == true, read.dump());
  BOOST_TEST(read.at("last_seq") == 1);
  BOOST_TEST(read.at("messages").size() == 1u);

  // Nothing of the failed writes was published.
  for (const auto& p : out) BOOST_TEST(p.topic.find("/events/") == std::string::npos, p.topic);
}

BOOST_AUTO_TEST_CASE(a_failed_commit_leaves_no_connection_behind) {
  TestStore store;
  Engine engine(store, EngineOptions{});
  store.fail_writes = true;
  auto out = engine.handle({asking("drv-phone", "BK1", "presence", {{"role", "driver"}, {"online", true}})});
  BOOST_TEST(replies_to(out, "drv-phone").at(0).at("error").at("code") == "unavailable");

  store.fail_writes = false;
  expect_no_connection_left_for("drv-phone", engine, store);

  // Committed: the disconnect takes it offline.
  out = engine.handle({asking("drv-phone", "BK2", "presence", {{"role", "driver"}, {"online", true}})});
  BOOST_REQUIRE(replies_to(out, "drv-phone").at(0).at("ok") == true);
  auto offline = engine.disconnected({"drv-phone"});
  BOOST_REQUIRE(offline.size() == 1u);
  BOOST_TEST(Json::parse(offline[0].payload).at("driver").at("online") == false);
}

BOOST_AUTO_TEST_CASE(a_failed_unit_leaves_no_connection_behind) {
  TestStore store;
  Engine engine(store, EngineOptions{});
  // The connection row is written, then the presence summary does not fit: the unit fails.
  store.fail_presence_writes = true;
  auto out = engine.handle({asking("drv-phone", "BK1", "presence", {{"role", "driver"}, {"online", true}}),
                            asking("c2", "BK1", "get_message", {})});
  const Json failed = replies_to(out, "drv-phone").at(0);
  BOOST_TEST(failed.at("error").at("code") == "unavailable");
  const std::string message = failed.at("error").at("message");
  BOOST_TEST(occurrences(message, "storage full") == 1u, message);
  BOOST_TEST(replies_to(out, "c2").at(0).at("ok") == true);
  store.fail_presence_writes = false;
  expect_no_connection_left_for("drv-phone", engine, store);
}

BOOST_FIXTURE_TEST_CASE(a_flood_past_queue_max_is_answered_overloaded_and_others_go_on, LoopFixture) {
  EngineLoop loop(engine, transport, one_request_per_batch(2));

  // The engine is busy with a first request (a slow disk) while a flood comes in.
  store.close_gate();
  loop.submit({asking("flooder", "BK1", "send_message", {{"sender", "driver"}, {"text", "0"}})});
  BOOST_REQUIRE(store.wait_for_writer_at_gate());
  std::vector<Request> flood;
  for (int i = 1; i <= 6; ++i) {
    flood.push_back(asking("flooder", "BK1", "send_message", {{"sender", "driver"}, {"text", std::to_string(i)}}));
  }
  loop.submit(std::move(flood));  // 2 fit the queue, 4 are refused at once
  store.open_gate();
  BOOST_REQUIRE(loop.wait_idle(10s));
  loop.submit({asking("other", "BK2", "send_message", {{"sender", "passenger"}, {"text", "still served"}})});
  BOOST_REQUIRE(loop.wait_idle(10s));
  loop.stop();

  const auto published = transport.published();
  const auto flooder = replies_to(published, "flooder");
  BOOST_REQUIRE(flooder.size() == 7u);  // every request got an answer
  std::size_t ok = 0;
  std::size_t overloaded = 0;
  for (const auto& reply : flooder) {
    if (reply.at("ok") == true) {
      ++ok;
    } else {
      BOOST_TEST(reply.at("error").at("code") == "unavailable", reply.dump());
      BOOST_TEST(reply.at("error").at("message").get<std::string>().find("overloaded") != std::string::npos);
      ++overloaded;
    }
  }
  BOOST_TEST(ok == 3u);
  BOOST_TEST(overloaded == 4u);
  BOOST_TEST(engine.metrics().overloaded.load() == 4u);
  BOOST_TEST(engine.metrics().errors[static_cast<std::size_t>(ErrorCode::unavailable)].load() == 4u);
  BOOST_TEST(loop.stats().overloaded == 4u);
  const auto other = replies_to(published, "other");
  BOOST_REQUIRE(other.size() == 1u);
  BOOST_TEST(other[0].at("ok") == true, other[0].dump());
  // The accepted ones were stored in order, without gaps.
  BOOST_TEST(other[0].at("message").at("seq") == 1);
  std::optional<std::uint64_t> last;
  store.read([&](const StoreReader& r) { last = r.last_seq("BK1"); });
  BOOST_TEST(*last == 3u);
}

BOOST_AUTO_TEST_CASE(an_overloaded_request_without_reply_address_goes_to_the_booking_errors_topic) {
  TestStore store;
  Engine engine(store, EngineOptions{});
  Request r{topic("BK7", "send_message"), Json{{"sender", "driver"}, {"text", "x"}}.dump(), std::nullopt, std::nullopt,
            "c1"};
  auto out = engine.overloaded(r);
  BOOST_REQUIRE(out.size() == 1u);
  BOOST_TEST(out[0].topic == topic("BK7", "errors"));
  const Json error = Json::parse(out[0].payload);
  BOOST_TEST(error.at("error").at("code") == "unavailable");
  BOOST_TEST(error.at("request_topic") == topic("BK7", "send_message"));
  std::optional<std::uint64_t> last;
  store.read([&](const StoreReader& reader) { last = reader.last_seq("BK7"); });
  BOOST_TEST(*last == 0u);  // nothing stored
}

BOOST_AUTO_TEST_CASE(a_host_that_publishes_itself_is_woken_until_it_takes_the_results) {
  TestStore store;
  Engine engine(store, EngineOptions{});
  DeferringTransport transport;
  EngineLoop loop(engine, transport, LoopOptions{});
  BOOST_TEST(loop.take_results().empty());  // the host's loop runs: wake-ups may start
  const int before = transport.wakes();
  loop.submit({asking("c1", "BK1", "send_message", {{"sender", "driver"}, {"text", "hi"}})});
  BOOST_REQUIRE(transport.wait_for_wake(before));
  BOOST_REQUIRE(loop.wait_idle(5s));
  const auto results = loop.take_results();
  BOOST_REQUIRE(replies_to(results, "c1").size() == 1u);
  BOOST_TEST(replies_to(results, "c1")[0].at("ok") == true);
  // Taken: the wake-ups stop.
  const int after_take = transport.wakes();
  std::this_thread::sleep_for(50ms);
  BOOST_TEST(transport.wakes() == after_take);
}

BOOST_FIXTURE_TEST_CASE(requests_submitted_before_a_disconnect_are_handled_before_it, LoopFixture) {
  EngineLoop loop(engine, transport, one_request_per_batch(LoopOptions{}.queue_max));
  store.close_gate();
  loop.submit({asking("blocker", "BK0", "get_message", {})});
  BOOST_REQUIRE(store.wait_for_writer_at_gate());
  loop.submit({asking("drv-phone", "BK1", "presence", {{"role", "driver"}, {"online", true}}),
               asking("drv-phone", "BK2", "presence", {{"role", "driver"}, {"online", true}})},
              {"drv-phone"});
  store.open_gate();
  BOOST_REQUIRE(loop.wait_idle(10s));
  loop.stop();
  std::size_t offline_events = 0;
  for (const auto& p : transport.published()) {
    if (p.topic.find("/events/presence") == std::string::npos) continue;
    if (Json::parse(p.payload).at("driver").at("online") == false) ++offline_events;
  }
  BOOST_TEST(offline_events == 2u);  // both bookings it declared, though batch_max is 1
}

BOOST_AUTO_TEST_CASE(overdue_calls_are_ended_after_start_in_batches_taking_turns_with_requests) {
  // 1000 calls left ringing through a restart, their deadlines long past.
  constexpr std::size_t calls = 1000;
  constexpr std::size_t batch = 100;
  TestStore store;
  {
    Engine before(store, EngineOptions{}, [] { return system_clock_ms() - 600'000; });
    std::vector<Request> starts;
    for (std::size_t i = 0; i < calls; ++i) {
      starts.push_back(asking("pax", "B" + std::to_string(i), "make_call", {{"action", "start"}, {"by", "passenger"}}));
    }
    for (const auto& reply : replies_to(before.handle(starts), "pax")) BOOST_REQUIRE(reply.at("ok") == true);
  }
  EngineOptions options;
  options.batch_max = batch;
  Engine engine(store, options);
  RecordingTransport transport;
  // The disk is slow: the loop's first store write (ending the first batch of calls) waits, so the
  // request below is submitted while overdue calls are still being ended.
  store.close_gate();
  EngineLoop loop(engine, transport, LoopOptions{});
  BOOST_REQUIRE(store.wait_for_writer_at_gate());
  BOOST_REQUIRE(engine.next_deadline().has_value());  // start() armed them and ended none
  loop.submit({asking("reader", "B0", "get_message", {})});
  store.open_gate();
  BOOST_REQUIRE(loop.wait_idle(30s));
  BOOST_REQUIRE(!engine.next_deadline().has_value());
  loop.stop();

  // In the order handed to the host: one batch of missed calls, the answer, then the rest.
  std::size_t missed_before_reply = 0;
  std::size_t missed_after_reply = 0;
  bool answered = false;
  for (const auto& p : transport.published()) {
    if (p.topic == reply_topic("reader")) {
      BOOST_TEST(Json::parse(p.payload).at("ok") == true, p.payload);
      answered = true;
    } else if (p.topic.find("/events/call") != std::string::npos) {
      BOOST_TEST(Json::parse(p.payload).at("end_reason") == "missed", p.payload);
      ++(answered ? missed_after_reply : missed_before_reply);
    }
  }
  BOOST_REQUIRE(answered);
  BOOST_TEST(missed_before_reply == batch);
  BOOST_TEST(missed_after_reply == calls - batch);
  BOOST_TEST(engine.metrics().calls_missed.load() == calls);
}

BOOST_AUTO_TEST_CASE(an_engine_that_cannot_start_fails_the_loop_at_once) {
  class UnreadableStore : public Store {
   public:
    void write(const std::function<void(StoreWriter&)>&) override { throw StoreError(StoreError::Kind::io, "write"); }
    void read(const std::function<void(const StoreReader&)>&) const override {
      throw StoreError(StoreError::Kind::io, "mdb_txn_begin: Input/output error");
    }
  } store;
  Engine engine(store, EngineOptions{});
  RecordingTransport transport;
  BOOST_CHECK_THROW(EngineLoop(engine, transport, LoopOptions{}), StoreError);
}

BOOST_AUTO_TEST_SUITE_END()
