#include "core/identity.hpp"

#include <set>

#include "core/printable_key.hpp"
#include "core/topics.hpp"

namespace navietakie {
namespace {

constexpr Principal kPrincipals[] = {Principal::driver, Principal::passenger, Principal::service};

bool is_participant(Principal principal) { return principal != Principal::service; }

}  // namespace

const char* to_string(Principal principal) {
  switch (principal) {
    case Principal::driver: return "driver";
    case Principal::passenger: return "passenger";
    case Principal::service: return "service";
  }
  return "?";
}

std::optional<Principal> principal_from_string(std::string_view text) {
  for (Principal principal : kPrincipals) {
    if (text == to_string(principal)) return principal;
  }
  return std::nullopt;
}

bool valid_subject(std::string_view subject) { return valid_printable_key(subject); }

std::optional<std::string> identity_claims_problem(const Identity& identity) {
  if (!valid_subject(identity.subject)) {
    return "claim 'sub' must be " + std::string(kPrintableKeyRule);
  }
  if (!is_participant(identity.principal)) {
    if (!identity.booking.empty()) {
      return std::string("claim 'booking' must be absent for a service");
    }
  } else if (!valid_booking_code(identity.booking)) {
    return std::string(
               "claim 'booking' must be 1 to 64 characters of A-Z a-z 0-9 _ -, starting with a "
               "letter or digit (required for a ") +
           to_string(identity.principal) + ")";
  }
  return std::nullopt;
}

std::optional<nlohmann::json> parse_unique_object(std::string_view text) {
  bool duplicate_key = false;
  std::set<std::string> keys;
  const auto no_duplicates = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && !keys.insert(parsed.get<std::string>()).second) {
      duplicate_key = true;
    }
    return true;
  };
  nlohmann::json json = nlohmann::json::parse(text.begin(), text.end(), no_duplicates, false);
  if (json.is_discarded() || duplicate_key || !json.is_object()) return std::nullopt;
  return json;
}

std::variant<Identity, std::string> identity_from_claims(const nlohmann::json& claims) {
  Identity identity;
  const auto sub = claims.find("sub");
  if (sub == claims.end() || !sub->is_string()) {
    return std::string("claim 'sub' is missing or not a string");
  }
  identity.subject = sub->get<std::string>();

  const auto role = claims.find("role");
  if (role == claims.end() || !role->is_string()) {
    return std::string("claim 'role' is missing or not a string");
  }
  const auto principal = principal_from_string(role->get_ref<const std::string&>());
  if (!principal) return std::string("claim 'role' must be driver, passenger or service");
  identity.principal = *principal;

  const auto booking = claims.find("booking");
  if (!is_participant(identity.principal)) {
    // Absent, not merely empty: "" or null would be a second spelling of the same identity.
    if (booking != claims.end()) return std::string("claim 'booking' must be absent for a service");
  } else {
    if (booking == claims.end() || !booking->is_string()) {
      return std::string("claim 'booking' is missing or not a string (required for a ") +
             to_string(identity.principal) + ")";
    }
    identity.booking = booking->get<std::string>();
  }

  if (auto problem = identity_claims_problem(identity)) return std::move(*problem);
  return identity;
}

std::string encode_identity(const Identity& identity) {
  nlohmann::ordered_json value = {{"sub", identity.subject}, {"role", to_string(identity.principal)}};
  if (!identity.booking.empty()) value["booking"] = identity.booking;
  // A verified identity is ASCII; `replace` only keeps a hand-made one with broken UTF-8 from
  // throwing (and decode_identity will not accept what it makes of it).
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<Identity> decode_identity(std::string_view value) {
  const auto json = parse_unique_object(value);
  if (!json) return std::nullopt;
  // Exactly the keys encode_identity writes: sub, role, and booking when set.
  const std::size_t expected_keys = json->contains("booking") ? 3 : 2;
  if (json->size() != expected_keys) return std::nullopt;
  auto identity = identity_from_claims(*json);
  if (auto* decoded = std::get_if<Identity>(&identity)) return std::move(*decoded);
  return std::nullopt;
}

}  // namespace navietakie
