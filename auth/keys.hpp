// Asymmetric JWS keys: reading PEM key files, which algorithms a key serves, and checking their
// signatures with OpenSSL's EVP directly, on the key parsed once at start-up. libjwt 1.10 has no
// EdDSA (its jwt_alg_t ends at ES512), and its RS*/ES* verification parses the PEM text again for
// every token: ~0.6 ms per CONNECT on the broker thread instead of ~0.05. Minting RS*/ES* stays
// libjwt's (auth/jwt.cpp); EdDSA tokens are signed here.
//
// A verifier (broker, bridge) is given only a public key: holding one cannot mint an identity.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

struct evp_pkey_st;  // OpenSSL's EVP_PKEY, kept out of this header

namespace navietakie {

enum class KeyType { rsa, ec_p256, ec_p384, ec_p521, ed25519, ed448 };

// "RSA", "EC P-256", "Ed25519", ... for messages.
const char* to_string(KeyType type);

struct PemKey {
  KeyType type = KeyType::rsa;
  bool is_private = false;
  std::string pem;                      // the PEM text as read: libjwt takes keys as PEM
  std::shared_ptr<evp_pkey_st> loaded;  // the same key, parsed once
};

// Whether a key of this type verifies (or signs) the JWS algorithm `alg`: RS256/RS384/RS512 an
// RSA key, ES256 P-256, ES384 P-384, ES512 P-521, EdDSA Ed25519 and Ed448. Each algorithm has
// one key type, so that no token can be checked with a key of another kind.
bool key_serves(KeyType type, std::string_view alg);

// The algorithm a private key of this type mints with: RS256, ES256, ES384, ES512 or EdDSA.
const char* minting_algorithm(KeyType type);

// True for the names key_serves knows: RS256/384/512, ES256/384/512, EdDSA.
bool is_public_key_algorithm(std::string_view alg);

// A PEM "PUBLIC KEY" (SubjectPublicKeyInfo) file: RSA of at least 2048 bits, EC on P-256, P-384 or
// P-521, Ed25519 or Ed448. Throws std::runtime_error naming the path, never the content, for
// anything else; a private key included, so that a verifier is never configured with a key that
// mints (`openssl pkey -in private.pem -pubout` gives the public half).
PemKey read_public_key_file(const std::string& path);

// A PEM private key file (PKCS#8 or traditional, not encrypted) of the same types. Throws
// std::runtime_error naming the path, never the content.
PemKey read_private_key_file(const std::string& path);

// The bytes of a key or secret file of at most 64 KiB (one byte more is refused, so that a huge
// file or /dev/zero is not swallowed). Throws std::runtime_error naming `what` and the path.
std::string read_key_file(const std::string& path, const std::string& what);

// The EdDSA signature (raw, as JWS carries it) of `signing_input` with a private Ed25519/Ed448 key.
// Throws std::runtime_error if the key is not one or OpenSSL fails.
std::string eddsa_sign(const PemKey& private_key, std::string_view signing_input);

// Whether `signature` (as JWS carries it: RSASSA-PKCS1-v1_5, ECDSA as r || s, raw EdDSA) is the
// `alg` signature of `signing_input` under `key`; false whenever the key does not serve `alg`.
bool signature_verifies(const PemKey& key, std::string_view alg, std::string_view signing_input,
                        std::string_view signature);

}  // namespace navietakie
