// The car's MQTT v5 link to the cloud (Paho C++ async client). Paho's callbacks run on its own
// thread and only queue what happened (connected, lost, a message) and wake the edge node's
// thread, which does everything else. Reconnects are the edge node's (each reads the token file
// again, so a rotated token is picked up).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace mqtt {
class async_client;
class token;
}  // namespace mqtt

namespace navietakie {

struct LinkEvent {
  enum class Kind { connected, lost, message } kind;
  std::string topic;
  std::string payload;
  std::optional<std::string> correlation_data;
  bool retained = false;
};

class UpstreamLink {
 public:
  // `notify` is called from Paho's thread after an event is queued: it must not block.
  UpstreamLink(const Settings& settings, std::function<void()> notify);
  ~UpstreamLink();

  // Starts a connect attempt unless one is under way or the link is up. Returns false when the
  // attempt could not even start (logged).
  bool connect();
  // A connect attempt ended without a connection (the caller retries after a back-off).
  bool connect_failed();
  bool up() const;
  // The link state as Paho's callbacks last reported it, without calling into Paho: for a caller
  // that holds a lock Paho's own thread may wait for (the edge node's, taken in its notify), where
  // up() (Paho's is_connected(), under Paho's mutex) would invert the lock order and deadlock.
  bool reported_up() const { return reported_up_.load(std::memory_order_relaxed); }
  std::vector<LinkEvent> take_events();
  // QoS 1, with a Response Topic and Correlation Data when given. False if not sent (link down).
  bool publish(const std::string& topic, const std::string& payload, bool retain = false,
               const std::optional<std::string>& response_topic = std::nullopt,
               const std::optional<std::string>& correlation_data = std::nullopt);
  bool subscribe(const std::vector<std::string>& filters);
  // Paho C 1.3 sends queued publishes late unless nudged (bridge/paho_compat.hpp). Returns
  // whether publishes are still pending.
  bool nudge();
  // Disconnects (bounded wait).
  void stop();

 private:
  void push(LinkEvent event);

  Settings settings_;
  std::function<void()> notify_;
  std::unique_ptr<mqtt::async_client> client_;
  std::shared_ptr<mqtt::token> connecting_;
  std::string nudge_topic_;
  std::mutex mutex_;
  std::vector<LinkEvent> events_;  // guarded by mutex_
  std::atomic<bool> reported_up_{false};
};

}  // namespace navietakie
