#include "auth/jwt.hpp"

#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <variant>
#include <vector>

#include "config/config.hpp"

namespace navietakie {
namespace {

using Json = nlohmann::json;

constexpr std::size_t kMinSecretBytes = 32;
constexpr std::size_t kSecretRandomBytes = 32;

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

bool is_hmac_algorithm(std::string_view name) { return name == "HS256" || name == "HS384" || name == "HS512"; }

// The algorithms this configuration accepts, for messages.
std::string accepted_algorithms(const JwtOptions& options) {
  std::string names;
  if (!options.secret.empty()) names = "HS256, HS384, HS512";
  if (options.public_key) {
    for (const char* alg : {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "EdDSA"}) {
      if (key_serves(options.public_key->type, alg)) {
        names += (names.empty() ? "" : ", ") + std::string(alg);
      }
    }
  }
  return names.empty() ? "none: no key is configured" : names;
}

// Why the header's algorithm cannot be checked with this configuration; nullopt if it can.
std::optional<std::string> algorithm_problem(std::string_view alg, const JwtOptions& options) {
  const std::string named = "algorithm " + quote(alg, 16);
  if (is_hmac_algorithm(alg)) {
    if (!options.secret.empty()) return std::nullopt;
    return named + " needs a secret and none is configured (accepted: " + accepted_algorithms(options) + ")";
  }
  if (is_public_key_algorithm(alg)) {
    if (!options.public_key) {
      return named + " needs a public key and none is configured (accepted: " + accepted_algorithms(options) + ")";
    }
    if (key_serves(options.public_key->type, alg)) return std::nullopt;
    return named + " does not match the configured " + to_string(options.public_key->type) +
           " public key (accepted: " + accepted_algorithms(options) + ")";
  }
  return named + " is not accepted (accepted: " + accepted_algorithms(options) + ")";
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
    if (!std::isfinite(number) || std::trunc(number) != number || number < -limit || number >= limit) {
      return std::nullopt;
    }
    return static_cast<std::int64_t>(number);
  }
  return std::nullopt;
}

std::int64_t saturating_sub(std::int64_t a, std::int64_t b) {
  if (b < 0 && a > std::numeric_limits<std::int64_t>::max() + b) {
    return std::numeric_limits<std::int64_t>::max();
  }
  if (b > 0 && a < std::numeric_limits<std::int64_t>::min() + b) {
    return std::numeric_limits<std::int64_t>::min();
  }
  return a - b;
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
  std::optional<std::int64_t> issued_at;
};

// An optional NumericDate claim, or what is wrong with it.
std::variant<std::optional<std::int64_t>, std::string> optional_time(const Json& json, const char* name) {
  const auto found = json.find(name);
  if (found == json.end()) return std::optional<std::int64_t>();
  if (auto seconds = whole_seconds(*found)) return seconds;
  return "claim '" + std::string(name) + "' must be whole Unix seconds";
}

// The claims of a verified token, or what is wrong with them (naming the claim).
std::variant<Claims, std::string> read_claims(const Json& json) {
  Claims claims;
  auto identity = identity_from_claims(json);
  if (auto* problem = std::get_if<std::string>(&identity)) return std::move(*problem);
  claims.identity = std::move(std::get<Identity>(identity));

  if (json.find("exp") == json.end()) return std::string("claim 'exp' is missing");
  std::optional<std::int64_t> expires_at;
  const std::pair<const char*, std::optional<std::int64_t>*> times[] = {
      {"exp", &expires_at}, {"nbf", &claims.not_before}, {"iat", &claims.issued_at}};
  for (const auto& [name, slot] : times) {
    auto read = optional_time(json, name);
    if (auto* problem = std::get_if<std::string>(&read)) return std::move(*problem);
    *slot = std::get<std::optional<std::int64_t>>(read);
  }
  claims.expires_at = *expires_at;
  return claims;
}

// The claims JSON a minted token carries.
std::string claims_text(const Identity& identity, std::int64_t expires_at_s, std::optional<std::int64_t> not_before_s,
                        std::optional<std::int64_t> issued_at_s) {
  if (const auto problem = identity_claims_problem(identity)) {
    throw std::runtime_error("cannot mint a token: " + *problem);
  }
  nlohmann::ordered_json claims = {{"sub", identity.subject}, {"role", to_string(identity.principal)}};
  if (!identity.booking.empty()) claims["booking"] = identity.booking;
  claims["exp"] = expires_at_s;
  if (not_before_s) claims["nbf"] = *not_before_s;
  if (issued_at_s) claims["iat"] = *issued_at_s;
  return claims.dump();
}

// A token signed by libjwt: HS* with a secret, RS*/ES* with a PEM private key.
std::string libjwt_token(const std::string& claims, jwt_alg_t alg, std::string_view key) {
  if (key.size() > static_cast<std::size_t>(INT_MAX)) {
    throw std::runtime_error("cannot mint a token: the key is too long");
  }
  jwt_t* created = nullptr;
  if (jwt_new(&created) != 0 || created == nullptr) {
    throw std::runtime_error("cannot mint a token: jwt_new failed");
  }
  const JwtPtr jwt(created);
  if (jwt_add_grants_json(jwt.get(), claims.c_str()) != 0) {
    throw std::runtime_error("cannot mint a token: libjwt refused the claims");
  }
  if (jwt_set_alg(jwt.get(), alg, reinterpret_cast<const unsigned char*>(key.data()), static_cast<int>(key.size())) !=
      0) {
    throw std::runtime_error(std::string("cannot mint a token: libjwt refused ") + jwt_alg_str(alg) + " with this key");
  }
  const MallocString token(jwt_encode_str(jwt.get()));
  ERR_clear_error();
  if (!token) throw std::runtime_error("cannot mint a token: libjwt could not sign it");
  return std::string(token.get());
}

// Whether the token's signature verifies with the key its (already accepted) algorithm names:
// HS* by libjwt with the secret, the others by auth/keys.cpp with the public key.
bool token_signature_verifies(std::string_view token, std::string_view alg, const std::vector<std::string_view>& parts,
                              const JwtOptions& options) {
  if (!is_hmac_algorithm(alg)) {
    const auto signature = base64url_decode(parts[2]);
    const std::string_view signing_input = token.substr(0, parts[0].size() + 1 + parts[1].size());
    return signature && signature_verifies(*options.public_key, alg, signing_input, *signature);
  }
  // HS*: the HMAC of the signing input, compared in constant time. Not libjwt's jwt_decode: it
  // also parses the claims (jansson), and a correctly signed payload it cannot represent (an
  // integer beyond 64 bits) then looked like a bad signature in the log; the claims are ours to
  // read (read_claims), after the signature.
  const std::string_view key = options.secret;
  if (key.empty() || key.size() > static_cast<std::size_t>(INT_MAX)) return false;
  const EVP_MD* digest = alg == "HS256" ? EVP_sha256() : alg == "HS384" ? EVP_sha384() : EVP_sha512();
  const auto signature = base64url_decode(parts[2]);
  const std::string_view signing_input = token.substr(0, parts[0].size() + 1 + parts[1].size());
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  const bool computed = HMAC(digest, key.data(), static_cast<int>(key.size()),
                             reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
                             &mac_size) != nullptr;
  // Nothing of ours may stay in this thread's OpenSSL error queue: the broker's own TLS reads it.
  ERR_clear_error();
  return computed && signature && signature->size() == mac_size && CRYPTO_memcmp(signature->data(), mac, mac_size) == 0;
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
    case AuthFailure::ttl_too_long: return "ttl_too_long";
  }
  return "?";
}

