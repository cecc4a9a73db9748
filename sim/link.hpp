// One simulated participant's MQTT connection (Eclipse Paho C++), as a thin adapter: Paho calls
// back on its one receive thread for every client of the process, so the callbacks here only
// timestamp what arrived and queue it in the owning worker's Inbox (never block, never verify).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mqtt/async_client.h>
#include <mutex>
#include <string>
#include <vector>

#include "sim/stats.hpp"

namespace navietakie::sim {

// What a client received, stamped on arrival. A null `message` means the connection was lost.
struct Delivery {
  std::size_t client = 0;  // the worker's index of the receiving client
  mqtt::const_message_ptr message;
  Clock::time_point at;
};

// A worker's queue of deliveries, filled by Paho's thread and drained by the worker.
class Inbox {
 public:
  void post(Delivery delivery);
  // Waits until something is queued, `wake()` is called, or `until`; then moves the queue into `out`.
  void take(std::vector<Delivery>& out, Clock::time_point until);
  void wake();

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<Delivery> queue_;
  bool woken_ = false;
};

class ClientLink final : public mqtt::callback, public mqtt::iaction_listener {
 public:
  ClientLink(std::unique_ptr<mqtt::iasync_client> client, Inbox& inbox, std::size_t index);
  ClientLink(const ClientLink&) = delete;
  ClientLink& operator=(const ClientLink&) = delete;

  mqtt::iasync_client& client() { return *client_; }
  const std::string& id() const { return id_; }

  // A QoS 1 request with an MQTT v5 reply address. Returns false if Paho refused it (disconnected).
  bool publish_request(const std::string& topic, std::string payload, const std::string& response_topic,
                       const std::string& correlation);
  // Paho C 1.3 wakes its send thread only when a command is queued, not when a PUBACK frees a slot
  // of the broker's receive window: QoS 1 publishes queued behind a full window would wait up to
  // 1 s. Once a client has filled the window, an empty QoS 0 publish every few ms wakes the send
  // thread until all of its publishes are acknowledged.
  bool window_full() const { return in_flight_.load(std::memory_order_relaxed) >= receive_maximum_; }
  bool unacknowledged() const { return in_flight_.load(std::memory_order_relaxed) > 0; }
  void publish_wake(const std::string& topic);

  // The broker's Receive Maximum from its CONNACK (65535 when it sent none).
  void set_receive_maximum(int value) { receive_maximum_ = value; }
  int receive_maximum() const { return receive_maximum_; }
  // Publishes the broker refused (e.g. PUBACK 0x87 not authorized) since the last call, and why.
  std::uint64_t take_publish_failures(std::string& last_reason);

 private:
  // mqtt::callback: on Paho's receive thread.
  void message_arrived(mqtt::const_message_ptr message) override;
  void connection_lost(const std::string& cause) override;
  // mqtt::iaction_listener, for publishes: the PUBACK (or the refusal).
  void on_success(const mqtt::token& token) override;
  void on_failure(const mqtt::token& token) override;

  std::unique_ptr<mqtt::iasync_client> client_;
  Inbox& inbox_;
  std::size_t index_;
  std::string id_;
  int receive_maximum_ = 65535;
  std::atomic<int> in_flight_{0};
  std::mutex failure_mutex_;
  std::uint64_t failures_ = 0;
  std::string failure_reason_;
};

}  // namespace navietakie::sim
