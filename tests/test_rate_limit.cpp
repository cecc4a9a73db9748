// Rate limits (docs/protocol.md, "Rate limits"): the token bucket per MQTT client id with a clock
// moved by hand, and the engine refusing a limited request before anything is stored or broadcast.
#include <boost/test/unit_test.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "core/rate_limit.hpp"
#include "store/store.hpp"
#include "support/store_space.hpp"

using namespace navietakie;
using Verdict = RateLimiter::Verdict;

namespace {

constexpr Millis kT0 = 1'764'160'000'000;

// How many of `count` requests at `now` from `client` are admitted.
int admitted(RateLimiter& limiter, const std::string& client, int count, Millis now) {
  int yes = 0;
  for (int i = 0; i < count; ++i) yes += limiter.admit(client, now) == Verdict::admitted ? 1 : 0;
  return yes;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(rate_limiter)

BOOST_AUTO_TEST_CASE(a_new_client_has_its_burst_then_is_refused) {
  RateLimiter limiter(20, 40);
  BOOST_TEST(admitted(limiter, "c1", 40, kT0) == 40);
  BOOST_TEST((limiter.admit("c1", kT0) == Verdict::first_refusal));
  BOOST_TEST((limiter.admit("c1", kT0) == Verdict::refused));
  BOOST_TEST((limiter.admit("c1", kT0) == Verdict::refused));
  // Another client has its own bucket.
  BOOST_TEST(admitted(limiter, "c2", 40, kT0) == 40);
}

BOOST_AUTO_TEST_CASE(tokens_come_back_at_the_rate_and_never_past_the_burst) {
  RateLimiter limiter(20, 40);
  BOOST_TEST(admitted(limiter, "c1", 40, kT0) == 40);
  BOOST_TEST(admitted(limiter, "c1", 1, kT0 + 49) == 0);  // 0.98 of a token
  BOOST_TEST(admitted(limiter, "c1", 1, kT0 + 50) == 1);  // one token each 50 ms
  BOOST_TEST(admitted(limiter, "c1", 5, kT0 + 550) == 5);  // ten more by then, five taken
  BOOST_TEST(admitted(limiter, "c1", 10, kT0 + 550) == 5);
  // A steady 20/s is always served.
  for (int i = 1; i <= 100; ++i) BOOST_TEST(admitted(limiter, "c1", 1, kT0 + 550 + i * 50) == 1);
  // A long idle fills the bucket to the burst, not beyond.
  BOOST_TEST(admitted(limiter, "c1", 100, kT0 + 3'600'000) == 40);
  // After a refusal, the next admitted request starts a new episode (logged once again).
  BOOST_TEST((limiter.admit("c1", kT0 + 3'600'000) == Verdict::refused));
  BOOST_TEST(admitted(limiter, "c1", 1, kT0 + 3'600'050) == 1);
  BOOST_TEST((limiter.admit("c1", kT0 + 3'600'050) == Verdict::first_refusal));
}

BOOST_AUTO_TEST_CASE(a_clock_that_steps_back_refills_nothing) {
  RateLimiter limiter(10, 2);
  BOOST_TEST(admitted(limiter, "c1", 2, kT0) == 2);
  BOOST_TEST(admitted(limiter, "c1", 1, kT0 - 10'000) == 0);
  BOOST_TEST(admitted(limiter, "c1", 1, kT0 + 99) == 0);
  BOOST_TEST(admitted(limiter, "c1", 1, kT0 + 100) == 1);
}

BOOST_AUTO_TEST_CASE(zero_per_second_is_off_and_keeps_nothing) {
  RateLimiter limiter(0, 40);
  BOOST_TEST(!limiter.enabled());
  BOOST_TEST(admitted(limiter, "c1", 100'000, kT0) == 100'000);
  BOOST_TEST(limiter.buckets() == 0u);
  limiter.disconnected("c1", kT0);
  limiter.forget_full(kT0);
}

BOOST_AUTO_TEST_CASE(idle_full_buckets_are_forgotten) {
  RateLimiter limiter(20, 40);  // an empty bucket is full again after 2 s
  for (int i = 0; i < 1000; ++i) limiter.admit("client-" + std::to_string(i), kT0);
  BOOST_TEST(limiter.buckets() == 1000u);
  limiter.forget_full(kT0 + 1);  // each spent one token: not full yet
  BOOST_TEST(limiter.buckets() == 1000u);
  limiter.forget_full(kT0 + 50);
  BOOST_TEST(limiter.buckets() == 0u);

  // admit() sweeps by itself, so that clients that went quiet cost no memory.
  for (int i = 0; i < 1000; ++i) limiter.admit("client-" + std::to_string(i), kT0 + 100);
  BOOST_TEST(limiter.buckets() == 1000u);
  limiter.admit("late", kT0 + 100 + 60'000);
  BOOST_TEST(limiter.buckets() == 1u);
}

BOOST_AUTO_TEST_CASE(a_disconnect_forgets_a_full_bucket_but_not_one_refilling) {
  RateLimiter limiter(20, 40);
  BOOST_TEST(admitted(limiter, "c1", 40, kT0) == 40);
  limiter.admit("c2", kT0);
  limiter.disconnected("c1", kT0 + 100);  // two tokens back of 40: kept
  BOOST_TEST(limiter.buckets() == 2u);
  BOOST_TEST(admitted(limiter, "c1", 40, kT0 + 100) == 2);  // a reconnect did not reset it
  limiter.disconnected("c2", kT0 + 100);  // full again
  BOOST_TEST(limiter.buckets() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- the engine ----

namespace {

const std::string kBooking = "BK1";
const std::string kReplyTo = "navietakie/v1/replies/c/r";

Request send_request(const std::string& client_id, const std::string& text, std::optional<Identity> identity = {}) {
  return Request{"navietakie/v1/bookings/" + kBooking + "/send_message",
                 Json{{"sender", "driver"}, {"text", text}}.dump(),
                 kReplyTo,
                 std::nullopt,
                 client_id,
                 std::move(identity)};
}

Request get_request(const std::string& client_id) {
  return Request{"navietakie/v1/bookings/" + kBooking + "/get_message", "{}", kReplyTo, std::nullopt, client_id};
}

std::vector<Json> replies(const std::vector<Publish>& out) {
  std::vector<Json> found;
  for (const auto& p : out) {
    if (p.topic == kReplyTo) found.push_back(Json::parse(p.payload));
  }
  return found;
}

std::size_t events(const std::vector<Publish>& out) {
  std::size_t n = 0;
  for (const auto& p : out) n += p.topic.find("/events/") != std::string::npos ? 1u : 0u;
  return n;
}

struct LimitedEngine {
  LimitedEngine() {
    EngineOptions options;
    options.rate_limit_per_s = 2;
    options.rate_limit_burst = 3;
    store = space.open();
    engine = std::make_unique<Engine>(*store, options, [this] { return now; });
  }
  std::uint64_t last_seq() {
    std::uint64_t seq = 0;
    store->write([&](StoreWriter& w) { seq = w.last_seq(kBooking); });
    return seq;
  }
  Millis now = kT0;
  navietakie::test::StoreSpace space;
  std::unique_ptr<Store> store;
  std::unique_ptr<Engine> engine;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(engine_rate_limit)

BOOST_FIXTURE_TEST_CASE(a_limited_request_stores_nothing_and_broadcasts_nothing, LimitedEngine) {
  // One batch: the burst of 3 is served, the 4th and 5th are refused, whatever their action.
  auto out = engine->handle({send_request("c", "1"), send_request("c", "2"), get_request("c"),
                             send_request("c", "4"), get_request("c")});
  auto answers = replies(out);
  BOOST_REQUIRE(answers.size() == 5u);
  for (std::size_t i = 0; i < 3; ++i) BOOST_TEST(answers[i].at("ok") == true, answers[i].dump());
  for (std::size_t i = 3; i < 5; ++i) {
    BOOST_TEST(answers[i].at("ok") == false);
    BOOST_TEST(answers[i].at("error").at("code") == "rate_limited", answers[i].dump());
  }
  BOOST_TEST(events(out) == 2u);  // the two admitted sends only
  BOOST_TEST(last_seq() == 2u);
  BOOST_TEST(engine->metrics().errors[static_cast<std::size_t>(ErrorCode::rate_limited)].load() == 2u);

  // Another client of the same booking is unaffected.
  auto other = replies(engine->handle({send_request("d", "from d")}));
  BOOST_REQUIRE(other.size() == 1u);
  BOOST_TEST(other[0].at("message").at("seq") == 3);

  // Without a reply address, the refusal goes to the booking's errors topic.
  Request quiet = send_request("c", "5");
  quiet.response_topic.reset();
  const auto batches = engine->metrics().batches.load();
  out = engine->handle({quiet});
  BOOST_TEST(engine->metrics().batches.load() == batches);  // refused without a store transaction
  BOOST_REQUIRE(out.size() == 1u);
  BOOST_TEST(out[0].topic == "navietakie/v1/bookings/BK1/errors");
  BOOST_TEST(Json::parse(out[0].payload).at("error").at("code") == "rate_limited");
  BOOST_TEST(last_seq() == 3u);

  // Half a second later one token is back (2/s).
  now += 500;
  answers = replies(engine->handle({send_request("c", "6"), send_request("c", "7")}));
  BOOST_REQUIRE(answers.size() == 2u);
  BOOST_TEST(answers[0].at("message").at("seq") == 4);
  BOOST_TEST(answers[1].at("error").at("code") == "rate_limited");
  BOOST_TEST(last_seq() == 4u);
}

BOOST_FIXTURE_TEST_CASE(services_and_unknown_publishers_are_not_limited, LimitedEngine) {
  // A service (an edge node's uplink, a back-office tool) and a publisher the host cannot name.
  const Identity service{Principal::service, "car-42", ""};
  std::vector<Request> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(send_request("edge-car-42", "s" + std::to_string(i), service));
  for (int i = 0; i < 10; ++i) batch.push_back(send_request("", "u" + std::to_string(i)));
  for (const auto& reply : replies(engine->handle(batch))) BOOST_TEST(reply.at("ok") == true, reply.dump());
  BOOST_TEST(last_seq() == 20u);
}

BOOST_AUTO_TEST_SUITE_END()
