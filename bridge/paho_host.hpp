// The bridge host: a thin adapter between an MQTT v5 broker (Eclipse Paho C++) and the engine
// loop (core/engine_loop.hpp). Paho's receive thread hands each request straight to the loop's
// queue (no hop through a second thread: a wake-up and a context switch per request); the loop's
// thread commits them in batches and publishes the results through this host (Paho's client may
// publish from any thread). The host's own thread connects, subscribes, reconnects, nudges Paho's
// send thread and reports metrics.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
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
  // Longest sleep of the host thread: how soon it notices a stop or a due metrics report (a lost
  // connection wakes it at once).
  std::chrono::milliseconds poll{200};
  // While no publish waits for the broker's receive window (Receive Maximum), how often Paho's
  // send thread is still nudged: a publish held behind a partial socket write is not woken by
  // Paho either (its own timer: 1 s). With the window full: every kSendNudgeEvery.
  std::chrono::milliseconds stall_nudge{50};
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
  // Paho's receive thread: a request goes to the loop, or waits in held_ while there is no loop
  // to take it (before start, and from the DISCONNECT on: its results need a connection).
  void arrived(const mqtt::const_message_ptr& msg);
  // The loop takes requests from now on: first those held meanwhile, in order (returns how many).
  // nullptr: hold them.
  std::size_t attach_loop(EngineLoop* loop);
  // Nudges Paho's send thread when publishes may be waiting for it (a full window, or pending for
  // stall_nudge); returns how soon to check again.
  std::chrono::milliseconds nudge_if_due();
  // Sleeps up to `wait`, less if the connection is lost or (re)made, or publishes were handed to
  // Paho while it waited for some.
  void sleep_unless_signalled(std::chrono::milliseconds wait);
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
  std::mutex signal_mutex_;             // with signalled_: Paho's thread wakes the host thread
  std::condition_variable signalled_;
  std::string jwt_secret_;              // empty: no minting
  // The broker's Receive Maximum (CONNACK; 65535 when it sends none): Paho holds our QoS 1
  // publishes past it until its send thread next wakes. Host thread only.
  std::size_t receive_maximum_ = 65535;
  std::chrono::steady_clock::time_point next_nudge_{};      // host thread only
  std::chrono::steady_clock::time_point stall_nudge_at_{};  // host thread only
  // The host thread sleeps up to `poll` (nothing was pending): publish() wakes it.
  std::atomic<bool> awaiting_publishes_{false};
  bool published_ = false;  // guarded by signal_mutex_
  std::mutex arrival_mutex_;
  EngineLoop* loop_ = nullptr;          // guarded by arrival_mutex_: null while requests are held
  std::vector<Request> held_;           // guarded by arrival_mutex_
  std::uint64_t retained_ignored_ = 0;  // guarded by arrival_mutex_
  std::atomic<std::int64_t> last_arrival_ns_{0};  // steady clock: the stop's drain waits for a quiet moment
  std::mutex after_disconnect_mutex_;
  bool after_disconnect_ = false;  // guarded: publish() keeps results in late_
  std::vector<Publish> late_;      // guarded
};

}  // namespace navietakie
