// Who sent a request, as authentication established it. Transport-free: the engine reads it, the
// plugin fills it from a verified token, and the bridge from the plugin's stamp (a v5 user property).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace navietakie {

enum class Principal { driver, passenger, service };

const char* to_string(Principal principal);
std::optional<Principal> principal_from_string(std::string_view text);

struct Identity {
  Principal principal = Principal::passenger;
  std::string subject;  // the token's `sub`
  std::string booking;  // the token's `booking`; empty for a service identity
  bool operator==(const Identity& o) const {
    return principal == o.principal && subject == o.subject && booking == o.booking;
  }
  bool operator!=(const Identity& o) const { return !(*this == o); }
};

// The MQTT v5 user property that carries a verified identity from the plugin (auth-only mode) to the
// bridge. The plugin removes any client-supplied property of this name before it adds its own.
inline constexpr std::string_view identity_property = "navietakie-identity";
// Beside it, the publisher's verified MQTT client id (the bridge cannot see who published).
inline constexpr std::string_view client_id_property = "navietakie-client-id";

// The property's value: compact JSON {"sub":..,"role":..,"booking":..} ("booking" only when set).
std::string encode_identity(const Identity& identity);
// nullopt if the value is not exactly what encode_identity makes (wrong JSON, role, types, a
// participant without a booking, a service with one).
std::optional<Identity> decode_identity(std::string_view value);

}  // namespace navietakie
