#include "sim/run.hpp"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <mqtt/async_client.h>
#include <random>
#include <thread>

#include "auth/jwt.hpp"
#include "core/topics.hpp"
#include "sim/fleet.hpp"

namespace navietakie::sim {
namespace {

using namespace std::chrono_literals;

constexpr int kExitUsage = 2;
constexpr int kExitSetup = 3;
constexpr auto kProgressEvery = 1s;
constexpr auto kPoll = 20ms;
constexpr int kPahoBuffer = 100000;  // Paho's default offline buffer holds only 100 messages

std::int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::chrono::microseconds from_seconds(double s) {
  return std::chrono::microseconds(static_cast<std::int64_t>(s * 1e6));
}

}  // namespace

Run::Run(SimOptions options, const std::atomic<int>& signals, std::function<void(const ProgressSnapshot&)> on_progress)
    : options_(std::move(options)), signals_(signals), on_progress_(std::move(on_progress)) {}

Run::~Run() = default;

void Run::log(const std::string& line) const {
  if (options_.quiet) return;
  std::cerr << "navietakie-sim: ";
  if (options_.shard_count > 1)
    std::cerr << "[process " << options_.shard_index + 1 << "/" << options_.shard_count << "] ";
  std::cerr << line << "\n";
}

std::vector<ClientLink*> Run::all_links() {
  std::vector<ClientLink*> links;
  for (auto& w : workers_) {
    for (auto& ref : w->participants()) links.push_back(ref.link);
  }
  return links;
}

void Run::set_phase(Phase phase) {
  control_.phase.store(phase, std::memory_order_release);
  for (auto& w : workers_) w->phase_changed();
}

// Waits until every worker is idle, `deadline` passes, or a (further) signal comes.
bool Run::wait_idle(Clock::time_point deadline, int signals_seen) {
  while (Clock::now() < deadline && signals_.load() <= signals_seen) {
    std::this_thread::sleep_for(kPoll);
    if (std::all_of(workers_.begin(), workers_.end(), [](const auto& w) { return w->idle(); })) return true;
  }
  return false;
}

int Run::setup() {
  std::string secret;
  if (!options_.secret_file.empty()) {
    try {
      secret = read_secret_file(options_.secret_file);
    } catch (const std::exception& e) {
      std::cerr << "navietakie-sim: " << e.what() << "\n";
      return kExitUsage;
    }
  }
  control_.message_budget = options_.messages;
  std::mt19937_64 seeds(options_.seed + options_.shard_index);
  std::vector<std::size_t> mine;
  for (std::size_t i = options_.shard_index; i < options_.bookings; i += options_.shard_count) mine.push_back(i);
  const std::size_t worker_count = std::max<std::size_t>(1, std::min(options_.workers, mine.size()));
  for (std::size_t i = 0; i < worker_count; ++i) {
    workers_.push_back(std::make_unique<Worker>(options_, control_, seeds()));
  }
  const auto make_client = [this](const std::string& client_id) -> std::unique_ptr<mqtt::iasync_client> {
    return std::make_unique<mqtt::async_client>(options_.url, client_id,
                                                mqtt::create_options(MQTTVERSION_5, kPahoBuffer));
  };
  for (std::size_t k = 0; k < mine.size(); ++k) {
    workers_[k % worker_count]->add_booking(options_.booking_prefix + "-" + std::to_string(mine[k]), make_client);
  }

  // A token per participant lives through the run and its drain, at most a day: the broker's
  // default auth_max_token_ttl_s refuses longer ones.
  const double run_bound = options_.duration_s > 0 ? options_.duration_s + 3600 : 86400;
  const std::int64_t expires = unix_seconds() + static_cast<std::int64_t>(std::min(run_bound, 86400.0));
  const Topics topics(options_.prefix);
  std::vector<ConnectPlan> connects;
  std::vector<SubscribePlan> subscribes;
  for (auto& w : workers_) {
    for (const auto& ref : w->participants()) {
      std::optional<std::pair<std::string, std::string>> login;
      if (!secret.empty()) {
        const std::string subject = (ref.role == Role::driver ? "drv-" : "pax-") + ref.booking;
        Identity identity{ref.role == Role::driver ? Principal::driver : Principal::passenger, subject, ref.booking};
        login = std::make_pair(subject, mint_token(identity, secret, expires));
      }
      connects.push_back({ref.link, participant_connect_options(options_, topics.request(ref.booking, Action::presence),
                                                                ref.role, ref.link->id(), login)});
      subscribes.push_back({ref.link, w->subscriptions(ref.booking, ref.link->id())});
    }
  }
  const auto timeout = std::chrono::milliseconds(static_cast<std::int64_t>(options_.connect_timeout_s * 1000));
  const auto started = Clock::now();
  auto errors = connect_all(connects, options_.connect_parallel, timeout);
  const auto connected = Clock::now();
  if (errors.empty()) errors = subscribe_all(subscribes, options_.connect_parallel, timeout);
  if (!errors.empty()) {
    std::cerr << "navietakie-sim: " << errors.size() << " of " << connects.size()
              << " clients could not be set up against " << options_.url << "; first: " << errors.front().client_id
              << ": " << errors.front().reason << "\n";
    disconnect_all(all_links(), options_.connect_parallel, 1s);
    return kExitSetup;
  }
  int receive_maximum = 65535;
  for (const auto& plan : connects) receive_maximum = std::min(receive_maximum, plan.link->receive_maximum());
  log(std::to_string(connects.size()) + " clients connected in " +
      std::to_string(static_cast<int>(seconds_between(started, connected) * 1000)) + " ms, subscribed in " +
      std::to_string(static_cast<int>(seconds_between(connected, Clock::now()) * 1000)) +
      " ms (broker receive maximum " + std::to_string(receive_maximum) + ")");
  // With authentication on, a client may publish only its booking's request topics, so the Paho
  // wake-up publish (see ClientLink::window_full) is not available: keep each client's requests in
  // flight (window + a history read + a call action + a presence or final read) below the broker's
  // window instead, so that it never fills.
  const auto headroom = static_cast<std::size_t>(std::max(1, receive_maximum - 4));
  if (!secret.empty() && options_.window > headroom) {
    log("--window " + std::to_string(options_.window) + " lowered to " + std::to_string(headroom) +
        " to stay within the broker's receive maximum");
    options_.window = headroom;
  }
  return 0;
}

void Run::traffic() {
  traffic_start_ = Clock::now();
  set_phase(Phase::running);
  const auto end =
      options_.duration_s > 0 ? traffic_start_ + from_seconds(options_.duration_s) : Clock::time_point::max();
  auto next_progress = traffic_start_ + kProgressEvery;
  while (true) {
    std::this_thread::sleep_for(kPoll);
    const auto now = Clock::now();
    if (signals_.load() > 0) {
      interrupted_ = true;
      break;
    }
    if (now >= end || control_.messages_exhausted.load()) break;
    if (now >= next_progress && on_progress_) {
      on_progress_({seconds_between(traffic_start_, now), control_.progress.sent.load(),
                    control_.progress.confirmed.load(), control_.progress.events.load(),
                    control_.progress.violations.load()});
      next_progress += kProgressEvery;
    }
  }
  traffic_stop_ = Clock::now();
}

RunOutcome Run::execute() {
  RunOutcome outcome;
  if (int rc = setup(); rc != 0) {
    outcome.exit_code = rc;
    return outcome;
  }
  for (auto& w : workers_) w->start();
  // With resends a request may take all its tries (and a catch-up read one more) to be answered.
  const auto reply_wait = from_seconds(
      std::max(options_.reply_timeout_s, options_.resend_after_s * (options_.resend_tries + 1) + options_.gap_wait_s));
  const auto drain_wait = std::max<std::chrono::microseconds>(5s, reply_wait);
  // Setup: every client declared online and read its booking's last seq (or timed out trying).
  wait_idle(Clock::now() + reply_wait + 2s, 0);
  if (signals_.load() == 0) {
    traffic();
  } else {
    interrupted_ = true;
    traffic_start_ = traffic_stop_ = Clock::now();
  }
  log("stopping: draining outstanding replies and events");
  const int signals_at_stop = signals_.load();
  set_phase(Phase::draining);
  wait_idle(Clock::now() + drain_wait, signals_at_stop);
  set_phase(Phase::finalizing);
  wait_idle(Clock::now() + drain_wait, signals_at_stop);
  set_phase(Phase::done);
  for (auto& w : workers_) w->join();
  disconnect_all(all_links(), options_.connect_parallel, 2s);

  RunStats total(control_.progress);
  for (const auto& w : workers_) total.merge(w->stats());
  outcome.facts.bookings = options_.bookings;
  outcome.facts.clients = options_.bookings * 2;
  outcome.facts.duration_s = seconds_between(traffic_start_, traffic_stop_);
  if (total.first_send && total.last_confirm) {
    outcome.facts.active_s = seconds_between(*total.first_send, *total.last_confirm);
  }
  outcome.facts.interrupted = interrupted_;
  outcome.exit_code = total.violations.empty() ? 0 : 1;
  outcome.stats = std::move(total);
  return outcome;
}

}  // namespace navietakie::sim
