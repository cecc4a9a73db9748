// The command line of navietakie-sim: what to play, against which system, for how long.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace navietakie::sim {

// Relative weights of how a callee answers: it accepts (the caller hangs up after a short talk),
// declines, or lets it ring until the system's ring timeout ends it as missed.
struct CallMix {
  unsigned accept = 2;
  unsigned decline = 1;
  unsigned missed = 1;
  unsigned total() const { return accept + decline + missed; }
};

struct SimOptions {
  std::string url = "tcp://127.0.0.1:1883";
  std::string prefix = "navietakie/v1";
  std::size_t bookings = 10;
  double rate = 1;               // messages per second per booking; 0 = as fast as the window allows
  std::size_t text_bytes = 100;  // length of each message's text
  std::size_t window = 1;        // send_message requests awaiting a reply, per client
  std::uint64_t messages = 0;    // total messages to send, then stop; 0 = unbounded
  double duration_s = 0;         // 0 = unbounded
  double calls_per_minute = 0;   // per booking
  CallMix call_mix;
  double ring_timeout_s = 30;   // the system's call_ring_timeout_s
  double history_every_s = 10;  // per client; 0 = never
  std::string booking_prefix;   // booking codes are <prefix>-<n>
  std::string secret_file;      // non-empty: mint a participant token per client
  bool json = false;
  bool quiet = false;
  std::uint64_t seed = 0;
  double connect_timeout_s = 10;
  double reply_timeout_s = 10;
  // Several hosts on a shared subscription (--shared): events may arrive out of seq order; a seq
  // still missing after gap_wait_s is read back with get_message after_seq.
  bool shared = false;
  double gap_wait_s = 1;
  // Faults expected (--resend-after): a request without a reply after this long, or answered
  // `unavailable`, is sent again unchanged (same message_id), at most resend_tries times. 0 = off.
  double resend_after_s = 0;
  unsigned resend_tries = 10;
  std::size_t workers = 2;              // verifier threads; each owns a share of the bookings
  std::size_t connect_parallel = 1000;  // connects in flight at once
  std::size_t processes = 1;            // simulator processes sharing the bookings (see shards.hpp)
  // Set by the sharding parent for each child, not on the command line: this process plays the
  // bookings whose index is shard_index modulo shard_count.
  std::size_t shard_index = 0;
  std::size_t shard_count = 1;
};

struct ParsedOptions {
  std::optional<SimOptions> options;  // set when the run should go ahead
  int exit_code = 0;                  // otherwise: 0 after --help, 2 for a usage error
};

// Parses and validates the command line; prints --help or the usage error itself.
ParsedOptions parse_options(int argc, char** argv);

// "accept:2,decline:1,missed:1" (any order, any subset, weights >= 0, not all 0).
std::optional<CallMix> parse_call_mix(const std::string& text);

}  // namespace navietakie::sim
