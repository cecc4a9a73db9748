// The engine reports errors in the order the wire table gives (wire::kErrorPrecedence): for each
// ranked code, a request that breaks that rule and every lower-ranked rule at once gets that code.
// The rules are broken one field at a time on a make_call request, so they combine freely.
#include <boost/test/unit_test.hpp>

#include "support/store_space.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "core/identity.hpp"
#include "core/wire.hpp"
#include "store/store.hpp"

using namespace navietakie;

namespace {

constexpr std::size_t kMaxPayload = 1024;

// One request under construction; each spoiler breaks one rule of it.
struct Draft {
  std::string booking = "BK1";
  Json body;
  Identity as{Principal::passenger, "pax-7", "BK1"};
  bool garbage = false;  // not JSON
  bool oversized = false;
};

struct Spoiler {
  ErrorCode code;
  std::function<void(Draft&)> apply;
};

// Every way to break one rule, by the code it should cause. not_found needs a call_id to look up,
// so it does not apply to `start` (whose unknown call_id is a new call).
std::vector<Spoiler> spoilers(bool starting) {
  std::vector<Spoiler> all{
      {ErrorCode::payload_too_large, [](Draft& d) { d.oversized = true; }},
      {ErrorCode::invalid_json, [](Draft& d) { d.garbage = true; }},
      {ErrorCode::invalid_booking_code, [](Draft& d) { d.booking = "bad.code"; }},
      {ErrorCode::invalid_request, [](Draft& d) { d.body["by"] = 5; }},
      {ErrorCode::forbidden,
       [](Draft& d) {
         d.as = Identity{Principal::passenger, "pax-9", "BK2"};
       }},
  };
  if (!starting) all.push_back({ErrorCode::not_found, [](Draft& d) { d.body["call_id"] = "no-such-call"; }});
  return all;
}

int rank_of(ErrorCode code) {
  for (const auto& entry : wire::kErrorPrecedence) {
    if (entry.code == code) return entry.rank;
  }
  return 0;
}

struct PrecedenceFixture {
  PrecedenceFixture() {
    options.max_payload_bytes = kMaxPayload;
    options.require_identity = true;
    store = space.open();
    engine = std::make_unique<Engine>(*store, options, [] { return Millis{1'764'160'000'000}; });
    // A ringing call from the driver: `end` on it is invalid_state, another `start` busy.
    Draft start;
    start.as = Identity{Principal::driver, "drv-42", "BK1"};
    start.body = {{"action", "start"}, {"call_id", "c1"}, {"by", "driver"}};
    BOOST_REQUIRE(reply(start).at("ok") == true);
  }

  Json reply(const Draft& d) {
    std::string payload = d.body.dump();
    if (d.garbage) payload += " x";
    if (d.oversized) payload += std::string(kMaxPayload, ' ');  // still JSON, unless garbage
    Request r{wire_topic(d.booking), payload, std::string("resp/t"), std::string("corr"), "client-1", d.as};
    const auto out = engine->handle({r});
    for (const auto& p : out) {
      if (p.topic == "resp/t") return Json::parse(p.payload);
    }
    BOOST_FAIL("no reply on resp/t");
    return {};
  }

  std::string wire_topic(const std::string& booking) const {
    return Topics(options.topic_prefix).request(booking, Action::make_call);
  }

  EngineOptions options;
  navietakie::test::StoreSpace space;  // before store: outlives it
  std::unique_ptr<Store> store;
  std::unique_ptr<Engine> engine;
};

// The request whose only fault is `base` (invalid_state or busy), broken further by every spoiler
// ranked at or below `top`; the engine must report `top`.
void check_precedence(PrecedenceFixture& f, const Json& body, ErrorCode base) {
  const bool starting = body.at("action") == "start";
  Draft plain;
  plain.body = body;
  BOOST_TEST(f.reply(plain).at("error").at("code") == to_string(base));
  const auto all = spoilers(starting);
  for (const auto& top : all) {
    Draft d;
    d.body = body;
    for (const auto& s : all) {
      if (rank_of(s.code) >= rank_of(top.code)) s.apply(d);
    }
    const Json reply = f.reply(d);
    BOOST_TEST(reply.at("error").at("code") == to_string(top.code), to_string(top.code)
                                                                        << " and everything ranked below it, on "
                                                                        << to_string(base) << ": " << reply.dump());
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(error_precedence_table)

BOOST_AUTO_TEST_CASE(every_spoiler_has_a_rank_and_the_table_ranks_each_code_once) {
  std::vector<ErrorCode> seen;
  for (const auto& entry : wire::kErrorPrecedence) {
    for (ErrorCode code : seen) BOOST_TEST((code != entry.code), to_string(entry.code) << " ranked twice");
    seen.push_back(entry.code);
  }
  for (const auto& s : spoilers(false)) BOOST_TEST(rank_of(s.code) > 0, to_string(s.code));
  BOOST_TEST(rank_of(ErrorCode::invalid_state) == rank_of(ErrorCode::busy));
}

BOOST_FIXTURE_TEST_CASE(the_engine_reports_the_highest_ranked_error, PrecedenceFixture) {
  check_precedence(*this, {{"action", "end"}, {"call_id", "c1"}, {"by", "passenger"}}, ErrorCode::invalid_state);
  check_precedence(*this, {{"action", "start"}, {"call_id", "c2"}, {"by", "passenger"}}, ErrorCode::busy);
}

BOOST_AUTO_TEST_SUITE_END()
