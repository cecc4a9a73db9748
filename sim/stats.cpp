#include "sim/stats.hpp"

#include <algorithm>

namespace navietakie::sim {
namespace {

constexpr std::size_t kExamplesPerKind = 3;

}  // namespace

void RunStats::violation(std::string_view kind, std::string detail, std::uint64_t count) {
  if (count == 0) return;
  progress_->violations.fetch_add(count, std::memory_order_relaxed);
  auto it = violations.try_emplace(std::string(kind), 0).first;
  it->second += count;
  auto& list = examples[it->first];
  if (list.size() < kExamplesPerKind) list.push_back(std::move(detail));
}

void RunStats::message_sent(Clock::time_point at) {
  progress_->sent.fetch_add(1, std::memory_order_relaxed);
  ++sent;
  if (!first_send) first_send = at;
}

void RunStats::message_confirmed(Clock::time_point at) {
  progress_->confirmed.fetch_add(1, std::memory_order_relaxed);
  ++confirmed;
  if (!last_confirm || *last_confirm < at) last_confirm = at;
}

void RunStats::merge(const RunStats& other) {
  sent += other.sent;
  confirmed += other.confirmed;
  events_received += other.events_received;
  redelivered += other.redelivered;
  late_replies += other.late_replies;
  history_fetches += other.history_fetches;
  calls.started += other.calls.started;
  calls.accepted += other.calls.accepted;
  calls.declined += other.calls.declined;
  calls.missed += other.calls.missed;
  calls.completed += other.calls.completed;
  calls.cancelled += other.calls.cancelled;
  calls.busy += other.calls.busy;
  for (const auto& [name, field] : FaultCounters::fields) faults.*field += other.faults.*field;
  reply_latency.merge(other.reply_latency);
  event_latency.merge(other.event_latency);
  history_latency.merge(other.history_latency);
  ring_latency.merge(other.ring_latency);
  connect_latency.merge(other.connect_latency);
  for (const auto& [kind, n] : other.violations) violations[kind] += n;
  for (const auto& [kind, list] : other.examples) {
    auto& mine = examples[kind];
    for (const auto& e : list) {
      if (mine.size() < kExamplesPerKind) mine.push_back(e);
    }
  }
  if (other.first_send && (!first_send || *other.first_send < *first_send)) first_send = other.first_send;
  if (other.last_confirm && (!last_confirm || *last_confirm < *other.last_confirm)) last_confirm = other.last_confirm;
}

}  // namespace navietakie::sim
