// What authentication costs the broker thread: verifying a token (once per CONNECT), building a
// session's ACL (once per CONNECT) and an ACL decision (per publish, per subscription and per
// delivered message), the last on the session's prebuilt SessionAcl as the plugin makes it.
// Usage: bench_auth [--iterations N]   (prints one line per operation)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "auth/acl.hpp"
#include "auth/jwt.hpp"

namespace {

using namespace navietakie;

template <class F>
double ns_per_op(std::size_t iterations, F&& op) {
  const auto start = std::chrono::steady_clock::now();
  std::size_t sink = 0;
  for (std::size_t i = 0; i < iterations; ++i) sink += op(i) ? std::size_t{1} : std::size_t{0};
  const auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
  if (sink == 42424242) std::puts("");  // keep the work
  return ns / static_cast<double>(iterations);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t iterations = 200000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--iterations") == 0) iterations = std::strtoull(argv[i + 1], nullptr, 10);
  }
  const std::string secret = generate_secret();
  const Identity driver{Principal::driver, "drv-42", "BK123"};
  const std::int64_t now = 1'800'000'000;
  const std::string token = mint_token(driver, secret, now + 3600);
  JwtOptions options;
  options.secret = secret;

  const double verify =
      ns_per_op(iterations / 10, [&](std::size_t) { return bool(verify_token(token, options, now)); });
  AclPolicy policy;
  policy.service_grants =
      parse_grants("*:pub:{prefix}/bookings/+/send_message, *:sub:{prefix}/bookings/+/events/#", policy.topic_prefix);
  const double session = ns_per_op(iterations / 10, [&](std::size_t) {
    return SessionAcl(policy, driver, "phone-1").allows(Access::unsubscribe, "x");
  });
  const SessionAcl driver_acl(policy, driver, "phone-1");
  const double publish = ns_per_op(iterations, [&](std::size_t) {
    return driver_acl.allows(Access::write, "navietakie/v1/bookings/BK123/send_message");
  });
  const double read = ns_per_op(iterations, [&](std::size_t) {
    return driver_acl.allows(Access::read, "navietakie/v1/bookings/BK123/events/message");
  });
  const double subscribe = ns_per_op(iterations, [&](std::size_t) {
    return driver_acl.allows(Access::subscribe, "navietakie/v1/bookings/+/events/#");
  });
  const Identity ops{Principal::service, "ops", ""};
  const SessionAcl ops_acl(policy, ops, "ops-1");
  const double service_read = ns_per_op(iterations, [&](std::size_t) {
    return ops_acl.allows(Access::read, "navietakie/v1/bookings/BK123/events/message");
  });
  std::printf("verify_token (HS256, %zu-byte token)   %8.0f ns/op\n", token.size(), verify);
  std::printf("session ACL built (participant)         %8.0f ns/op\n", session);
  std::printf("acl publish (participant, allowed)      %8.0f ns/op\n", publish);
  std::printf("acl read (participant, allowed)         %8.0f ns/op\n", read);
  std::printf("acl subscribe (participant, wildcard)   %8.0f ns/op\n", subscribe);
  std::printf("acl read (service, via grants)          %8.0f ns/op\n", service_read);
  std::printf(
      "{\"verify_token_ns\":%.0f,\"session_acl_ns\":%.0f,\"acl_publish_ns\":%.0f,\"acl_read_ns\":%.0f,\"acl_subscribe_ns\":%.0f,"
      "\"acl_service_read_ns\":%.0f}\n",
      verify, session, publish, read, subscribe, service_read);
  return 0;
}