std::string base64url_encode(std::string_view bytes) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::uint32_t bits = 0;
  int bit_count = 0;
  for (char c : bytes) {
    bits = (bits << 8) | static_cast<unsigned char>(c);
    bit_count += 8;
    while (bit_count >= 6) {
      bit_count -= 6;
      out += alphabet[(bits >> bit_count) & 0x3fu];
    }
  }
  if (bit_count > 0) out += alphabet[(bits << (6 - bit_count)) & 0x3fu];
  return out;
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
  const auto header = header_text ? parse_unique_object(*header_text) : std::nullopt;
  if (!header) return refuse(AuthFailure::malformed, "header is not a base64url JSON object");

  // The algorithm, before libjwt sees the token: `none` and every algorithm without a configured
  // key of its own kind never reach it, so a key is only ever used for the algorithms it serves.
  const auto alg = header->find("alg");
  if (alg == header->end() || !alg->is_string()) {
    return refuse(AuthFailure::bad_algorithm, "header has no string 'alg'");
  }
  const std::string& alg_name = alg->get_ref<const std::string&>();
  if (auto problem = algorithm_problem(alg_name, options)) {
    return refuse(AuthFailure::bad_algorithm, std::move(*problem));
  }
  if (parts[2].empty()) return refuse(AuthFailure::malformed, "token has an empty signature");
  const auto payload_text = base64url_decode(parts[1]);
  const auto payload = payload_text ? parse_unique_object(*payload_text) : std::nullopt;
  if (!payload) return refuse(AuthFailure::malformed, "payload is not a base64url JSON object");

  if (!token_signature_verifies(token, alg_name, parts, options)) {
    return refuse(AuthFailure::bad_signature, "signature does not verify with the configured " +
                                                  std::string(is_hmac_algorithm(alg_name) ? "secret" : "public key"));
  }

  // The claims as signed: the payload bytes the signature covers, parsed by us.
  auto read = read_claims(*payload);
  if (auto* problem = std::get_if<std::string>(&read)) {
    return refuse(AuthFailure::bad_claims, std::move(*problem));
  }
  Claims& claims = std::get<Claims>(read);

  const std::int64_t leeway = options.leeway_s > 0 ? options.leeway_s : 0;
  if (now_s > saturating_add(claims.expires_at, leeway)) {
    return refuse(AuthFailure::expired, "token expired at " + std::to_string(claims.expires_at) + ", now " +
                                            std::to_string(now_s) + " (leeway " + std::to_string(leeway) + " s)");
  }
  if (claims.not_before && saturating_add(now_s, leeway) < *claims.not_before) {
    return refuse(AuthFailure::not_yet_valid, "token not valid before " + std::to_string(*claims.not_before) +
                                                  ", now " + std::to_string(now_s) + " (leeway " +
                                                  std::to_string(leeway) + " s)");
  }

  // The lifetime: as issued (exp - iat), and as left (exp - now), so that an `iat` in the future
  // cannot stretch it.
  const std::int64_t max_ttl = options.max_ttl_s;
  if (claims.issued_at && saturating_sub(claims.expires_at, *claims.issued_at) > max_ttl) {
    return refuse(AuthFailure::ttl_too_long, "token lives from iat " + std::to_string(*claims.issued_at) + " to exp " +
                                                 std::to_string(claims.expires_at) + ", longer than the limit of " +
                                                 std::to_string(max_ttl) + " s");
  }
  if (saturating_sub(claims.expires_at, now_s) > saturating_add(max_ttl, leeway)) {
    return refuse(AuthFailure::ttl_too_long, "token expires at " + std::to_string(claims.expires_at) + ", more than " +
                                                 std::to_string(max_ttl) + " s from now " + std::to_string(now_s) +
                                                 " (leeway " + std::to_string(leeway) + " s)");
  }

  VerifyResult result;
  result.identity = std::move(claims.identity);
  result.expires_at_s = claims.expires_at;
  return result;
}

