// JWT verification: a token as a client sends it in the MQTT password. verify_token returns a
// result for every input; it must not throw, and an accepted token must carry an identity that a
// token may carry, valid at the fixed `now`. The seed corpus has tokens signed with kSecret.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "auth/jwt.hpp"

using namespace navietakie;

namespace {

// The secret and clock the seed tokens were made for (fuzz/make_seeds.py).
constexpr std::string_view kSecret = "navietakie-fuzz-secret-0123456789abcdef";
constexpr std::int64_t kNow = 1764160000;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const JwtOptions options = [] {
    JwtOptions o;
    o.secret = std::string(kSecret);
    return o;
  }();
  const std::string_view token(reinterpret_cast<const char*>(data), size);
  const VerifyResult result = verify_token(token, options, kNow);
  if (result) {
    if (identity_claims_problem(*result.identity)) std::abort();
    if (result.expires_at_s + options.leeway_s < kNow) std::abort();
  }
  return 0;
}
