// Request intake in the broker: a client's publish on a request topic (MOSQ_EVT_MESSAGE) and a
// Will published on one (2.0.11 has no MESSAGE for it: its only trace is the write check).
// Handlers on: the request is copied into the host's pending queue for the engine thread.
// Handlers off (auth only): it is routed to the bridge like any message, stamped with the
// publisher's verified identity.
#pragma once

#include <optional>
#include <set>
#include <utility>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "core/topics.hpp"
#include "plugin/access.hpp"

struct mosquitto;
struct mosquitto_evt_acl_check;
struct mosquitto_evt_message;

namespace navietakie {

// A Will on a request topic, re-published by the plugin (auth only) with the stamp of the session
// that left it (none in open mode), never retained.
struct StampedWill {
  std::string topic;
  std::string payload;
  std::optional<Session> session;
};

class RequestIntake {
 public:
  // `handlers`: the engine runs in the broker (requests are queued), else auth only (stamped).
  RequestIntake(const Topics& topics, bool handlers, AccessControl& access);

  // Whether `topic` (may be null) is a request topic. Asked of every publish and delivery the broker
  // checks: Topics::parse_request allocates nothing for a topic that is not a request.
  bool is_request(const char* topic) const;

  // MOSQ_EVT_MESSAGE: handlers on: appends a request to `pending`; handlers off: stamps it. A
  // request that carries a stamp of its own is refused (MOSQ_ERR_ACL_DENIED).
  int on_message(mosquitto_evt_message& event, std::vector<Request>& pending);
  // An allowed write on a request topic: a Will of a connection that just ended is a request
  // (appended to `pending`, or re-published stamped at the next tick), and its original is refused
  // (MOSQ_ERR_ACL_DENIED) so that the broker never keeps it as a retained message.
  int on_request_write(const mosquitto_evt_acl_check& event, std::vector<Request>& pending);
  // MOSQ_EVT_DISCONNECT: its Will may follow.
  void on_disconnect(const mosquitto* client, const char* client_id);

  // At the tick: the Wills to re-publish with their stamp; the Wills of this pass are over.
  std::vector<StampedWill> end_of_pass();

 private:
  Topics topics_;
  bool handlers_;
  AccessControl& access_;
  std::vector<StampedWill> stamped_wills_;  // handlers off: Wills re-published with their stamp
  // Connections ended since the last tick, and their client ids: their Will may follow. The
  // connection, not only the id: a reconnect of the same id may publish in the same pass.
  std::set<std::pair<const mosquitto*, std::string>> just_disconnected_;
};

}  // namespace navietakie
