#include "auth/jwt.hpp"

#include <jwt.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <variant>
#include <vector>

#include "core/topics.hpp"
#include "config/config.hpp"

namespace navietakie {
namespace {

using Json = nlohmann::json;

constexpr std::size_t kMinSecretBytes = 32;
constexpr std::size_t kMaxSecretBytes = 64 * 1024;
constexpr std::size_t kSecretRandomBytes = 32;
constexpr std::size_t kMaxSubjectChars = 128;

struct JwtDeleter {
  void operator()(jwt_t* jwt) const { jwt_free(jwt); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtDeleter>;

// Strings libjwt (and jansson under it) hand over with malloc.
struct MallocDeleter {
  void operator()(char* text) const { std::free(text); }
};
using MallocString = std::unique_ptr<char, MallocDeleter>;

int base64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// Unpadded base64url, as JWS uses it; nullopt for any other character or an impossible length.
std::optional<std::string> base64url_decode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  std::uint32_t bits = 0;
  int bit_count = 0;
  for (char c : text) {
    const int value = base64url_value(c);
    if (value < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(value);
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      out += static_cast<char>((bits >> bit_count) & 0xffu);
    }
  }
  return out;
}

// A JSON object without duplicate keys at its top level: two parsers (ours and libjwt's jansson)
// could disagree on which of two equal keys wins.
std::optional<Json> parse_object(std::string_view text) {
  bool duplicate_key = false;
  std::set<std::string> keys;
  const auto no_duplicates = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::key && depth == 1 &&
        !keys.insert(parsed.get<std::string>()).second) {
      duplicate_key = true;
    }
    return true;
  };
  Json json = Json::parse(text.begin(), text.end(), no_duplicates, false);
  if (json.is_discarded() || duplicate_key || !json.is_object()) return std::nullopt;
  return json;
}

bool accepted_algorithm(std::string_view name) {
  return name == "HS256" || name == "HS384" || name == "HS512";
}

bool accepted_algorithm(jwt_alg_t alg) {
  return alg == JWT_ALG_HS256 || alg == JWT_ALG_HS384 || alg == JWT_ALG_HS512;
}

bool valid_subject(std::string_view subject) {
  if (subject.empty() || subject.size() > kMaxSubjectChars) return false;
  for (char c : subject) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

// A NumericDate in whole seconds that fits an int64; nullopt for anything else.
std::optional<std::int64_t> whole_seconds(const Json& value) {
  if (value.is_number_integer() && !value.is_number_unsigned()) return value.get<std::int64_t>();
  if (value.is_number_unsigned()) {
    const auto number = value.get<std::uint64_t>();
    if (number > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<std::int64_t>(number);
  }
  if (value.is_number_float()) {
    const double number = value.get<double>();
    // 2^63 is exact as a double; every double below it in magnitude converts without overflow.
    constexpr double limit = 9223372036854775808.0;
    if (!std::isfinite(number) || std::trunc(number) != number || number < -limit ||
        number >= limit) {
      return std::nullopt;
    }
    return static_cast<std::int64_t>(number);
  }
  return std::nullopt;
}

std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
  if (b > 0 && a > std::numeric_limits<std::int64_t>::max() - b) {
    return std::numeric_limits<std::int64_t>::max();
  }
  if (b < 0 && a < std::numeric_limits<std::int64_t>::min() - b) {
    return std::numeric_limits<std::int64_t>::min();
  }
  return a + b;
}

VerifyResult refuse(AuthFailure failure, std::string detail) {
  VerifyResult result;
  result.failure = failure;
  result.detail = std::move(detail);
  return result;
}

struct Claims {
  Identity identity;
  std::int64_t expires_at = 0;
  std::optional<std::int64_t> not_before;
};

// The claims of a verified token, or what is wrong with them (naming the claim).
std::variant<Claims, std::string> read_claims(const Json& json) {
  Claims claims;
  const auto sub = json.find("sub");
  if (sub == json.end() || !sub->is_string()) {
    return std::string("claim 'sub' is missing or not a string");
  }
  if (!valid_subject(sub->get_ref<const std::string&>())) {
    return std::string("claim 'sub' must be 1 to 128 characters from 0x21 to 0x7E");
  }
  claims.identity.subject = sub->get<std::string>();

  const auto role = json.find("role");
  if (role == json.end() || !role->is_string()) {
    return std::string("claim 'role' is missing or not a string");
  }
  const auto principal = principal_from_string(role->get_ref<const std::string&>());
  if (!principal) return std::string("claim 'role' must be driver, passenger or service");
  claims.identity.principal = *principal;

  const auto booking = json.find("booking");
  if (*principal == Principal::service) {
    if (booking != json.end()) return std::string("claim 'booking' must be absent for a service");
  } else {
    if (booking == json.end() || !booking->is_string()) {
      return std::string("claim 'booking' is missing or not a string (required for a ") +
             to_string(*principal) + ")";
    }
    if (!valid_booking_code(booking->get_ref<const std::string&>())) {
      return std::string(
          "claim 'booking' must be 1 to 64 characters of A-Z a-z 0-9 _ -, starting with a letter "
          "or digit");
    }
    claims.identity.booking = booking->get<std::string>();
  }

  const auto exp = json.find("exp");
  if (exp == json.end()) return std::string("claim 'exp' is missing");
  const auto expires_at = whole_seconds(*exp);
  if (!expires_at) return std::string("claim 'exp' must be whole Unix seconds");
  claims.expires_at = *expires_at;

  const auto nbf = json.find("nbf");
  if (nbf != json.end()) {
    claims.not_before = whole_seconds(*nbf);
    if (!claims.not_before) return std::string("claim 'nbf' must be whole Unix seconds");
  }
  return claims;
}

}  // namespace

const char* to_string(AuthFailure failure) {
  switch (failure) {
    case AuthFailure::missing: return "missing";
    case AuthFailure::oversize: return "oversize";
    case AuthFailure::malformed: return "malformed";
    case AuthFailure::bad_algorithm: return "bad_algorithm";
    case AuthFailure::bad_signature: return "bad_signature";
    case AuthFailure::expired: return "expired";
    case AuthFailure::not_yet_valid: return "not_yet_valid";
    case AuthFailure::bad_claims: return "bad_claims";
  }
  return "?";
}

VerifyResult verify_token(std::string_view token, const JwtOptions& options, std::int64_t now_s) {
  if (token.empty()) return refuse(AuthFailure::missing, "no token");
  if (token.size() > options.max_token_bytes) {
    return refuse(AuthFailure::oversize, "token is " + std::to_string(token.size()) +
                                             " bytes, more than the limit of " +
                                             std::to_string(options.max_token_bytes));
  }

  // Shape: header.payload.signature, base64url only.
  for (char c : token) {
    if (c != '.' && base64url_value(c) < 0) {
      return refuse(AuthFailure::malformed, "token has characters other than base64url and '.'");
    }
  }
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const std::size_t dot = token.find('.', start);
    parts.push_back(token.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (parts.size() != 3) {
    return refuse(AuthFailure::malformed,
                  "token has " + std::to_string(parts.size()) + " dot-separated parts, expected 3");
  }
  if (parts[0].empty() || parts[1].empty()) {
    return refuse(AuthFailure::malformed, "token has an empty header or payload");
  }
  const auto header_text = base64url_decode(parts[0]);
  const auto header = header_text ? parse_object(*header_text) : std::nullopt;
  if (!header) return refuse(AuthFailure::malformed, "header is not a base64url JSON object");

  // The algorithm, before libjwt sees the token: `none` and the public-key algorithms never reach
  // it, so no confusion between a public key and an HMAC secret is possible.
  const auto alg = header->find("alg");
  if (alg == header->end() || !alg->is_string()) {
    return refuse(AuthFailure::bad_algorithm, "header has no string 'alg'");
  }
  if (!accepted_algorithm(alg->get_ref<const std::string&>())) {
    return refuse(AuthFailure::bad_algorithm, "algorithm " +
                                                  quote(alg->get_ref<const std::string&>(), 16) +
                                                  " is not accepted (HS256, HS384, HS512 only)");
  }
  if (parts[2].empty()) return refuse(AuthFailure::malformed, "token has an empty signature");
  const auto payload_text = base64url_decode(parts[1]);
  if (!payload_text || !parse_object(*payload_text)) {
    return refuse(AuthFailure::malformed, "payload is not a base64url JSON object");
  }

  if (options.secret.empty()) return refuse(AuthFailure::bad_signature, "no secret configured");
  if (options.secret.size() > static_cast<std::size_t>(INT_MAX)) {
    return refuse(AuthFailure::bad_signature, "the secret is too long for libjwt");
  }
  jwt_t* decoded = nullptr;
  const int error = jwt_decode(&decoded, std::string(token).c_str(),
                               reinterpret_cast<const unsigned char*>(options.secret.data()),
                               static_cast<int>(options.secret.size()));
  const JwtPtr jwt(decoded);
  if (error != 0 || !jwt) {
    return refuse(AuthFailure::bad_signature,
                  "signature does not verify with the configured secret");
  }
  if (!accepted_algorithm(jwt_get_alg(jwt.get()))) {
    return refuse(AuthFailure::bad_algorithm,
                  "libjwt decoded an algorithm other than HS256/384/512");
  }

  const MallocString grants(jwt_get_grants_json(jwt.get(), nullptr));
  const auto claims_json = grants ? parse_object(grants.get()) : std::nullopt;
  if (!claims_json) return refuse(AuthFailure::bad_claims, "claims are not a JSON object");
  auto read = read_claims(*claims_json);
  if (auto* problem = std::get_if<std::string>(&read)) {
    return refuse(AuthFailure::bad_claims, std::move(*problem));
  }
  Claims& claims = std::get<Claims>(read);

  const std::int64_t leeway = options.leeway_s > 0 ? options.leeway_s : 0;
  if (now_s > saturating_add(claims.expires_at, leeway)) {
    return refuse(AuthFailure::expired, "token expired at " + std::to_string(claims.expires_at) +
                                            ", now " + std::to_string(now_s) + " (leeway " +
                                            std::to_string(leeway) + " s)");
  }
  if (claims.not_before && saturating_add(now_s, leeway) < *claims.not_before) {
    return refuse(AuthFailure::not_yet_valid,
                  "token not valid before " + std::to_string(*claims.not_before) + ", now " +
                      std::to_string(now_s) + " (leeway " + std::to_string(leeway) + " s)");
  }

  VerifyResult result;
  result.identity = std::move(claims.identity);
  result.expires_at_s = claims.expires_at;
  return result;
}

std::optional<std::string> identity_claims_problem(const Identity& identity) {
  if (!valid_subject(identity.subject)) {
    return std::string("sub must be 1 to 128 characters from 0x21 to 0x7E");
  }
  if (identity.principal == Principal::service) {
    if (!identity.booking.empty()) return std::string("booking must be absent for a service");
  } else if (!valid_booking_code(identity.booking)) {
    return std::string("booking is required for a ") + to_string(identity.principal) +
           ": 1 to 64 characters of A-Z a-z 0-9 _ -, starting with a letter or digit";
  }
  return std::nullopt;
}

std::string mint_token(const Identity& identity, std::string_view secret, std::int64_t expires_at_s,
                       std::optional<std::int64_t> not_before_s,
                       std::optional<std::int64_t> issued_at_s) {
  if (const auto problem = identity_claims_problem(identity)) {
    throw std::runtime_error("cannot mint a token: " + *problem);
  }
  if (secret.empty()) throw std::runtime_error("cannot mint a token: the secret is empty");
  if (secret.size() > static_cast<std::size_t>(INT_MAX)) {
    throw std::runtime_error("cannot mint a token: the secret is too long");
  }

  nlohmann::ordered_json claims = {{"sub", identity.subject},
                                   {"role", to_string(identity.principal)}};
  if (!identity.booking.empty()) claims["booking"] = identity.booking;
  claims["exp"] = expires_at_s;
  if (not_before_s) claims["nbf"] = *not_before_s;
  if (issued_at_s) claims["iat"] = *issued_at_s;

  jwt_t* created = nullptr;
  if (jwt_new(&created) != 0 || created == nullptr) {
    throw std::runtime_error("cannot mint a token: jwt_new failed");
  }
  const JwtPtr jwt(created);
  if (jwt_add_grants_json(jwt.get(), claims.dump().c_str()) != 0) {
    throw std::runtime_error("cannot mint a token: libjwt refused the claims");
  }
  if (jwt_set_alg(jwt.get(), JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(secret.data()),
                  static_cast<int>(secret.size())) != 0) {
    throw std::runtime_error("cannot mint a token: libjwt refused HS256 with this secret");
  }
  const MallocString token(jwt_encode_str(jwt.get()));
  if (!token) throw std::runtime_error("cannot mint a token: jwt_encode_str failed");
  return std::string(token.get());
}

std::string read_secret_file(const std::string& path) {
  const std::string name = "secret file " + quote(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    throw std::runtime_error("cannot open " + name + ": " +
                             (error != 0 ? std::strerror(error) : "unknown error"));
  }
  // Read one byte past the limit, so that a huge file (or /dev/zero) is refused, not swallowed.
  std::string secret(kMaxSecretBytes + 1, '\0');
  try {
    in.read(secret.data(), static_cast<std::streamsize>(secret.size()));
  } catch (const std::exception&) {  // libstdc++ throws on a read error, e.g. a directory
    throw std::runtime_error("cannot read " + name);
  }
  if (in.bad()) throw std::runtime_error("cannot read " + name);
  secret.resize(static_cast<std::size_t>(in.gcount()));
  if (secret.size() > kMaxSecretBytes) {
    throw std::runtime_error(name + " is longer than " + std::to_string(kMaxSecretBytes) +
                             " bytes");
  }

  if (secret.size() >= 2 && secret.compare(secret.size() - 2, 2, "\r\n") == 0) {
    secret.resize(secret.size() - 2);
  } else if (!secret.empty() && secret.back() == '\n') {
    secret.pop_back();
  }
  if (secret.empty()) throw std::runtime_error(name + " is empty");
  if (secret.size() < kMinSecretBytes) {
    throw std::runtime_error(name + " is shorter than " + std::to_string(kMinSecretBytes) +
                             " bytes (HS256 wants a secret of at least 256 bits; "
                             "make one with `navietakie-ctl secret`)");
  }
  return secret;
}

std::string generate_secret() {
  unsigned char bytes[kSecretRandomBytes] = {};
  std::ifstream random("/dev/urandom", std::ios::binary);
  if (!random.read(reinterpret_cast<char*>(bytes), sizeof bytes)) {
    throw std::runtime_error("cannot read " + std::to_string(sizeof bytes) +
                             " bytes from /dev/urandom");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string secret;
  secret.reserve(2 * sizeof bytes);
  for (unsigned char byte : bytes) {
    secret += hex[byte >> 4];
    secret += hex[byte & 0x0f];
  }
  return secret;
}

}  // namespace navietakie
