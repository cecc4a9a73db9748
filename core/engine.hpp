// The handler logic behind both hosts (the Paho bridge and the Mosquitto plugin).
// Bytes in -> decode/validate -> handler -> one store commit per batch -> replies + events out.
// It knows nothing of Paho, Mosquitto or LMDB.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>
#include <string>
#include <vector>

#include "core/codec.hpp"
#include "core/errors.hpp"
#include "core/topics.hpp"
#include "core/identity.hpp"
#include "core/typing_limiter.hpp"
#include "core/ice.hpp"
#include "core/rate_limit.hpp"
#include "config/config.hpp"
#include "store/store.hpp"

namespace navietakie {

// An MQTT publish as a host received it.
struct Request {
  std::string topic;
  std::string payload;
  std::optional<std::string> response_topic;    // MQTT v5 Response Topic
  std::optional<std::string> correlation_data;  // MQTT v5 Correlation Data (binary)
  std::string client_id;                        // the publisher's client id, when the host knows it
  // Who published it, when authentication is on (the plugin: from the verified token; the bridge:
  // from the plugin's stamp). When set, the payload may not contradict it (`forbidden`).
  std::optional<Identity> identity{};  // {}: the aggregate initialisers that predate it stay warning-free
  // When the host handed it over (EngineLoop::submit stamps it), for the request's logged latency.
  // Unset (the epoch): from when the engine took it up.
  std::chrono::steady_clock::time_point received{};
};

// An MQTT publish the host must send, in order, after the batch committed.
struct Publish {
  std::string topic;
  std::string payload;
  bool retain = false;
  std::optional<std::string> correlation_data;
  // The MQTT QoS to publish at: 1 for everything but hints whose loss costs nothing (typing: 0).
  int qos{1};  // {}: the aggregate initialisers that predate it stay warning-free
};

struct EngineOptions {
  std::string topic_prefix = "navietakie/v1";
  Millis call_ring_timeout_ms = 30'000;
  std::size_t max_payload_bytes = 64 * 1024;
  std::size_t max_text_bytes = 4096;
  // Mark every stored connection offline at start(): right for a host that starts with the broker
  // (the plugin), where nobody can still be connected.
  bool offline_at_start = false;
  // Authentication is on: a request without an identity is `forbidden`.
  bool require_identity = false;
  // Whether a request's identity, published by MQTT client `client_id`, may be answered at `topic`:
  // the host's access policy (auth/acl.hpp reply_address_allowed), set by each host when
  // authentication is on; a refused reply address is `forbidden`. Unset, or a request without an
  // identity: any topic Topics::valid_reply_topic accepts. Called on the engine's thread.
  std::function<bool(const Identity& identity, const std::string& client_id, const std::string& topic)> reply_allowed;
  // Most ringing calls ended as missed in one store transaction (settings: batch_max, capped at
  // this default). A request waits for one such transaction at most (the engine loop), and ending
  // a call costs ~0.4 ms in a store of 10^6 messages: 32 keep that wait near 10 ms after a restart
  // that left a thousand calls overdue.
  std::size_t batch_max = 32;
  // After a failed commit of expired calls, how long before the next try (a full or failing disk
  // is not retried in a busy loop).
  Millis store_retry_ms = 1000;
  // A store shared with other hosts (store_backend postgres): how often to look in it for ringing
  // calls past their deadline that another host armed (and may no longer be alive to end).
  // 0: never (a store only this process writes: every deadline is armed here).
  Millis deadline_scan_ms = 0;
  // Retention (retention_days): a booking closed longer ago than this is purged entirely, in the
  // background. 0: keep forever.
  Millis retention_ms = Millis{30} * 24 * 3600 * 1000;
  // Most keys (rows) one purge transaction deletes: a request waits for one such transaction at
  // most (the engine loop), however large the booking.
  std::size_t purge_batch_keys = 256;
  // With nothing to purge, how often to look for bookings that have come of age.
  Millis purge_scan_ms = 60'000;
  // ICE servers handed to a party in its make_call reply (start, accept, get): none configured, no
  // `ice` in the reply (clients use the browser's defaults).
  IceOptions ice;
  // Requests a second per MQTT client id, and the burst above that rate (rate_limit_per_s,
  // rate_limit_burst; docs/protocol.md "Rate limits"). 0: no limit.
  std::uint32_t rate_limit_per_s = 0;
  std::uint32_t rate_limit_burst = 0;
};

// The engine options the settings describe, for either host (which sets offline_at_start itself).
EngineOptions engine_options(const Settings& settings);

// Why `topic` (a request's `field`) cannot be its reply address: `invalid_request` for a topic that
// is not a topic name, `forbidden` for one the system or the requester may not use (the host's
// reply_allowed policy). nullopt: usable. The engine's rule, also applied by an edge node that
// answers for the cloud.
std::optional<ProtocolError> reply_address_problem(const Topics& topics, const EngineOptions& options,
                                                   const Request& request, const std::string& topic,
                                                   const std::string& field);

using Clock = std::function<Millis()>;
Millis system_clock_ms();

// Counters: requests per action and errors per code. Read from any thread.
struct EngineMetrics {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> batches{0};
  std::atomic<std::uint64_t> messages_stored{0};
  std::atomic<std::uint64_t> duplicates{0};
  std::atomic<std::uint64_t> calls_missed{0};
  std::atomic<std::uint64_t> overloaded{0};  // requests refused because too many were waiting
  std::atomic<std::uint64_t> bookings_closed{0};
  std::atomic<std::uint64_t> bookings_purged{0};
  std::atomic<std::uint64_t> purge_batches{0};
  std::atomic<std::uint64_t> typing_dropped{0};  // typing hints over the rate, dropped silently
  std::array<std::atomic<std::uint64_t>, error_code_count> errors{};
  std::string to_json() const;
};

class Engine {
 public:
  Engine(Store& store, EngineOptions options, Clock clock = system_clock_ms);

