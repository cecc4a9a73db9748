// The plugin's side of the engine loop (core/engine_loop.hpp). Mosquitto publishes only on the
// broker thread, so the loop keeps results for take_results(), which the broker thread calls at
// every MOSQ_EVT_TICK. TICK runs once per loop pass, and an idle broker waits up to 100 ms in its
// poll: to publish at once, the loop wakes the broker thread with a real-time signal whose handler
// does nothing. epoll_wait returns EINTR, the pass ends and TICK runs. Mosquitto 2.0.11 offers no
// other way in: no event fd a plugin may add to its poll, no thread-safe publish.
#pragma once

#include <pthread.h>
#include <signal.h>

#include "core/engine_loop.hpp"

namespace navietakie {

// Wakes one thread out of a blocking poll with a real-time signal that no one else handles.
class ThreadWaker {
 public:
  // Picks the first real-time signal whose disposition is the default (nobody in the process
  // uses it), installs a no-op handler for it and remembers the calling thread as the one to
  // wake. Throws if every real-time signal is taken.
  ThreadWaker();
  // Restores the signal's previous disposition. Nothing may call wake() any more.
  ~ThreadWaker();
  ThreadWaker(const ThreadWaker&) = delete;
  ThreadWaker& operator=(const ThreadWaker&) = delete;

  // Interrupts that thread's current or next blocking call. Cheap; async-signal-safe.
  void wake() const;
  int signal_number() const { return signal_; }

 private:
  pthread_t target_;
  int signal_ = 0;
  struct sigaction previous_ {};
};

// The transport of the plugin: results wait for the broker thread, which the waker interrupts.
class BrokerWakeup : public EngineTransport {
 public:
  bool publish(const std::vector<Publish>&) override { return false; }  // only the broker thread may
  void wake() override { waker_.wake(); }

 private:
  ThreadWaker waker_;  // constructed on the broker thread (with the plugin host): the one it wakes
};

}  // namespace navietakie
