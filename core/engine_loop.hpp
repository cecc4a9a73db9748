// The one loop that drives the Engine, for every host. It owns the engine thread: a durable commit
// (an fsync) never runs on a host's network thread, and requests that arrive meanwhile wait in a
// bounded queue and go into the next batch (group commit). The loop batches (batch_max requests per
// commit), ends ringing calls at their deadline (a batch at a time, taking turns with requests),
// turns disconnects into offline presence after the requests submitted before them, refuses
// requests past queue_max (`unavailable`, "overloaded"), and hands the results back to the host
// through its transport.
//
// The host contract (EngineTransport): publish a batch of results, or say that it publishes only
// from its own thread (Mosquitto), in which case the loop keeps them for take_results() and calls
// wake() until the host has taken them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "core/engine.hpp"

namespace navietakie {

// What a host gives the loop. Both calls come from the loop thread and must not block for long.
class EngineTransport {
 public:
  virtual ~EngineTransport() = default;
  // Results of the engine, in order, after their commit. Returns true once they are handed to the
  // network (the bridge: Paho's client is thread-safe). Returns false if this host may publish only
  // from its own thread (the plugin: the broker thread): the loop then keeps these and all later
  // results for take_results().
  virtual bool publish(const std::vector<Publish>& results) = 0;
  // Results wait in take_results(): get the host's thread to call it soon. Called again every
  // rewake_ms until it has (a wake-up can land just before the host starts waiting, and be lost).
  virtual void wake() = 0;
};

struct LoopOptions {
  std::size_t batch_max = 256;    // most requests per Engine::handle(), i.e. per commit
  std::size_t queue_max = 10000;  // most requests waiting for the engine; past it, refused
  // The longest wait when nothing is due, so that a lost notification cannot stall the loop.
  Millis idle_wait_ms = 1000;
  // How often wake() is repeated while results wait for take_results().
  Millis rewake_ms = 1;
};

LoopOptions loop_options(const Settings& settings);

class EngineLoop {
 public:
  // Starts the engine on the calling thread (Engine::start(): re-arms ring deadlines, republishes
  // presence) and throws what it throws, so that a host that cannot start fails at once; then
  // starts the loop thread, which hands the start-up results back first. Calls left ringing past
  // their deadline through a restart are ended by the loop thread, batch_max per commit, taking
  // turns with the requests that arrive meanwhile: the first request waits for one such batch at
  // most, not for all of them.
  EngineLoop(Engine& engine, EngineTransport& transport, LoopOptions options);
  // stop().
  ~EngineLoop();
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

  // Any thread. Requests are handled in the order submitted; the disconnects (MQTT client ids)
  // after the requests submitted before them. A request that finds queue_max waiting is answered
  // `unavailable` at once (through the same hand-back) and counted; the others are unaffected.
  void submit(std::vector<Request> requests, std::vector<std::string> disconnected = {});
  // The host's thread, for a transport whose publish() returns false: everything the engine
  // produced since the last call, in order. Wake-ups start only after the first call (the host's
  // loop is running) and stop once the results are taken.
  std::vector<Publish> take_results();
  // Waits until everything submitted so far is handled and its results handed back (published,
  // or waiting in take_results()), at most `timeout`. Returns whether it got there.
  bool wait_idle(std::chrono::milliseconds timeout);
  // Handles what is still queued, hands back its results, then ends the loop thread. Idempotent.
  void stop();

  // Counters for the logs.
  struct Stats {
    std::uint64_t batches = 0;
    std::uint64_t requests = 0;
    std::uint64_t largest_batch = 0;
    std::uint64_t overloaded = 0;
  };
  Stats stats() const;

 private:
  void run();
  bool has_work() const;  // callers hold mutex_
  void hand_back(std::unique_lock<std::mutex>& lock);
  // transport_.wake(), remembering when (the loop thread only).
  void wake_host();
  void wait_for_work(std::unique_lock<std::mutex>& lock);
  // Takes the next batch off queue_: up to batch_max requests, then the disconnects that follow them.
  void take_batch(std::vector<Request>& batch, std::vector<std::string>& disconnected);
  std::vector<Publish> handle(const std::vector<Request>& batch, const std::vector<std::string>& disconnected);

  Engine& engine_;
  EngineTransport& transport_;
  const LoopOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable idle_;
  // One request, or one client that disconnected: both in submission order.
  struct Work {
    std::optional<Request> request;
    std::string disconnected;
  };
  std::deque<Work> queue_;           // guarded by mutex_
  std::size_t queued_requests_ = 0;  // guarded by mutex_
  // Overload log lines: at most one a second, with the count refused since the last one (a flood
  // must not flood the log too). Submitting thread only.
  Millis overload_logged_at_ms_ = 0;
  std::uint64_t overload_unlogged_ = 0;
  std::vector<Publish> results_;  // guarded by mutex_: not yet handed back
  bool host_takes_ = false;       // guarded by mutex_: the transport publishes only from its thread
  bool host_polling_ = false;     // guarded by mutex_: take_results() was called once
  bool busy_ = false;             // guarded by mutex_: a batch is being handled or published
  bool stopping_ = false;         // guarded by mutex_
  bool requests_went_last_ = false;  // guarded by mutex_: overdue calls have the next turn
  Stats stats_;                   // guarded by mutex_
  std::chrono::steady_clock::time_point woken_at_{};  // the loop thread's: the last wake()
  std::thread thread_;
};

}  // namespace navietakie
