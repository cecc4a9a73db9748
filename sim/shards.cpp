#include "sim/shards.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace navietakie::sim {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr int kExitSetup = 3;
constexpr auto kProgressEvery = 5s;

std::int64_t to_ns(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// steady_clock is CLOCK_MONOTONIC, one clock for every process of the machine.
Clock::time_point from_ns(std::int64_t ns) {
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

json histogram_json(const LatencyHistogram& h) {
  json buckets = json::array();
  for (const auto& [bucket, count] : h.nonzero_buckets()) buckets.push_back({bucket, count});
  return {{"max", h.max()}, {"buckets", buckets}};
}

void read_histogram(const json& j, LatencyHistogram& h) {
  const auto max = j.at("max").get<std::uint64_t>();
  for (const auto& b : j.at("buckets")) h.add_bucket(b.at(0).get<std::size_t>(), b.at(1).get<std::uint64_t>(), max);
}

json stats_json(const RunStats& s) {
  json j;
  j["sent"] = s.sent;
  j["confirmed"] = s.confirmed;
  j["events_received"] = s.events_received;
  j["redelivered"] = s.redelivered;
  j["late_replies"] = s.late_replies;
  j["history_fetches"] = s.history_fetches;
  j["calls"] = {s.calls.started,   s.calls.accepted,  s.calls.declined, s.calls.missed,
                s.calls.completed, s.calls.cancelled, s.calls.busy};
  for (const auto& [name, field] : FaultCounters::fields) j["faults"][name] = s.faults.*field;
  j["reply"] = histogram_json(s.reply_latency);
  j["event"] = histogram_json(s.event_latency);
  j["history"] = histogram_json(s.history_latency);
  j["ring"] = histogram_json(s.ring_latency);
  j["connect"] = histogram_json(s.connect_latency);
  j["violations"] = s.violations;
  j["examples"] = s.examples;
  if (s.first_send) j["first_send_ns"] = to_ns(*s.first_send);
  if (s.last_confirm) j["last_confirm_ns"] = to_ns(*s.last_confirm);
  return j;
}

bool write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

struct Child {
  pid_t pid = -1;
  int fd = -1;
  std::string buffer;
  ProgressSnapshot progress;
  std::optional<json> outcome;
};

[[noreturn]] void run_child(SimOptions options, std::size_t index, int fd, const std::atomic<int>& signals) {
  // Its own process group: a terminal's Ctrl-C reaches only the parent, which forwards it once.
  setpgid(0, 0);
  const std::size_t count = options.processes;
  options.shard_index = index;
  options.shard_count = count;
  if (options.messages > 0) options.messages = options.messages / count + (index < options.messages % count ? 1 : 0);
  options.workers = std::max<std::size_t>(1, options.workers / count);
  options.json = false;
  int rc = kExitSetup;
  try {
    Run run(options, signals, [fd](const ProgressSnapshot& p) {
      json line = {{"progress", {p.elapsed_s, p.sent, p.confirmed, p.events, p.violations}}};
      write_all(fd, line.dump() + "\n");
    });
    RunOutcome outcome = run.execute();
    rc = outcome.exit_code;
    if (outcome.stats) write_all(fd, json{{"outcome", outcome_to_json(outcome)}}.dump() + "\n");
  } catch (const std::exception& e) {
    std::cerr << "navietakie-sim: [process " << index + 1 << "] fatal: " << e.what() << "\n";
  }
  ::close(fd);
  std::cout.flush();
  std::_Exit(rc);
}

void print_progress(const std::vector<Child>& children) {
  ProgressSnapshot total;
  for (const auto& c : children) {
    total.elapsed_s = std::max(total.elapsed_s, c.progress.elapsed_s);
    total.sent += c.progress.sent;
    total.confirmed += c.progress.confirmed;
    total.events += c.progress.events;
    total.violations += c.progress.violations;
  }
  char line[200];
  std::snprintf(line, sizeof line, "navietakie-sim: [%6.1f s] sent %llu, confirmed %llu, events %llu, violations %llu",
                total.elapsed_s, static_cast<unsigned long long>(total.sent),
                static_cast<unsigned long long>(total.confirmed), static_cast<unsigned long long>(total.events),
                static_cast<unsigned long long>(total.violations));
  std::cerr << line << "\n";
}

}  // namespace

json outcome_to_json(const RunOutcome& outcome) {
  json j = {{"exit_code", outcome.exit_code},
            {"duration_s", outcome.facts.duration_s},
            {"interrupted", outcome.facts.interrupted}};
  if (outcome.stats) j["stats"] = stats_json(*outcome.stats);
  return j;
}

bool merge_outcome_json(const json& j, RunStats& stats, RunFacts& facts) {
  try {
    facts.duration_s = std::max(facts.duration_s, j.at("duration_s").get<double>());
    facts.interrupted = facts.interrupted || j.at("interrupted").get<bool>();
    if (!j.contains("stats")) return true;
    const json& s = j.at("stats");
    Progress scratch;
    RunStats part(scratch);
    part.sent = s.at("sent").get<std::uint64_t>();
    part.confirmed = s.at("confirmed").get<std::uint64_t>();
    part.events_received = s.at("events_received").get<std::uint64_t>();
    part.redelivered = s.at("redelivered").get<std::uint64_t>();
    part.late_replies = s.at("late_replies").get<std::uint64_t>();
    part.history_fetches = s.at("history_fetches").get<std::uint64_t>();
    const auto calls = s.at("calls").get<std::vector<std::uint64_t>>();
    if (calls.size() != 7) return false;
    part.calls = {calls[0], calls[1], calls[2], calls[3], calls[4], calls[5], calls[6]};
    for (const auto& [name, field] : FaultCounters::fields)
      part.faults.*field = s.at("faults").at(name).get<std::uint64_t>();
    read_histogram(s.at("reply"), part.reply_latency);
    read_histogram(s.at("event"), part.event_latency);
    read_histogram(s.at("history"), part.history_latency);
    read_histogram(s.at("ring"), part.ring_latency);
    read_histogram(s.at("connect"), part.connect_latency);
    part.violations = s.at("violations").get<std::map<std::string, std::uint64_t>>();
    part.examples = s.at("examples").get<std::map<std::string, std::vector<std::string>>>();
    if (s.contains("first_send_ns")) part.first_send = from_ns(s.at("first_send_ns").get<std::int64_t>());
    if (s.contains("last_confirm_ns")) part.last_confirm = from_ns(s.at("last_confirm_ns").get<std::int64_t>());
    stats.merge(part);
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

RunOutcome run_sharded(const SimOptions& options, const std::atomic<int>& signals) {
  std::vector<Child> children(options.processes);
  for (std::size_t i = 0; i < children.size(); ++i) {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
    std::cout.flush();
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::close(fds[0]);
      for (std::size_t k = 0; k < i; ++k) ::close(children[k].fd);
      run_child(options, i, fds[1], signals);
    }
    ::close(fds[1]);
    children[i].pid = pid;
    children[i].fd = fds[0];
  }

  int forwarded = 0;
  auto next_progress = Clock::now() + kProgressEvery;
  std::vector<pollfd> polled;
  while (true) {
    for (const int s = signals.load(); forwarded < s; ++forwarded) {
      for (const auto& c : children) ::kill(c.pid, SIGTERM);
    }
    polled.clear();
    for (const auto& c : children) {
      if (c.fd >= 0) polled.push_back({c.fd, POLLIN, 0});
    }
    if (polled.empty()) break;
    if (::poll(polled.data(), polled.size(), 200) < 0 && errno != EINTR) break;
    for (auto& c : children) {
      if (c.fd < 0) continue;
      auto it = std::find_if(polled.begin(), polled.end(), [&](const pollfd& p) { return p.fd == c.fd; });
      if (it == polled.end() || (it->revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char chunk[65536];
      const ssize_t n = ::read(c.fd, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(c.fd);
        c.fd = -1;
        continue;
      }
      c.buffer.append(chunk, static_cast<std::size_t>(n));
      for (std::size_t eol; (eol = c.buffer.find('\n')) != std::string::npos;) {
        json line = json::parse(c.buffer.substr(0, eol), nullptr, false);
        c.buffer.erase(0, eol + 1);
        if (line.is_discarded() || !line.is_object()) continue;
        if (line.contains("progress")) {
          const auto& p = line["progress"];
          c.progress = {p.at(0).get<double>(), p.at(1).get<std::uint64_t>(), p.at(2).get<std::uint64_t>(),
                        p.at(3).get<std::uint64_t>(), p.at(4).get<std::uint64_t>()};
        } else if (line.contains("outcome")) {
          c.outcome = line["outcome"];
        }
      }
    }
    if (!options.quiet && Clock::now() >= next_progress) {
      print_progress(children);
      next_progress += kProgressEvery;
    }
  }

  static Progress merged;  // outlives the returned stats, which count nothing more
  RunStats total(merged);
  RunOutcome outcome;
  outcome.facts.bookings = options.bookings;
  outcome.facts.clients = options.bookings * 2;
  bool setup_failed = false;
  for (auto& c : children) {
    int status = 0;
    while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
    }
    const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : kExitSetup;
    if (!c.outcome || rc >= 2 || !merge_outcome_json(*c.outcome, total, outcome.facts)) setup_failed = true;
  }
  if (total.first_send && total.last_confirm) {
    outcome.facts.active_s = std::chrono::duration<double>(*total.last_confirm - *total.first_send).count();
  }
  if (setup_failed) {
    std::cerr << "navietakie-sim: a process could not set up or did not report\n";
    total.violation("process_failed", "a simulator process could not set up or did not report");
  }
  outcome.exit_code = setup_failed ? kExitSetup : (total.violations.empty() ? 0 : 1);
  outcome.stats = std::move(total);
  return outcome;
}

}  // namespace navietakie::sim
