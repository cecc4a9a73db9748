// The wire rules are written once (core/wire.hpp); everything that restates them is checked here:
// the generated browser module web/public/wire.js, the tables of docs/protocol.md, the default
// service grants, and the code that reads the tables (character rules, topics, call steps).
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "auth/acl.hpp"
#include "core/codec.hpp"
#include "core/printable_key.hpp"
#include "core/topics.hpp"
#include "core/wire.hpp"
#include "core/wire_json.hpp"

using namespace navietakie;

namespace {

std::string read_source(const std::string& relative) {
  std::ifstream in(std::string(NAVIETAKIE_SOURCE_DIR) + "/" + relative, std::ios::binary);
  BOOST_REQUIRE_MESSAGE(in, "cannot read " << relative);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  return s.substr(first, s.find_last_not_of(' ') - first + 1);
}

// The cells of a Markdown table row ("| a | b |" -> {"a", "b"}).
std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::size_t start = row.find('|') + 1;
  for (std::size_t bar = row.find('|', start); bar != std::string::npos; bar = row.find('|', start)) {
    out.push_back(trim(row.substr(start, bar - start)));
    start = bar + 1;
  }
  return out;
}

// The body rows of the first table after `heading` in the Markdown text (header and rule skipped).
std::vector<std::vector<std::string>> table_after(const std::string& text, const std::string& heading) {
  std::size_t at = text.find("\n" + heading + "\n");
  BOOST_REQUIRE_MESSAGE(at != std::string::npos, "docs/protocol.md has no heading '" << heading << "'");
  at = text.find("\n|", at);
  BOOST_REQUIRE_MESSAGE(at != std::string::npos, "no table after '" << heading << "'");
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(text.substr(at + 1));
  std::string line;
  for (int n = 0; std::getline(lines, line) && !line.empty() && line[0] == '|'; ++n) {
    if (n >= 2) rows.push_back(cells(line));
  }
  return rows;
}

// The first `word` in backticks inside a cell ("`start` (caller)" -> "start"); empty if none.
std::string backticked(const std::string& cell) {
  const auto open = cell.find('`');
  if (open == std::string::npos) return {};
  return cell.substr(open + 1, cell.find('`', open + 1) - open - 1);
}

std::string n(std::size_t value) { return std::to_string(value); }

}  // namespace

BOOST_AUTO_TEST_SUITE(wire_rules)

BOOST_AUTO_TEST_CASE(committed_web_module_is_generated_from_the_tables) {
  const std::string committed = read_source("web/public/wire.js");
  BOOST_TEST((committed == wire::web_module()),
             "web/public/wire.js differs from core/wire.hpp; refresh it from the repository root with `"
                 << wire::kRefreshCommand << "` (after building) and commit it");
}

BOOST_AUTO_TEST_CASE(web_module_carries_every_table) {
  const Json j = wire::to_json();
  BOOST_TEST(j["actions"].size() == wire::kActions.size());
  BOOST_TEST(j["error_codes"].size() == wire::kErrorCodes.size());
  BOOST_TEST(j["call"]["transitions"].size() == wire::kCallTransitions.size());
  BOOST_TEST(j["booking_code"]["pattern"].get<std::string>() == "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$");
  BOOST_TEST(j["client_key"]["pattern"].get<std::string>() == "^[!-~][!-~]{0,127}$");
  BOOST_TEST(j["call"]["active_states"] == (Json{"ringing", "connected"}));
  BOOST_TEST(j["error_precedence"].back() == (Json{"invalid_state", "busy"}));
  BOOST_TEST(j["parties"] == (Json{"driver", "passenger"}));
}

