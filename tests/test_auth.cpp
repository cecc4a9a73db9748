// Authentication and access control: the identity stamp, JWT verification and minting, the secret
// file, grants, MQTT topic matching and the ACL policy.
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "auth/acl.hpp"
#include "auth/jwt.hpp"
#include "auth/keys.hpp"
#include "config/config.hpp"
#include "core/identity.hpp"
#include "core/wire.hpp"
#include "temp_dir.hpp"

namespace nt = navietakie;

namespace {

constexpr std::string_view kSecret = "0123456789abcdef0123456789abcdef";  // 32 bytes
constexpr std::int64_t kNow = 1'700'000'000;
const std::string kPrefix = "navietakie/v1";

nt::Identity make_identity(nt::Principal principal, std::string subject, std::string booking) {
  nt::Identity identity;
  identity.principal = principal;
  identity.subject = std::move(subject);
  identity.booking = std::move(booking);
  return identity;
}

const nt::Identity kDriver = make_identity(nt::Principal::driver, "driver-7", "BK-1");
const nt::Identity kPassenger = make_identity(nt::Principal::passenger, "pax-3", "BK-1");
const nt::Identity kService = make_identity(nt::Principal::service, "dispatch", "");

std::string base64url(std::string_view bytes) { return nt::base64url_encode(bytes); }

// header.payload.signature, assembled by hand: no library would sign these.
std::string hand_made_token(std::string_view header_json, std::string_view claims_json,
                            std::string_view signature = "") {
  return base64url(header_json) + "." + base64url(claims_json) + "." + std::string(signature);
}

// Any claims JSON signed by libjwt directly, so that claims mint_token refuses can be tested.
std::string signed_token(const std::string& claims_json, std::string_view secret = kSecret,
                         jwt_alg_t alg = JWT_ALG_HS256) {
  jwt_t* raw = nullptr;
  BOOST_REQUIRE(jwt_new(&raw) == 0);
  std::unique_ptr<jwt_t, void (*)(jwt_t*)> jwt(raw, jwt_free);
  BOOST_REQUIRE(jwt_add_grants_json(jwt.get(), claims_json.c_str()) == 0);
  BOOST_REQUIRE(jwt_set_alg(jwt.get(), alg, reinterpret_cast<const unsigned char*>(secret.data()),
                            static_cast<int>(secret.size())) == 0);
  std::unique_ptr<char, void (*)(void*)> token(jwt_encode_str(jwt.get()), std::free);
  BOOST_REQUIRE(token != nullptr);
  return token.get();
}

std::vector<std::string> parts_of(const std::string& token) {
  std::vector<std::string> parts;
  for (std::size_t start = 0;;) {
    const std::size_t dot = token.find('.', start);
    parts.push_back(token.substr(start, dot == std::string::npos ? dot : dot - start));
    if (dot == std::string::npos) return parts;
    start = dot + 1;
  }
}

nt::JwtOptions options(std::string_view secret = kSecret) {
  nt::JwtOptions result;
  result.secret = std::string(secret);
  return result;
}

// "accepted", or the name of the failure. Every refusal must explain itself without quoting the
// token or the secret.
std::string outcome(const std::string& token, const nt::JwtOptions& jwt_options = options(), std::int64_t now = kNow) {
  const nt::VerifyResult result = nt::verify_token(token, jwt_options, now);
  if (result) return "accepted";
  BOOST_TEST(!result.detail.empty());
  if (!token.empty()) BOOST_TEST(result.detail.find(token) == std::string::npos);
  const auto parts = parts_of(token);
  if (parts.size() == 3 && parts[2].size() >= 8) {
    BOOST_TEST(result.detail.find(parts[2]) == std::string::npos);
  }
  if (!jwt_options.secret.empty()) {
    BOOST_TEST(result.detail.find(jwt_options.secret) == std::string::npos);
  }
  return nt::to_string(result.failure);
}

std::string claims(const std::string& body) { return "{" + body + "}"; }
const std::string kExp = "\"exp\":" + std::to_string(kNow + 600);

// The message of the exception fn throws (of type E), or "" if it throws none.
template <typename E, typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const E& error) {
    return error.what();
  }
  return "";
}

