#include "core/wire_json.hpp"

#include <stdexcept>

#include "config/config.hpp"
#include "core/wire.hpp"

namespace navietakie::wire {
namespace {

template <typename E, std::size_t N>
Json names(const std::array<Named<E>, N>& table, std::size_t count = N) {
  Json out = Json::array();
  for (std::size_t i = 0; i < count && i < N; ++i) out.push_back(table[i].name);
  return out;
}

template <typename E, std::size_t N>
Json name_or_null(const std::array<Named<E>, N>& table, const std::optional<E>& value) {
  return value ? Json(name_of(table, *value)) : Json(nullptr);
}

// The rule as one anchored regular expression (min_length is at least 1).
Json char_rule(const CharRule& rule) {
  const std::string pattern = "^[" + std::string(rule.first) + "][" + std::string(rule.rest) + "]{" +
                              std::to_string(rule.min_length - 1) + "," + std::to_string(rule.max_length - 1) + "}$";
  return Json{{"first", rule.first},
              {"rest", rule.rest},
              {"min_length", rule.min_length},
              {"max_length", rule.max_length},
              {"pattern", pattern}};
}

std::string schema_default(const std::string& key) {
  for (const auto& entry : config_schema()) {
    if (entry.key == key) return entry.default_value;
  }
  throw std::logic_error("config schema has no " + key + " key");
}

Json number_default(const std::string& key) { return std::stoll(schema_default(key)); }

}  // namespace

Json to_json() {
  Json events = Json::array();
  for (const auto& rule : kEvents) events.push_back(Json{{"name", rule.name}, {"retained", rule.retained}});

  // Groups of equal rank, highest precedence first (the table is in rank order).
  Json precedence = Json::array();
  int rank = 0;
  for (const auto& entry : kErrorPrecedence) {
    if (precedence.empty() || entry.rank != rank) precedence.push_back(Json::array());
    rank = entry.rank;
    precedence.back().push_back(name_of(kErrorCodes, entry.code));
  }

  Json active = Json::array();
  for (const auto& state : kCallStates) {
    if (is_active(state.value)) active.push_back(state.name);
  }
  Json transitions = Json::array();
  for (const auto& t : kCallTransitions) {
    transitions.push_back(Json{
        {"from", name_or_null(kCallStates, t.from)},
        {"action", name_or_null(kCallActions, t.action)},
        {"by", name_of(kCallParties, t.by)},
        {"to", name_of(kCallStates, t.to)},
        {"end_reason", t.end_reason == EndReason::none ? Json(nullptr) : Json(name_of(kEndReasons, t.end_reason))}});
  }

  return Json{
      {"default_prefix", schema_default("topic_prefix")},
      {"topic_levels",
       {{"bookings", kBookingsLevel},
        {"events", kEventsLevel},
        {"errors", kErrorsLevel},
        {"replies", kRepliesLevel},
        {"metrics", kMetricsLevel},
        {"bridge", kBridgeLevel},
        {"wake", kWakeLeaf}}},
      {"actions", names(kActions)},
      {"events", std::move(events)},
      {"error_codes", names(kErrorCodes)},
      {"error_precedence", std::move(precedence)},
      {"booking_code", char_rule(kBookingCode)},
      {"client_key", char_rule(kClientKey)},
      {"limits",
       {{"sender_id_max_bytes", kSenderIdMaxBytes},
        {"data_max_depth", kDataMaxDepth},
        {"history_limit_min", kHistoryLimitMin},
        {"history_limit_max", kHistoryLimitMax},
        {"history_limit_default", kHistoryLimitDefault},
        {"max_text_bytes_default", number_default("max_text_bytes")},
        {"max_payload_bytes_default", number_default("max_payload_bytes")},
        {"call_ring_timeout_s_default", number_default("call_ring_timeout_s")},
        {"signal_sdp_max_bytes", kSignalSdpMaxBytes},
        {"signal_candidate_max_bytes", kSignalCandidateMaxBytes}}},
      {"roles", names(kRoles)},
      {"parties", names(kRoles, kParties)},
      {"message_types", names(kMessageTypes)},
      {"call",
       {{"states", names(kCallStates)},
        {"active_states", std::move(active)},
        {"end_reasons", names(kEndReasons)},
        {"actions", names(kCallActions)},
        {"parties", names(kCallParties)},
        {"transitions", std::move(transitions)}}},
      {"signal_kinds", names(kSignalKinds)},
  };
}

std::string web_module() {
  // Indented to sit inside the function; no string of the JSON contains a newline.
  std::string json;
  for (char c : to_json().dump(2)) {
    json += c;
    if (c == '\n') json += "  ";
  }
  return std::string(
             "// Generated from core/wire.hpp by navietakie-wire: do not edit. After changing the tables, run\n//   ") +
         kRefreshCommand + R"(
// (tests/test_wire.cpp fails while this file differs from the tables).
// The wire rules of docs/protocol.md for the browser: one global, NavietakieWire, deeply frozen.
// A classic script, not an ES module: Mosquitto's http_dir sends no Content-Type.
(function () {
  'use strict';
  const freeze = (value) => {
    if (value && typeof value === 'object') Object.values(value).forEach(freeze);
    return Object.freeze(value);
  };
  window.NavietakieWire = freeze()" +
         json + ");\n})();\n";
}

}  // namespace navietakie::wire