// The web client spells protocol names through NavietakieWire, never as its own literals. Checked
// for the names that cannot be anything else in a page (`presence` is also an element id, `close`
// a socket event and an icon, `typing` the typing line's test hook (WEB.md), `ended` and `connected`
// also connection states, `missed` also a style).
BOOST_AUTO_TEST_CASE(web_client_does_not_restate_protocol_names) {
  std::vector<std::string> names{std::string(wire::name_of(wire::kCallStates, CallState::ringing))};
  for (const auto& code : wire::kErrorCodes) names.emplace_back(code.name);
  for (const auto& action : wire::kActions) {
    if (action.value != Action::presence && action.value != Action::close && action.value != Action::typing) {
      names.emplace_back(action.name);
    }
  }
  for (const std::string file : {"web/public/protocol.js", "web/public/app.js"}) {
    const std::string text = read_source(file);
    for (const auto& name : names) {
      for (const char quote : {'\'', '"', '`'}) {
        const std::string literal = quote + name + quote;
        BOOST_TEST(text.find(literal) == std::string::npos,
                   file << " spells " << literal << "; use NavietakieProtocol's constants (from wire.js)");
      }
    }
    BOOST_TEST(text.find("/bookings/") == std::string::npos, file << " builds topics from NavietakieWire.topic_levels");
  }
}

BOOST_AUTO_TEST_CASE(protocol_doc_topics_table_lists_every_request_and_event) {
  const std::string doc = read_source("docs/protocol.md");
  std::set<std::string> requests;
  std::map<std::string, std::string> events;  // name -> what
  bool booking_errors = false;
  bool global_errors = false;
  bool metrics = false;
  bool wake = false;
  for (const auto& row : table_after(doc, "## Topics")) {
    BOOST_REQUIRE(row.size() == 3);
    const std::string topic = backticked(row[1]);
    const std::string booking_level = "{prefix}/" + std::string(wire::kBookingsLevel) + "/{code}/";
    const std::string events_level = booking_level + std::string(wire::kEventsLevel) + "/";
    if (topic.rfind(events_level, 0) == 0) {
      BOOST_TEST(row[0] == "system");
      events[topic.substr(events_level.size())] = row[2];
    } else if (topic == booking_level + std::string(wire::kErrorsLevel)) {
      booking_errors = row[0] == "system";
    } else if (topic == "{prefix}/" + std::string(wire::kErrorsLevel)) {
      global_errors = row[0] == "system";
    } else if (topic == "{prefix}/" + std::string(wire::kMetricsLevel) + "/{bridge client id}") {
      metrics = row[0] == "system" && row[2].find("retained") != std::string::npos;
    } else if (topic ==
               "{prefix}/" + std::string(wire::kBridgeLevel) + "/{bridge client id}/" + std::string(wire::kWakeLeaf)) {
      wake = row[0] == "system";
    } else if (topic.rfind(booking_level, 0) == 0) {
      BOOST_TEST(row[0] == "client", topic << " is published by a client");
      requests.insert(topic.substr(booking_level.size()));
    } else {
      BOOST_ERROR("docs/protocol.md's topics table has a topic core/wire.hpp does not know: " << topic);
    }
  }
  std::set<std::string> actions;
  for (const auto& a : wire::kActions) actions.insert(std::string(a.name));
  BOOST_TEST((requests == actions), "the request topics of the doc's table are the actions of core/wire.hpp");
  BOOST_TEST(events.size() == wire::kEvents.size());
  for (const auto& rule : wire::kEvents) {
    auto it = events.find(std::string(rule.name));
    BOOST_REQUIRE_MESSAGE(it != events.end(), "no row for events/" << rule.name);
    BOOST_TEST((it->second.find("retained") != std::string::npos) == rule.retained,
               "events/" << rule.name << (rule.retained ? " is" : " is not") << " retained");
  }
  BOOST_TEST(booking_errors);
  BOOST_TEST(global_errors);
  BOOST_TEST(metrics, "a retained {prefix}/metrics/{bridge client id} row");
  BOOST_TEST(wake, "a {prefix}/bridge/{bridge client id}/wake row");
}

BOOST_AUTO_TEST_CASE(protocol_doc_error_table_is_the_codes_in_precedence_order) {
  const auto rows = table_after(read_source("docs/protocol.md"), "### Error codes and precedence");
  std::map<std::string, std::string> rank_of;
  std::vector<std::string> ranked_in_doc_order;
  for (const auto& row : rows) {
    BOOST_REQUIRE(row.size() == 3);
    const std::string code = backticked(row[1]);
    BOOST_TEST(!rank_of.count(code), code << " listed twice");
    rank_of[code] = row[0];
    if (!row[0].empty()) ranked_in_doc_order.push_back(code);
  }
  BOOST_TEST(rank_of.size() == wire::kErrorCodes.size());
  std::vector<std::string> ranked;
  for (const auto& entry : wire::kErrorPrecedence) {
    const std::string code(wire::name_of(wire::kErrorCodes, entry.code));
    ranked.push_back(code);
    BOOST_TEST(rank_of[code] == std::to_string(entry.rank),
               code << " should have rank " << entry.rank << " in the doc");
  }
  BOOST_TEST(ranked_in_doc_order == ranked, boost::test_tools::per_element());
  for (const auto& code : wire::kErrorCodes) {
    BOOST_TEST(rank_of.count(std::string(code.name)) == 1u, code.name << " has a row");
  }
}

