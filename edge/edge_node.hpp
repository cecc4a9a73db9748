// The edge node (node_role edge, docs/edge.md): the car's broker answers its local clients with
// the cloud as the authority. Its own thread owns the upstream link, the outbox and the replica:
// every durable write (an fsync) happens here, never on the broker thread. The broker thread only
// submits local requests and takes the results to publish (like core/engine_loop.hpp).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/engine.hpp"
#include "core/engine_loop.hpp"
#include "edge/edge_store.hpp"
#include "edge/replica.hpp"
#include "edge/upstream.hpp"

namespace navietakie {

struct EdgeMetrics {
  std::atomic<std::uint64_t> forwarded{0};  // requests sent upstream (outbox drains included)
  std::atomic<std::uint64_t> queued{0};     // send_message answered "queued"
  std::atomic<std::uint64_t> confirmed{0};  // outbox entries the cloud confirmed
  std::atomic<std::uint64_t> rejected{0};   // outbox entries the cloud refused for good
  std::atomic<std::uint64_t> replica_answers{0};
  std::atomic<std::uint64_t> replica_stored{0};
  std::atomic<std::uint64_t> catch_ups{0};
  std::atomic<std::uint64_t> link_ups{0};
  std::atomic<std::uint64_t> link_losses{0};
  std::atomic<std::uint64_t> local_errors{0};
  std::atomic<std::uint64_t> bad_upstream{0};  // upstream messages that were not what the protocol says
  std::string to_json() const;
};

class EdgeNode {
 public:
  // How long a local client waits for the cloud's answer before the car answers itself.
  static constexpr Millis kAnswerWithinMs = 3000;

  // `replica`: the car's store (the cloud's messages by the cloud's seq). `engine_options`: the
  // plugin's (identity and reply-address rules). `wake`: gets the broker thread to take results.
  EdgeNode(const Settings& settings, Store& replica, EngineOptions engine_options, EngineTransport& wake);
  ~EdgeNode();
  EdgeNode(const EdgeNode&) = delete;
  EdgeNode& operator=(const EdgeNode&) = delete;

  // Broker thread: local requests in publish order, and local clients that disconnected.
  void submit(std::vector<Request> requests, std::vector<std::string> disconnected);
  // Broker thread: a local client subscribed to a booking's events: follow it upstream.
  void watch_booking(const std::string& booking);
  // Broker thread: what to publish locally, in order.
  std::vector<Publish> take_results();
  const EdgeMetrics& metrics() const { return metrics_; }
  void stop();

 private:
  struct Envelope;
  struct Forward;
  void run();
  void step(std::vector<Request> requests, std::vector<std::string> disconnected, std::vector<std::string> watch);
  void on_link_event(const LinkEvent& e);
  void on_connected();
  void on_lost();
  void on_upstream_reply(const std::string& correlation, const std::string& payload);
  void on_upstream_event(const LinkEvent& e);
  void handle_local(const Request& request, std::vector<OutboxEntry>& sends, std::vector<Envelope>& send_envelopes);
  void handle_presence(const Request& request, Envelope env, const Json& body);
  // mark_read and typing: checked here, forwarded upstream (the cloud stores and paces them).
  void forward_receipt(const Request& request, Envelope env, const Json& body, Action action);
  void finish_sends(std::vector<OutboxEntry> sends, std::vector<Envelope> envelopes);
  void forward(const std::string& kind, const Request& request, const std::string& payload, std::optional<Envelope> env,
               const std::string& booking, const std::string& message_id);
  void forward_outbox(const OutboxEntry& entry, std::optional<Envelope> env);
  void answer_without_link(Forward& f);
  void answer_from_replica(const Request& request);
  void ensure_booking(const std::string& booking);
  void catch_up(const std::string& booking);
  void store_replica(const std::vector<Message>& messages);
  void receive_message(const Message& m);
  void expire_forwards();
  void reply(const Envelope& env, Json body);
  void reply_error(const Envelope& env, ErrorCode code, const std::string& message);
  // A failure reply (`{"ok":false,"error":{...}}`) to the envelope's reply address, else to the
  // booking's errors topic.
  void send_error(const Envelope& env, Json body);
  void emit(Publish p);

  Settings settings_;
  Topics topics_;
  Store& replica_;
  EngineOptions engine_options_;
  Engine engine_;  // answers get_message from the replica; never start()ed: the cloud runs calls
  EngineTransport& wake_;
  EdgeStore edge_store_;
  ReplicaTracker tracker_;
  EdgeMetrics metrics_;
  std::string reply_topic_upstream_;
  std::uint64_t next_correlation_ = 1;
  std::map<std::string, Forward> forwards_;  // correlation data upstream -> what waits for it
  std::set<std::string> bookings_;          // followed upstream
  // Latest presence request per (booking, local client id), sent again on reconnect; and what each
  // local client declared online, sent offline when it disconnects.
  std::map<std::pair<std::string, std::string>, std::string> latest_presence_;
  std::map<std::string, std::set<std::pair<std::string, std::string>>> declared_;  // client -> (booking, role)
  std::map<std::string, std::string> presence_seen_;  // booking -> last presence event payload
  Millis next_connect_at_ = 0;
  Millis connect_backoff_ms_ = 250;
  Millis next_drain_at_ = 0;

  std::mutex mutex_;
  std::condition_variable work_;
  std::vector<Request> queue_;                // guarded by mutex_
  std::vector<std::string> disconnected_;     // guarded by mutex_
  std::vector<std::string> watch_;            // guarded by mutex_
  std::vector<Publish> results_;              // guarded by mutex_
  std::vector<Publish> produced_;             // edge thread only: this step's output
  bool stopping_ = false;                     // guarded by mutex_
  bool notified_ = false;                     // guarded by mutex_
  std::unique_ptr<UpstreamLink> link_;
  std::thread thread_;
};

}  // namespace navietakie