std::string write_file(const nt::test::UnitTempDir& dir, const std::string& name, const std::string& content) {
  const std::string path = dir.path() + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(identity)

BOOST_AUTO_TEST_CASE(principal_names_round_trip) {
  for (auto principal : {nt::Principal::driver, nt::Principal::passenger, nt::Principal::service}) {
    BOOST_TEST((nt::principal_from_string(nt::to_string(principal)) == principal));
  }
  BOOST_TEST(!nt::principal_from_string("Driver").has_value());
  BOOST_TEST(!nt::principal_from_string("").has_value());
  BOOST_TEST(!nt::principal_from_string("admin").has_value());
}

BOOST_AUTO_TEST_CASE(encode_is_compact_with_booking_only_when_set) {
  BOOST_TEST(nt::encode_identity(kDriver) == R"({"sub":"driver-7","role":"driver","booking":"BK-1"})");
  BOOST_TEST(nt::encode_identity(kService) == R"({"sub":"dispatch","role":"service"})");
}

BOOST_AUTO_TEST_CASE(decode_round_trips) {
  for (const auto& identity : {kDriver, kPassenger, kService}) {
    BOOST_TEST_CONTEXT(nt::encode_identity(identity)) {
      const auto decoded = nt::decode_identity(nt::encode_identity(identity));
      BOOST_TEST_REQUIRE(decoded.has_value());
      BOOST_TEST((*decoded == identity));
    }
  }
  // Key order and whitespace are not part of the contract.
  const auto reordered = nt::decode_identity(R"({ "booking": "BK-1", "role": "driver", "sub": "driver-7" })");
  BOOST_TEST_REQUIRE(reordered.has_value());
  BOOST_TEST((*reordered == kDriver));
}

BOOST_AUTO_TEST_CASE(decode_rejects_anything_else) {
  const std::vector<std::string> rejected = {
      "",
      "not json",
      "[]",
      "\"driver\"",
      "null",
      R"({"sub":"d","role":"driver","booking":"BK-1")",  // truncated
      R"({"sub":"d","role":"driver","booking":"BK-1","extra":1})",
      R"({"sub":"d","role":"driver","booking":"BK-1","booking":"BK-2"})",
      R"({"sub":"d","sub":"e","role":"service"})",
      R"({"role":"driver","booking":"BK-1"})",
      R"({"sub":"d","booking":"BK-1"})",
      R"({"sub":"","role":"driver","booking":"BK-1"})",
      R"({"sub":7,"role":"driver","booking":"BK-1"})",
      R"({"sub":"d","role":"Driver","booking":"BK-1"})",
      R"({"sub":"d","role":"admin"})",
      R"({"sub":"d","role":null,"booking":"BK-1"})",
      R"({"sub":"d","role":"driver"})",
      R"({"sub":"d","role":"passenger","booking":""})",
      R"({"sub":"d","role":"driver","booking":"-BK"})",
      R"({"sub":"d","role":"driver","booking":"BK/1"})",
      R"({"sub":"d","role":"driver","booking":1})",
      R"({"sub":"d","role":"service","booking":"BK-1"})",
      R"({"sub":"d","role":"service","booking":""})",
      R"({"sub":"d","role":"service","booking":null})",
      "{\"sub\":\"\xff\",\"role\":\"service\"}",
      // Subjects no token can carry: the stamp takes the token's subject rule.
      R"({"sub":"a b","role":"service"})",
      R"({"sub":"a\u0000b","role":"service"})",
      R"({"sub":"a\nb","role":"driver","booking":"BK-1"})",
      R"({"sub":"a\tb","role":"service"})",
      R"({"sub":"\u00e9","role":"service"})",
      R"({"sub":")" + std::string(129, 's') + R"(","role":"service"})",
  };
  for (const auto& value : rejected) {
    BOOST_TEST_CONTEXT(value) { BOOST_TEST(!nt::decode_identity(value).has_value()); }
  }
}

BOOST_AUTO_TEST_CASE(one_subject_rule_for_token_stamp_and_grant) {
  for (const std::string& good : std::vector<std::string>{"d", "drv-42", std::string(128, '~'), "!~"}) {
    BOOST_TEST(nt::valid_subject(good), good);
    const auto stamp = nt::decode_identity(R"({"sub":")" + good + R"(","role":"service"})");
    BOOST_TEST(stamp.has_value(), good);
  }
  for (const std::string& bad :
       std::vector<std::string>{"", "a b", std::string("a\0b", 3), "a\nb", std::string(129, 'x'), "\x7f", "\xc3\xa9"}) {
    BOOST_TEST(!nt::valid_subject(bad));
    nt::Identity identity = make_identity(nt::Principal::service, bad, "");
    BOOST_TEST(nt::identity_claims_problem(identity).has_value());
    // Neither can a token carry it (mint refuses what verify would) nor a grant name it.
    BOOST_TEST(!error_of<std::runtime_error>([&] { nt::mint_token(identity, kSecret, kNow + 60); }).empty());
    BOOST_TEST(!error_of<std::invalid_argument>([&] { nt::parse_grants(bad + ":pub:a/b", kPrefix); }).empty());
  }
}

BOOST_AUTO_TEST_CASE(claims_problems_name_the_claim) {
  const auto from = [](const std::string& json) {
    auto parsed = nt::parse_unique_object(json);
    BOOST_TEST_REQUIRE(parsed.has_value());
    auto read = nt::identity_from_claims(*parsed);
    const auto* problem = std::get_if<std::string>(&read);
    return problem ? *problem : std::string("ok");
  };
  BOOST_TEST(from(R"({"sub":"d","role":"driver","booking":"BK-1","exp":1})") == "ok");
  BOOST_TEST(from(R"({"sub":"a b","role":"service"})").find("'sub'") != std::string::npos);
  BOOST_TEST(from(R"({"sub":"d","role":"admin"})").find("'role'") != std::string::npos);
  BOOST_TEST(from(R"({"sub":"d","role":"driver"})").find("'booking'") != std::string::npos);
  BOOST_TEST(!nt::parse_unique_object(R"({"a":1,"a":2})").has_value());
  BOOST_TEST(!nt::parse_unique_object("[1]").has_value());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(tokens)

BOOST_AUTO_TEST_CASE(failure_names_are_snake_case) {
  BOOST_TEST(std::string(nt::to_string(nt::AuthFailure::missing)) == "missing");
  BOOST_TEST(std::string(nt::to_string(nt::AuthFailure::bad_algorithm)) == "bad_algorithm");
  BOOST_TEST(std::string(nt::to_string(nt::AuthFailure::bad_signature)) == "bad_signature");
  BOOST_TEST(std::string(nt::to_string(nt::AuthFailure::not_yet_valid)) == "not_yet_valid");
  BOOST_TEST(std::string(nt::to_string(nt::AuthFailure::bad_claims)) == "bad_claims");
}

BOOST_AUTO_TEST_CASE(minted_tokens_verify_for_every_role) {
  for (const auto& identity : {kDriver, kPassenger, kService}) {
    BOOST_TEST_CONTEXT(nt::encode_identity(identity)) {
      const std::string token = nt::mint_token(identity, kSecret, kNow + 600, kNow - 10, kNow);
      const auto result = nt::verify_token(token, options(), kNow);
      BOOST_TEST_REQUIRE(static_cast<bool>(result));
      BOOST_TEST((*result.identity == identity));
      BOOST_TEST(result.detail.empty());
      BOOST_TEST(result.expires_at_s == kNow + 600);
    }
  }
}

BOOST_AUTO_TEST_CASE(tokens_signed_elsewhere_verify) {
  // Unknown claims are ignored; HS384 and HS512 are accepted as well as HS256.
  const std::string body = claims(R"("sub":"driver-7","role":"driver","booking":"BK-1","iss":"x",)" + kExp);
  BOOST_TEST(outcome(signed_token(body, kSecret, JWT_ALG_HS384)) == "accepted");
  BOOST_TEST(outcome(signed_token(body, kSecret, JWT_ALG_HS512)) == "accepted");
  // A whole number written as a real is still whole seconds.
  BOOST_TEST(outcome(signed_token(claims(R"("sub":"s","role":"service","exp":1700000600.0)"))) == "accepted");
}

BOOST_AUTO_TEST_CASE(expiry_and_not_before_with_leeway) {
  const auto token = [](std::int64_t exp, std::optional<std::int64_t> nbf = std::nullopt) {
    return nt::mint_token(kDriver, kSecret, exp, nbf);
  };
  BOOST_TEST(outcome(token(kNow - 3600)) == "expired");
  BOOST_TEST(outcome(token(kNow - 30)) == "accepted");  // the default leeway is 30 s
  BOOST_TEST(outcome(token(kNow - 31)) == "expired");
  BOOST_TEST(outcome(token(kNow + 3600, kNow + 3000)) == "not_yet_valid");
  BOOST_TEST(outcome(token(kNow + 3600, kNow + 30)) == "accepted");
  BOOST_TEST(outcome(token(kNow + 3600, kNow + 31)) == "not_yet_valid");

  auto strict = options();
  strict.leeway_s = 0;
  BOOST_TEST(outcome(token(kNow), strict) == "accepted");
  BOOST_TEST(outcome(token(kNow - 1), strict) == "expired");
  BOOST_TEST(outcome(token(kNow + 60, kNow), strict) == "accepted");
  BOOST_TEST(outcome(token(kNow + 60, kNow + 1), strict) == "not_yet_valid");
  auto negative = options();
  negative.leeway_s = -100;  // counts as 0, never as a shortened lifetime
  BOOST_TEST(outcome(token(kNow), negative) == "accepted");

  // Arithmetic at the edges of int64 does not wrap.
  auto unlimited = options();
  unlimited.max_ttl_s = INT64_MAX;
  BOOST_TEST(outcome(token(INT64_MAX), unlimited) == "accepted");
  BOOST_TEST(outcome(token(INT64_MAX)) == "ttl_too_long");
  BOOST_TEST(outcome(token(INT64_MIN)) == "expired");
  BOOST_TEST(outcome(token(INT64_MAX, INT64_MAX)) == "not_yet_valid");
}

BOOST_AUTO_TEST_CASE(tampered_payload_or_wrong_secret_is_bad_signature) {
  const auto parts = parts_of(nt::mint_token(kDriver, kSecret, kNow + 600));
  BOOST_TEST_REQUIRE(parts.size() == 3u);
  const std::string other_booking =
      claims(R"("booking":"BK-2","exp":)" + std::to_string(kNow + 600) + R"(,"role":"driver","sub":"driver-7")");
  BOOST_TEST(outcome(parts[0] + "." + base64url(other_booking) + "." + parts[2]) == "bad_signature");
  const std::string service =
      claims(R"("exp":)" + std::to_string(kNow + 600) + R"(,"role":"service","sub":"driver-7")");
  BOOST_TEST(outcome(parts[0] + "." + base64url(service) + "." + parts[2]) == "bad_signature");

  const std::string token = nt::mint_token(kDriver, kSecret, kNow + 600);
  BOOST_TEST(outcome(token, options("another secret, 32 bytes long...")) == "bad_signature");
  // No secret: no HS token is even tried (and a public key would not stand in for it).
  BOOST_TEST(outcome(token, options("")) == "bad_algorithm");
  std::string flipped = token;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  BOOST_TEST(outcome(flipped) == "bad_signature");
}

BOOST_AUTO_TEST_CASE(algorithms_other_than_hmac_are_refused_before_libjwt) {
  const std::string body = claims(R"("sub":"driver-7","role":"driver","booking":"BK-1",)" + kExp);
  BOOST_TEST(outcome(hand_made_token(R"({"alg":"none","typ":"JWT"})", body)) == "bad_algorithm");
  BOOST_TEST(outcome(hand_made_token(R"({"alg":"none"})", body, "c2ln")) == "bad_algorithm");
  BOOST_TEST(outcome(hand_made_token(R"({"alg":"None"})", body)) == "bad_algorithm");
  BOOST_TEST(outcome(hand_made_token(R"({"alg":"RS256","typ":"JWT"})", body, "c2lnbmF0dXJl")) == "bad_algorithm");
  BOOST_TEST(outcome(hand_made_token(R"({"alg":"ES256"})", body, "c2lnbmF0dXJl")) == "bad_algorithm");
  BOOST_TEST(outcome(hand_made_token(R"({"alg":"hs256"})", body, "c2lnbmF0dXJl")) == "bad_algorithm");
  BOOST_TEST(outcome(hand_made_token(R"({"typ":"JWT"})", body, "c2lnbmF0dXJl")) == "bad_algorithm");
  BOOST_TEST(outcome(hand_made_token(R"({"alg":256})", body, "c2lnbmF0dXJl")) == "bad_algorithm");

  // An RS256 header in front of a real HS256 signature: still refused on the header.
  const auto parts = parts_of(nt::mint_token(kDriver, kSecret, kNow + 600));
  BOOST_TEST(outcome(base64url(R"({"alg":"RS256","typ":"JWT"})") + "." + parts[1] + "." + parts[2]) == "bad_algorithm");
}

BOOST_AUTO_TEST_CASE(malformed_tokens) {
  const std::string good = nt::mint_token(kDriver, kSecret, kNow + 600);
  const auto parts = parts_of(good);
  const std::string body = claims(R"("sub":"driver-7","role":"driver","booking":"BK-1",)" + kExp);
  const std::vector<std::string> malformed = {
      "garbage",
      "a.b",
      parts[0] + "." + parts[1],
      good + ".x",
      "..",
      "." + parts[1] + "." + parts[2],
      parts[0] + ".." + parts[2],
      good + "=",
      good + " ",
      "Bearer " + good,
      parts[0] + "." + parts[1] + "+" + "." + parts[2],
      std::string(good).insert(10, 1, '\0'),
      parts[0] + "." + parts[1] + ".",  // an HMAC token needs its signature
      "x" + good,                       // a header of impossible length
      base64url("not json") + "." + parts[1] + "." + parts[2],
      base64url("[\"alg\",\"HS256\"]") + "." + parts[1] + "." + parts[2],
      base64url(R"({"alg":"none","alg":"HS256"})") + "." + parts[1] + "." + parts[2],
      // A fine header over a payload that is not a JSON object: malformed, before any signature
      // check (deterministically, whatever libjwt would say).
      parts[0] + "." + base64url("not json") + "." + parts[2],
      parts[0] + "." + base64url("[1,2]") + "." + parts[2],
      parts[0] + "." + base64url(body.substr(0, body.size() - 1)) + "." + parts[2],
  };
  for (const auto& token : malformed) {
    BOOST_TEST_CONTEXT("token of " << token.size() << " bytes: " << token.substr(0, 40)) {
      BOOST_TEST(outcome(token) == "malformed");
    }
  }
}

BOOST_AUTO_TEST_CASE(missing_and_oversize) {
  BOOST_TEST(outcome("") == "missing");
  const std::string token = nt::mint_token(kDriver, kSecret, kNow + 600);
  auto small = options();
  small.max_token_bytes = token.size();
  BOOST_TEST(outcome(token, small) == "accepted");
  small.max_token_bytes = token.size() - 1;
  BOOST_TEST(outcome(token, small) == "oversize");
  BOOST_TEST(outcome(std::string(4097, 'a')) == "oversize");  // default limit: 4096
  BOOST_TEST(outcome(std::string(4096, 'a')) == "malformed");
}

BOOST_AUTO_TEST_CASE(claims_are_checked_by_type_and_range) {
  const std::string exp = kExp;
  struct Case {
    std::string body;
    std::string claim;  // named in the detail
  };
  const std::vector<Case> cases = {
      {R"("role":"driver","booking":"BK-1",)" + exp, "sub"},
      {R"("sub":"","role":"driver","booking":"BK-1",)" + exp, "sub"},
      {R"("sub":7,"role":"driver","booking":"BK-1",)" + exp, "sub"},
      {R"("sub":"has space","role":"driver","booking":"BK-1",)" + exp, "sub"},
      {R"("sub":")" + std::string(129, 'x') + R"(","role":"driver","booking":"BK-1",)" + exp, "sub"},
      {R"("sub":"d","booking":"BK-1",)" + exp, "role"},
      {R"("sub":"d","role":"admin","booking":"BK-1",)" + exp, "role"},
      {R"("sub":"d","role":"Driver","booking":"BK-1",)" + exp, "role"},
      {R"("sub":"d","role":["driver"],"booking":"BK-1",)" + exp, "role"},
      {R"("sub":"d","role":"driver",)" + exp, "booking"},
      {R"("sub":"d","role":"passenger",)" + exp, "booking"},
      {R"("sub":"d","role":"driver","booking":"",)" + exp, "booking"},
      {R"("sub":"d","role":"driver","booking":"_BK",)" + exp, "booking"},
      {R"("sub":"d","role":"driver","booking":"BK 1",)" + exp, "booking"},
      {R"("sub":"d","role":"driver","booking":")" + std::string(65, 'B') + R"(",)" + exp, "booking"},
      {R"("sub":"d","role":"driver","booking":12,)" + exp, "booking"},
      {R"("sub":"s","role":"service","booking":"BK-1",)" + exp, "booking"},
      {R"("sub":"s","role":"service","booking":"",)" + exp, "booking"},
      {R"("sub":"s","role":"service","booking":null,)" + exp, "booking"},
      {R"("sub":"d","role":"driver","booking":"BK-1")", "exp"},
      {R"("sub":"d","role":"driver","booking":"BK-1","exp":"1700000600")", "exp"},
      {R"("sub":"d","role":"driver","booking":"BK-1","exp":1700000600.5)", "exp"},
      {R"("sub":"d","role":"driver","booking":"BK-1","exp":true)", "exp"},
      {R"("sub":"d","role":"driver","booking":"BK-1","exp":null)", "exp"},
      {R"("sub":"d","role":"driver","booking":"BK-1","exp":1e300)", "exp"},
      {R"("sub":"d","role":"driver","booking":"BK-1","nbf":"now",)" + exp, "nbf"},
      {R"("sub":"d","role":"driver","booking":"BK-1","nbf":0.25,)" + exp, "nbf"},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.body) {
      const std::string token = signed_token(claims(c.body));
      BOOST_TEST(outcome(token) == "bad_claims");
      const auto result = nt::verify_token(token, options(), kNow);
      BOOST_TEST(result.detail.find("'" + c.claim + "'") != std::string::npos, result.detail);
    }
  }
  // Claims are checked before time: an expired token with a bad claim is bad_claims.
  BOOST_TEST(outcome(signed_token(claims(R"("sub":"d","role":"driver","exp":1)"))) == "bad_claims");
}

BOOST_AUTO_TEST_CASE(mint_refuses_what_verify_would_refuse) {
  const auto refused = [](const nt::Identity& identity, std::string_view secret) {
    return error_of<std::runtime_error>([&] { nt::mint_token(identity, secret, kNow + 60); });
  };
  BOOST_TEST(!refused(make_identity(nt::Principal::driver, "d", ""), kSecret).empty());
  BOOST_TEST(!refused(make_identity(nt::Principal::passenger, "p", "bad booking"), kSecret).empty());
  BOOST_TEST(!refused(make_identity(nt::Principal::service, "s", "BK-1"), kSecret).empty());
  BOOST_TEST(!refused(make_identity(nt::Principal::service, "", ""), kSecret).empty());
  BOOST_TEST(!refused(make_identity(nt::Principal::service, "a b", ""), kSecret).empty());
  BOOST_TEST(!refused(kService, "").empty());
  BOOST_TEST(refused(kService, kSecret).empty());

  BOOST_TEST(!nt::identity_claims_problem(kDriver).has_value());
  BOOST_TEST(!nt::identity_claims_problem(kService).has_value());
  const auto problem = nt::identity_claims_problem(make_identity(nt::Principal::driver, "d", ""));
  BOOST_TEST_REQUIRE(problem.has_value());
  BOOST_TEST(problem->find("booking") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(minted_token_is_plain_hs256) {
  const auto parts = parts_of(nt::mint_token(kService, kSecret, kNow + 60, kNow, kNow - 5));
  BOOST_TEST_REQUIRE(parts.size() == 3u);
  jwt_t* raw = nullptr;
  const std::string token = parts[0] + "." + parts[1] + "." + parts[2];
  BOOST_TEST_REQUIRE(jwt_decode(&raw, token.c_str(), reinterpret_cast<const unsigned char*>(kSecret.data()),
                                static_cast<int>(kSecret.size())) == 0);
  std::unique_ptr<jwt_t, void (*)(jwt_t*)> jwt(raw, jwt_free);
  BOOST_TEST(jwt_get_alg(jwt.get()) == JWT_ALG_HS256);
  BOOST_TEST(jwt_get_grant_int(jwt.get(), "exp") == kNow + 60);
  BOOST_TEST(jwt_get_grant_int(jwt.get(), "nbf") == kNow);
  BOOST_TEST(jwt_get_grant_int(jwt.get(), "iat") == kNow - 5);
  BOOST_TEST(jwt_get_grant(jwt.get(), "booking") == nullptr);
}

BOOST_AUTO_TEST_CASE(base64url_is_unpadded_with_the_url_alphabet) {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"\xfb\xff\xbf", "-_-_"}};
  for (const auto& [bytes, text] : vectors) BOOST_TEST(nt::base64url_encode(bytes) == text, text);
}

BOOST_AUTO_TEST_CASE(lifetime_is_bounded) {
  BOOST_TEST(std::string(nt::to_string(nt::AuthFailure::ttl_too_long)) == "ttl_too_long");
  const auto token = [](std::int64_t exp, std::optional<std::int64_t> iat) {
    return nt::mint_token(kDriver, kSecret, exp, std::nullopt, iat);
  };
  // With iat: exp - iat, the default limit being a day.
  BOOST_TEST(outcome(token(kNow + 86400, kNow)) == "accepted");
  BOOST_TEST(outcome(token(kNow + 86401, kNow)) == "ttl_too_long");
  BOOST_TEST(outcome(token(kNow + 600, kNow - 86400)) == "ttl_too_long");  // issued long ago
  // Year 9999, as some issuers write "never".
  BOOST_TEST(outcome(token(253402300799, kNow)) == "ttl_too_long");
  BOOST_TEST(outcome(token(253402300799, std::nullopt)) == "ttl_too_long");
  // Without iat: exp - now, with the leeway.
  BOOST_TEST(outcome(token(kNow + 86400 + 30, std::nullopt)) == "accepted");
  BOOST_TEST(outcome(token(kNow + 86400 + 31, std::nullopt)) == "ttl_too_long");
  // An iat in the future cannot stretch it.
  BOOST_TEST(outcome(token(kNow + 10 * 86400, kNow + 10 * 86400 - 60)) == "ttl_too_long");

  auto hour = options();
  hour.max_ttl_s = 3600;
  BOOST_TEST(outcome(token(kNow + 3600, kNow), hour) == "accepted");
  BOOST_TEST(outcome(token(kNow + 3601, kNow), hour) == "ttl_too_long");
  const auto refused = nt::verify_token(token(kNow + 3601, kNow), hour, kNow);
  BOOST_TEST(refused.detail.find("3600") != std::string::npos, refused.detail);

  // iat is checked like exp and nbf; expiry comes first.
  BOOST_TEST(outcome(signed_token(claims(R"("sub":"s","role":"service","iat":"now",)" + kExp))) == "bad_claims");
  BOOST_TEST(outcome(token(kNow - 3600, kNow - 86400 * 2)) == "expired");
}

// Signed with the secret, whatever the claims hold: HMAC-SHA256 over header.payload by OpenSSL.
std::string hs256_signed(std::string_view header_json, std::string_view claims_json) {
  const std::string input = base64url(header_json) + "." + base64url(claims_json);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  BOOST_REQUIRE(HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
                     reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &size) != nullptr);
  return input + "." + base64url(std::string_view(reinterpret_cast<const char*>(mac), size));
}

