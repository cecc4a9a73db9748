// The plugin's engine thread. Mosquitto runs every client on one thread, so a durable commit (an
// fsync) there stalls every client. The worker owns the Engine: the broker thread hands it batches
// of requests and disconnects, keeps reading packets while the worker commits (the next batch
// grows meanwhile: group commit), and publishes what the worker produced at its next loop pass.
// When results are ready the worker wakes the broker out of its poll (which would otherwise wait
// up to 100 ms) by sending the broker thread a no-op real-time signal: epoll_wait returns EINTR,
// the loop pass ends and MOSQ_EVT_TICK runs.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <pthread.h>
#include <string>
#include <thread>
#include <vector>

#include "core/engine.hpp"

namespace navietakie {

// Wakes one thread out of a blocking poll with a real-time signal whose handler does nothing.
class ThreadWaker {
 public:
  // Installs the handler (once per process) and remembers the calling thread as the one to wake.
  ThreadWaker();
  // Interrupts that thread's current or next blocking call. Cheap; async-signal-safe.
  void wake() const;
  static int signal_number();

 private:
  pthread_t target_;
};

class EngineWorker {
 public:
  // `wake` is called (on the worker thread) whenever results are ready for take_results().
  EngineWorker(Engine& engine, std::size_t batch_max, ThreadWaker waker);
  // Handles what is still queued (its results are dropped: the broker is stopping), then joins.
  ~EngineWorker();
  EngineWorker(const EngineWorker&) = delete;
  EngineWorker& operator=(const EngineWorker&) = delete;

  // Broker thread: more work. Requests are handled in the order submitted.
  void submit(std::vector<Request> requests, std::vector<std::string> disconnected);
  // Broker thread: everything the worker produced since the last call, in order.
  std::vector<Publish> take_results();

  // Counters for the logs: batches committed, requests, the largest batch.
  struct Stats {
    std::uint64_t batches = 0;
    std::uint64_t requests = 0;
    std::uint64_t largest_batch = 0;
  };
  Stats stats() const;

 private:
  void run();
  void handle(std::vector<Request>& requests, std::vector<std::string>& disconnected, std::vector<Publish>& out);

  Engine& engine_;
  std::size_t batch_max_;
  ThreadWaker waker_;

  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::vector<Request> requests_;          // guarded by mutex_
  std::vector<std::string> disconnected_;  // guarded by mutex_
  std::vector<Publish> results_;           // guarded by mutex_
  Stats stats_;                            // guarded by mutex_
  bool stopping_ = false;                  // guarded by mutex_
  bool broker_polling_ = false;            // guarded by mutex_: set by the first take_results(); no
                                           // wake-ups before the broker's loop runs
  std::thread thread_;
};

}  // namespace navietakie
