// ICE servers for the parties' WebRTC audio (docs/protocol.md, "signal"): STUN and TURN URLs from
// the configuration, and short-lived TURN credentials derived per request from a secret shared
// with the TURN server (coturn's `use-auth-secret` / `static-auth-secret`, the "TURN REST API"
// scheme), so that no page ever holds a long-term secret.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/json_writer.hpp"
#include "store/records.hpp"

namespace navietakie {

struct IceOptions {
  std::vector<std::string> stun_urls;  // stun: / stuns:
  std::vector<std::string> turn_urls;  // turn: / turns: (need turn_secret)
  std::string turn_secret;
  std::int64_t turn_ttl_s = 3600;
  bool configured() const { return !stun_urls.empty() || !turn_urls.empty(); }
  // With a TURN server, clients relay all media through it: neither party learns the other's IP.
  bool relay_only() const { return !turn_urls.empty(); }
};

// coturn's TURN REST username: "{expiry, Unix seconds}:{user}", expiry = now + ttl.
std::string turn_rest_username(Millis now, std::int64_t ttl_s, std::string_view user);
// Its password: base64(HMAC-SHA1(secret, username)).
std::string turn_rest_credential(std::string_view secret, std::string_view username);

// Writes the value of a reply's "ice" key: {"ice_servers":[RTCIceServer...],
// "ice_transport_policy":"relay"|"all"}, with TURN credentials for `user` valid turn_ttl_s from now.
void write_ice(JsonWriter& out, const IceOptions& ice, Millis now, std::string_view user);

}  // namespace navietakie
