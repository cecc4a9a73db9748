// One simulator process's run, from connecting its clients to the final checks: setup (connect,
// subscribe, online, baseline) -> traffic (until --duration, --messages or a signal) -> drain ->
// final reads -> disconnect. Its bookings are all of them, or one shard's when --processes splits
// the run (see shards.hpp).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sim/options.hpp"
#include "sim/report.hpp"
#include "sim/stats.hpp"
#include "sim/worker.hpp"

namespace navietakie::sim {

struct ProgressSnapshot {
  double elapsed_s = 0;  // since traffic started
  std::uint64_t sent = 0;
  std::uint64_t confirmed = 0;
  std::uint64_t events = 0;
  std::uint64_t violations = 0;
};

struct RunOutcome {
  int exit_code = 0;              // 0 ok, 1 violations, 2 usage (bad secret file), 3 setup failed
  std::optional<RunStats> stats;  // unset when the run never started
  RunFacts facts;
};

class Run {
 public:
  // `signals` counts SIGINT / SIGTERM: the first stops the traffic, another cuts the drain short.
  // `on_progress` is called about once a second during the traffic.
  Run(SimOptions options, const std::atomic<int>& signals, std::function<void(const ProgressSnapshot&)> on_progress);
  ~Run();
  RunOutcome execute();

 private:
  int setup();
  void set_phase(Phase phase);
  bool wait_idle(Clock::time_point deadline, int signals_seen);
  void traffic();
  std::vector<ClientLink*> all_links();
  void log(const std::string& line) const;

  SimOptions options_;
  const std::atomic<int>& signals_;
  std::function<void(const ProgressSnapshot&)> on_progress_;
  RunControl control_;
  std::vector<std::unique_ptr<Worker>> workers_;
  Clock::time_point traffic_start_;
  Clock::time_point traffic_stop_;
  bool interrupted_ = false;
};

}  // namespace navietakie::sim
