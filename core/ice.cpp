#include "core/ice.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdexcept>

namespace navietakie {

std::string turn_rest_username(Millis now, std::int64_t ttl_s, std::string_view user) {
  std::string username = std::to_string(now / 1000 + ttl_s);
  username += ':';
  username += user;
  return username;
}

std::string turn_rest_credential(std::string_view secret, std::string_view username) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (!HMAC(EVP_sha1(), secret.data(), static_cast<int>(secret.size()),
            reinterpret_cast<const unsigned char*>(username.data()), username.size(), digest, &digest_size)) {
    throw std::runtime_error("OpenSSL could not compute the TURN credential's HMAC");
  }
  std::string base64(4 * ((digest_size + 2) / 3), '\0');
  const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(base64.data()), digest,
                                      static_cast<int>(digest_size));
  base64.resize(static_cast<std::size_t>(written));
  return base64;
}

void write_ice(JsonWriter& out, const IceOptions& ice, Millis now, std::string_view user) {
  out.begin_object().key("ice_servers").begin_array();
  if (!ice.stun_urls.empty()) {
    out.begin_object().key("urls").begin_array();
    for (const auto& url : ice.stun_urls) out.string(url);
    out.end_array().end_object();
  }
  if (!ice.turn_urls.empty()) {
    const std::string username = turn_rest_username(now, ice.turn_ttl_s, user);
    out.begin_object().key("urls").begin_array();
    for (const auto& url : ice.turn_urls) out.string(url);
    out.end_array();
    out.key("username").string(username).key("credential").string(turn_rest_credential(ice.turn_secret, username));
    out.end_object();
  }
  out.end_array().key("ice_transport_policy").string(ice.relay_only() ? "relay" : "all").end_object();
}

}  // namespace navietakie