// Found by fuzz_jwt: libjwt's decoder could not represent an integer beyond 64 bits, and a correctly
// signed token then was logged as `bad_signature`. The signature is ours to check; the claims too.
BOOST_AUTO_TEST_CASE(a_signed_token_with_an_out_of_range_claim_is_bad_claims_not_bad_signature) {
  const std::string header = R"({"alg":"HS256","typ":"JWT"})";
  const std::string good = R"({"sub":"d-1","role":"driver","booking":"BK1","exp":1700000600})";
  BOOST_TEST(outcome(hs256_signed(header, good)) == "accepted");
  for (const char* exp : {"9223372036854775808", "18446744073709551616", "1e300"}) {
    const std::string claims = std::string(R"({"sub":"d-1","role":"driver","booking":"BK1","exp":)") + exp + "}";
    BOOST_TEST(outcome(hs256_signed(header, claims)) == "bad_claims", exp);
  }
  // A flipped signature byte is still a bad signature.
  std::string tampered = hs256_signed(header, good);
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  BOOST_TEST(outcome(tampered) == "bad_signature");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(secret_file)

BOOST_AUTO_TEST_CASE(one_trailing_newline_is_stripped) {
  const nt::test::UnitTempDir dir;
  const std::string secret(kSecret);
  BOOST_TEST(nt::read_secret_file(write_file(dir, "plain", secret)) == secret);
  BOOST_TEST(nt::read_secret_file(write_file(dir, "lf", secret + "\n")) == secret);
  BOOST_TEST(nt::read_secret_file(write_file(dir, "crlf", secret + "\r\n")) == secret);
  BOOST_TEST(nt::read_secret_file(write_file(dir, "two", secret + "\n\n")) == secret + "\n");
  const std::string binary = std::string(40, '\0') + "\xff";
  BOOST_TEST(nt::read_secret_file(write_file(dir, "binary", binary)) == binary);
}

BOOST_AUTO_TEST_CASE(short_empty_missing_or_huge_files_are_refused_by_path) {
  const nt::test::UnitTempDir dir;
  const auto refused = [](const std::string& path) {
    return error_of<std::runtime_error>([&] { nt::read_secret_file(path); });
  };
  const std::string short_secret = "hunter2-but-longer-31-bytes-xyz";
  BOOST_TEST_REQUIRE(short_secret.size() == 31u);
  const std::string short_path = write_file(dir, "short", short_secret + "\n");
  const std::string short_error = refused(short_path);
  BOOST_TEST(short_error.find(short_path) != std::string::npos, short_error);
  BOOST_TEST(short_error.find("32 bytes") != std::string::npos, short_error);
  BOOST_TEST(short_error.find(short_secret) == std::string::npos, short_error);

  const std::string empty_path = write_file(dir, "empty", "\n");
  BOOST_TEST(refused(empty_path).find(empty_path) != std::string::npos);
  BOOST_TEST(refused(empty_path).find("empty") != std::string::npos);

  const std::string missing_path = dir.path() + "/does-not-exist.key";
  const std::string missing_error = refused(missing_path);
  BOOST_TEST(missing_error.find(missing_path) != std::string::npos, missing_error);

  BOOST_TEST(refused(dir.path()).find(dir.path()) != std::string::npos);  // a directory
  const std::string huge_path = write_file(dir, "huge", std::string(64 * 1024 + 1, 'k'));
  BOOST_TEST(refused(huge_path).find(huge_path) != std::string::npos);
}

BOOST_AUTO_TEST_CASE(generated_secrets_are_64_hex_and_fresh) {
  const std::string first = nt::generate_secret();
  const std::string second = nt::generate_secret();
  BOOST_TEST(first.size() == 64u);
  BOOST_TEST(first.find_first_not_of("0123456789abcdef") == std::string::npos);
  BOOST_TEST(first != second);
  const nt::test::UnitTempDir dir;
  BOOST_TEST(nt::read_secret_file(write_file(dir, "generated", first + "\n")) == first);
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

// What a command prints on stdout, and its exit status.
struct Run {
  int status = -1;
  std::string out;
};

Run run(const std::string& command) {
  Run result;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  BOOST_REQUIRE_MESSAGE(pipe != nullptr, command);
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe.get())) > 0;) {
    result.out.append(buffer, n);
  }
  result.status = pclose(pipe.release());
  return result;
}

