#include "auth/keys.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <optional>
#include <stdexcept>

#include "config/config.hpp"

namespace navietakie {
namespace {

constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;
constexpr int kMinRsaBits = 2048;

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct MdContextDeleter {
  void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
};
using MdContext = std::unique_ptr<EVP_MD_CTX, MdContextDeleter>;

std::shared_ptr<EVP_PKEY> shared_key(EVP_PKEY* key) {
  return std::shared_ptr<EVP_PKEY>(key, [](EVP_PKEY* k) { EVP_PKEY_free(k); });
}

// An encrypted private key would make OpenSSL prompt on the terminal: refuse it instead.
int no_passphrase(char*, int, int, void*) { return -1; }

std::optional<KeyType> ec_curve(const EVP_PKEY* key) {
  char group[64] = {};
  std::size_t length = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &length) != 1) {
    return std::nullopt;
  }
  const std::string_view name(group, length);
  if (name == "prime256v1" || name == "P-256") return KeyType::ec_p256;
  if (name == "secp384r1" || name == "P-384") return KeyType::ec_p384;
  if (name == "secp521r1" || name == "P-521") return KeyType::ec_p521;
  return std::nullopt;
}

// The type of a parsed key, or why it cannot sign or verify tokens here.
KeyType key_type(const EVP_PKEY* key, const std::string& name) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
      if (EVP_PKEY_get_bits(key) < kMinRsaBits) {
        throw std::runtime_error(name + " is an RSA key of " + std::to_string(EVP_PKEY_get_bits(key)) +
                                 " bits; at least " + std::to_string(kMinRsaBits) + " are required");
      }
      return KeyType::rsa;
    case EVP_PKEY_EC:
      if (const auto curve = ec_curve(key)) return *curve;
      throw std::runtime_error(name + " is an EC key on a curve other than P-256, P-384, P-521");
    case EVP_PKEY_ED25519: return KeyType::ed25519;
    case EVP_PKEY_ED448: return KeyType::ed448;
    default:
      throw std::runtime_error(name +
                               " holds a key of a type not accepted (RSA, EC P-256/P-384/P-521, "
                               "Ed25519 or Ed448)");
  }
}

PemKey read_pem_key(const std::string& path, bool is_private) {
  const std::string name = (is_private ? "private key file " : "public key file ") + quote(path);
  PemKey key;
  key.is_private = is_private;
  key.pem = read_key_file(path, is_private ? "private key file" : "public key file");
  if (key.pem.size() > static_cast<std::size_t>(INT_MAX)) {
    throw std::runtime_error(name + " is too long");
  }
  const bool holds_private = key.pem.find("PRIVATE KEY-----") != std::string::npos;
  if (!is_private && holds_private) {
    // OpenSSL would skip to a public key further down the file; the private one is still there.
    throw std::runtime_error(name +
                             " holds a private key: give a verifier only the public half "
                             "(openssl pkey -in KEY -pubout)");
  }
  const std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(key.pem.data(), static_cast<int>(key.pem.size())));
  if (!bio) throw std::runtime_error("cannot read " + name + ": out of memory");
  EVP_PKEY* parsed = is_private ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr)
                                : PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  if (parsed == nullptr) {
    ERR_clear_error();
    throw std::runtime_error(name + (is_private ? " is not an unencrypted PEM private key"
                                                : " is not a PEM public key (-----BEGIN PUBLIC KEY-----)"));
  }
  key.loaded = shared_key(parsed);
  key.type = key_type(parsed, name);
  return key;
}

bool is_eddsa(KeyType type) { return type == KeyType::ed25519 || type == KeyType::ed448; }

// The bytes of each of r and s in a JWS ECDSA signature; 0 for a key that is not EC.
std::size_t ec_coordinate_bytes(KeyType type) {
  switch (type) {
    case KeyType::ec_p256: return 32;
    case KeyType::ec_p384: return 48;
    case KeyType::ec_p521: return 66;
    default: return 0;
  }
}

// The digest of an RS or ES algorithm; nullptr for EdDSA, which hashes by itself.
const EVP_MD* digest_of(std::string_view alg) {
  if (alg == "RS256" || alg == "ES256") return EVP_sha256();
  if (alg == "RS384" || alg == "ES384") return EVP_sha384();
  if (alg == "RS512" || alg == "ES512") return EVP_sha512();
  return nullptr;
}

// JWS carries an ECDSA signature as r || s, fixed width; OpenSSL verifies DER.
std::optional<std::string> ecdsa_der(std::string_view raw, std::size_t coordinate_bytes) {
  if (coordinate_bytes == 0 || raw.size() != 2 * coordinate_bytes) return std::nullopt;
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  const int width = static_cast<int>(coordinate_bytes);
  ECDSA_SIG* signature = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(bytes, width, nullptr);
  BIGNUM* s = BN_bin2bn(bytes + coordinate_bytes, width, nullptr);
  if (signature == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(signature, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(signature);
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  const int length = i2d_ECDSA_SIG(signature, &der);  // signature owns r and s now
  ECDSA_SIG_free(signature);
  if (length <= 0) return std::nullopt;
  std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(length));
  OPENSSL_free(der);
  return out;
}

}  // namespace

