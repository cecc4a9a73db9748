// Authentication and access control in the broker: a JWT as the MQTT password (MOSQ_EVT_BASIC_AUTH),
// the per-booking policy of auth/acl.hpp on every publish, subscription and delivery
// (MOSQ_EVT_ACL_CHECK), the sessions of authenticated connections, who owns a client id, and the
// disconnection of clients whose token expired. Counted, and logged within a budget.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "auth/acl.hpp"
#include "auth/jwt.hpp"
#include "config/config.hpp"
#include "core/identity.hpp"

struct mosquitto;
struct mosquitto_evt_acl_check;
struct mosquitto_evt_basic_auth;

namespace navietakie {

// What the plugin counted since start; logged at stop.
struct AuthMetrics {
  std::uint64_t accepted = 0;
  std::map<std::string, std::uint64_t> refused;  // reason -> count
  std::uint64_t acl_denied = 0;
  std::uint64_t forged_stamps = 0;
  std::uint64_t expired_kicked = 0;
  std::string to_json() const;
};

// At most `per_second` lines a second for a kind of log line a client can trigger at will (denied
// publishes, refused connects), so that a hostile client cannot flood the log; what was held back is
// counted and reported with the next line let through.
class LogBudget {
 public:
  explicit LogBudget(unsigned per_second) : per_second_(per_second) {}
  // Whether to log now; `suppressed` is how many were held back since the last one logged.
  bool allow(std::int64_t now_s, std::uint64_t& suppressed);

 private:
  unsigned per_second_;
  std::int64_t second_ = 0;
  unsigned used_ = 0;
  std::uint64_t held_back_ = 0;
};

// An authenticated connection.
struct Session {
  Identity identity;
  std::string client_id;
  std::int64_t expires_at_s = 0;
  std::uint64_t generation = 0;  // which authentication made it (a connection's address is reused)
  // What this identity with this client id may do, worked out at its authentication: a new one
  // (a reconnect, another token) makes a new Session. The policy never changes while the plugin
  // runs (no RELOAD callback: a new policy takes a broker restart).
  SessionAcl acl;
};

class AccessControl {
 public:
  // Reads the secret file when one is configured; throws (naming the key or file) if it cannot.
  explicit AccessControl(const Settings& settings);

  // Authentication is on (a secret is configured): BASIC_AUTH is registered.
  bool enabled() const { return jwt_.has_value(); }

  // MOSQ_EVT_BASIC_AUTH: MOSQ_ERR_SUCCESS for a valid token, MOSQ_ERR_AUTH otherwise (logged).
  int on_basic_auth(const mosquitto_evt_basic_auth& event);
  // The access policy for an ACL check whose topic is set: MOSQ_ERR_SUCCESS, or MOSQ_ERR_ACL_DENIED
  // (counted, logged). Authentication off: everything is allowed.
  int check(const mosquitto_evt_acl_check& event);
  // The session of an authenticated connection; nullptr for any other (and in open mode).
  const Session* session_of(const mosquitto* client) const;
  // MOSQ_EVT_DISCONNECT: the session ends (forgotten at the next tick, after its Will).
  void on_disconnect(const mosquitto* client);
  // MOSQ_EVT_TICK: forgets ended sessions, disconnects clients whose token expired.
  void on_tick();

  void count_forged_stamp() { ++metrics_.forged_stamps; }
  const AuthMetrics& metrics() const { return metrics_; }

 private:
  void kick_expired();

  Settings settings_;
  std::optional<JwtOptions> jwt_;  // auth on
  AclPolicy acl_;
  AuthMetrics metrics_;
  LogBudget auth_log_{20};                                         // auth_refused lines
  LogBudget acl_log_{20};                                          // acl_denied lines (writes, subscriptions)
  std::unordered_map<const mosquitto*, Session> sessions_;         // authenticated connections
  std::vector<std::pair<const mosquitto*, std::uint64_t>> ended_;  // to forget at the next tick
  std::uint64_t generations_ = 0;
  // Who holds a client id: the subject that authenticated with it, and its live connections (by
  // session generation). Another subject may not take the id over (it would inherit the session,
  // kick the owner and read its reply topics) while any of them is open, nor while a persistent
  // session of the owner lives in the broker.
  struct Owner {
    std::string subject;
    std::set<std::uint64_t> live;
  };
  std::unordered_map<std::string, Owner> owners_;
  std::int64_t next_expiry_check_s_ = 0;
};

}  // namespace navietakie
