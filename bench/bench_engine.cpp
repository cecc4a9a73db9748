// Handler + store throughput without a broker: what group commit buys at each batch size.
// Usage: bench_engine [--messages N] [--dir DIR] [--postgres-url URL]
// (prints one line per configuration, then JSON). With --postgres-url, the PostgreSQL backend
// instead of LMDB, durable as the server is configured (synchronous_commit); each run writes
// bookings of its own, so the database need not be empty.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/engine.hpp"
#include "core/log.hpp"
#include "store/postgres.hpp"

namespace {

using namespace navietakie;

struct Result {
  std::string sync;
  std::size_t batch;
  double msgs_per_s;
};

Result run(Store& store, const std::string& label, const std::string& bookings, std::size_t batch_size,
           std::size_t total) {
  Engine engine(store, EngineOptions{});
  std::vector<Request> batch;
  const std::string text(100, 'x');
  auto start = std::chrono::steady_clock::now();
  for (std::size_t sent = 0; sent < total;) {
    batch.clear();
    for (std::size_t i = 0; i < batch_size && sent < total; ++i, ++sent) {
      batch.push_back(Request{"navietakie/v1/bookings/" + bookings + std::to_string(sent % 100) + "/send_message",
                              R"({"sender":"driver","text":")" + text + R"("})",
                              std::string("navietakie/v1/replies/bench/1"), std::string("c"), "bench"});
    }
    auto out = engine.handle(batch);
    if (out.size() != batch.size() * 2) {
      std::fprintf(stderr, "unexpected publish count %zu\n", out.size());
      std::exit(1);
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Result{label, batch_size, static_cast<double>(total) / secs};
}

Result run_lmdb(const std::filesystem::path& dir, SyncMode sync, std::size_t batch_size, std::size_t total) {
  std::filesystem::remove_all(dir);
  auto store = open_lmdb_store(LmdbOptions{dir.string(), std::size_t{4} << 30, sync});
  Result result = run(*store, sync == SyncMode::full ? "full" : "nosync", "BK", batch_size, total);
  store.reset();
  std::filesystem::remove_all(dir);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t total = 20000;
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("navietakie-bench-" + std::to_string(getpid()));
  std::string postgres_url;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--messages")
      total = std::stoul(argv[i + 1]);
    else if (flag == "--dir")
      dir = argv[i + 1];
    else if (flag == "--postgres-url")
      postgres_url = argv[i + 1];
  }
  set_log_level(LogLevel::error);
  std::vector<Result> results;
  auto print = [&] {
    std::printf("sync=%-8s batch=%-4zu send_message/s=%.0f\n", results.back().sync.c_str(), results.back().batch,
                results.back().msgs_per_s);
    std::fflush(stdout);
  };
  if (!postgres_url.empty()) {
    auto store = open_postgres_store(PostgresOptions{postgres_url, 500, {}});
    const std::string run_id = "B" + std::to_string(getpid()) + "-";
    for (std::size_t batch : {std::size_t{1}, std::size_t{16}, std::size_t{64}, std::size_t{256}}) {
      std::size_t n = batch == 1 ? std::min<std::size_t>(total, 5000) : total;
      results.push_back(run(*store, "postgres", run_id + std::to_string(batch) + "-", batch, n));
      print();
    }
  } else {
    for (SyncMode sync : {SyncMode::full, SyncMode::nosync}) {
      for (std::size_t batch : {std::size_t{1}, std::size_t{16}, std::size_t{64}, std::size_t{256}}) {
        std::size_t n = (sync == SyncMode::full && batch == 1) ? std::min<std::size_t>(total, 5000) : total;
        results.push_back(run_lmdb(dir, sync, batch, n));
        print();
      }
    }
  }
  std::printf("{");
  for (std::size_t i = 0; i < results.size(); ++i) {
    std::printf("%s\"%s_batch%zu\":%.0f", i ? "," : "", results[i].sync.c_str(), results[i].batch,
                results[i].msgs_per_s);
  }
  std::printf("}\n");
  return 0;
}
