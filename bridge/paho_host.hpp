// The bridge host: a thin adapter between an MQTT v5 broker (Eclipse Paho C++) and the engine
// loop (core/engine_loop.hpp). Paho's receive thread only queues messages; the host's thread
// connects, subscribes and hands what arrived to the loop, whose thread commits it in batches and
// publishes the results through this host (Paho's client may publish from any thread).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mqtt/async_client.h>
#include <mutex>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "core/engine_loop.hpp"
#include "config/config.hpp"

namespace navietakie {

// The host thread's timings (the engine's are LoopOptions).
struct PahoHostTimings {
  // Longest wait for a message: how soon the thread notices a stop, a lost connection or a due
  // metrics report when nothing arrives.
  std::chrono::milliseconds poll{200};
  std::chrono::seconds metrics_every{60};
  // At stop: the longest spent answering what is queued, and done once nothing came for `quiet`.
  std::chrono::milliseconds drain_max{3000};
  std::chrono::milliseconds drain_quiet{200};
};

class PahoHost : public EngineTransport {
 public:
  PahoHost(mqtt::async_client& client, Engine& engine, const Settings& settings, PahoHostTimings timings = {});

  // Connects (retrying with backoff until `stop`), starts the engine loop, subscribes, and serves
  // until `stop` is set; then answers what was acknowledged, waits for its publishes and
  // disconnects. Returns false if it never connected; throws if the engine cannot start.
  bool run(const std::atomic<bool>& stop);

  // EngineTransport (the loop's thread): publishes now; after the DISCONNECT, keeps them for a
  // final connection.
  bool publish(const std::vector<Publish>& results) override;
  void wake() override {}  // publish() never defers

 private:
  bool connect(const std::atomic<bool>& stop);
  // The username / password for the next connect: a password file (read now), a freshly minted
  // service token, or none.
  void set_credentials(mqtt::connect_options& options) const;
  Request to_request(const mqtt::const_message_ptr& msg) const;
  // A delivery with the retain flag: a stored copy of a request, never run (logged, counted).
  bool stored_copy(const mqtt::message& msg);
  void subscribe();
  // Takes up to batch_max messages off Paho's queue (waiting up to `wait` for the first) and
  // submits them to the loop. Returns how many.
  std::size_t submit_arrived(EngineLoop& loop, std::chrono::milliseconds wait);
  // After the DISCONNECT: publishes over a second, subscription-less connection (bounded).
  void publish_final(const std::vector<Publish>& publishes);
  void publish_all(const std::vector<Publish>& publishes);
  void publish_metrics();

  mqtt::async_client& client_;
  Engine& engine_;
  const Settings& settings_;
  const PahoHostTimings timings_;
  mqtt::connect_options connect_options_;
  std::vector<std::string> filters_;
  std::string wake_topic_;
  std::atomic<bool> resubscribe_{false};
  std::atomic<bool> lost_{false};       // set by Paho's thread; the worker reconnects (fresh credentials)
  std::string jwt_secret_;              // empty: no minting
  std::uint64_t retained_ignored_ = 0;  // worker thread only
  std::mutex after_disconnect_mutex_;
  bool after_disconnect_ = false;  // guarded: publish() keeps results in late_
  std::vector<Publish> late_;      // guarded
};

}  // namespace navietakie
