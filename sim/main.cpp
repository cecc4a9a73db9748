// navietakie-sim: plays N bookings (a driver and a passenger client each) against a running
// navietakie, verifies every reply and event, and reports throughput and latency. The demo and
// soak tool, and the load generator of the benchmark. See --help.
#include <sys/resource.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "bridge/paho_compat.hpp"
#include "sim/options.hpp"
#include "sim/report.hpp"
#include "sim/run.hpp"
#include "sim/shards.hpp"

namespace {

using namespace navietakie::sim;

std::atomic<int> g_signals{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free counter");

void on_signal(int) { g_signals.fetch_add(1); }

constexpr int kExitSetup = 3;

// Two thousand connections need more descriptors than the usual soft limit of 1024.
void raise_descriptor_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// Every 5 s of traffic, one line on stderr.
void print_progress(const ProgressSnapshot& p, ProgressSnapshot& last) {
  if (p.elapsed_s - last.elapsed_s < 4.99) return;
  const double rate = static_cast<double>(p.confirmed - last.confirmed) / (p.elapsed_s - last.elapsed_s);
  char line[200];
  std::snprintf(line, sizeof line,
                "navietakie-sim: [%6.1f s] sent %llu, confirmed %llu, events %llu, %.0f msg/s, violations %llu",
                p.elapsed_s, static_cast<unsigned long long>(p.sent), static_cast<unsigned long long>(p.confirmed),
                static_cast<unsigned long long>(p.events), rate, static_cast<unsigned long long>(p.violations));
  std::cerr << line << "\n";
  last = p;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_options(argc, argv);
  if (!parsed.options) return parsed.exit_code;
  const SimOptions options = *parsed.options;
  raise_descriptor_limit();
  navietakie::quiet_paho_trace();  // Paho C's per-call trace bookkeeping: CPU the simulated clients need
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    RunOutcome outcome;
    if (options.processes > 1) {
      outcome = run_sharded(options, g_signals);
    } else {
      ProgressSnapshot last;
      Run run(options, g_signals, [&](const ProgressSnapshot& p) {
        if (!options.quiet) print_progress(p, last);
      });
      outcome = run.execute();
    }
    if (!outcome.stats) return outcome.exit_code;
    // With --json, stdout carries only the JSON line; the summary goes to stderr.
    print_summary(options.json ? std::cerr : std::cout, *outcome.stats, outcome.facts);
    if (options.json) std::cout << summary_json(*outcome.stats, outcome.facts).dump() << std::endl;
    return outcome.exit_code;
  } catch (const std::exception& e) {
    std::cerr << "navietakie-sim: fatal: " << e.what() << "\n";
    return kExitSetup;
  }
}
