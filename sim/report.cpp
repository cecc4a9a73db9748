#include "sim/report.hpp"

#include <cmath>
#include <cstdio>
#include <string>

namespace navietakie::sim {
namespace {

using nlohmann::ordered_json;

ordered_json latency_json(const LatencyHistogram& h) {
  return ordered_json{{"count", h.count()},
                      {"p50", h.percentile(0.5)},
                      {"p99", h.percentile(0.99)},
                      {"p999", h.percentile(0.999)},
                      {"max", h.max()}};
}

std::string latency_line(const char* name, const LatencyHistogram& h) {
  char line[200];
  std::snprintf(line, sizeof line, "  %-26s n=%-9llu p50 %8.2f ms  p99 %8.2f ms  p99.9 %8.2f ms  max %8.2f ms\n", name,
                static_cast<unsigned long long>(h.count()), static_cast<double>(h.percentile(0.5)) / 1000.0,
                static_cast<double>(h.percentile(0.99)) / 1000.0, static_cast<double>(h.percentile(0.999)) / 1000.0,
                static_cast<double>(h.max()) / 1000.0);
  return line;
}

double round2(double v) { return std::round(v * 100.0) / 100.0; }

}  // namespace

double messages_per_second(const RunStats& stats, const RunFacts& facts) {
  const double seconds = facts.active_s > 0 ? facts.active_s : facts.duration_s;
  return seconds > 0 ? static_cast<double>(stats.confirmed) / seconds : 0.0;
}

ordered_json summary_json(const RunStats& stats, const RunFacts& facts) {
  ordered_json violations = ordered_json::object();
  for (const auto& [kind, n] : stats.violations) violations[kind] = n;
  ordered_json j;
  j["bookings"] = facts.bookings;
  j["clients"] = facts.clients;
  j["duration_s"] = round2(facts.duration_s);
  j["active_s"] = round2(facts.active_s);
  j["sent"] = stats.sent;
  j["confirmed"] = stats.confirmed;
  j["events_received"] = stats.events_received;
  j["msgs_per_s"] = round2(messages_per_second(stats, facts));
  j["reply_latency_us"] = latency_json(stats.reply_latency);
  j["event_latency_us"] = latency_json(stats.event_latency);
  j["history"] = ordered_json{{"count", stats.history_fetches},
                              {"p50_us", stats.history_latency.percentile(0.5)},
                              {"p99_us", stats.history_latency.percentile(0.99)},
                              {"p999_us", stats.history_latency.percentile(0.999)},
                              {"max_us", stats.history_latency.max()}};
  j["calls"] = ordered_json{{"started", stats.calls.started},
                            {"accepted", stats.calls.accepted},
                            {"declined", stats.calls.declined},
                            {"missed", stats.calls.missed},
                            {"completed", stats.calls.completed},
                            {"cancelled", stats.calls.cancelled},
                            {"busy", stats.calls.busy},
                            {"ring_latency_us", latency_json(stats.ring_latency)},
                            {"connect_latency_us", latency_json(stats.connect_latency)}};
  j["redelivered"] = stats.redelivered;
  j["late_replies"] = stats.late_replies;
  for (const auto& [name, field] : FaultCounters::fields) j[name] = stats.faults.*field;
  j["interrupted"] = facts.interrupted;
  j["violations"] = violations;
  j["ok"] = stats.violations.empty();
  return j;
}

void print_summary(std::ostream& out, const RunStats& stats, const RunFacts& facts) {
  char line[300];
  std::snprintf(line, sizeof line,
                "navietakie-sim: %zu bookings (%zu clients), %.1f s of traffic%s\n"
                "  messages: %llu sent, %llu confirmed, %llu events received, %.0f msg/s over %.2f s active\n",
                facts.bookings, facts.clients, facts.duration_s, facts.interrupted ? " (interrupted)" : "",
                static_cast<unsigned long long>(stats.sent), static_cast<unsigned long long>(stats.confirmed),
                static_cast<unsigned long long>(stats.events_received), messages_per_second(stats, facts),
                facts.active_s);
  out << line;
  std::snprintf(
      line, sizeof line,
      "  history reads: %llu; calls: %llu started, %llu accepted, %llu declined, %llu missed, "
      "%llu completed, %llu cancelled, %llu busy\n"
      "  redelivered (QoS 1, allowed): %llu; late replies: %llu\n",
      static_cast<unsigned long long>(stats.history_fetches), static_cast<unsigned long long>(stats.calls.started),
      static_cast<unsigned long long>(stats.calls.accepted), static_cast<unsigned long long>(stats.calls.declined),
      static_cast<unsigned long long>(stats.calls.missed), static_cast<unsigned long long>(stats.calls.completed),
      static_cast<unsigned long long>(stats.calls.cancelled), static_cast<unsigned long long>(stats.calls.busy),
      static_cast<unsigned long long>(stats.redelivered), static_cast<unsigned long long>(stats.late_replies));
  out << line;
  std::string faults;
  for (const auto& [name, field] : FaultCounters::fields) {
    faults += (faults.empty() ? "  " : ", ") + std::string(name) + " " + std::to_string(stats.faults.*field);
  }
  out << faults << " (shared subscriptions / faults, allowed)\n";
  out << latency_line("send -> reply", stats.reply_latency);
  out << latency_line("send -> event (other side)", stats.event_latency);
  out << latency_line("history read", stats.history_latency);
  out << latency_line("call start -> ringing", stats.ring_latency);
  out << latency_line("call accept -> connected", stats.connect_latency);
  if (stats.violations.empty()) {
    out << "  verified: no violations\n";
    return;
  }
  out << "  VIOLATIONS:\n";
  for (const auto& [kind, n] : stats.violations) {
    out << "    " << kind << ": " << n << "\n";
    auto examples = stats.examples.find(kind);
    if (examples == stats.examples.end()) continue;
    for (const auto& e : examples->second) out << "      e.g. " << e << "\n";
  }
}

}  // namespace navietakie::sim
