// The bridge host: a thin adapter between an MQTT v5 broker (Eclipse Paho C++) and the Engine.
// Paho's receive thread only queues messages; one worker thread batches them through the Engine
// (one durable commit per batch) and publishes what it returns.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mqtt/async_client.h>
#include <string>

#include "core/engine.hpp"
#include "config/config.hpp"

namespace navietakie {

class PahoHost {
 public:
  PahoHost(mqtt::async_client& client, Engine& engine, const Settings& settings);

  // Connects (retrying with backoff until `stop`), subscribes, and serves until `stop` is set; then
  // finishes the batch in flight, waits for its publishes and disconnects.
  // Returns false if it never connected.
  bool run(const std::atomic<bool>& stop);

 private:
  bool connect(const std::atomic<bool>& stop);
  // The username / password for the next connect: a password file (read now), a freshly minted
  // service token, or none.
  void set_credentials(mqtt::connect_options& options) const;
  Request to_request(const mqtt::const_message_ptr& msg) const;
  // A delivery with the retain flag: a stored copy of a request, never run (logged, counted).
  bool stored_copy(const mqtt::message& msg);
  void subscribe();
  // Takes up to batch_max queued requests (waiting up to `wait` for the first), handles them as one
  // batch and publishes the results (or, with `keep`, appends them there). Returns how many.
  std::size_t serve_batch(std::vector<Request>& batch, std::chrono::milliseconds wait,
                          std::vector<Publish>* keep = nullptr);
  // After the DISCONNECT: publishes over a second, subscription-less connection (bounded).
  void publish_final(const std::vector<Publish>& publishes);
  void publish_all(const std::vector<Publish>& publishes);
  void publish_metrics();

  mqtt::async_client& client_;
  Engine& engine_;
  const Settings& settings_;
  mqtt::connect_options connect_options_;
  std::vector<std::string> filters_;
  std::string wake_topic_;
  std::atomic<bool> resubscribe_{false};
  std::atomic<bool> lost_{false};  // set by Paho's thread; the worker reconnects (fresh credentials)
  std::string jwt_secret_;          // empty: no minting
  std::uint64_t retained_ignored_ = 0;  // worker thread only
};

}  // namespace navietakie