  // Handles a batch in order inside one write transaction and one durable commit. Returns what to
  // publish, only after the commit; every effect of a request (stored rows, events, ring timers,
  // the client's connections) is applied only once its commit succeeded. If the commit of a batch
  // of several fails (whatever the cause), its requests are retried one per transaction, so that
  // only those whose own commit fails get `unavailable` and reads still answer. Logs one line per
  // request (debug; errors at warn).
  std::vector<Publish> handle(const std::vector<Request>& batch);

  // The answer to a request refused before it reached the store because too many wait
  // (`unavailable`, "overloaded"), sent like any error: to its reply address or the booking's
  // errors topic. Counted. Reads no store and no engine state but the counters: safe from any
  // thread, also while another runs handle().
  std::vector<Publish> overloaded(const Request& request);

  // Ends the ringing calls whose deadline has passed as `missed`; returns their events.
  std::vector<Publish> expire_calls();
  // Purges closed bookings past retention_ms: one transaction of at most purge_batch_keys keys;
  // once a booking is gone, returns the empty retained payloads that clear its retained events.
  std::vector<Publish> purge_closed();
  // The background work the engine loop runs between request batches: expire_calls(), then
  // purge_closed(), each bounded to one short transaction.
  std::vector<Publish> background();
  // When expire_calls() next has work, if any call is ringing.
  std::optional<Millis> next_deadline() const;
  // When purge_closed() next has work, or looks for it; nullopt with retention off.
  std::optional<Millis> next_purge() const;

  // At start-up: re-arm ring timeouts from the store and republish the retained presence, read
  // receipts and closed state of every booking. Calls already overdue are not ended here:
  // next_deadline() is due at once, and
  // expire_calls() ends them batch_max at a time (the engine loop, between request batches).
  std::vector<Publish> start();

  // MQTT clients that disconnected (a host that sees disconnects: the plugin). Their declared
  // presence goes offline even without a Will; returns the retained presence events.
  // Also forgets their rate-limit buckets that are full.
  std::vector<Publish> disconnected(const std::vector<std::string>& client_ids);

