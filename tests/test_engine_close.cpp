// close and retention (docs/protocol.md, "close and retention") against a real store (LMDB, or
// PostgreSQL under NAVIETAKIE_TEST_STORE=postgres) and a clock moved by hand: the refusals of a
// closed booking per request type, the active call ended by close, closing twice, the retained
// events/booking, and the retention purge (only closed bookings past the limit, in bounded
// batches, its retained topics cleared).
#include <boost/test/unit_test.hpp>

#include "support/store_space.hpp"

#include <memory>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "core/wire.hpp"
#include "store/store.hpp"

using namespace navietakie;

namespace {

constexpr Millis kT0 = 1'764'160'000'000;
constexpr Millis kDay = 24 * 3600 * 1000;
const std::string kPrefix = "navietakie/v1";
const std::string kReplyTo = "navietakie/v1/replies/client-1/r";

std::string topic(const std::string& booking, const std::string& leaf) {
  return kPrefix + "/bookings/" + booking + "/" + leaf;
}

std::vector<Publish> on(const std::vector<Publish>& out, const std::string& t) {
  std::vector<Publish> found;
  for (const auto& p : out) {
    if (p.topic == t) found.push_back(p);
  }
  return found;
}

Json one(const std::vector<Publish>& out, const std::string& t) {
  auto found = on(out, t);
  BOOST_REQUIRE_MESSAGE(found.size() == 1u, found.size() << " publishes on " << t << ", expected 1");
  return Json::parse(found.front().payload);
}

struct CloseFixture {
  explicit CloseFixture(EngineOptions engine_options = {}) : options(std::move(engine_options)) {
    store = space.open();
    engine = std::make_unique<Engine>(*store, options, [this] { return now; });
  }

  Json ask(const std::string& booking, const std::string& action, Json body, std::vector<Publish>* out = nullptr,
           std::optional<Identity> identity = std::nullopt) {
    body["reply_to"] = kReplyTo;
    Request r{topic(booking, action), body.dump(), std::nullopt, std::nullopt, "client-1"};
    r.identity = std::move(identity);
    auto published = engine->handle({r});
    Json reply = one(published, kReplyTo);
    if (out) *out = std::move(published);
    return reply;
  }
  Json send(const std::string& booking, const std::string& text) {
    return ask(booking, "send_message", {{"sender", "driver"}, {"text", text}});
  }
  Json close(const std::string& booking, Json body = Json::object(), std::vector<Publish>* out = nullptr) {
    return ask(booking, "close", std::move(body), out);
  }
  // What the engine loop does between request batches, while background work is due (bounded).
  std::vector<Publish> run_background(int* turns = nullptr) {
    std::vector<Publish> out;
    int pass = 0;
    for (; pass < 10000 && engine->next_deadline() && *engine->next_deadline() <= now; ++pass) {
      auto more = engine->background();
      out.insert(out.end(), more.begin(), more.end());
    }
    if (turns) *turns = pass;
    return out;
  }

  EngineOptions options;
  Millis now = kT0;
  navietakie::test::StoreSpace space;
  std::unique_ptr<Store> store;
  std::unique_ptr<Engine> engine;
};

std::string error_code(const Json& reply) { return reply.at("error").at("code").get<std::string>(); }

}  // namespace

BOOST_AUTO_TEST_SUITE(close_and_retention)

BOOST_FIXTURE_TEST_CASE(close_replies_and_publishes_the_retained_booking_state, CloseFixture) {
  send("BK1", "hello");
  std::vector<Publish> out;
  Json reply = close("BK1", {{"reason", "trip completed"}}, &out);
  BOOST_TEST(reply.at("ok").get<bool>());
  const Json expected = {{"booking_code", "BK1"}, {"state", "closed"}, {"closed_at", kT0}, {"reason", "trip completed"}};
  BOOST_TEST(reply.at("booking") == expected);
  const auto events = on(out, topic("BK1", "events/booking"));
  BOOST_REQUIRE_EQUAL(events.size(), 1u);
  BOOST_TEST(events[0].retain);
  BOOST_TEST(Json::parse(events[0].payload) == expected);
  BOOST_TEST(engine->metrics().bookings_closed.load() == 1u);
}

