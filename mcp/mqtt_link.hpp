// navietakie over MQTT v5 for the MCP server (Eclipse Paho C++): a request published with a
// Response Topic under {prefix}/replies/{client_id}/ and a Correlation Data of its own, its reply
// matched back by that correlation; the retained presence read by a short subscription.
// Connects on first use and again after a loss, so the MCP client sees a tool error while
// navietakie is away, never a dead server.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <mqtt/async_client.h>

#include "mcp/server.hpp"

namespace navietakie::mcp {

struct LinkOptions {
  std::string broker_url = "tcp://127.0.0.1:1883";
  std::string topic_prefix = "navietakie/v1";
  std::string client_id;  // required
  std::string token;      // sent as the MQTT password (username: the client id); empty: none
  std::chrono::milliseconds timeout{5000};  // connect, and each request's reply
};

class MqttLink final : public Navietakie {
 public:
  explicit MqttLink(LinkOptions options);
  ~MqttLink() override;
  MqttLink(const MqttLink&) = delete;
  MqttLink& operator=(const MqttLink&) = delete;

  Json request(const std::string& booking, Action action, const Json& body) override;
  std::optional<Json> retained_presence(const std::string& booking) override;

 private:
  void ensure_connected();
  void arrived(const mqtt::const_message_ptr& message);

  LinkOptions options_;
  Topics topics_;
  std::string reply_prefix_;  // {prefix}/replies/{client_id}/
  mqtt::async_client client_;
  std::uint64_t next_correlation_ = 1;

  // One request at a time (the MCP server handles one message at a time): a late reply to a
  // request that timed out carries another correlation and is dropped.
  // Filled by Paho's receive thread, read by the caller's: under mutex_.
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::optional<std::string> awaited_correlation_;
  std::optional<std::string> reply_;           // its reply's payload, once arrived
  std::optional<std::string> presence_topic_;  // the presence topic being read, if any
  std::optional<std::string> presence_;        // its payload, once arrived
};

}  // namespace navietakie::mcp
