// How cost grows with the store: get_message page latency (handler + LMDB, no broker) for one
// booking holding 10^3 .. 10^6 messages and for 10^4 bookings, and disk bytes per stored message.
// Usage: bench_growth [--max N] [--dir DIR]   (N: largest single-booking size, default 1000000;
//        prints one line per measurement, then one JSON object as the last line)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/engine.hpp"
#include "core/log.hpp"

namespace {

using namespace navietakie;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kFillBatch = 1000;
constexpr std::size_t kProbes = 2000;

std::string text_of(std::size_t i) {
  std::string text = "message " + std::to_string(i) + " ";
  text.resize(100, 'x');  // ~100-byte chat lines, as in the other benchmarks
  return text;
}

Request send_request(const std::string& booking, std::size_t i) {
  return Request{"navietakie/v1/bookings/" + booking + "/send_message",
                 R"({"sender":"driver","sender_id":"drv-1","text":")" + text_of(i) + R"("})", std::nullopt,
                 std::nullopt, "growth"};
}

// `per_booking` messages in each of `bookings` bookings, interleaved as real traffic would be.
void fill(Engine& engine, std::size_t bookings, std::size_t per_booking) {
  std::vector<Request> batch;
  batch.reserve(kFillBatch);
  const std::size_t total = bookings * per_booking;
  for (std::size_t i = 0; i < total; ++i) {
    batch.push_back(send_request("G" + std::to_string(i % bookings), i));
    if (batch.size() == kFillBatch || i + 1 == total) {
      engine.handle(batch);
      batch.clear();
    }
  }
}

struct Latency {
  double p50_us = 0, p99_us = 0, p999_us = 0;
};

Latency probe(Engine& engine, std::size_t bookings, std::size_t per_booking, bool scroll_back) {
  std::mt19937_64 rng(42);
  std::vector<double> us;
  us.reserve(kProbes);
  for (std::size_t i = 0; i < kProbes; ++i) {
    const std::string booking = "G" + std::to_string(rng() % bookings);
    std::string body = R"({"limit":50})";
    if (scroll_back && per_booking > 50) {
      body = R"({"limit":50,"before_seq":)" + std::to_string(1 + 50 + rng() % (per_booking - 50)) + "}";
    }
    const std::vector<Request> request{Request{"navietakie/v1/bookings/" + booking + "/get_message", body,
                                               std::string("r/growth"), std::string("c"), "growth"}};
    const auto start = Clock::now();
    auto out = engine.handle(request);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    if (out.size() != 1 || out[0].payload.rfind(R"({"ok":true)", 0) != 0) {
      std::fprintf(stderr, "bad get_message reply: %s\n", out.empty() ? "(none)" : out[0].payload.c_str());
      std::exit(1);
    }
  }
  std::sort(us.begin(), us.end());
  auto at = [&](double p) { return us[static_cast<std::size_t>(p * static_cast<double>(us.size() - 1))]; };
  return Latency{at(0.50), at(0.99), at(0.999)};
}

struct Row {
  std::string name;
  std::size_t messages;
  Latency newest;
  Latency scroll;
  double bytes_per_message;
  double fill_s;
};

Row measure(const std::filesystem::path& dir, const std::string& name, std::size_t bookings, std::size_t per_booking) {
  std::filesystem::remove_all(dir);
  Row row{name, bookings * per_booking, {}, {}, 0, 0};
  {
    // Filled without fsync (the layout on disk is the same); measured reads do not sync.
    auto store = open_lmdb_store(LmdbOptions{dir.string(), std::size_t{16} << 30, SyncMode::nosync});
    Engine engine(*store, EngineOptions{});
    const auto start = Clock::now();
    fill(engine, bookings, per_booking);
    row.fill_s = std::chrono::duration<double>(Clock::now() - start).count();
    row.newest = probe(engine, bookings, per_booking, false);
    row.scroll = probe(engine, bookings, per_booking, true);
  }
  std::uintmax_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file()) bytes += entry.file_size();
  }
  row.bytes_per_message = static_cast<double>(bytes) / static_cast<double>(row.messages);
  std::filesystem::remove_all(dir);
  std::printf(
      "%-28s messages=%-8zu newest page p50=%6.0f us p99=%6.0f us | older page p50=%6.0f us p99=%6.0f us | "
      "%.0f bytes/message on disk (fill %.1f s)\n",
      row.name.c_str(), row.messages, row.newest.p50_us, row.newest.p99_us, row.scroll.p50_us, row.scroll.p99_us,
      row.bytes_per_message, row.fill_s);
  std::fflush(stdout);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t max = 1000000;
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("navietakie-growth-" + std::to_string(getpid()));
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--max")
      max = std::stoul(argv[i + 1]);
    else if (flag == "--dir")
      dir = argv[i + 1];
  }
  set_log_level(LogLevel::error);
  std::vector<Row> rows;
  for (std::size_t n = 1000; n <= max; n *= 100) rows.push_back(measure(dir, "one booking", 1, n));
  if (max >= 1000000 && rows.back().messages != 1000000) rows.push_back(measure(dir, "one booking", 1, 1000000));
  // 10^4 bookings sharing the store, 100 messages each (or fewer with a small --max).
  const std::size_t per = std::max<std::size_t>(1, std::min<std::size_t>(100, max / 10000));
  rows.push_back(measure(dir, "10000 bookings", 10000, per));

  std::printf("{");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::printf(
        "%s\"%s_%zu\":{\"messages\":%zu,\"newest_p50_us\":%.0f,\"newest_p99_us\":%.0f,\"newest_p999_us\":%.0f,"
        "\"older_p50_us\":%.0f,\"older_p99_us\":%.0f,\"bytes_per_message\":%.0f}",
        i ? "," : "", r.name == "one booking" ? "one_booking" : "bookings_10000", r.messages, r.messages,
        r.newest.p50_us, r.newest.p99_us, r.newest.p999_us, r.scroll.p50_us, r.scroll.p99_us, r.bytes_per_message);
  }
  std::printf("}\n");
  return 0;
}
