// What a run counted and measured. Each worker fills its own RunStats without locks; the main
// thread merges them after the workers stop. The few numbers the progress line shows while the run
// goes are in Progress, shared and atomic.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sim/latency.hpp"

namespace navietakie::sim {

using Clock = std::chrono::steady_clock;

struct Progress {
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> confirmed{0};
  std::atomic<std::uint64_t> events{0};
  std::atomic<std::uint64_t> violations{0};
};

struct CallCounters {
  std::uint64_t started = 0;    // start answered ok (ringing)
  std::uint64_t accepted = 0;   // accept answered ok (connected)
  std::uint64_t declined = 0;   // decline answered ok
  std::uint64_t missed = 0;     // ended as missed, seen by both parties
  std::uint64_t completed = 0;  // end answered ok after a talk
  std::uint64_t cancelled = 0;  // a ringing call the caller cancelled because the run was stopping
  std::uint64_t busy = 0;       // start refused as busy: another call was active (not a violation)
};

// What several hosts and faults do to a run (--shared, --resend-after): counted, allowed.
struct FaultCounters {
  std::uint64_t resends = 0;           // requests sent again unchanged (no reply in time, or `unavailable`)
  std::uint64_t unavailable = 0;       // replies `unavailable` (database restarting, overloaded)
  std::uint64_t reordered = 0;         // events that arrived after a higher seq (--shared)
  std::uint64_t gap_fetches = 0;       // get_message after_seq reads of a gap
  std::uint64_t events_recovered = 0;  // seqs a subscriber got only from such a read, never as an event
  std::uint64_t calls_abandoned = 0;   // calls given up after `unavailable` or no reply

  // The JSON names of the counters (summary and the --processes merge use the same).
  using Field = std::uint64_t FaultCounters::*;
  static constexpr std::array<std::pair<const char*, Field>, 6> fields{{
      {"resends", &FaultCounters::resends},
      {"unavailable", &FaultCounters::unavailable},
      {"reordered", &FaultCounters::reordered},
      {"gap_fetches", &FaultCounters::gap_fetches},
      {"events_recovered", &FaultCounters::events_recovered},
      {"calls_abandoned", &FaultCounters::calls_abandoned},
  }};
};

class RunStats {
 public:
  explicit RunStats(Progress& progress) : progress_(&progress) {}

  // A broken promise of the system (or of the run). `detail` is kept for the first few of a kind.
  void violation(std::string_view kind, std::string detail, std::uint64_t count = 1);

  void message_sent(Clock::time_point at);
  void message_confirmed(Clock::time_point at);
  void event_received() {
    progress_->events.fetch_add(1, std::memory_order_relaxed);
    ++events_received;
  }

  void merge(const RunStats& other);

  std::uint64_t sent = 0;
  std::uint64_t confirmed = 0;
  std::uint64_t events_received = 0;  // events/message deliveries, over all subscribers
  std::uint64_t redelivered = 0;      // the same event or reply delivered again (QoS 1): allowed
  std::uint64_t late_replies = 0;     // replies that came after their request was counted as timed out
  std::uint64_t history_fetches = 0;
  CallCounters calls;
  FaultCounters faults;
  LatencyHistogram reply_latency;    // send_message publish -> its reply
  LatencyHistogram event_latency;    // send_message publish -> events/message at the other party
  LatencyHistogram history_latency;  // get_message publish -> its reply
  LatencyHistogram ring_latency;     // make_call start publish -> `ringing` at the callee
  LatencyHistogram connect_latency;  // make_call accept publish -> `connected` at the caller
  std::map<std::string, std::uint64_t> violations;
  std::map<std::string, std::vector<std::string>> examples;
  std::optional<Clock::time_point> first_send;
  std::optional<Clock::time_point> last_confirm;

 private:
  Progress* progress_;
};

}  // namespace navietakie::sim
