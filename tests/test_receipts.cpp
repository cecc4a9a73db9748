// The typing rate limit on its own (core/typing_limiter.hpp): the window, its refill and the bound
// on what it remembers. The engine's use of it is in test_engine.cpp, suite receipts.
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include "core/typing_limiter.hpp"

using namespace navietakie;

BOOST_AUTO_TEST_SUITE(typing_limiter)

BOOST_AUTO_TEST_CASE(two_per_window_then_refill_one_by_one) {
  TypingLimiter limiter;
  const Millis t0 = 1'000'000;
  BOOST_TEST(limiter.allow("B", Role::driver, t0));
  BOOST_TEST(limiter.allow("B", Role::driver, t0));
  BOOST_TEST(!limiter.allow("B", Role::driver, t0 + 999));
  BOOST_TEST(limiter.allow("B", Role::driver, t0 + 1000));
  BOOST_TEST(limiter.allow("B", Role::driver, t0 + 1000));
  BOOST_TEST(!limiter.allow("B", Role::driver, t0 + 1500));
  // A steady 2/s passes whole.
  Millis t = t0 + 2000;
  for (int i = 0; i < 20; ++i, t += 500) BOOST_TEST(limiter.allow("B", Role::driver, t), i);
  // At 3/s, no three relays ever fall within one second.
  std::vector<Millis> relays;
  for (int i = 0; i < 30; ++i, t += 333) {
    if (limiter.allow("B", Role::driver, t)) relays.push_back(t);
  }
  BOOST_TEST(relays.size() >= 10u);
  for (std::size_t i = 2; i < relays.size(); ++i) BOOST_TEST(relays[i] - relays[i - 2] >= 1000, i);
}

BOOST_AUTO_TEST_CASE(a_clock_stepping_back_never_relays_more) {
  TypingLimiter limiter;
  BOOST_TEST(limiter.allow("B", Role::passenger, 5000));
  BOOST_TEST(limiter.allow("B", Role::passenger, 5000));
  BOOST_TEST(!limiter.allow("B", Role::passenger, 1000));
  BOOST_TEST(limiter.allow("B", Role::passenger, 6000));
}

BOOST_AUTO_TEST_CASE(idle_keys_are_forgotten) {
  TypingLimiter limiter;
  Millis t = 1'000'000;
  for (int i = 0; i < 10'000; ++i, t += 1) limiter.allow("B" + std::to_string(i), Role::driver, t);
  // Keys active within the last window are kept (up to 1000 here), plus at most a sweep's worth.
  BOOST_TEST(limiter.tracked() <= 2u * 1000u + 256u, limiter.tracked());
  // Long after: new keys push the next sweep, which forgets every one of the old.
  t += 5000;
  for (int i = 0; i < 3000; ++i) limiter.allow("C" + std::to_string(i), Role::driver, t);
  BOOST_TEST(limiter.tracked() == 3000u);
}

BOOST_AUTO_TEST_SUITE_END()