// Throw-away key pairs made by `openssl` in a temp dir, once for the suite: PATH.pem is the
// private key, PATH.pub the public half.
struct KeyPairs {
  nt::test::UnitTempDir dir{"navietakie-keys"};
  std::string make(const std::string& name, const std::string& genpkey_args) {
    const std::string path = dir.path() + "/" + name;
    const Run made = run("openssl genpkey " + genpkey_args + " -out " + path + ".pem 2>&1 && " + "openssl pkey -in " +
                         path + ".pem -pubout -out " + path + ".pub 2>&1");
    BOOST_REQUIRE_MESSAGE(made.status == 0, "openssl: " << made.out);
    return path;
  }
  std::string rsa = make("rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048");
  std::string other_rsa = make("other-rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048");
  std::string p256 = make("p256", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
  std::string ed25519 = make("ed25519", "-algorithm ED25519");
  std::string other_ed25519 = make("other-ed25519", "-algorithm ED25519");
};

KeyPairs& keys() {
  static KeyPairs pairs;
  return pairs;
}

nt::JwtOptions public_key_options(const std::string& key_path, std::string_view secret = "") {
  nt::JwtOptions result;
  result.secret = std::string(secret);
  result.public_key = nt::read_public_key_file(key_path + ".pub");
  return result;
}

// A token minted by navietakie-ctl with a private key.
std::string ctl_token(const std::string& key_path, const std::string& identity_args) {
  const Run minted = run(std::string(NAVIETAKIE_CTL_BIN) + " token --private-key-file " + key_path + ".pem " +
                         identity_args + " --ttl 600");
  BOOST_REQUIRE_MESSAGE(minted.status == 0, "navietakie-ctl token failed");
  return minted.out.substr(0, minted.out.find('\n'));
}

// The `alg` of a token's header (unpadded base64url JSON).
std::string header_alg(const std::string& token) {
  static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string header;
  std::uint32_t bits = 0;
  int bit_count = 0;
  const auto parts = parts_of(token);
  for (char c : parts.front()) {
    bits = (bits << 6) | static_cast<std::uint32_t>(alphabet.find(c));
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      header += static_cast<char>((bits >> bit_count) & 0xffu);
    }
  }
  const auto json = nt::parse_unique_object(header);
  BOOST_REQUIRE_MESSAGE(json.has_value(), header);
  return json->value("alg", "");
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(public_keys)

BOOST_AUTO_TEST_CASE(ctl_minted_rs256_es256_and_eddsa_tokens_verify) {
  struct Case {
    std::string key;
    std::string alg;
  };
  const std::vector<Case> cases = {{keys().rsa, "RS256"}, {keys().p256, "ES256"}, {keys().ed25519, "EdDSA"}};
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.alg) {
      const std::string token = ctl_token(c.key, "--sub driver-7 --role driver --booking BK-1");
      BOOST_TEST(header_alg(token) == c.alg);
      const auto result = nt::verify_token(token, public_key_options(c.key), unix_now());
      BOOST_TEST_REQUIRE(static_cast<bool>(result), result.detail);
      BOOST_TEST((*result.identity == kDriver));
      // The same key verifies with navietakie-ctl, as the broker would.
      const Run verified =
          run(std::string(NAVIETAKIE_CTL_BIN) + " verify --public-key-file " + c.key + ".pub " + token);
      BOOST_TEST(verified.status == 0);
      BOOST_TEST(verified.out.find(R"("sub":"driver-7")") != std::string::npos, verified.out);
    }
  }
}

