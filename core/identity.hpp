// Who sent a request, as authentication established it. Transport-free: the engine reads it, the
// plugin fills it from a verified token, and the bridge from the plugin's stamp (a v5 user property).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

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

// A token's `sub`: the printable-key rule (core/printable_key.hpp). The one subject rule of every
// path an identity comes in by: the token, the plugin's stamp, a service grant.
bool valid_subject(std::string_view subject);

// What is wrong with an identity that no token could carry (a subject breaking the rule, a driver
// without a booking, a service with one), naming the claim; nullopt if a token may carry it.
std::optional<std::string> identity_claims_problem(const Identity& identity);

// A JSON object whose top-level keys are all different, or nullopt (not JSON, not an object, a key
// twice: two parsers could disagree on which of two equal keys wins). What both carriers of an
// identity, a token's payload and the plugin's stamp, are parsed with.
std::optional<nlohmann::json> parse_unique_object(std::string_view text);

// The identity claims `sub`, `role` and `booking` of a JSON object, or what is wrong with them
// (naming the claim). Other members are not looked at.
std::variant<Identity, std::string> identity_from_claims(const nlohmann::json& claims);

// The MQTT v5 user property that carries a verified identity from the plugin (auth-only mode) to the
// bridge. The plugin removes any client-supplied property of this name before it adds its own.
inline constexpr std::string_view identity_property = "navietakie-identity";
// Beside it, the publisher's verified MQTT client id (the bridge cannot see who published).
inline constexpr std::string_view client_id_property = "navietakie-client-id";

// The property's value: compact JSON {"sub":..,"role":..,"booking":..} ("booking" only when set).
std::string encode_identity(const Identity& identity);
// nullopt if the value is not exactly what encode_identity makes of an identity a token could carry
// (wrong JSON, other keys, role, types, a subject breaking the rule, a participant without a
// booking, a service with one).
std::optional<Identity> decode_identity(std::string_view value);

}  // namespace navietakie
