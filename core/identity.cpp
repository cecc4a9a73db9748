#include "core/identity.hpp"

#include <nlohmann/json.hpp>
#include <set>

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

std::string encode_identity(const Identity& identity) {
  nlohmann::ordered_json value = {{"sub", identity.subject},
                                  {"role", to_string(identity.principal)}};
  if (!identity.booking.empty()) value["booking"] = identity.booking;
  // A verified identity is ASCII; `replace` only keeps a hand-made one with broken UTF-8 from
  // throwing (and decode_identity will not accept what it makes of it).
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<Identity> decode_identity(std::string_view value) {
  // Two parsers can disagree on which of two equal keys wins: refuse duplicates outright.
  bool duplicate_key = false;
  std::set<std::string> keys;
  const auto no_duplicates = [&](int depth, nlohmann::json::parse_event_t event,
                                 nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 &&
        !keys.insert(parsed.get<std::string>()).second) {
      duplicate_key = true;
    }
    return true;
  };
  const auto json = nlohmann::json::parse(value.begin(), value.end(), no_duplicates, false);
  if (json.is_discarded() || duplicate_key || !json.is_object()) return std::nullopt;

  const auto sub = json.find("sub");
  const auto role = json.find("role");
  const auto booking = json.find("booking");
  const std::size_t expected_keys = booking == json.end() ? 2 : 3;
  if (json.size() != expected_keys || sub == json.end() || role == json.end()) return std::nullopt;
  if (!sub->is_string() || !role->is_string()) return std::nullopt;
  if (booking != json.end() && !booking->is_string()) return std::nullopt;

  const auto principal = principal_from_string(role->get_ref<const std::string&>());
  if (!principal) return std::nullopt;
  Identity identity;
  identity.principal = *principal;
  identity.subject = sub->get<std::string>();
  if (booking != json.end()) identity.booking = booking->get<std::string>();

  if (identity.subject.empty()) return std::nullopt;
  if (is_participant(identity.principal) ? !valid_booking_code(identity.booking)
                                         : booking != json.end()) {
    return std::nullopt;
  }
  return identity;
}

}  // namespace navietakie
