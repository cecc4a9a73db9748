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

// The levels of a topic or filter, one at a time and without copies (a check runs for every
// delivered message): "a//b" -> "a", "", "b".
class Levels {
 public:
  explicit Levels(std::string_view text) : rest_(text) {}
  // The next level into `level`; false after the last one.
  bool next(std::string_view& level) {
    if (done_) return false;
    const std::size_t slash = rest_.find('/');
    done_ = slash == std::string_view::npos;
    level = rest_.substr(0, slash);
    if (!done_) rest_.remove_prefix(slash + 1);
    return true;
  }
  bool done() const { return done_; }

 private:
  std::string_view rest_;
  bool done_ = false;
};

// One pass over the bytes each (string_view::find_first_of scans its set once per byte).
bool valid_topic_name(std::string_view topic) {
  if (topic.empty() || topic.size() > kMaxTopicBytes) return false;
  for (char c : topic) {
    if (c == '+' || c == '#' || c == '\0') return false;
  }
  return true;
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

// filter_covers for texts known to be valid filters (a topic name is one).
bool valid_filter_covers(std::string_view outer, std::string_view inner);

// Whether one of `filters` (all valid) covers the valid filter or topic name `inner`.
bool any_covers(const std::vector<std::string>& filters, std::string_view inner) {
  for (const std::string& filter : filters) {
    if (valid_filter_covers(filter, inner)) return true;
  }
  return false;
}

// Adds `filter` if it is valid: an invalid one never covers anything.
void add_valid(std::vector<std::string>& filters, std::string filter) {
  if (valid_topic_filter(filter)) filters.push_back(std::move(filter));
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
  Levels parts(filter);
  for (std::string_view level; parts.next(level);) {
    if (level == "#" && !parts.done()) return false;
    if (is_wildcard(level)) continue;
    for (char c : level) {
      if (c == '+' || c == '#' || c == '\0') return false;
    }
  }
  return true;
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  // A topic name is a filter that matches exactly itself.
  // A topic name is a valid filter too.
  return valid_topic_name(topic) && valid_topic_filter(filter) && valid_filter_covers(filter, topic);
}

bool filter_covers(std::string_view outer, std::string_view inner) {
  return valid_topic_filter(outer) && valid_topic_filter(inner) && valid_filter_covers(outer, inner);
}

namespace {

bool valid_filter_covers(std::string_view outer, std::string_view inner) {
  Levels outer_levels(outer);
  Levels inner_levels(inner);
  std::string_view o;
  std::string_view n;
  outer_levels.next(o);
  bool more_inner = inner_levels.next(n);  // every text has a first level
  // Wildcards in the first level never match a '$' topic; only a literal '$' level can.
  if (is_wildcard(o) && !n.empty() && n.front() == '$') return false;
  for (;;) {
    if (o == "#") return true;  // also matches the parent level: a/# covers a
    if (!more_inner) return false;
    if (o == "+") {
      if (n == "#") return false;  // '#' spans more than one level
    } else if (n != o) {
      return false;  // a literal covers only the same literal
    }
    more_inner = inner_levels.next(n);
    if (!outer_levels.next(o)) return !more_inner;  // as many levels on both sides
  }
}

}  // namespace

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
  if (identity.principal == Principal::service) return SessionAcl(policy, identity, client_id).allows(Access::read, topic);
  const std::string own = policy.topic_prefix + "/replies/" + std::string(client_id) + "/";
  return topic.size() > own.size() && topic.substr(0, own.size()) == own && topic_matches(own + "#", topic);
}

std::function<bool(const Identity&, const std::string&, const std::string&)> reply_address_check(AclPolicy policy) {
  return
      [policy = std::move(policy)](const Identity& identity, const std::string& client_id, const std::string& topic) {
        return reply_address_allowed(policy, identity, client_id, topic);
      };
}

SessionAcl::SessionAcl(const AclPolicy& policy, const Identity& identity, std::string_view client_id)
    : usable_(valid_client_id_for_auth(client_id) && !identity_claims_problem(identity)) {
  if (!usable_) return;
  // Everyone may subscribe to (and receive) its own reply namespace.
  add_valid(read_filters_, reply_namespace(policy, client_id));
  if (identity.principal != Principal::service) {
    // A participant: the requests, events and errors of its booking.
    const Topics topics(policy.topic_prefix);
    for (const auto& action : wire::kActions) write_topics_.push_back(topics.request(identity.booking, action.value));
    add_valid(read_filters_, topics.booking_events_filter(identity.booking));
    add_valid(read_filters_, topics.booking_errors(identity.booking));
    return;
  }
  for (const Grant& grant : policy.service_grants) {
    if (grant.subject != "*" && grant.subject != identity.subject) continue;
    // A pub grant is for writing only; a sub grant for subscribing and reading only.
    add_valid(grant.publish ? write_filters_ : read_filters_, grant.filter);
  }
}

bool SessionAcl::allows(Access access, std::string_view topic) const {
  if (access == Access::unsubscribe) return true;
  if (!usable_) return false;
  // The topic (or filter) is checked once here, the filters once in the constructor.
  switch (access) {
    case Access::write:
      for (const std::string& request : write_topics_) {
        if (topic == request) return true;
      }
      return valid_topic_name(topic) && any_covers(write_filters_, topic);
    case Access::subscribe: {
      const std::string_view filter = strip_shared(topic);  // shared or not
      return valid_topic_filter(filter) && any_covers(read_filters_, filter);
    }
    default: return valid_topic_name(topic) && any_covers(read_filters_, topic);
  }
}

bool acl_allows(const AclPolicy& policy, const Identity& identity, std::string_view client_id, Access access,
                std::string_view topic) {
  return SessionAcl(policy, identity, client_id).allows(access, topic);
}

}  // namespace navietakie
