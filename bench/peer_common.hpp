// What the peer load tools (peer_jetstream, peer_redis) share: their options, the units of work in
// flight (a send ends when the server's acknowledgement AND the subscriber's delivery have both
// arrived, the shape of bench_rr --until-event), and the one JSON line they print, with the same keys
// as bench_rr's so that scripts/bench reads both alike.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

namespace peer {

using Clock = std::chrono::steady_clock;

// Bad arguments: the message goes to stderr, exit 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string mode = "send";  // send | fill | history
  int port = 0;               // the server, on 127.0.0.1
  std::size_t count = 2000;   // units: sends or pages
  std::size_t window = 1;     // units in flight at a time
  std::string booking = "BENCH";
  std::size_t messages = 10000;  // fill: messages in the store
  std::size_t bookings = 1;      // fill: spread over this many bookings, interleaved
  std::size_t limit = 50;        // history: messages per page
  bool help = false;
};

inline std::size_t whole_number(const std::string& flag, const std::string& value) {
  if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos || value.size() > 9) {
    throw UsageError(flag + ": expected a whole number, got '" + value + "'");
  }
  return std::stoul(value);
}

inline Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      o.help = true;
      continue;
    }
    if (i + 1 >= argc) throw UsageError(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--mode" && (value == "send" || value == "fill" || value == "history"))
      o.mode = value;
    else if (flag == "--booking")
      o.booking = value;
    else if (flag == "--port")
      o.port = static_cast<int>(whole_number(flag, value));
    else if (flag == "--count")
      o.count = whole_number(flag, value);
    else if (flag == "--window")
      o.window = std::max<std::size_t>(1, whole_number(flag, value));
    else if (flag == "--messages")
      o.messages = whole_number(flag, value);
    else if (flag == "--bookings")
      o.bookings = std::max<std::size_t>(1, whole_number(flag, value));
    else if (flag == "--limit")
      o.limit = std::max<std::size_t>(1, whole_number(flag, value));
    else
      throw UsageError("unknown argument or value: " + flag + " " + value);
  }
  if (!o.help && o.port == 0) throw UsageError("--port is required");
  return o;
}

inline const char* usage_text() {
  return "  --port P          the server's port on 127.0.0.1 (required)\n"
         "  --mode send       a unit is one durable send to --booking, ending when the server has\n"
         "                    acknowledged it and this client's subscriber has received it\n"
         "  --mode fill       store --messages messages over --bookings bookings (H0, H1, ...),\n"
         "                    interleaved; prints the fill time\n"
         "  --mode history    a unit is one page of the newest --limit (50) messages of --booking\n"
         "  --booking B       the booking sent to or paged (default BENCH)\n"
         "  --messages N      fill: messages to store (default 10000)\n"
         "  --bookings N      fill: bookings to spread them over (default 1)\n"
         "  --limit N         history: messages per page (default 50)\n"
         "  --count N         units (default 2000)\n"
         "  --window N        units in flight at a time (default 1)\n"
         "  --help            this text\n"
         "Prints one JSON line (msgs_per_s, p50_us, p99_us, p999_us, errors); exit 0 when every unit\n"
         "succeeded, 1 otherwise, 2 on bad arguments.\n";
}

// A chat line of about 100 bytes carrying its unique message id, as bench_rr sends.
inline std::string chat_line(const std::string& message_id) {
  return R"({"message_id":")" + message_id +
         R"(","sender":"driver","text":"benchmark message of about one hundred bytes, as a chat line would be......"})";
}

inline std::string message_id_prefix() { return "p" + std::to_string(::getpid()) + "-"; }

inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

// The units in flight, shared by the thread that sends and the client library's threads that
// deliver acknowledgements and messages. A send completes when both have arrived, in either order.
class Units {
 public:
  explicit Units(std::size_t count) { latencies_us_.reserve(count); }

  void started(const std::string& id) {
    std::lock_guard<std::mutex> lock(mutex_);
    in_flight_[id] = Unit{Clock::now(), false, false};
  }
  void acknowledged(const std::string& id, bool ok) { progress(id, ok, true); }
  void delivered(const std::string& id) { progress(id, true, false); }
  // A unit with nothing to wait for besides its own reply (a history page).
  void finished(Clock::time_point started, bool ok) {
    std::lock_guard<std::mutex> lock(mutex_);
    record(started, ok);
  }

  // Blocks until fewer than `window` units are in flight; false past the deadline.
  bool wait_for_room(std::size_t window, Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_until(lock, deadline, [&] { return in_flight_.size() < window; });
  }
  bool wait_until_done(Clock::time_point deadline) { return wait_for_room(1, deadline); }
  std::size_t in_flight() {
    std::lock_guard<std::mutex> lock(mutex_);
    return in_flight_.size();
  }

  void failed_to_start() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++errors_;
  }

  // Prints the JSON line; returns the exit status.
  int report(std::size_t window, std::size_t count, Clock::time_point start, const std::string& extra = "") {
    std::lock_guard<std::mutex> lock(mutex_);
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf(
        "{\"window\":%zu,\"count\":%zu,\"replies\":%zu,\"errors\":%zu,\"msgs_per_s\":%.0f,"
        "\"p50_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f%s}\n",
        window, count, latencies_us_.size(), errors_ + in_flight_.size(),
        static_cast<double>(latencies_us_.size()) / secs, percentile(latencies_us_, 0.5),
        percentile(latencies_us_, 0.99), percentile(latencies_us_, 0.999), extra.c_str());
    std::fflush(stdout);
    return latencies_us_.size() == count && errors_ == 0 && in_flight_.empty() ? 0 : 1;
  }

 private:
  struct Unit {
    Clock::time_point started;
    bool acknowledged;
    bool delivered;
  };

  void progress(const std::string& id, bool ok, bool is_ack) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = in_flight_.find(id);
    if (it == in_flight_.end()) return;  // not ours (a message of another client of the booking)
    (is_ack ? it->second.acknowledged : it->second.delivered) = true;
    if (ok && !(it->second.acknowledged && it->second.delivered)) return;
    record(it->second.started, ok);
    in_flight_.erase(it);
  }

  void record(Clock::time_point started, bool ok) {
    if (ok)
      latencies_us_.push_back(std::chrono::duration<double, std::micro>(Clock::now() - started).count());
    else if (++errors_ == 1)
      std::fprintf(stderr, "first error after %zu units\n", latencies_us_.size());
    changed_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, Unit> in_flight_;
  std::vector<double> latencies_us_;
  std::size_t errors_ = 0;
};

// The booking names of a fill: H0, H1, ... (the history page reads one of them).
inline std::string fill_booking(std::size_t i, std::size_t bookings) { return "H" + std::to_string(i % bookings); }

template <typename Run>
int main_of(const char* name, const char* what, int argc, char** argv, Run run) {
  try {
    const Options options = parse_options(argc, argv);
    if (options.help) {
      std::printf("Usage: %s --port P [--mode send|fill|history] [--count N] [--window N] [--booking B]\n"
                  "       [--messages N --bookings B] [--limit 50]\n\n%s\n\n%s",
                  name, what, usage_text());
      return 0;
    }
    return run(options);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s (%s --help lists the options)\n", name, e.what(), name);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace peer
