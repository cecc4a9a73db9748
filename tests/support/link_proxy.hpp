// A TCP relay on 127.0.0.1 between a car unit and its cloud, which a test can cut and restore: the
// link fails the way a cellular one does (connections drop, new ones are refused) while both
// brokers and every client of the cloud keep running.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>

namespace navietakie::test {

class LinkProxy {
 public:
  // Listens on a free port of 127.0.0.1 and relays every connection to 127.0.0.1:target_port.
  explicit LinkProxy(int target_port);
  ~LinkProxy();
  LinkProxy(const LinkProxy&) = delete;
  LinkProxy& operator=(const LinkProxy&) = delete;

  int port() const { return port_; }
  // Closes every relayed connection and stops listening (connects are refused); returns once done.
  void cut();
  // Listens again on the same port; returns once it does.
  void restore();
  // Connections accepted so far (each reconnect of the car counts).
  std::size_t accepted() const;

 private:
  void run();
  void set_up(bool up);

  int target_port_;
  int port_ = 0;
  int wake_[2] = {-1, -1};
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool want_up_ = true;
  bool is_up_ = false;
  bool stop_ = false;
  std::size_t accepted_ = 0;
};

}  // namespace navietakie::test