const char* to_string(KeyType type) {
  switch (type) {
    case KeyType::rsa: return "RSA";
    case KeyType::ec_p256: return "EC P-256";
    case KeyType::ec_p384: return "EC P-384";
    case KeyType::ec_p521: return "EC P-521";
    case KeyType::ed25519: return "Ed25519";
    case KeyType::ed448: return "Ed448";
  }
  return "?";
}

bool key_serves(KeyType type, std::string_view alg) {
  switch (type) {
    case KeyType::rsa: return alg == "RS256" || alg == "RS384" || alg == "RS512";
    case KeyType::ec_p256: return alg == "ES256";
    case KeyType::ec_p384: return alg == "ES384";
    case KeyType::ec_p521: return alg == "ES512";
    case KeyType::ed25519:
    case KeyType::ed448: return alg == "EdDSA";
  }
  return false;
}

const char* minting_algorithm(KeyType type) {
  switch (type) {
    case KeyType::rsa: return "RS256";
    case KeyType::ec_p256: return "ES256";
    case KeyType::ec_p384: return "ES384";
    case KeyType::ec_p521: return "ES512";
    case KeyType::ed25519:
    case KeyType::ed448: return "EdDSA";
  }
  return "?";
}

bool is_public_key_algorithm(std::string_view alg) {
  for (KeyType type : {KeyType::rsa, KeyType::ec_p256, KeyType::ec_p384, KeyType::ec_p521, KeyType::ed25519}) {
    if (key_serves(type, alg)) return true;
  }
  return false;
}

PemKey read_public_key_file(const std::string& path) { return read_pem_key(path, false); }

PemKey read_private_key_file(const std::string& path) { return read_pem_key(path, true); }

std::string read_key_file(const std::string& path, const std::string& what) {
  const std::string name = what + " " + quote(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    throw std::runtime_error("cannot open " + name + ": " + (error != 0 ? std::strerror(error) : "unknown error"));
  }
  std::string bytes(kMaxKeyFileBytes + 1, '\0');
  try {
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  } catch (const std::exception&) {  // libstdc++ throws on a read error, e.g. a directory
    throw std::runtime_error("cannot read " + name);
  }
  if (in.bad()) throw std::runtime_error("cannot read " + name);
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  if (bytes.size() > kMaxKeyFileBytes) {
    throw std::runtime_error(name + " is longer than " + std::to_string(kMaxKeyFileBytes) + " bytes");
  }
  return bytes;
}

std::string eddsa_sign(const PemKey& private_key, std::string_view signing_input) {
  if (!private_key.is_private || !is_eddsa(private_key.type) || !private_key.loaded) {
    throw std::runtime_error("EdDSA signing needs a private Ed25519 or Ed448 key");
  }
  const MdContext context(EVP_MD_CTX_new());
  std::size_t length = 0;
  const auto* input = reinterpret_cast<const unsigned char*>(signing_input.data());
  if (!context || EVP_DigestSignInit(context.get(), nullptr, nullptr, nullptr, private_key.loaded.get()) != 1 ||
      EVP_DigestSign(context.get(), nullptr, &length, input, signing_input.size()) != 1) {
    throw std::runtime_error("OpenSSL could not start an EdDSA signature");
  }
  std::string signature(length, '\0');
  if (EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()), &length, input,
                     signing_input.size()) != 1) {
    throw std::runtime_error("OpenSSL could not make an EdDSA signature");
  }
  signature.resize(length);
  return signature;
}

bool signature_verifies(const PemKey& key, std::string_view alg, std::string_view signing_input,
                        std::string_view signature) {
  if (!key.loaded || !key_serves(key.type, alg)) return false;
  std::optional<std::string> der;
  if (ec_coordinate_bytes(key.type) > 0) {
    der = ecdsa_der(signature, ec_coordinate_bytes(key.type));
    if (!der) return false;
    signature = *der;
  }
  const MdContext context(EVP_MD_CTX_new());
  const bool verifies =
      context && EVP_DigestVerifyInit(context.get(), nullptr, digest_of(alg), nullptr, key.loaded.get()) == 1 &&
      EVP_DigestVerify(context.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size()) == 1;
  // A refused signature leaves entries in this thread's OpenSSL error queue; the broker's own TLS
  // reads that queue, so nothing of ours may stay there.
  ERR_clear_error();
  return verifies;
}

}  // namespace navietakie
