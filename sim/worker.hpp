// A verifier thread: it owns a share of the bookings (both clients of each), plays their traffic
// (messages on a token-bucket schedule, history reads, calls) and checks every reply and event they
// receive against its BookingLedgers. Only this thread touches those bookings, so nothing in them is
// locked; Paho's receive thread reaches the worker only through its Inbox.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mqtt/iasync_client.h>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/topics.hpp"
#include "sim/ledger.hpp"
#include "sim/link.hpp"
#include "sim/options.hpp"
#include "sim/stats.hpp"

namespace navietakie::sim {

// The run's stages, set by the main thread; each worker follows.
enum class Phase : int {
  setup,       // each client declares itself online and reads its booking's last seq
  running,     // traffic
  draining,    // no new messages, history reads or calls; calls in progress are wound up
  finalizing,  // read each booking's last seq, wait for every subscriber to reach it, go offline
  done,        // final checks; the worker thread ends
};

struct RunControl {
  std::atomic<Phase> phase{Phase::setup};
  std::uint64_t message_budget = 0;  // 0 = unbounded
  std::atomic<std::uint64_t> messages_claimed{0};
  std::atomic<bool> messages_exhausted{false};
  Progress progress;

  // Takes one message of the budget; false (and exhausted) once it is spent.
  bool claim_message();
};

class Worker {
 public:
  using ClientFactory = std::function<std::unique_ptr<mqtt::iasync_client>(const std::string& client_id)>;

  Worker(const SimOptions& options, RunControl& control, std::uint64_t seed);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Before start(): a booking and its driver and passenger clients (made, not yet connected).
  void add_booking(const std::string& code, const ClientFactory& make_client);

  struct ParticipantRef {
    ClientLink* link;
    std::string booking;
    Role role;
  };
  std::vector<ParticipantRef> participants();
  // The filters every client of `booking` subscribes to.
  std::vector<std::string> subscriptions(const std::string& booking, const std::string& client_id) const;

  void start();
  void phase_changed() { inbox_.wake(); }
  void join();
  // Done with what the current phase asks (setup answered; drained; final reads caught up).
  bool idle() const { return idle_.load(std::memory_order_acquire); }
  // Valid after join().
  const RunStats& stats() const { return stats_; }

 private:
  enum class RequestKind { send_message, history, make_call, presence, baseline, last_seq, catch_up };
  static const char* request_name(RequestKind kind);
  struct Pending {
    RequestKind kind = RequestKind::send_message;
    Clock::time_point sent_at;
    Clock::time_point deadline;
    std::string id;      // message_id (send_message) or call_id (make_call)
    std::string action;  // make_call action
    int limit = 0;
    std::optional<std::int64_t> before_seq;
    std::int64_t seen_then = 0;
    std::int64_t after_seq = 0;  // catch_up
    // Kept to send it again unchanged (--resend-after); `held`: waiting out an `unavailable`
    // until `deadline`, not published under this correlation.
    std::string topic;
    std::string payload;
    unsigned resends = 0;
    bool held = false;
  };
  struct Participant {
    std::unique_ptr<ClientLink> link;
    std::size_t booking = 0;
    Role role = Role::driver;
    std::string reply_topic;
    std::string wake_topic;
    std::unordered_map<std::uint64_t, Pending> pending;         // by correlation data
    std::unordered_set<std::uint64_t> expired;                  // timed out: a reply may still come, late
    std::unordered_map<std::uint64_t, std::uint64_t> answered;  // recent correlation -> reply fingerprint
    std::vector<std::uint64_t> answered_order;
    std::uint64_t next_correlation = 1;
    std::size_t messages_in_flight = 0;
    bool history_in_flight = false;
    bool catch_up_in_flight = false;
    std::uint64_t history_reads = 0;
    bool lost = false;
  };
  enum class CallOutcome { accept, decline, missed };
  enum class CallStep { starting, ringing, answering, connected, ending };
  struct ActiveCall {
    std::string call_id;
    Role caller = Role::driver;
    CallOutcome outcome = CallOutcome::accept;
    CallStep step = CallStep::starting;
    std::uint64_t generation = 0;
    Clock::time_point started_at;
    std::optional<Clock::time_point> accept_sent_at;
    Clock::time_point deadline;
    bool answer_scheduled = false;
    bool end_scheduled = false;
  };
  struct Booking {
    Booking(std::string code_in, std::array<std::string, 2> client_ids, RunStats& stats, LedgerMode mode)
        : code(code_in), ledger(std::move(code_in), std::move(client_ids), stats, mode) {}
    std::string code;
    std::string send_topic, get_topic, call_topic, presence_topic;
    std::string message_events, call_events, presence_events, errors;
    std::array<std::size_t, 2> clients{0, 0};  // participant indexes, by role
    BookingLedger ledger;
    double tokens = 0;
    Clock::time_point refilled;
    bool send_timer_armed = false;
    Role next_sender = Role::driver;
    std::optional<ActiveCall> call;
    std::uint64_t calls_made = 0;
    Role next_caller = Role::driver;
    bool broken = false;                   // a client lost its connection: nothing more is checked here
    std::optional<std::int64_t> last_seq;  // read in the final phase
    bool last_seq_failed = false;
  };
  enum class TimerKind { send, history, call_start, call_step };
  struct Timer {
    Clock::time_point at;
    TimerKind kind;
    std::size_t target;  // booking, or participant for history
    std::uint64_t generation;
    bool operator>(const Timer& o) const { return at > o.at; }
  };

