// The end of a run, for people (a summary) and for scripts (one JSON object).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <ostream>

#include "sim/stats.hpp"

namespace navietakie::sim {

struct RunFacts {
  std::size_t bookings = 0;
  std::size_t clients = 0;
  double duration_s = 0;  // traffic: from the first send slot to the stop
  double active_s = 0;    // first message sent -> last message confirmed
  bool interrupted = false;
};

// msgs_per_s = confirmed messages / active sending time.
double messages_per_second(const RunStats& stats, const RunFacts& facts);

nlohmann::ordered_json summary_json(const RunStats& stats, const RunFacts& facts);
void print_summary(std::ostream& out, const RunStats& stats, const RunFacts& facts);

}  // namespace navietakie::sim
