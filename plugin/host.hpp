// The plugin host: a thin adapter between Mosquitto's plugin events and the Engine. It wires the
// concerns together: authentication and access control (plugin/access.hpp), request intake
// (plugin/intake.hpp), publishing (plugin/publish.hpp) and the broker wake-up (plugin/wakeup.hpp).
//
// Handlers on (the embedded default): MESSAGE only copies a request into the pending queue; TICK
// (once per broker loop pass) hands the queue to the engine loop (core/engine_loop.hpp), whose
// thread commits it in batches (one LMDB transaction, one sync each) while the broker goes on
// serving, and publishes on the broker thread what the loop produced (plugin/wakeup.hpp); it goes
// out in the next pass.
// Handlers off (auth only, for a bridge deployment): requests are routed to the bridge like any
// message, each stamped with the publisher's verified identity as MQTT v5 user properties.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/engine.hpp"
#include "core/engine_loop.hpp"
#include "core/store_setup.hpp"
#include "edge/edge_node.hpp"
#include "plugin/access.hpp"
#include "plugin/intake.hpp"
#include "plugin/wakeup.hpp"

struct mosquitto;
struct mosquitto_evt_message;
struct mosquitto_evt_acl_check;
struct mosquitto_evt_basic_auth;

namespace navietakie {

class PluginHost {
 public:
  // Reads the secret file when one is configured and starts the engine; throws (naming the key or
  // file, or why the engine cannot start) if it cannot.
  explicit PluginHost(const Settings& settings);
  ~PluginHost();

  // Authentication is on (a secret is configured): register BASIC_AUTH.
  bool auth_enabled() const { return access_.enabled(); }

  // MOSQ_EVT_BASIC_AUTH: MOSQ_ERR_SUCCESS for a valid token, MOSQ_ERR_AUTH otherwise (logged).
  int on_basic_auth(const mosquitto_evt_basic_auth& event) { return access_.on_basic_auth(event); }
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
  Settings settings_;
  Topics topics_;
  AccessControl access_;
  RequestIntake intake_;
  std::unique_ptr<Store> store_;          // handlers on only
  std::unique_ptr<Engine> engine_;        // handlers on only; after start-up, used on the loop's thread only
  std::unique_ptr<BrokerWakeup> wakeup_;  // handlers on only
  std::unique_ptr<EngineLoop> loop_;      // handlers on, cloud node only; declared late: stops first
  std::unique_ptr<EdgeNode> edge_;        // handlers on, edge node only (docs/edge.md): instead of loop_
  std::vector<Request> pending_;
  std::vector<std::string> disconnected_;
};

}  // namespace navietakie
