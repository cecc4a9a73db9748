// The plugin host: a thin adapter between Mosquitto's plugin events and the Engine.
// MESSAGE only copies a request into the pending queue; TICK (once per broker loop pass) handles
// the queue as one batch (one LMDB transaction, one sync) and publishes the replies and events on
// the broker thread; they go out at the start of the next pass.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "bridge/engine.hpp"
#include "config/config.hpp"

struct mosquitto_evt_message;
struct mosquitto_evt_acl_check;

namespace navietakie {

class PluginHost {
 public:
  explicit PluginHost(const Settings& settings);
  ~PluginHost();

  // MOSQ_EVT_MESSAGE: queues a request. Never fails the publisher.
  void on_message(mosquitto_evt_message& event);
  // MOSQ_EVT_ACL_CHECK: requests are consumed by navietakie, never delivered to subscribers.
  // A Will published on a request topic is queued as a request (2.0.11 has no MESSAGE for it).
  int on_acl_check(const mosquitto_evt_acl_check& event);
  // MOSQ_EVT_TICK: handles what is pending, expires calls.
  void on_tick();
  // MOSQ_EVT_DISCONNECT.
  void on_disconnect(const char* client_id);

 private:
  void publish_all(const std::vector<Publish>& publishes);
  void flush();

  Settings settings_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Engine> engine_;
  Topics topics_;
  bool started_ = false;
  std::vector<Request> pending_;
  std::vector<std::string> disconnected_;
  std::set<std::string> just_disconnected_;  // since the last tick: their Will may follow
};

}  // namespace navietakie
