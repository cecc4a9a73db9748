// --processes P: the run split over P child processes, each playing every P-th booking. Paho C runs
// one receive thread per process for all of its clients, and its per-packet work grows with the
// number of connections, so one process tops out at roughly a thousand messages a second with two
// thousand connections on a small machine. The parent forks the children before any Paho client
// exists, forwards SIGINT / SIGTERM, adds up their progress and merges their results, which they
// hand back as JSON lines on a pipe.
#pragma once

#include <atomic>

#include "sim/options.hpp"
#include "sim/run.hpp"

namespace navietakie::sim {

// Runs `options.processes` children and returns the merged outcome (exit code 3 if any child could
// not set up, else 1 on any violation, else 0).
RunOutcome run_sharded(const SimOptions& options, const std::atomic<int>& signals);

// The child's report, one JSON object (and its reading back).
nlohmann::json outcome_to_json(const RunOutcome& outcome);
bool merge_outcome_json(const nlohmann::json& j, RunStats& stats, RunFacts& facts);

}  // namespace navietakie::sim
