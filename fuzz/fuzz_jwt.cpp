// JWT verification: a token as a client sends it in the MQTT password. verify_token returns a
// result for every input; it must not throw, and an accepted token must carry an identity that a
// token may carry, valid at the fixed `now`.
//
// Input: a mode byte, then either a whole token (even mode byte) or, so that the fuzzer reaches the
// claim checks behind the signature, a header and a claims text separated by a newline, which the
// target encodes and signs with kSecret itself (odd: HS256, HS384 or HS512 from the mode byte).
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "auth/jwt.hpp"

using namespace navietakie;

namespace {

// The secret and clock the seed tokens were made for (fuzz/make_seeds.py).
constexpr std::string_view kSecret = "navietakie-fuzz-secret-0123456789abcdef";
constexpr std::int64_t kNow = 1764160000;

// Unpadded base64url, from OpenSSL's base64.
std::string base64url(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int written =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(written));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

// `header.claims.signature`, signed with kSecret.
std::string signed_token(std::string_view header, std::string_view claims, std::uint8_t mode) {
  const EVP_MD* digests[] = {EVP_sha256(), EVP_sha384(), EVP_sha512()};
  const std::string signing_input = base64url(header) + "." + base64url(claims);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  if (HMAC(digests[(mode / 2) % 3], kSecret.data(), static_cast<int>(kSecret.size()),
           reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
           &mac_size) == nullptr) {
    std::abort();
  }
  return signing_input + "." + base64url(std::string_view(reinterpret_cast<const char*>(mac), mac_size));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const JwtOptions options = [] {
    JwtOptions o;
    o.secret = std::string(kSecret);
    return o;
  }();
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string token(rest);
  if (mode % 2 == 1) {
    const auto newline = rest.find('\n');
    if (newline == std::string_view::npos) return 0;
    token = signed_token(rest.substr(0, newline), rest.substr(newline + 1), mode);
  }
  const VerifyResult result = verify_token(token, options, kNow);
  if (result) {
    if (identity_claims_problem(*result.identity)) std::abort();
    if (result.expires_at_s < kNow - options.leeway_s) std::abort();  // (exp + leeway may overflow)
  }
  return 0;
}
