// The engine alone (handler + LMDB store, no broker): what one send_message costs at batch 1 and
// 256 requests per Engine::handle (one commit each), full sync and nosync. Per send_message:
//   ns_per_send           wall time
//   cpu_us_per_send       process CPU time (scripts/bench reports full sync/256 as engine_us_per_send)
//   allocs_per_send       calls of operator new (bench/alloc_counter.cpp replaces it to count them;
//   alloc_bytes_per_send  LMDB's own malloc calls are not C++ allocations and are not counted)
// Each run opens a fresh store in a temp dir and removes it after. Requests have the shape of
// bench_engine's: ~100 bytes of text, an MQTT v5 reply address, 100 bookings round robin.
//
//   bench_engine_micro --benchmark_filter='BM_send_message_full_sync/256$' --benchmark_format=json
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "bench/alloc_counter.hpp"
#include "core/engine.hpp"
#include "core/log.hpp"

namespace {

using namespace navietakie;

constexpr std::size_t kBookings = 100;

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// The batches of one cycle through the bookings: batch k holds requests for bookings
// (k * batch_size + i) % 100, so that every booking gets the same share however batches fall.
// Built before the timed loop; the engine takes them by const reference, so they are reused.
std::vector<std::vector<Request>> request_cycle(std::size_t batch_size) {
  const std::size_t cycle = kBookings / std::gcd(batch_size, kBookings);
  const std::string payload = R"({"sender":"driver","text":")" + std::string(100, 'x') + R"("})";
  std::vector<std::vector<Request>> batches(cycle);
  for (std::size_t k = 0; k < cycle; ++k) {
    for (std::size_t i = 0; i < batch_size; ++i) {
      const std::size_t booking = (k * batch_size + i) % kBookings;
      batches[k].push_back(Request{"navietakie/v1/bookings/BK" + std::to_string(booking) + "/send_message", payload,
                                   std::string("navietakie/v1/replies/bench/1"), std::string("c"), "bench"});
    }
  }
  return batches;
}

// A temp data dir, removed with everything in it when the run ends.
class TempDir {
 public:
  TempDir() {
    static int runs = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("navietakie-micro-" + std::to_string(getpid()) + "-" + std::to_string(++runs));
    std::filesystem::remove_all(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void send_messages(benchmark::State& state, SyncMode sync) {
  set_log_level(LogLevel::error);
  const auto batch_size = static_cast<std::size_t>(state.range(0));
  const auto batches = request_cycle(batch_size);
  TempDir dir;
  std::uint64_t sends = 0;
  {
    auto store = open_lmdb_store(LmdbOptions{dir.path().string(), std::size_t{4} << 30, sync});
    Engine engine(*store, EngineOptions{});
    std::size_t next = 0;

    const bench::AllocCount allocs_before = bench::allocations();
    const double cpu_before = process_cpu_seconds();
    const auto wall_before = std::chrono::steady_clock::now();
    for (auto _ : state) {
      const auto& batch = batches[next];
      next = (next + 1) % batches.size();
      auto out = engine.handle(batch);
      // A reply and an event per request, or the engine refused something: not what is measured.
      if (out.size() != batch.size() * 2) {
        state.SkipWithError("unexpected publish count");
        break;
      }
      benchmark::DoNotOptimize(out.data());
      sends += batch.size();
    }
    const double wall_ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - wall_before).count();
    const double cpu_s = process_cpu_seconds() - cpu_before;
    const bench::AllocCount allocs_after = bench::allocations();
    const auto allocs = static_cast<double>(allocs_after.calls - allocs_before.calls);
    const auto bytes = static_cast<double>(allocs_after.bytes - allocs_before.bytes);

    if (sends == 0) return;
    const auto n = static_cast<double>(sends);
    state.counters["ns_per_send"] = wall_ns / n;
    state.counters["cpu_us_per_send"] = cpu_s * 1e6 / n;
    state.counters["allocs_per_send"] = allocs / n;
    state.counters["alloc_bytes_per_send"] = bytes / n;
  }  // the store closes (and, nosync, flushes) before its dir goes
}

void BM_send_message_full_sync(benchmark::State& state) { send_messages(state, SyncMode::full); }
void BM_send_message_nosync(benchmark::State& state) { send_messages(state, SyncMode::nosync); }

// Registered without MinTime or UseRealTime: either would add a suffix to the names
// (".../256/min_time:0.500/real_time"), and scripts/bench selects `BM_send_message_full_sync/256$`.
BENCHMARK(BM_send_message_full_sync)->Arg(1)->Arg(256)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_send_message_nosync)->Arg(1)->Arg(256)->Unit(benchmark::kMicrosecond);

}  // namespace

// Google Benchmark runs each until its CPU time reaches the minimum; full sync at batch 1 spends
// most of its wall time waiting for the disk, so the default 0.5 s of CPU would take many seconds
// there. A shorter default (a --benchmark_min_time given on the command line still wins) keeps the
// whole run to a few seconds.
int main(int argc, char** argv) {
  std::vector<char*> args(argv, argv + argc);
  std::string min_time = "--benchmark_min_time=0.2";
  if (std::none_of(args.begin(), args.end(),
                   [](const char* a) { return std::string_view(a).rfind("--benchmark_min_time", 0) == 0; })) {
    args.push_back(min_time.data());
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