BOOST_AUTO_TEST_CASE(tokens_signed_by_openssl_itself_verify) {
  // Interoperability: the signature scheme is the standard one, not only libjwt's or ours.
  const std::string body = claims(R"("sub":"driver-7","role":"driver","booking":"BK-1",)" + kExp);
  const std::string shell_base64url = " | base64 -w0 | tr '+/' '-_' | tr -d '='";
  struct Case {
    std::string key, alg, sign;
  };
  const std::vector<Case> cases = {
      {keys().rsa, "RS256", "openssl dgst -sha256 -sign " + keys().rsa + ".pem"},
      {keys().ed25519, "EdDSA", "openssl pkeyutl -sign -rawin -inkey " + keys().ed25519 + ".pem -in"},
  };
  const nt::test::UnitTempDir dir;
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.alg) {
      const std::string input = base64url(R"({"alg":")" + c.alg + R"(","typ":"JWT"})") + "." + base64url(body);
      const Run signature = run(c.sign + " " + write_file(dir, "input", input) + shell_base64url);
      BOOST_TEST_REQUIRE(!signature.out.empty());
      BOOST_TEST(outcome(input + "." + signature.out, public_key_options(c.key)) == "accepted");
    }
  }
}

BOOST_AUTO_TEST_CASE(each_key_verifies_only_its_own_algorithms) {
  const std::string body = claims(R"("sub":"driver-7","role":"driver","booking":"BK-1",)" + kExp);
  const nt::PemKey rsa_private = nt::read_private_key_file(keys().rsa + ".pem");
  const std::string rs256 = nt::mint_token(kDriver, rsa_private, kNow + 600);
  const std::string es256 = nt::mint_token(kDriver, nt::read_private_key_file(keys().p256 + ".pem"), kNow + 600);
  const std::string eddsa = nt::mint_token(kDriver, nt::read_private_key_file(keys().ed25519 + ".pem"), kNow + 600);
  const std::string hs256 = nt::mint_token(kDriver, kSecret, kNow + 600);
  const auto rsa_only = public_key_options(keys().rsa);
  const auto rsa_and_secret = public_key_options(keys().rsa, kSecret);

  // Each token with its own key, whatever else is configured.
  BOOST_TEST(outcome(rs256, rsa_only) == "accepted");
  BOOST_TEST(outcome(rs256, rsa_and_secret) == "accepted");
  BOOST_TEST(outcome(hs256, rsa_and_secret) == "accepted");
  BOOST_TEST(outcome(es256, public_key_options(keys().p256)) == "accepted");
  BOOST_TEST(outcome(eddsa, public_key_options(keys().ed25519)) == "accepted");

  // Key confusion: HS256 signed with the PEM public key text as the HMAC secret.
  const std::string public_pem = nt::read_public_key_file(keys().rsa + ".pub").pem;
  const std::string confused = signed_token(body, public_pem, JWT_ALG_HS256);
  BOOST_TEST(outcome(confused, rsa_only) == "bad_algorithm");        // no secret: HS never tried
  BOOST_TEST(outcome(confused, rsa_and_secret) == "bad_signature");  // the secret, not the PEM
  // An RS token against a secret-only configuration, and an algorithm of another key type.
  BOOST_TEST(outcome(rs256) == "bad_algorithm");
  BOOST_TEST(outcome(es256, rsa_and_secret) == "bad_algorithm");
  BOOST_TEST(outcome(eddsa, rsa_and_secret) == "bad_algorithm");
  BOOST_TEST(outcome(rs256, public_key_options(keys().ed25519)) == "bad_algorithm");
  // The public key must not verify an RS token re-labelled as HS (nor the other way round).
  const auto rs_parts = parts_of(rs256);
  BOOST_TEST(outcome(base64url(R"({"alg":"HS256","typ":"JWT"})") + "." + rs_parts[1] + "." + rs_parts[2],
                     rsa_and_secret) == "bad_signature");
  const auto hs_parts = parts_of(hs256);
  BOOST_TEST(outcome(base64url(R"({"alg":"RS256","typ":"JWT"})") + "." + hs_parts[1] + "." + hs_parts[2],
                     rsa_and_secret) == "bad_signature");

  // A wrong key of the right type.
  BOOST_TEST(outcome(rs256, public_key_options(keys().other_rsa)) == "bad_signature");
  BOOST_TEST(outcome(eddsa, public_key_options(keys().other_ed25519)) == "bad_signature");
  // alg none, and tampering, under a public key.
  BOOST_TEST(outcome(hand_made_token(R"({"alg":"none","typ":"JWT"})", body), rsa_only) == "bad_algorithm");
  for (const std::string& token : {rs256, eddsa}) {
    const auto parts = parts_of(token);
    const std::string other = claims(R"("sub":"driver-7","role":"driver","booking":"BK-2",)" + kExp);
    const auto& key = token == rs256 ? keys().rsa : keys().ed25519;
    BOOST_TEST(outcome(parts[0] + "." + base64url(other) + "." + parts[2], public_key_options(key)) == "bad_signature");
    BOOST_TEST(outcome(parts[0] + "." + parts[1] + ".AAAA", public_key_options(key)) == "bad_signature");
  }
  // Claims and lifetime rules are the same whatever signed the token.
  BOOST_TEST(outcome(nt::mint_token(kDriver, rsa_private, kNow + 86400 * 30), rsa_only) == "ttl_too_long");
  BOOST_TEST(outcome(nt::mint_token(kDriver, rsa_private, kNow - 3600), rsa_only) == "expired");
}