  void run();
  void enter(Phase phase, Clock::time_point now);
  void handle(const Delivery& delivery);
  void on_reply(Participant& p, const mqtt::const_message_ptr& message, Clock::time_point at);
  void on_call_reply(Booking& b, Participant& p, const Pending& request, const nlohmann::json& reply);
  void on_message_event(Booking& b, Participant& p, const mqtt::const_message_ptr& message, Clock::time_point at);
  void on_call_event(Booking& b, Participant& p, const mqtt::const_message_ptr& message, Clock::time_point at);
  void request_failed(Participant& p, const Pending& request, Clock::time_point now);
  // --resend-after: whether `request` (unanswered, or answered `unavailable` when `hold`) goes out
  // again; a call is given up instead.
  bool retry(Participant& p, Pending request, Clock::time_point now, bool hold);
  void send_catch_up(Participant& p, std::int64_t after_seq);

  void fire(const Timer& timer, Clock::time_point now);
  void try_send(std::size_t booking, Clock::time_point now);
  void send_message(Booking& b, Participant& p, Clock::time_point now);
  void send_history(Participant& p);
  void start_call(std::size_t booking, Clock::time_point now);
  void advance_call(Booking& b, Clock::time_point now);
  void call_over(std::size_t booking);
  bool publish(Participant& p, const std::string& topic, std::string payload, Pending request);

  void housekeeping(Clock::time_point now);
  void expire(Participant& p, Clock::time_point now, bool everything);
  bool compute_idle(Phase phase) const;
  void wake_stalled_senders(Clock::time_point now);
  void finish();

  std::size_t booking_index(const Booking& b) const;
  Participant& participant(const Booking& b, Role role) { return participants_[b.clients[index_of(role)]]; }
  bool window_open(const Participant& p) const;
  std::chrono::microseconds seconds(double s) const;
  double uniform(double low, double high);

  const SimOptions& options_;
  RunControl& control_;
  Topics topics_;
  std::mt19937_64 rng_;
  RunStats stats_;
  Inbox inbox_;
  std::vector<std::unique_ptr<Booking>> bookings_;
  std::vector<Participant> participants_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  std::vector<std::size_t> wake_candidates_;
  Clock::time_point last_wake_{};
  Phase phase_ = Phase::setup;
  std::thread thread_;
  std::atomic<bool> idle_{false};
};

}  // namespace navietakie::sim