BOOST_FIXTURE_TEST_CASE(closing_twice_answers_the_first_close_and_publishes_nothing, CloseFixture) {
  close("BK1", {{"reason", "first"}});
  now += 5000;
  std::vector<Publish> out;
  Json again = close("BK1", {{"reason", "second"}}, &out);
  BOOST_TEST(again.at("ok").get<bool>());
  BOOST_TEST(again.at("booking").at("closed_at").get<Millis>() == kT0);
  BOOST_TEST(again.at("booking").at("reason").get<std::string>() == "first");
  BOOST_TEST(on(out, topic("BK1", "events/booking")).empty());
}

BOOST_FIXTURE_TEST_CASE(a_closed_booking_refuses_writes_and_still_answers_reads, CloseFixture) {
  Json first = send("BK1", "before");
  Json call = ask("BK1", "make_call", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});
  ask("BK1", "make_call", {{"action", "accept"}, {"by", "passenger"}, {"call_id", "c-1"}});
  close("BK1");

  std::vector<Publish> out;
  Json refused = ask("BK1", "send_message", {{"sender", "driver"}, {"text", "after"}}, &out);
  BOOST_TEST(error_code(refused) == "booking_closed");
  BOOST_TEST(on(out, topic("BK1", "events/message")).empty());
  BOOST_TEST(error_code(ask("BK1", "make_call", {{"action", "start"}, {"by", "passenger"}})) == "booking_closed");
  // The other call actions keep their answers on the call close ended.
  BOOST_TEST(error_code(ask("BK1", "make_call", {{"action", "end"}, {"by", "driver"}, {"call_id", "c-1"}})) ==
             "invalid_state");
  Json got = ask("BK1", "make_call", {{"action", "get"}, {"call_id", "c-1"}});
  BOOST_TEST(got.at("ok").get<bool>());
  BOOST_TEST(got.at("call").at("end_reason").get<std::string>() == "booking_closed");
  // History stays readable: the message, the call's messages.
  Json page = ask("BK1", "get_message", Json::object());
  BOOST_TEST(page.at("ok").get<bool>());
  BOOST_TEST(page.at("messages").front().at("text").get<std::string>() == "before");
  // A resent message_id is no new write: its original, as before the close.
  Json resent = ask("BK1", "send_message",
                    {{"sender", "driver"}, {"text", "before"}, {"message_id", first.at("message").at("message_id")}});
  BOOST_TEST(resent.at("duplicate").get<bool>());
  // Presence is not a write of the booking's content: it goes on.
  BOOST_TEST(ask("BK1", "presence", {{"role", "driver"}, {"online", false}}).at("ok").get<bool>());
  // Another booking is untouched.
  BOOST_TEST(send("BK2", "elsewhere").at("ok").get<bool>());
  BOOST_TEST(engine->metrics().errors[static_cast<std::size_t>(ErrorCode::booking_closed)].load() == 2u);
  (void)call;
}

BOOST_AUTO_TEST_CASE(the_refusal_table_lists_every_write_of_the_contract) {
  for (const char* action : {"send_message", "signal", "typing", "mark_read"}) {
    BOOST_TEST(wire::refused_when_closed(action), action);
  }
  BOOST_TEST(wire::refused_when_closed("make_call", CallAction::start));
  for (CallAction other : {CallAction::accept, CallAction::decline, CallAction::cancel, CallAction::end, CallAction::get})
    BOOST_TEST(!wire::refused_when_closed("make_call", other));
  for (const char* action : {"get_message", "presence", "close"}) BOOST_TEST(!wire::refused_when_closed(action), action);
}