  // The topic filters a host subscribes to (one per request action).
  std::vector<std::string> request_filters() const;

  const EngineMetrics& metrics() const { return metrics_; }
  const EngineOptions& options() const { return options_; }

 private:
  struct Deadline {
    Millis at;
    std::string booking;
    std::string call_id;
    bool operator<(const Deadline& o) const {
      return std::tie(at, booking, call_id) < std::tie(o.at, o.booking, o.call_id);
    }
  };
  struct Handled;
  struct ConnectionChange;
  // The rate limiter's verdict on each request of a batch, taken once when the batch arrives (a
  // batch retried one request per transaction is not charged again).
  std::vector<RateLimiter::Verdict> take_tokens(const std::vector<Request>& batch);
  std::vector<Publish> handle_admitted(const std::vector<Request>& batch,
                                       const std::vector<RateLimiter::Verdict>& verdicts);
  // w == nullptr: the request is refused before the store (overloaded()).
  void handle_one(StoreWriter* w, const Request& request, Handled& h);
  void handle_send(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h);
  void handle_get(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h);
  void handle_call(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h);
  void handle_close(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h);
  // `booking_closed` if h's booking is closed and wire::kClosedBookingRefuses lists h's action
  // (for make_call, with `call_action`). Every handler of a write calls it after its own field and
  // identity checks, before it reads or writes anything else of the booking (error precedence).
  void require_open(const StoreReader& r, const Handled& h,
                    std::optional<CallAction> call_action = std::nullopt) const;
  void handle_presence(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h);
  // core/engine_receipts.cpp
  void handle_mark_read(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h);
  void handle_typing(StoreWriter& w, const Request& request, const RequestBody& body, Handled& h);
  // The `read` object of a booking (both horizons; a party that never read: seq 0, at null).
  static std::string read_receipts_json(const StoreReader& r, const std::string& booking);
  // core/engine_signal.cpp: the rules of `signal` (the booking's current call, its state, its
  // parties); returns the `events/signal` publish. Reads the store, writes nothing.
  Publish relay_signal(const StoreReader& store, const SignalRequest& r, const Identity* identity,
                       const Handled& h) const;
  // The identity a request acts under (nullptr in open mode), once it may act on its booking and
  // be answered at its reply address (else `forbidden`).
  const Identity* authenticated(const Request& request, const Handled& h) const;
  void record_call_change(StoreWriter& w, const Call& call, Role sender, Handled& h);
  Presence refresh_presence(StoreWriter& w, const std::string& booking);
  std::vector<Publish> set_offline(const std::set<std::pair<std::string, std::string>>& connections);
  void apply(const ConnectionChange& change);
  // Moves the request's publishes out of `h`.
  void finish(Handled& h, std::vector<Publish>& out);
  static void write_result(JsonWriter& reply, const Handled& h);
  // With deadline_scan_ms: adds the due ringing calls other hosts armed to deadlines_ (at most
  // every deadline_scan_ms).
  void scan_shared_deadlines(Millis now);

  Store& store_;
  EngineOptions options_;
  Topics topics_;
  Millis expiry_retry_at_ = 0;  // after a failed expiry commit, wait before the next try
  Millis next_deadline_scan_ = 0;  // deadline_scan_ms: when to look for other hosts' due calls next
  Millis next_purge_ = 0;          // retention_ms: when purge_closed() next has (or looks for) work
  std::optional<std::string> purging_;  // the booking being purged, until nothing of it is left
  Clock clock_;
  EngineMetrics metrics_;
  std::set<Deadline> deadlines_;
  RateLimiter rate_limiter_;
  bool warned_unknown_client_ = false;  // rate limits on, and a request came without a client id
  // MQTT client id -> (booking, connection key) it declared online; kept in memory only, since a
  // restart of the plugin host is a restart of the broker (offline_at_start).
  std::map<std::string, std::set<std::pair<std::string, std::string>>> client_connections_;
  TypingLimiter typing_limiter_;
};

}  // namespace navietakie
