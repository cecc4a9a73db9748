// Fills a data dir for the edge figures (scripts/bench --edge): `--messages` chat messages spread
// over `--bookings` bookings, and `--overdue-calls` calls left ringing in bookings of their own,
// started far enough in the past that their ring deadline has passed when a host opens the store.
// It writes through the engine, as requests would (the same records, indexes and seqs), in big
// transactions without fsync (nosync): a fill, not a measurement. Run it with no host on the dir.
// Usage: bench_fill --dir DIR [--messages N] [--bookings B] [--overdue-calls K]
//        (prints one JSON object as the last line)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "core/log.hpp"

namespace {

using namespace navietakie;

constexpr std::size_t kFillBatch = 5000;
constexpr Millis kCallsStartedAgoMs = 3'600'000;  // an hour: past any ring timeout

Request request(const std::string& booking, const std::string& action, const std::string& body) {
  return Request{"navietakie/v1/bookings/" + booking + "/" + action, body, std::nullopt, std::nullopt, "bench-fill"};
}

std::string text_of(std::size_t i) {
  std::string text = "message " + std::to_string(i) + " ";
  text.resize(100, 'x');  // ~100-byte chat lines, as in the other benchmarks
  return text;
}

// Handles `requests` in batches (failures are counted in the engine's metrics).
void handle_all(Engine& engine, const std::vector<Request>& requests) {
  std::vector<Request> batch;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    batch.push_back(requests[i]);
    if (batch.size() < kFillBatch && i + 1 < requests.size()) continue;
    engine.handle(batch);
    batch.clear();
  }
}

std::size_t count_arg(int argc, char** argv, const char* name, std::size_t fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return static_cast<std::size_t>(std::strtoull(argv[i + 1], nullptr, 10));
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--dir") == 0) dir = argv[i + 1];
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: bench_fill --dir DIR [--messages N] [--bookings B] [--overdue-calls K]\n");
    return 2;
  }
  const std::size_t messages = count_arg(argc, argv, "--messages", 1'000'000);
  const std::size_t bookings = std::max<std::size_t>(1, count_arg(argc, argv, "--bookings", 1000));
  const std::size_t overdue_calls = count_arg(argc, argv, "--overdue-calls", 0);
  set_log_level(LogLevel::warn);
  const auto started = std::chrono::steady_clock::now();

  auto store = open_lmdb_store(LmdbOptions{dir, std::size_t{1} << 30, SyncMode::nosync});
  const Millis now = system_clock_ms();
  Engine engine(*store, EngineOptions{}, [&] { return now - kCallsStartedAgoMs; });

  std::vector<Request> sends;
  sends.reserve(std::min<std::size_t>(messages, kFillBatch * 20));
  for (std::size_t i = 0; i < messages; ++i) {
    // Interleaved across the bookings, as real traffic would be.
    sends.push_back(request("E" + std::to_string(i % bookings), "send_message",
                            R"({"sender":"driver","sender_id":"drv-1","text":")" + text_of(i) + R"("})"));
    if (sends.size() == kFillBatch * 20 || i + 1 == messages) {
      handle_all(engine, sends);
      sends.clear();
    }
  }
  const std::uint64_t texts_stored = engine.metrics().messages_stored.load();
  std::vector<Request> calls;
  for (std::size_t i = 0; i < overdue_calls; ++i) {
    calls.push_back(request("RING" + std::to_string(i), "make_call", R"({"action":"start","by":"passenger"})"));
  }
  handle_all(engine, calls);

  const auto& m = engine.metrics();
  std::uint64_t errors = 0;
  for (const auto& count : m.errors) errors += count.load();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(R"({"messages":%llu,"bookings":%zu,"overdue_calls":%zu,"errors":%llu,"fill_s":%.1f})" "\n",
              static_cast<unsigned long long>(texts_stored), bookings, overdue_calls,
              static_cast<unsigned long long>(errors), seconds);
  // Anything less than asked would make the figures lie about the store they were measured on.
  return errors == 0 && texts_stored == messages ? 0 : 1;
}