BOOST_FIXTURE_TEST_CASE(close_ends_a_ringing_call_and_disarms_its_timeout, CloseFixture) {
  ask("BK1", "make_call", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});
  now += 1000;
  std::vector<Publish> out;
  Json reply = close("BK1", Json::object(), &out);
  BOOST_TEST(reply.at("booking").at("state").get<std::string>() == "closed");
  Json ended = one(out, topic("BK1", "events/call"));
  BOOST_TEST(ended.at("state").get<std::string>() == "ended");
  BOOST_TEST(ended.at("end_reason").get<std::string>() == "booking_closed");
  BOOST_TEST(ended.at("ended_at").get<Millis>() == kT0 + 1000);
  BOOST_TEST(ended.at("duration_ms").get<Millis>() == 0);
  BOOST_TEST(one(out, topic("BK1", "events/message")).at("type").get<std::string>() == "call");
  // The ring deadline passes: nothing more happens to the call.
  now += 60'000;
  const auto later = engine->expire_calls();
  BOOST_TEST(on(later, topic("BK1", "events/call")).empty());
}

BOOST_FIXTURE_TEST_CASE(close_ends_a_connected_call_with_its_duration, CloseFixture) {
  ask("BK1", "make_call", {{"action", "start"}, {"by", "passenger"}, {"call_id", "c-1"}});
  now += 1000;
  ask("BK1", "make_call", {{"action", "accept"}, {"by", "driver"}, {"call_id", "c-1"}});
  now += 30'000;
  std::vector<Publish> out;
  close("BK1", Json::object(), &out);
  Json ended = one(out, topic("BK1", "events/call"));
  BOOST_TEST(ended.at("end_reason").get<std::string>() == "booking_closed");
  BOOST_TEST(ended.at("duration_ms").get<Millis>() == 30'000);
}

BOOST_FIXTURE_TEST_CASE(with_authentication_only_a_service_closes, CloseFixture) {
  const Identity driver{Principal::driver, "drv-1", "BK1"};
  const Identity service{Principal::service, "backoffice", ""};
  BOOST_TEST(error_code(ask("BK1", "close", Json::object(), nullptr, driver)) == "forbidden");
  BOOST_TEST(ask("BK1", "close", Json::object(), nullptr, service).at("ok").get<bool>());
}

BOOST_FIXTURE_TEST_CASE(a_reason_must_be_a_short_string, CloseFixture) {
  Json r = close("BK1", {{"reason", 5}});
  BOOST_TEST(error_code(r) == "invalid_request");
  BOOST_TEST(r.at("error").at("message").get<std::string>().find("reason") != std::string::npos);
  BOOST_TEST(error_code(close("BK1", {{"reason", std::string(wire::kCloseReasonMaxBytes + 1, 'x')}})) ==
             "invalid_request");
  // Nothing was closed by the refused requests.
  BOOST_TEST(send("BK1", "still open").at("ok").get<bool>());
}

BOOST_FIXTURE_TEST_CASE(start_republishes_the_closed_state_retained, CloseFixture) {
  close("BK1", {{"reason", "done"}});
  engine = std::make_unique<Engine>(*store, options, [this] { return now; });
  const auto out = engine->start();
  const auto events = on(out, topic("BK1", "events/booking"));
  BOOST_REQUIRE_EQUAL(events.size(), 1u);
  BOOST_TEST(events[0].retain);
  BOOST_TEST(Json::parse(events[0].payload).at("reason").get<std::string>() == "done");
  // And the refusal survives the restart.
  BOOST_TEST(error_code(send("BK1", "after restart")) == "booking_closed");
}

namespace {
EngineOptions retention(Millis days, std::size_t batch_keys) {
  EngineOptions o;
  o.retention_ms = days * kDay;
  o.purge_batch_keys = batch_keys;
  return o;
}
}  // namespace

struct RetentionFixture : CloseFixture {
  RetentionFixture() : CloseFixture(retention(30, 8)) {}
};

BOOST_FIXTURE_TEST_CASE(retention_purges_only_closed_bookings_past_the_limit, RetentionFixture) {
  for (int i = 0; i < 20; ++i) {
    send("OLD", "m" + std::to_string(i));
    send("OPEN", "m" + std::to_string(i));
  }
  ask("OLD", "make_call", {{"action", "start"}, {"by", "driver"}, {"call_id", "c-1"}});
  ask("OLD", "presence", {{"role", "driver"}, {"online", true}});
  close("OLD");
  now += 10 * kDay;
  send("YOUNG", "recent");
  close("YOUNG");
  engine->start();
  run_background();
  // 10 days after the first close: nothing is old enough.
  BOOST_TEST(ask("OLD", "get_message", Json::object()).at("last_seq").get<std::uint64_t>() > 0u);

  now = kT0 + 30 * kDay + 1;  // OLD is past 30 days, YOUNG is not
  int turns = 0;
  const auto out = run_background(&turns);
  BOOST_TEST(engine->metrics().bookings_purged.load() == 1u);
  // 20 messages + 1 call message + ids + call + connection + presence + state, 8 keys a turn.
  BOOST_TEST(turns >= 6);
  BOOST_TEST(engine->metrics().purge_batches.load() >= 6u);
  store->read([&](const StoreReader& r) {
    BOOST_TEST(r.last_seq("OLD") == 0u);
    BOOST_TEST(!r.message_by_id("OLD", "nope"));
    BOOST_TEST(!r.call("OLD", "c-1"));
    BOOST_TEST(!r.active_call("OLD"));
    BOOST_TEST(r.connections("OLD").empty());
    BOOST_TEST(!r.presence("OLD"));
    BOOST_TEST(!r.booking_state("OLD"));
    BOOST_TEST(r.last_seq("OPEN") == 20u);
    BOOST_TEST(r.last_seq("YOUNG") == 1u);
    BOOST_TEST(r.booking_state("YOUNG").has_value());
  });
  // Its retained topics are cleared: empty retained payloads.
  for (const char* leaf : {"events/presence", "events/booking"}) {
    const auto cleared = on(out, topic("OLD", leaf));
    BOOST_REQUIRE_EQUAL(cleared.size(), 1u);
    BOOST_TEST(cleared[0].retain);
    BOOST_TEST(cleared[0].payload.empty());
  }
  BOOST_TEST(on(out, topic("YOUNG", "events/booking")).empty());

  // A later request on the purged code finds an empty, open booking: nothing old comes back.
  Json page = ask("OLD", "get_message", Json::object());
  BOOST_TEST(page.at("messages").empty());
  BOOST_TEST(page.at("last_seq").get<std::uint64_t>() == 0u);
  BOOST_TEST(send("OLD", "new life").at("message").at("seq").get<std::uint64_t>() == 1u);
}

BOOST_FIXTURE_TEST_CASE(each_purge_transaction_deletes_a_bounded_number_of_keys, RetentionFixture) {
  for (int i = 0; i < 50; ++i) send("BIG", "m" + std::to_string(i));
  close("BIG");
  now += 31 * kDay;
  // Drive the store directly with the same bound: no call deletes more than asked.
  std::vector<std::size_t> per_txn;
  for (int guard = 0; guard < 100; ++guard) {
    std::size_t n = 0;
    store->write([&](StoreWriter& w) { n = w.purge_booking("BIG", 8); });
    per_txn.push_back(n);
    if (n < 8) break;
  }
  for (std::size_t n : per_txn) BOOST_TEST(n <= 8u);
  BOOST_TEST(per_txn.size() >= 7u);  // 100 message keys and ids (LMDB), 50 rows (PostgreSQL), 8 a txn
  store->read([&](const StoreReader& r) {
    BOOST_TEST(r.last_seq("BIG") == 0u);
    BOOST_TEST(!r.booking_state("BIG"));
  });
}

BOOST_FIXTURE_TEST_CASE(retention_zero_keeps_closed_bookings_forever, CloseFixture) {
  options.retention_ms = 0;
  engine = std::make_unique<Engine>(*store, options, [this] { return now; });
  send("BK1", "keep me");
  close("BK1");
  engine->start();
  now += 10'000 * kDay;
  run_background();
  BOOST_TEST(engine->metrics().bookings_purged.load() == 0u);
  BOOST_TEST(ask("BK1", "get_message", Json::object()).at("last_seq").get<std::uint64_t>() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