BOOST_AUTO_TEST_CASE(protocol_doc_call_table_is_the_state_machine) {
  const auto rows = table_after(read_source("docs/protocol.md"), "## make_call");
  // "from action by to end_reason", one string per transition, for a readable difference.
  auto spelled = [](const std::string& from, const std::string& action, const std::string& by, const std::string& to,
                    const std::string& reason) {
    return from + " " + action + " (" + by + ") -> " + to + " " + reason;
  };
  std::vector<std::string> doc;
  for (const auto& row : rows) {
    BOOST_REQUIRE(row.size() == 4);
    const std::string action = backticked(row[1]);
    const bool timeout = row[1].find("call_ring_timeout_s") != std::string::npos;
    const auto open = row[1].find('(');
    const std::string by = timeout ? "system" : row[1].substr(open + 1, row[1].find(')') - open - 1);
    doc.push_back(spelled(row[0], timeout ? "(timeout)" : action, by, row[2], row[3]));
  }
  std::vector<std::string> table;
  for (const auto& t : wire::kCallTransitions) {
    table.push_back(spelled(t.from ? to_string(*t.from) : "none", t.action ? to_string(*t.action) : "(timeout)",
                            std::string(wire::name_of(wire::kCallParties, t.by)), to_string(t.to),
                            t.end_reason == EndReason::none ? "" : to_string(t.end_reason)));
  }
  BOOST_TEST(doc == table, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(protocol_doc_limits_table_states_the_limits) {
  const auto rows = table_after(read_source("docs/protocol.md"), "## Limits and character rules");
  std::map<std::string, std::pair<std::string, std::string>> doc;  // rule -> value, config key
  for (const auto& row : rows) {
    BOOST_REQUIRE(row.size() == 3);
    doc[row[0]] = {row[1], row[2]};
  }
  const Json defaults = wire::to_json()["limits"];
  const auto& code = wire::kBookingCode;
  const auto& key = wire::kClientKey;
  const std::map<std::string, std::pair<std::string, std::string>> expected{
      {"booking code",
       {n(code.min_length) + " to " + n(code.max_length) + " characters of `" + std::string(code.rest) +
            "`, the first of `" + std::string(code.first) + "`",
        ""}},
      {"`message_id`, `call_id`, `client_id`",
       {n(key.min_length) + " to " + n(key.max_length) + " characters of `" + std::string(key.rest) + "`", ""}},
      {"`sender_id`", {"1 to " + n(wire::kSenderIdMaxBytes) + " bytes", ""}},
      {"`data`", {"at most " + std::to_string(wire::kDataMaxDepth) + " levels deep", ""}},
      {"`get_message` `limit`",
       {n(wire::kHistoryLimitMin) + " to " + n(wire::kHistoryLimitMax) + ", default " + n(wire::kHistoryLimitDefault),
        ""}},
      {"`text`",
       {"at most " + defaults["max_text_bytes_default"].dump() + " bytes of UTF-8 by default", "`max_text_bytes`"}},
      {"whole payload",
       {"at most " + defaults["max_payload_bytes_default"].dump() + " bytes by default", "`max_payload_bytes`"}},
      {"ring timeout", {defaults["call_ring_timeout_s_default"].dump() + " s by default", "`call_ring_timeout_s`"}},
      {"`signal` `sdp`", {"at most " + n(wire::kSignalSdpMaxBytes) + " bytes", ""}},
      {"`signal` `candidate`", {"at most " + n(wire::kSignalCandidateMaxBytes) + " bytes of JSON text", ""}},
  };
  BOOST_TEST(doc.size() == expected.size());
  for (const auto& [rule, value] : expected) {
    auto it = doc.find(rule);
    BOOST_REQUIRE_MESSAGE(it != doc.end(), "docs/protocol.md's limits table has no row " << rule);
    BOOST_TEST(it->second.first == value.first, rule);
    BOOST_TEST(it->second.second == value.second, rule);
  }
  BOOST_TEST(code.first != code.rest, "the first character of a booking code has its own rule");
  BOOST_TEST(key.first == key.rest, "every character of a client key follows one rule");
}

BOOST_AUTO_TEST_CASE(default_service_grants_cover_every_request_and_event) {
  const std::string grants = default_service_grants();
  for (const auto& action : wire::kActions) {
    const std::string grant = "*:pub:{prefix}/bookings/+/" + std::string(action.name);
    BOOST_TEST(grants.find(grant) != std::string::npos, grant);
  }
  BOOST_TEST(grants.find("*:sub:{prefix}/bookings/+/events/#") != std::string::npos);
  BOOST_TEST(grants.find("*:sub:{prefix}/bookings/+/errors") != std::string::npos);
  BOOST_TEST(grants.find("*:sub:{prefix}/errors") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(character_rules_read_as_brackets) {
  BOOST_TEST(wire::in_bracket("A-Za-z0-9_-", '-'));
  BOOST_TEST(wire::in_bracket("A-Za-z0-9_-", '_'));
  BOOST_TEST(wire::in_bracket("A-Za-z0-9_-", 'q'));
  BOOST_TEST(!wire::in_bracket("A-Za-z0-9_-", '.'));
  BOOST_TEST(!wire::in_bracket("A-Za-z0-9", '-'));
  BOOST_TEST(wire::in_bracket("!-~", '!'));
  BOOST_TEST(wire::in_bracket("!-~", '~'));
  BOOST_TEST(!wire::in_bracket("!-~", ' '));
  BOOST_TEST(!wire::in_bracket("!-~", '\x7f'));
  BOOST_TEST(valid_booking_code("a"));
  BOOST_TEST(!valid_booking_code("_a"));
  BOOST_TEST(valid_booking_code("a_-"));
  BOOST_TEST(valid_booking_code(std::string(64, 'x')));
  BOOST_TEST(!valid_booking_code(std::string(65, 'x')));
  BOOST_TEST(valid_printable_key("!"));
  BOOST_TEST(!valid_printable_key(""));
  BOOST_TEST(!valid_printable_key(std::string(129, 'k')));
}

BOOST_AUTO_TEST_CASE(call_steps_follow_the_table) {
  BOOST_TEST(wire::may_follow(std::nullopt, CallState::ringing));
  BOOST_TEST(!wire::may_follow(std::nullopt, CallState::connected));
  BOOST_TEST(wire::may_follow(CallState::ringing, CallState::connected));
  BOOST_TEST(wire::may_follow(CallState::ringing, CallState::ended));
  BOOST_TEST(wire::may_follow(CallState::connected, CallState::ended));
  BOOST_TEST(!wire::may_follow(CallState::connected, CallState::ringing));
  BOOST_TEST(!wire::may_follow(CallState::ended, CallState::ringing));
  BOOST_TEST((wire::transition_for(CallAction::get) == nullptr));
  BOOST_TEST((wire::ring_timeout().end_reason == EndReason::missed));
}

BOOST_AUTO_TEST_CASE(topics_are_built_from_the_levels) {
  const Topics topics("p/v1");
  BOOST_TEST(topics.booking_events_filter("BK1") == "p/v1/bookings/BK1/events/#");
  BOOST_TEST(topics.replies("web-1") == "p/v1/replies/web-1");
  BOOST_TEST(topics.global_errors() == "p/v1/errors");
  BOOST_TEST(topics.bridge_metrics("nb-1") == "p/v1/metrics/nb-1");
  BOOST_TEST(topics.bridge_wake("nb-1") == "p/v1/bridge/nb-1/wake");
  BOOST_TEST(topics.call_events("BK1") == "p/v1/bookings/BK1/events/call");
  BOOST_TEST(topics.request_filter(Action::presence) == "p/v1/bookings/+/presence");
}

BOOST_AUTO_TEST_SUITE_END()
