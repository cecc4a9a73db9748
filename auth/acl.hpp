// The access policy: which topics an authenticated identity may publish to, subscribe to and
// receive. Pure functions over topic strings; the plugin maps Mosquitto's ACL events onto them.
//
// A driver or passenger sees one booking: it publishes requests to
// `{prefix}/bookings/{booking}/{send_message,get_message,make_call,presence}` and subscribes to
// that booking's `events/#` and `errors`. A service has what its grants give it. Every identity
// may subscribe to its own reply namespace `{prefix}/replies/{client id}/#`. Anything else is
// denied.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/identity.hpp"

namespace navietakie {

// What a client asks to do; `read` is the broker delivering a message to it.
enum class Access { read, write, subscribe, unsubscribe };

// One service permission, as configured.
struct Grant {
  std::string subject;   // a service's `sub`, or "*" for every service
  bool publish = false;  // true: write to topics the filter matches; false: subscribe (and read)
  std::string filter;    // an MQTT topic filter, prefix already substituted
};

// "SUBJECT:pub:FILTER, SUBJECT:sub:FILTER, ...": comma separated, spaces around entries trimmed,
// blank text -> no grants. Each entry is split at its first two ':' (a filter may hold more).
// "{prefix}" in a filter is replaced by `topic_prefix`. Throws std::invalid_argument naming the
// entry: an empty entry or subject, a subject that no `sub` could be, an access word other than
// pub or sub, or an invalid topic filter.
std::vector<Grant> parse_grants(std::string_view text, std::string_view topic_prefix);

// What every service may do unless configured otherwise: publish requests for any booking, and
// receive any booking's events and errors and the global errors. The default of the config key
// auth_service_grants (config/config.cpp holds the one copy of the text).
std::string default_service_grants();

// A topic filter as MQTT allows it: not empty, no NUL, '#' only as the whole last level, '+' only
// as a whole level.
bool valid_topic_filter(std::string_view filter);

// MQTT matching of a topic name (no wildcards) by a filter. A topic starting with '$' is not
// matched by a filter whose first level is '+' or '#'. False if either is invalid.
bool topic_matches(std::string_view filter, std::string_view topic);

// True iff every topic that the filter `inner` can match is matched by `outer`: a/# covers a, a/b/+
// and a/#; a/+ does not cover a/#; + does not cover $SYS/x. False if either is invalid.
bool filter_covers(std::string_view outer, std::string_view inner);

// "$share/GROUP/rest" -> "rest"; anything else unchanged. A shared subscription without a group
// or without a rest ("$share/GROUP", "$share//a") -> "" (an invalid filter).
std::string_view strip_shared(std::string_view filter);

// A client id that can be a level of the reply namespace: non-empty, at most 128 bytes, no '/',
// '+', '#', no control characters.
bool valid_client_id_for_auth(std::string_view client_id);

struct AclPolicy {
  std::string topic_prefix = "navietakie/v1";
  std::vector<Grant> service_grants;  // from parse_grants, with the same prefix
};

// The policy the settings describe (topic_prefix, auth_service_grants); throws ConfigError naming
// the key when the grants do not parse.
AclPolicy acl_policy(const Settings& settings);

// What one identity, connected with one MQTT client id, may do under a policy: the topics and
// filters the policy gives it, worked out once. The broker checks every delivered message, so a
// connection keeps one of these for its life (built when it authenticates) and a check only
// matches the topic against them.
class SessionAcl {
 public:
  SessionAcl(const AclPolicy& policy, const Identity& identity, std::string_view client_id);

  // Whether it may do `access` on `topic` (for subscribe and unsubscribe, `topic` is the
  // subscription filter, possibly $share/...). Unsubscribing is always allowed; everything else is
  // denied for an invalid client id or an identity no token could carry (see
  // identity_claims_problem).
  bool allows(Access access, std::string_view topic) const;

 private:
  bool usable_ = false;                     // valid client id and identity
  std::vector<std::string> write_topics_;   // a participant's request topics, exactly
  std::vector<std::string> write_filters_;  // a service's pub grants
  std::vector<std::string> read_filters_;   // what it may subscribe to and receive
};

// Whether `identity`, connected with MQTT client id `client_id`, may do `access` on `topic`:
// SessionAcl(policy, identity, client_id).allows(access, topic), for a single decision.
bool acl_allows(const AclPolicy& policy, const Identity& identity, std::string_view client_id, Access access,
                std::string_view topic);

// Whether the system may answer `identity`, connected with MQTT client id `client_id`, at the reply
// address `topic` (docs/protocol.md, Replies): a driver or passenger only under its own reply
// namespace `{prefix}/replies/{client id}/`, a service on a topic its grants (or its own reply
// namespace) let it receive. The engine refuses request, event and errors topics to everyone.
bool reply_address_allowed(const AclPolicy& policy, const Identity& identity, std::string_view client_id,
                           std::string_view topic);
// reply_address_allowed over a copy of `policy`, in the form the engine takes it
// (EngineOptions::reply_allowed); each host sets it when authentication is on.
std::function<bool(const Identity&, const std::string&, const std::string&)> reply_address_check(AclPolicy policy);

}  // namespace navietakie
