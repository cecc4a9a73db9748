#include "auth/acl.hpp"

#include <stdexcept>
#include <string>
#include <vector>

#include "auth/jwt.hpp"
#include "core/wire.hpp"
#include "config/config.hpp"
#include "core/printable_key.hpp"
#include "core/topics.hpp"

namespace navietakie {
namespace {

constexpr std::string_view kSharePrefix = "$share/";
constexpr std::size_t kMaxTopicBytes = 65535;
constexpr std::size_t kMaxClientIdBytes = 128;

// The levels of a topic or filter: "a//b" -> {"a", "", "b"}.
std::vector<std::string_view> levels(std::string_view topic) {
  std::vector<std::string_view> out;
  for (std::size_t start = 0;;) {
    const std::size_t slash = topic.find('/', start);
    out.push_back(topic.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

bool valid_topic_name(std::string_view topic) {
  return !topic.empty() && topic.size() <= kMaxTopicBytes &&
         topic.find_first_of(std::string_view("+#\0", 3)) == std::string_view::npos;
}

bool is_wildcard(std::string_view level) { return level == "+" || level == "#"; }

bool valid_grant_subject(std::string_view subject) { return subject == "*" || valid_subject(subject); }

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  for (std::size_t start = 0;;) {
    const std::size_t found = text.find(from, start);
    out += text.substr(start, found == std::string_view::npos ? found : found - start);
    if (found == std::string_view::npos) return out;
    out += to;
    start = found + from.size();
  }
}

std::string reply_namespace(const AclPolicy& policy, std::string_view client_id) {
  return Topics(policy.topic_prefix).replies(client_id) + "/#";
}

// Whether a filter the identity holds lets it read or write `topic`, or subscribe to the filter
// `topic` (shared or not).
bool filter_allows(std::string_view filter, Access access, std::string_view topic) {
  return access == Access::subscribe ? filter_covers(filter, strip_shared(topic)) : topic_matches(filter, topic);
}

bool participant_allows(const AclPolicy& policy, const Identity& identity, std::string_view client_id, Access access,
                        std::string_view topic) {
  const Topics topics(policy.topic_prefix);
  if (access == Access::write) {
    for (const auto& action : wire::kActions) {
      if (topic == topics.request(identity.booking, action.value)) return true;
    }
    return false;
  }
  const std::string readable[] = {topics.booking_events_filter(identity.booking),
                                  topics.booking_errors(identity.booking), reply_namespace(policy, client_id)};
  for (const std::string& filter : readable) {
    if (filter_allows(filter, access, topic)) return true;
  }
  return false;
}

bool service_allows(const AclPolicy& policy, const Identity& identity, std::string_view client_id, Access access,
                    std::string_view topic) {
  if (access != Access::write && filter_allows(reply_namespace(policy, client_id), access, topic)) {
    return true;
  }
  for (const Grant& grant : policy.service_grants) {
    if (grant.subject != "*" && grant.subject != identity.subject) continue;
    // A pub grant is for writing only; a sub grant for subscribing and reading only.
    if (grant.publish == (access == Access::write) && filter_allows(grant.filter, access, topic)) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string default_service_grants() {
  for (const auto& key : config_schema()) {
    if (key.key == "auth_service_grants") return key.default_value;
  }
  throw std::logic_error("config schema has no auth_service_grants key");
}

std::vector<Grant> parse_grants(std::string_view text, std::string_view topic_prefix) {
  std::vector<Grant> grants;
  if (trim(text).empty()) return grants;
  for (std::size_t start = 0; start <= text.size();) {
    const std::size_t comma = text.find(',', start);
    const std::string_view entry = trim(text.substr(start, comma == std::string_view::npos ? comma : comma - start));
    start = comma == std::string_view::npos ? text.size() + 1 : comma + 1;

    const auto bad = [&](const std::string& why) {
      return std::invalid_argument("grant " + quote(entry) + ": " + why);
    };
    if (entry.empty()) throw bad("empty entry (a stray ',')");
    const std::size_t first = entry.find(':');
    const std::size_t second = first == std::string_view::npos ? first : entry.find(':', first + 1);
    if (second == std::string_view::npos) {
      throw bad("expected SUBJECT:pub:FILTER or SUBJECT:sub:FILTER");
    }

    Grant grant;
    grant.subject = std::string(entry.substr(0, first));
    const std::string_view access = entry.substr(first + 1, second - first - 1);
    grant.filter = replace_all(entry.substr(second + 1), "{prefix}", topic_prefix);
    if (grant.subject.empty()) throw bad("empty subject");
    if (!valid_grant_subject(grant.subject)) {
      throw bad("the subject must be '*' or a token's sub (" + std::string(kPrintableKeyRule) + ")");
    }
    if (access != "pub" && access != "sub") {
      throw bad("unknown access " + quote(access) + " (expected pub or sub)");
    }
    grant.publish = access == "pub";
    if (!valid_topic_filter(grant.filter)) {
      throw bad("invalid topic filter " + quote(grant.filter) +
                " ('#' only as the whole last level, '+' only as a whole level)");
    }
    grants.push_back(std::move(grant));
  }
  return grants;
}

bool valid_topic_filter(std::string_view filter) {
  if (filter.empty() || filter.size() > kMaxTopicBytes) return false;
  if (filter.find('\0') != std::string_view::npos) return false;
  const auto parts = levels(filter);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::string_view level = parts[i];
    if (level == "#" && i + 1 != parts.size()) return false;
    if (!is_wildcard(level) && level.find_first_of("+#") != std::string_view::npos) return false;
  }
  return true;
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  // A topic name is a filter that matches exactly itself.
  return valid_topic_name(topic) && filter_covers(filter, topic);
}

bool filter_covers(std::string_view outer, std::string_view inner) {
  if (!valid_topic_filter(outer) || !valid_topic_filter(inner)) return false;
  const auto outer_levels = levels(outer);
  const auto inner_levels = levels(inner);
  // Wildcards in the first level never match a '$' topic; only a literal '$' level can.
  if (is_wildcard(outer_levels.front()) && !inner_levels.front().empty() && inner_levels.front().front() == '$') {
    return false;
  }
  for (std::size_t i = 0; i < outer_levels.size(); ++i) {
    const std::string_view o = outer_levels[i];
    if (o == "#") return true;  // also matches the parent level: a/# covers a
    if (i >= inner_levels.size()) return false;
    const std::string_view n = inner_levels[i];
    if (o == "+") {
      if (n == "#") return false;  // '#' spans more than one level
    } else if (n != o) {
      return false;  // a literal covers only the same literal
    }
  }
  return outer_levels.size() == inner_levels.size();
}

std::string_view strip_shared(std::string_view filter) {
  if (filter.substr(0, kSharePrefix.size()) != kSharePrefix) return filter;
  const std::string_view rest = filter.substr(kSharePrefix.size());
  const std::size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return {};
  const std::string_view group = rest.substr(0, slash);
  if (group.find_first_of("+#") != std::string_view::npos) return {};
  return rest.substr(slash + 1);
}

bool valid_client_id_for_auth(std::string_view client_id) {
  if (client_id.empty() || client_id.size() > kMaxClientIdBytes) return false;
  for (char c : client_id) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '/' || c == '+' || c == '#' || byte < 0x20 || byte == 0x7f) return false;
  }
  return true;
}

AclPolicy acl_policy(const Settings& settings) {
  AclPolicy policy;
  policy.topic_prefix = settings.topic_prefix;
  try {
    policy.service_grants = parse_grants(settings.auth_service_grants, settings.topic_prefix);
  } catch (const std::exception& e) {
    throw ConfigError(std::string("config key 'auth_service_grants': ") + e.what());
  }
  return policy;
}

bool reply_address_allowed(const AclPolicy& policy, const Identity& identity, std::string_view client_id,
                           std::string_view topic) {
  if (!valid_client_id_for_auth(client_id) || identity_claims_problem(identity)) return false;
  if (identity.principal == Principal::service) return service_allows(policy, identity, client_id, Access::read, topic);
  const std::string own = policy.topic_prefix + "/replies/" + std::string(client_id) + "/";
  return topic.size() > own.size() && topic.substr(0, own.size()) == own && topic_matches(own + "#", topic);
}

std::function<bool(const Identity&, const std::string&, const std::string&)> reply_address_check(AclPolicy policy) {
  return
      [policy = std::move(policy)](const Identity& identity, const std::string& client_id, const std::string& topic) {
        return reply_address_allowed(policy, identity, client_id, topic);
      };
}

bool acl_allows(const AclPolicy& policy, const Identity& identity, std::string_view client_id, Access access,
                std::string_view topic) {
  if (access == Access::unsubscribe) return true;
  if (!valid_client_id_for_auth(client_id) || identity_claims_problem(identity)) return false;
  return identity.principal == Principal::service ? service_allows(policy, identity, client_id, access, topic)
                                                  : participant_allows(policy, identity, client_id, access, topic);
}

}  // namespace navietakie
