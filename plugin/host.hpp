// The plugin host: a thin adapter between Mosquitto's plugin events and the Engine, plus
// authentication (a JWT as the MQTT password), per-booking access control and identity.
//
// Handlers on (the embedded default): MESSAGE only copies a request into the pending queue; TICK
// (once per broker loop pass) hands the queue to the engine loop (core/engine_loop.hpp), whose
// thread commits it in batches (one LMDB transaction, one sync each) while the broker goes on
// serving, and publishes on the broker thread what the loop produced (plugin/wakeup.hpp); it goes
// out in the next pass.
// Handlers off (auth only, for a bridge deployment): requests are routed to the bridge like any
// message, each stamped with the publisher's verified identity as MQTT v5 user properties.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "auth/acl.hpp"
#include "auth/jwt.hpp"
#include "core/engine.hpp"
#include "core/engine_loop.hpp"
#include "core/store_setup.hpp"
#include "config/config.hpp"
#include "plugin/wakeup.hpp"

struct mosquitto;
struct mosquitto_evt_message;
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

class PluginHost {
 public:
  // Reads the secret file when one is configured and starts the engine; throws (naming the key or
  // file, or why the engine cannot start) if it cannot.
  explicit PluginHost(const Settings& settings);
  ~PluginHost();

  // Authentication is on (a secret is configured): register BASIC_AUTH.
  bool auth_enabled() const { return jwt_.has_value(); }

  // MOSQ_EVT_BASIC_AUTH: MOSQ_ERR_SUCCESS for a valid token, MOSQ_ERR_AUTH otherwise (logged).
  int on_basic_auth(const mosquitto_evt_basic_auth& event);
  // MOSQ_EVT_MESSAGE: handlers on: queues a request; handlers off: stamps it. A request that
  // carries a stamp of its own is refused (MOSQ_ERR_ACL_DENIED).
  int on_message(mosquitto_evt_message& event);
  // MOSQ_EVT_ACL_CHECK: the access policy (auth on), and requests are never delivered to
  // subscribers when the handlers consume them. A Will published on a request topic is turned
  // into a request (2.0.11 has no MESSAGE for it).
  int on_acl_check(const mosquitto_evt_acl_check& event);
  // MOSQ_EVT_TICK: handles what is pending, expires calls, disconnects clients whose token expired.
  void on_tick();
  // MOSQ_EVT_DISCONNECT.
  void on_disconnect(const mosquitto* client, const char* client_id);

 private:
  struct Session {
    Identity identity;
    std::string client_id;
    std::int64_t expires_at_s = 0;
    std::uint64_t generation = 0;  // which authentication made it (a connection's address is reused)
  };
  const Session* session_of(const mosquitto* client) const;
  void will_as_request(const mosquitto_evt_acl_check& event, const Session* session);
  void kick_expired();
  void publish_all(const std::vector<Publish>& publishes);

  Settings settings_;
  std::unique_ptr<Store> store_;    // handlers on only
  std::unique_ptr<Engine> engine_;  // handlers on only; after start-up, used on the loop's thread only
  std::unique_ptr<BrokerWakeup> wakeup_;  // handlers on only
  std::unique_ptr<EngineLoop> loop_;      // handlers on only; declared last: stops first
  Topics topics_;
  std::optional<JwtOptions> jwt_;  // auth on
  AclPolicy acl_;
  AuthMetrics auth_metrics_;
  LogBudget auth_log_{20};  // auth_refused lines
  LogBudget acl_log_{20};   // acl_denied lines (writes, subscriptions)
  std::vector<Request> pending_;
  struct StampedWill {
    std::string topic;
    std::string payload;
    bool retain = false;
    Session session;
  };
  std::vector<StampedWill> stamped_wills_;  // handlers off: Wills re-published with their stamp
  std::vector<std::string> disconnected_;
  std::set<std::string> just_disconnected_;  // since the last tick: their Will may follow
  std::unordered_map<const mosquitto*, Session> sessions_;  // authenticated connections
  std::vector<std::pair<const mosquitto*, std::uint64_t>> ended_;  // to forget at the next tick
  std::uint64_t generations_ = 0;
  // Client id -> the subject that last authenticated with it: another subject may not take the id
  // over (it would inherit the session and read the reply topics).
  std::unordered_map<std::string, std::string> owners_;
  std::int64_t next_expiry_check_s_ = 0;
};

}  // namespace navietakie
