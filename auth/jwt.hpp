// JSON Web Tokens carrying an Identity: verification (for the broker) and minting (for
// navietakie-ctl, the bridge and tests). HS256/384/512 with a shared secret; RS256/384/512,
// ES256/384/512 and EdDSA with a public key (auth/keys.hpp). HMAC signatures are libjwt's, public
// key ones OpenSSL's on the key parsed once (auth/keys.hpp says why); the time and claim rules are
// ours, since libjwt checks neither.
//
// The claims: `sub` (1 to 128 characters from 0x21 to 0x7E), `role` (driver, passenger, service),
// `booking` (a booking code: required for driver and passenger, absent for a service), `exp`
// (required), `nbf` and `iat` (optional), all three whole Unix seconds. Other claims are ignored.
//
// Key confusion is impossible by construction: the header's `alg` picks the key, an HMAC algorithm
// only the secret and a public-key algorithm only the public key of its own type, so a secret never
// verifies an RS/ES/EdDSA token and a public key (as HMAC key text or otherwise) never an HS one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "auth/keys.hpp"
#include "core/identity.hpp"

namespace navietakie {

struct Settings;

struct JwtOptions {
  std::string secret;  // the shared HMAC key for HS256/384/512; empty: HS tokens are refused
  // Verifies the public-key algorithms of its type (key_serves); unset: they are refused.
  std::optional<PemKey> public_key;
  std::size_t max_token_bytes = 4096;
  std::int64_t leeway_s = 30;  // clock skew allowed on both exp and nbf; negative counts as 0
  // The longest lifetime accepted: exp - iat, and exp - now (beyond the leeway), so that an `iat`
  // in the future cannot stretch it. A token of year 9999 is refused.
  std::int64_t max_ttl_s = 86400;
};

// True when the settings turn authentication on: a secret file or a public key file.
bool authentication_configured(const Settings& settings);

// The verifier's options from the settings (auth_jwt_secret_file, auth_jwt_public_key_file,
// auth_token_max_bytes, auth_leeway_s, auth_max_token_ttl_s); nullopt when authentication is off.
// Reads the files; throws ConfigError naming the key whose file cannot be used.
std::optional<JwtOptions> jwt_options(const Settings& settings);

// Why a token was refused, from the first check that failed.
enum class AuthFailure {
  missing,        // no token at all
  oversize,       // longer than max_token_bytes
  malformed,      // not three base64url parts with a JSON object header and payload
  bad_algorithm,  // `none`, unknown, or an algorithm with no configured key of its kind and type
  bad_signature,  // does not verify with the key its algorithm names
  expired,        // now > exp + leeway
  not_yet_valid,  // now + leeway < nbf
  bad_claims,     // a claim missing, of the wrong type or out of its range
  ttl_too_long,   // exp - iat, or exp - now beyond the leeway, is more than max_ttl_s
};

// The failure's snake_case name, as it appears in log lines ("bad_signature").
const char* to_string(AuthFailure failure);

struct VerifyResult {
  std::optional<Identity> identity;            // set iff the token is accepted
  std::int64_t expires_at_s = 0;               // the accepted token's `exp`: a session must end with it
  AuthFailure failure = AuthFailure::missing;  // meaningful only when identity is not set
  // Human readable, for a log line; never contains the token or the secret.
  std::string detail;
  explicit operator bool() const { return identity.has_value(); }
};

// Checks, in order: size, shape, algorithm (from the header, before libjwt sees the token, and
// again after), signature, claims, exp, nbf, lifetime. `now_s` is the current Unix time in seconds.
VerifyResult verify_token(std::string_view token, const JwtOptions& options, std::int64_t now_s);

// An HS256 token for `identity`. Throws std::runtime_error if the identity could not pass
// verify_token (see identity_claims_problem), the secret is empty, or libjwt fails.
std::string mint_token(const Identity& identity, std::string_view secret, std::int64_t expires_at_s,
                       std::optional<std::int64_t> not_before_s = std::nullopt,
                       std::optional<std::int64_t> issued_at_s = std::nullopt);

// The same signed with a private key, in the algorithm of its type (minting_algorithm): RS256,
// ES256, ES384, ES512 or EdDSA. Throws std::runtime_error as above, or for a public key.
std::string mint_token(const Identity& identity, const PemKey& private_key, std::int64_t expires_at_s,
                       std::optional<std::int64_t> not_before_s = std::nullopt,
                       std::optional<std::int64_t> issued_at_s = std::nullopt);

// Unpadded base64url, as JWS writes each part of a token.
std::string base64url_encode(std::string_view bytes);

// The whole file with one trailing newline ("\n" or "\r\n") removed. Throws std::runtime_error
// naming the path (never the content) if it cannot be read, is empty, longer than 64 KiB, or
// shorter than 32 bytes (an HS256 key should hold at least 256 bits).
std::string read_secret_file(const std::string& path);

// A new secret: 64 hex characters (256 bits) from /dev/urandom. Throws std::runtime_error if the
// system has no randomness to give.
std::string generate_secret();

}  // namespace navietakie