BOOST_AUTO_TEST_CASE(key_files_are_checked_by_path) {
  const nt::test::UnitTempDir dir;
  const auto public_error = [](const std::string& path) {
    return error_of<std::runtime_error>([&] { nt::read_public_key_file(path); });
  };
  const auto private_error = [](const std::string& path) {
    return error_of<std::runtime_error>([&] { nt::read_private_key_file(path); });
  };
  BOOST_TEST((nt::read_public_key_file(keys().rsa + ".pub").type == nt::KeyType::rsa));
  BOOST_TEST((nt::read_public_key_file(keys().p256 + ".pub").type == nt::KeyType::ec_p256));
  BOOST_TEST((nt::read_public_key_file(keys().ed25519 + ".pub").type == nt::KeyType::ed25519));
  BOOST_TEST(!nt::read_public_key_file(keys().rsa + ".pub").is_private);

  // A private key is refused where a public one is expected, even with a public key after it,
  // and the message never quotes the key.
  const std::string private_pem = nt::read_key_file(keys().ed25519 + ".pem", "key");
  const std::string both = write_file(dir, "both.pem", private_pem + nt::read_key_file(keys().ed25519 + ".pub", "key"));
  for (const std::string& path : {keys().ed25519 + ".pem", both}) {
    const std::string error = public_error(path);
    BOOST_TEST(error.find(path) != std::string::npos, error);
    BOOST_TEST(error.find("private key") != std::string::npos, error);
    BOOST_TEST(error.find(private_pem.substr(30, 20)) == std::string::npos, error);
  }
  BOOST_TEST(public_error(write_file(dir, "garbage", "not a key\n")).find("garbage") != std::string::npos);
  BOOST_TEST(!public_error(dir.path() + "/missing.pub").empty());
  BOOST_TEST(!private_error(keys().rsa + ".pub").empty());
  BOOST_TEST(!private_error(write_file(dir, "hmac", std::string(kSecret))).empty());

  // Too weak or unsupported: RSA below 2048 bits, EC on another curve.
  const std::pair<std::string, std::string> unaccepted[] = {
      {"-algorithm RSA -pkeyopt rsa_keygen_bits:1024", "2048"},
      {"-algorithm EC -pkeyopt ec_paramgen_curve:secp256k1", "curve"}};
  for (const auto& [genpkey_args, named] : unaccepted) {
    const std::string path = dir.path() + "/unaccepted.pub";
    const Run made =
        run("openssl genpkey " + genpkey_args + " 2>/dev/null | openssl pkey -pubout -out " + path + " 2>&1");
    BOOST_TEST_REQUIRE(made.status == 0);
    BOOST_TEST(public_error(path).find(named) != std::string::npos, public_error(path));
  }

  // Minting needs the private half.
  BOOST_TEST(!error_of<std::runtime_error>([] {
                nt::mint_token(kDriver, nt::read_public_key_file(keys().rsa + ".pub"), kNow + 60);
              }).empty());
}

