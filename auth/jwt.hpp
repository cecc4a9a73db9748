// HS256/384/512 JSON Web Tokens carrying an Identity: verification (for the broker) and minting
// (for navietakie-ctl and tests). Signatures are libjwt's; the time and claim rules are ours, since
// libjwt 1.10 checks neither.
//
// The claims: `sub` (1 to 128 characters from 0x21 to 0x7E), `role` (driver, passenger, service),
// `booking` (a booking code: required for driver and passenger, absent for a service), `exp`
// (required) and `nbf` (optional), both whole Unix seconds. Other claims are ignored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/identity.hpp"

namespace navietakie {

struct JwtOptions {
  std::string secret;  // the shared HMAC key; an empty one verifies nothing
  std::size_t max_token_bytes = 4096;
  std::int64_t leeway_s = 30;  // clock skew allowed on both exp and nbf; negative counts as 0
};

// Why a token was refused, from the first check that failed.
enum class AuthFailure {
  missing,        // no token at all
  oversize,       // longer than max_token_bytes
  malformed,      // not three base64url parts with a JSON object header and payload
  bad_algorithm,  // anything but HS256, HS384, HS512 (`none` and public-key algorithms included)
  bad_signature,  // does not verify with the secret
  expired,        // now > exp + leeway
  not_yet_valid,  // now + leeway < nbf
  bad_claims,     // a claim missing, of the wrong type or out of its range
};

// The failure's snake_case name, as it appears in log lines ("bad_signature").
const char* to_string(AuthFailure failure);

struct VerifyResult {
  std::optional<Identity> identity;  // set iff the token is accepted
  std::int64_t expires_at_s = 0;     // the accepted token's `exp`: a session must end with it
  AuthFailure failure = AuthFailure::missing;  // meaningful only when identity is not set
  // Human readable, for a log line; never contains the token or the secret.
  std::string detail;
  explicit operator bool() const { return identity.has_value(); }
};

// Checks, in order: size, shape, algorithm (from the header, before libjwt sees the token, and
// again after), signature, claims, exp, nbf. `now_s` is the current Unix time in seconds.
VerifyResult verify_token(std::string_view token, const JwtOptions& options, std::int64_t now_s);

// What is wrong with an identity that no token could carry (e.g. a driver without a booking, a
// service with one), naming the claim; nullopt if a token may carry it.
std::optional<std::string> identity_claims_problem(const Identity& identity);

// An HS256 token for `identity`. Throws std::runtime_error if the identity could not pass
// verify_token (see identity_claims_problem), the secret is empty, or libjwt fails.
std::string mint_token(const Identity& identity, std::string_view secret, std::int64_t expires_at_s,
                       std::optional<std::int64_t> not_before_s = std::nullopt,
                       std::optional<std::int64_t> issued_at_s = std::nullopt);

// The whole file with one trailing newline ("\n" or "\r\n") removed. Throws std::runtime_error
// naming the path (never the content) if it cannot be read, is empty, longer than 64 KiB, or
// shorter than 32 bytes (an HS256 key should hold at least 256 bits).
std::string read_secret_file(const std::string& path);

// A new secret: 64 hex characters (256 bits) from /dev/urandom. Throws std::runtime_error if the
// system has no randomness to give.
std::string generate_secret();

}  // namespace navietakie