std::string mint_token(const Identity& identity, std::string_view secret, std::int64_t expires_at_s,
                       std::optional<std::int64_t> not_before_s, std::optional<std::int64_t> issued_at_s) {
  const std::string claims = claims_text(identity, expires_at_s, not_before_s, issued_at_s);
  if (secret.empty()) throw std::runtime_error("cannot mint a token: the secret is empty");
  return libjwt_token(claims, JWT_ALG_HS256, secret);
}

std::string mint_token(const Identity& identity, const PemKey& private_key, std::int64_t expires_at_s,
                       std::optional<std::int64_t> not_before_s, std::optional<std::int64_t> issued_at_s) {
  const std::string claims = claims_text(identity, expires_at_s, not_before_s, issued_at_s);
  if (!private_key.is_private) {
    throw std::runtime_error("cannot mint a token: a public key only verifies, it cannot sign");
  }
  const char* alg = minting_algorithm(private_key.type);
  if (std::string_view(alg) != "EdDSA") {
    return libjwt_token(claims, jwt_str_alg(alg), private_key.pem);
  }
  const std::string signing_input = base64url_encode(R"({"alg":"EdDSA","typ":"JWT"})") + "." + base64url_encode(claims);
  return signing_input + "." + base64url_encode(eddsa_sign(private_key, signing_input));
}

std::string read_secret_file(const std::string& path) {
  const std::string name = "secret file " + quote(path);
  std::string secret = read_key_file(path, "secret file");
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
    throw std::runtime_error("cannot read " + std::to_string(sizeof bytes) + " bytes from /dev/urandom");
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

bool authentication_configured(const Settings& settings) {
  return !settings.auth_jwt_secret_file.empty() || !settings.auth_jwt_public_key_file.empty();
}

std::optional<JwtOptions> jwt_options(const Settings& settings) {
  if (!authentication_configured(settings)) return std::nullopt;
  JwtOptions options;
  const auto read = [](const char* key, auto&& reader) {
    try {
      return reader();
    } catch (const std::runtime_error& e) {
      throw ConfigError(std::string("config key '") + key + "': " + e.what());
    }
  };
  if (!settings.auth_jwt_secret_file.empty()) {
    options.secret = read("auth_jwt_secret_file", [&] { return read_secret_file(settings.auth_jwt_secret_file); });
  }
  if (!settings.auth_jwt_public_key_file.empty()) {
    options.public_key =
        read("auth_jwt_public_key_file", [&] { return read_public_key_file(settings.auth_jwt_public_key_file); });
  }
  options.max_token_bytes = settings.auth_token_max_bytes;
  options.leeway_s = settings.auth_leeway_s;
  options.max_ttl_s = settings.auth_max_token_ttl_s;
  return options;
}

}  // namespace navietakie