BOOST_AUTO_TEST_CASE(settings_map_to_verifier_options) {
  nt::Settings settings = nt::resolve_settings({});
  BOOST_TEST(!nt::authentication_configured(settings));
  BOOST_TEST(!nt::jwt_options(settings).has_value());

  settings.auth_jwt_public_key_file = keys().p256 + ".pub";
  settings.auth_max_token_ttl_s = 600;
  settings.auth_leeway_s = 5;
  BOOST_TEST(nt::authentication_configured(settings));
  const auto options = nt::jwt_options(settings);
  BOOST_TEST_REQUIRE(options.has_value());
  BOOST_TEST(options->secret.empty());
  BOOST_TEST_REQUIRE(options->public_key.has_value());
  BOOST_TEST((options->public_key->type == nt::KeyType::ec_p256));
  BOOST_TEST(options->max_ttl_s == 600);
  BOOST_TEST(options->leeway_s == 5);

  const auto config_error = [&] { return error_of<nt::ConfigError>([&] { nt::jwt_options(settings); }); };
  settings.auth_jwt_public_key_file = keys().p256 + ".pem";  // the private half
  BOOST_TEST(config_error().find("config key 'auth_jwt_public_key_file'") == 0u, config_error());
  settings.auth_jwt_public_key_file = "";
  settings.auth_jwt_secret_file = keys().p256 + ".missing";
  BOOST_TEST(config_error().find("config key 'auth_jwt_secret_file'") == 0u, config_error());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(grants)

BOOST_AUTO_TEST_CASE(default_grants_parse_with_the_prefix) {
  const auto grants = nt::parse_grants(nt::default_service_grants(), kPrefix);
  // One per request action (nt::wire::kActions order), then events/#, the booking's errors, errors.
  BOOST_TEST_REQUIRE(grants.size() == nt::wire::kActions.size() + 3);
  for (std::size_t i = 0; i < nt::wire::kActions.size(); ++i) {
    BOOST_TEST(grants[i].subject == "*");
    BOOST_TEST(grants[i].publish);
    BOOST_TEST(grants[i].filter == kPrefix + "/bookings/+/" + std::string(nt::wire::kActions[i].name));
  }
  const std::size_t events = nt::wire::kActions.size();
  BOOST_TEST(!grants[events].publish);
  BOOST_TEST(grants[events].filter == kPrefix + "/bookings/+/events/#");
  BOOST_TEST(grants[events + 2].filter == kPrefix + "/errors");
}

BOOST_AUTO_TEST_CASE(entries_are_trimmed_and_split_at_two_colons) {
  const auto grants = nt::parse_grants("  billing:sub:{prefix}/a:b/{prefix} ,\tops:pub:#  ", "p/v1");
  BOOST_TEST_REQUIRE(grants.size() == 2u);
  BOOST_TEST(grants[0].subject == "billing");
  BOOST_TEST(!grants[0].publish);
  BOOST_TEST(grants[0].filter == "p/v1/a:b/p/v1");
  BOOST_TEST(grants[1].subject == "ops");
  BOOST_TEST(grants[1].publish);
  BOOST_TEST(grants[1].filter == "#");
  BOOST_TEST(nt::parse_grants("", kPrefix).empty());
  BOOST_TEST(nt::parse_grants("   ", kPrefix).empty());
}

BOOST_AUTO_TEST_CASE(invalid_entries_are_named) {
  const std::vector<std::string> invalid = {
      "svc:write:a/b",
      "svc:Pub:a/b",
      ":pub:a/b",
      "svc:pub",
      "svc",
      "svc:pub:",
      "svc:sub:a/#/b",
      "svc:sub:a/b#",
      "svc:sub:a/+b",
      "svc:sub:+a/b",
      std::string("svc:sub:a/\0b", 12),
      "has space:pub:a/b",
  };
  const auto error_parsing = [](const std::string& text) {
    return error_of<std::invalid_argument>([&] { nt::parse_grants(text, kPrefix); });
  };
  for (const auto& entry : invalid) {
    BOOST_TEST_CONTEXT(entry) {
      const std::string error = error_parsing("ok:pub:x/y, " + entry + ", ok:sub:z");
      BOOST_TEST(!error.empty());
      const std::string shown = entry.find('\0') == std::string::npos ? entry : "svc:sub:a/\\x00b";
      BOOST_TEST(error.find("'" + shown + "'") != std::string::npos, error);
    }
  }
  BOOST_TEST(!error_parsing("a:pub:x,,b:pub:y").empty());  // an empty entry
  BOOST_TEST(!error_parsing("a:pub:x,").empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(topics)

BOOST_AUTO_TEST_CASE(topic_matching) {
  struct Case {
    std::string filter;
    std::string topic;
    bool matches;
  };
  const std::vector<Case> cases = {
      {"a/b", "a/b", true},   {"a/b", "a/b/", false},     {"a/b", "a", false},        {"a/+", "a/b", true},
      {"a/+", "a", false},    {"a/+", "a/b/c", false},    {"a/+", "a/", true},        {"a/+/c", "a//c", true},
      {"+/+", "/", true},     {"+", "/", false},          {"a/#", "a", true},         {"a/#", "a/b/c", true},
      {"#", "a", true},       {"#", "/x", true},          {"#", "$SYS/x", false},     {"+/x", "$SYS/x", false},
      {"+/#", "$SYS", false}, {"$SYS/#", "$SYS/x", true}, {"$SYS/+", "$SYS/x", true}, {"a/#/b", "a/x/b", false},
      {"a+", "a+", false},    {"a/b", "a/+", false},      {"#", "a/#", false},        {"", "", false},
      {"#", "", false},       {"A/b", "a/b", false},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.filter << " ~ " << c.topic) { BOOST_TEST(nt::topic_matches(c.filter, c.topic) == c.matches); }
  }
}

BOOST_AUTO_TEST_CASE(filter_coverage) {
  struct Case {
    std::string outer;
    std::string inner;
    bool covers;
  };
  const std::vector<Case> cases = {
      {"a/#", "a", true},        {"a/#", "a/b/+", true},       {"a/#", "a/#", true},
      {"a/#", "a/+/#", true},    {"a/+", "a/#", false},        {"a/+", "a/+", true},
      {"a/+", "a/b", true},      {"a/b", "a/+", false},        {"a/+/#", "a/#", false},
      {"a/+/#", "a/b", true},    {"a", "a/#", false},          {"#", "+/x", true},
      {"#", "#", true},          {"#", "$SYS/#", false},       {"+", "$SYS", false},
      {"+/#", "$SYS/x", false},  {"$SYS/#", "$SYS/x/+", true}, {"+", "+/+", false},
      {"a/#/b", "a/x/b", false}, {"a/b", "a/#/b", false},      {"a/b", "", false},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.outer << " >= " << c.inner) { BOOST_TEST(nt::filter_covers(c.outer, c.inner) == c.covers); }
  }
}

BOOST_AUTO_TEST_CASE(shared_subscriptions_are_stripped) {
  BOOST_TEST(nt::strip_shared("$share/g/a/b") == "a/b");
  BOOST_TEST(nt::strip_shared("$share/g/#") == "#");
  BOOST_TEST(nt::strip_shared("$share/g") == "");
  BOOST_TEST(nt::strip_shared("$share/g/") == "");
  BOOST_TEST(nt::strip_shared("$share//a") == "");
  BOOST_TEST(nt::strip_shared("$share/+/a") == "");
  BOOST_TEST(nt::strip_shared("a/b") == "a/b");
  BOOST_TEST(nt::strip_shared("$SYS/x") == "$SYS/x");
  BOOST_TEST(nt::strip_shared("$sharex/g/a") == "$sharex/g/a");
}

BOOST_AUTO_TEST_CASE(client_ids_usable_in_the_reply_namespace) {
  BOOST_TEST(nt::valid_client_id_for_auth("app-1"));
  BOOST_TEST(nt::valid_client_id_for_auth("with space"));
  BOOST_TEST(nt::valid_client_id_for_auth(std::string(128, 'c')));
  BOOST_TEST(!nt::valid_client_id_for_auth(std::string(129, 'c')));
  BOOST_TEST(!nt::valid_client_id_for_auth(""));
  BOOST_TEST(!nt::valid_client_id_for_auth("a/b"));
  BOOST_TEST(!nt::valid_client_id_for_auth("a+b"));
  BOOST_TEST(!nt::valid_client_id_for_auth("a#"));
  BOOST_TEST(!nt::valid_client_id_for_auth("a\nb"));
  BOOST_TEST(!nt::valid_client_id_for_auth(std::string("a\0b", 3)));
  BOOST_TEST(!nt::valid_client_id_for_auth("a\x7f"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(acl)

namespace {

struct AclCase {
  nt::Access access;
  std::string topic;
  bool allowed;
};

const char* access_name(nt::Access access) {
  switch (access) {
    case nt::Access::read: return "read";
    case nt::Access::write: return "write";
    case nt::Access::subscribe: return "subscribe";
    case nt::Access::unsubscribe: return "unsubscribe";
  }
  return "?";
}

void check(const nt::AclPolicy& policy, const nt::Identity& identity, const std::string& client_id,
           const std::vector<AclCase>& cases) {
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(nt::encode_identity(identity)
                       << " as " << client_id << ": " << access_name(c.access) << " " << c.topic) {
      BOOST_TEST(nt::acl_allows(policy, identity, client_id, c.access, c.topic) == c.allowed);
    }
  }
}

nt::AclPolicy default_policy() {
  nt::AclPolicy policy;
  policy.topic_prefix = kPrefix;
  policy.service_grants = nt::parse_grants(nt::default_service_grants(), kPrefix);
  return policy;
}

using A = nt::Access;
const std::string P = kPrefix;

}  // namespace

BOOST_AUTO_TEST_CASE(participants_see_their_own_booking_only) {
  const std::vector<AclCase> cases = {
      {A::write, P + "/bookings/BK-1/send_message", true},
      {A::write, P + "/bookings/BK-1/get_message", true},
      {A::write, P + "/bookings/BK-1/make_call", true},
      {A::write, P + "/bookings/BK-1/presence", true},
      {A::write, P + "/bookings/BK-2/send_message", false},
      {A::write, P + "/bookings/BK-1/send_message/x", false},
      {A::write, P + "/bookings/BK-1/events/message", false},
      {A::write, P + "/bookings/BK-1/errors", false},
      {A::write, P + "/replies/app-1/r", false},
      {A::write, P + "/errors", false},
      {A::subscribe, P + "/bookings/BK-1/events/#", true},
      {A::subscribe, P + "/bookings/BK-1/events/message", true},
      {A::subscribe, P + "/bookings/BK-1/events/+", true},
      {A::subscribe, P + "/bookings/BK-1/errors", true},
      {A::subscribe, P + "/bookings/BK-1/#", false},
      {A::subscribe, P + "/bookings/BK-1/+", false},
      {A::subscribe, P + "/bookings/BK-1/send_message", false},
      {A::subscribe, P + "/bookings/+/events/#", false},
      {A::subscribe, P + "/bookings/BK-2/events/#", false},
      {A::subscribe, P + "/bookings/BK-2/errors", false},
      {A::subscribe, P + "/errors", false},
      {A::subscribe, P + "/replies/app-1/#", true},
      {A::subscribe, P + "/replies/app-1/r1", true},
      {A::subscribe, P + "/replies/app-2/#", false},
      {A::subscribe, P + "/replies/+/#", false},
      {A::subscribe, "#", false},
      {A::subscribe, "+/#", false},
      {A::subscribe, "$SYS/#", false},
      {A::subscribe, "$share/g/" + P + "/bookings/BK-1/events/#", true},
      {A::subscribe, "$share/g/" + P + "/bookings/BK-2/events/#", false},
      {A::subscribe, "$share/g/#", false},
      {A::subscribe, "$share/g", false},
      {A::subscribe, P + "/bookings/BK-1/events/#/x", false},
      {A::read, P + "/bookings/BK-1/events/message", true},
      {A::read, P + "/bookings/BK-1/events/call", true},
      {A::read, P + "/bookings/BK-1/errors", true},
      {A::read, P + "/replies/app-1/r1", true},
      {A::read, P + "/replies/app-2/r1", false},
      {A::read, P + "/bookings/BK-2/events/message", false},
      {A::read, P + "/bookings/BK-1/send_message", false},
      {A::read, P + "/errors", false},
      {A::read, "$SYS/broker/uptime", false},
      {A::unsubscribe, "#", true},
  };
  const auto policy = default_policy();
  check(policy, kDriver, "app-1", cases);
  check(policy, kPassenger, "app-1", cases);
}

// The plugin keeps one SessionAcl per connection: it answers for the identity and client id it
// was built for, whatever it is asked, and as often.
BOOST_AUTO_TEST_CASE(a_session_acl_answers_for_its_own_identity_and_client_id) {
  const auto policy = default_policy();
  const nt::SessionAcl first(policy, kDriver, "app-1");
  const nt::SessionAcl other(policy, make_identity(nt::Principal::driver, "drv-1", "BK-2"), "app-2");
  for (int round = 0; round < 2; ++round) {
    BOOST_TEST(first.allows(A::read, P + "/bookings/BK-1/events/message"));
    BOOST_TEST(!other.allows(A::read, P + "/bookings/BK-1/events/message"));
    BOOST_TEST(other.allows(A::read, P + "/bookings/BK-2/events/message"));
    BOOST_TEST(!first.allows(A::read, P + "/bookings/BK-2/events/message"));
    BOOST_TEST(first.allows(A::read, P + "/replies/app-1/r"));
    BOOST_TEST(!first.allows(A::read, P + "/replies/app-2/r"));
    BOOST_TEST(other.allows(A::write, P + "/bookings/BK-2/send_message"));
    BOOST_TEST(!other.allows(A::write, P + "/bookings/BK-1/send_message"));
    BOOST_TEST(!first.allows(A::read, P + "/bookings/BK-1/events/+"));  // a filter is no topic name
  }
  const nt::SessionAcl unusable(policy, kDriver, "app/1");
  BOOST_TEST(!unusable.allows(A::read, P + "/bookings/BK-1/events/message"));
  BOOST_TEST(unusable.allows(A::unsubscribe, P + "/bookings/BK-1/events/#"));
}

BOOST_AUTO_TEST_CASE(invalid_client_id_or_identity_is_denied) {
  const auto policy = default_policy();
  for (const std::string client_id : {"app/1", "", "app+", "app#", "a\nb"}) {
    check(policy, kDriver, client_id,
          {{A::write, P + "/bookings/BK-1/send_message", false},
           {A::subscribe, P + "/bookings/BK-1/events/#", false},
           {A::read, P + "/bookings/BK-1/events/message", false},
           {A::unsubscribe, P + "/bookings/BK-1/events/#", true}});
  }
  // Identities no token could carry.
  check(policy, make_identity(nt::Principal::driver, "d", ""), "app-1",
        {{A::write, P + "/bookings//send_message", false}, {A::subscribe, P + "/replies/app-1/#", false}});
  check(policy, make_identity(nt::Principal::service, "dispatch", "BK-1"), "svc-1",
        {{A::write, P + "/bookings/BK-1/send_message", false}});
}

BOOST_AUTO_TEST_CASE(services_have_their_grants) {
  const std::vector<AclCase> cases = {
      {A::write, P + "/bookings/BK-9/send_message", true},
      {A::write, P + "/bookings/BK-9/get_message", true},
      {A::write, P + "/bookings/BK-9/make_call", true},
      {A::write, P + "/bookings/BK-9/presence", true},
      {A::write, P + "/bookings/BK-9/events/message", false},
      {A::write, P + "/bookings/BK-9/errors", false},
      {A::write, P + "/errors", false},
      {A::write, P + "/replies/svc-1/r", false},
      {A::subscribe, P + "/bookings/+/events/#", true},
      {A::subscribe, P + "/bookings/BK-9/events/call", true},
      {A::subscribe, P + "/bookings/+/errors", true},
      {A::subscribe, P + "/errors", true},
      {A::subscribe, "$share/workers/" + P + "/bookings/+/events/#", true},
      {A::subscribe, P + "/bookings/#", false},
      {A::subscribe, P + "/bookings/+/send_message", false},
      {A::subscribe, P + "/#", false},
      {A::subscribe, "#", false},
      {A::subscribe, "$SYS/#", false},
      {A::subscribe, P + "/replies/svc-1/#", true},
      {A::subscribe, P + "/replies/other/#", false},
      {A::read, P + "/bookings/BK-9/events/message", true},
      {A::read, P + "/bookings/BK-9/errors", true},
      {A::read, P + "/errors", true},
      {A::read, P + "/replies/svc-1/x", true},
      {A::read, P + "/replies/other/x", false},
      {A::read, P + "/bookings/BK-9/send_message", false},
      {A::unsubscribe, "#", true},
  };
  check(default_policy(), kService, "svc-1", cases);
  // Without grants a service has its reply namespace only.
  nt::AclPolicy bare;
  bare.topic_prefix = kPrefix;
  check(bare, kService, "svc-1",
        {{A::write, P + "/bookings/BK-9/send_message", false},
         {A::subscribe, P + "/bookings/+/events/#", false},
         {A::subscribe, P + "/replies/svc-1/#", true}});
}

BOOST_AUTO_TEST_CASE(specific_grants_apply_to_their_subject_only) {
  nt::AclPolicy policy;
  policy.topic_prefix = kPrefix;
  policy.service_grants =
      nt::parse_grants("billing:sub:{prefix}/bookings/+/send_message, billing:pub:{prefix}/billing/#", kPrefix);
  const auto billing = make_identity(nt::Principal::service, "billing", "");
  check(policy, billing, "billing-1",
        {{A::subscribe, P + "/bookings/+/send_message", true},
         {A::subscribe, "$share/billing/" + P + "/bookings/BK-1/send_message", true},
         {A::subscribe, P + "/bookings/+/get_message", false},
         {A::read, P + "/bookings/BK-1/send_message", true},
         {A::write, P + "/bookings/BK-1/send_message", false},  // a sub grant does not publish
         {A::write, P + "/billing/invoices/1", true},
         {A::write, P + "/billing", true},
         {A::subscribe, P + "/billing/#", false},  // a pub grant does not subscribe
         {A::read, P + "/billing/invoices/1", false}});
  const auto other = make_identity(nt::Principal::service, "dispatch", "");
  check(policy, other, "dispatch-1",
        {{A::subscribe, P + "/bookings/+/send_message", false},
         {A::read, P + "/bookings/BK-1/send_message", false},
         {A::write, P + "/billing/invoices/1", false}});
  // A participant never gets a service's grants, whatever its sub.
  check(policy, make_identity(nt::Principal::driver, "billing", "BK-1"), "app-1",
        {{A::write, P + "/billing/invoices/1", false}, {A::subscribe, P + "/bookings/+/send_message", false}});
}

// The reply address a requester may ask for (docs/protocol.md, Replies): a participant only under
// its own client id's reply namespace, a service where its grants let it receive.
BOOST_AUTO_TEST_CASE(reply_addresses_follow_the_requesters_namespace_and_grants) {
  const nt::AclPolicy policy = default_policy();
  const auto driver = make_identity(nt::Principal::driver, "drv-1", "BK-1");
  const auto allowed = [&](const nt::Identity& who, const std::string& client_id, const std::string& topic) {
    return nt::reply_address_allowed(policy, who, client_id, topic);
  };
  BOOST_TEST(allowed(driver, "phone-1", P + "/replies/phone-1/1"));
  BOOST_TEST(allowed(driver, "phone-1", P + "/replies/phone-1/a/b"));
  BOOST_TEST(!allowed(driver, "phone-1", P + "/replies/phone-1"));  // under it, not the level itself
  BOOST_TEST(!allowed(driver, "phone-1", P + "/replies/phone-2/1"));
  BOOST_TEST(!allowed(driver, "phone-1", P + "/replies/phone-1x/1"));
  BOOST_TEST(!allowed(driver, "phone-1", P + "/bookings/BK-1/events/message"));
  BOOST_TEST(!allowed(driver, "phone-1", P + "/bookings/BK-1/errors"));
  BOOST_TEST(!allowed(driver, "phone-1", "elsewhere/x"));
  BOOST_TEST(!allowed(driver, "", P + "/replies//1"));
  BOOST_TEST(!allowed(driver, "a/b", P + "/replies/a/b/1"));
  const auto ops = make_identity(nt::Principal::service, "ops", "");
  BOOST_TEST(allowed(ops, "ops-1", P + "/replies/ops-1/7"));
  BOOST_TEST(!allowed(ops, "ops-1", P + "/replies/someone-else/7"));
  BOOST_TEST(!allowed(ops, "ops-1", "elsewhere/x"));
  // Within its sub grants (the engine itself refuses event and errors topics to everyone).
  BOOST_TEST(allowed(ops, "ops-1", P + "/bookings/BK-9/events/message"));
  // The policy as the engine takes it.
  BOOST_TEST(nt::reply_address_check(policy)(driver, "phone-1", P + "/replies/phone-1/1"));
  BOOST_TEST(!nt::reply_address_check(policy)(driver, "phone-1", P + "/replies/other/1"));
}

BOOST_AUTO_TEST_SUITE_END()
