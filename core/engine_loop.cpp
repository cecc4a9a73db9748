#include "core/engine_loop.hpp"

#include <algorithm>
#include <iterator>

#include "core/log.hpp"

namespace navietakie {
namespace {

void append(std::vector<Publish>& out, std::vector<Publish> more) {
  if (out.empty()) {
    out = std::move(more);
    return;
  }
  out.insert(out.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
}

}  // namespace

LoopOptions loop_options(const Settings& settings) {
  LoopOptions options;
  options.batch_max = settings.batch_max;
  options.queue_max = settings.queue_max;
  return options;
}

EngineLoop::EngineLoop(Engine& engine, EngineTransport& transport, LoopOptions options)
    : engine_(engine), transport_(transport), options_([&] {
        options.batch_max = std::max<std::size_t>(1, options.batch_max);
        options.queue_max = std::max<std::size_t>(1, options.queue_max);
        return options;
      }()) {
  results_ = engine_.start();  // on the caller's thread: a failure reaches the host's start-up
  thread_ = std::thread([this] { run(); });
}

EngineLoop::~EngineLoop() { stop(); }

void EngineLoop::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void EngineLoop::submit(std::vector<Request> requests, std::vector<std::string> disconnected) {
  if (requests.empty() && disconnected.empty()) return;
  std::vector<Request> refused;
  {
    const auto received = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& request : requests) {
      if (request.received == std::chrono::steady_clock::time_point{}) request.received = received;
      if (queued_requests_ >= options_.queue_max) {
        refused.push_back(std::move(request));
        continue;
      }
      queue_.push_back(Work{std::move(request), {}});
      ++queued_requests_;
    }
    for (auto& client_id : disconnected) queue_.push_back(Work{std::nullopt, std::move(client_id)});
    stats_.overloaded += refused.size();
  }
  if (!refused.empty()) {
    // Answered here, on the submitting thread, without waiting for the engine: the broker has
    // already acknowledged these, and the client must hear that they were not taken.
    std::vector<Publish> replies;
    for (const auto& request : refused) append(replies, engine_.overloaded(request));
    overload_unlogged_ += refused.size();
    if (const Millis now = system_clock_ms(); now - overload_logged_at_ms_ >= 1000) {
      log_line(LogLevel::error, "overloaded",
               {{"refused", std::to_string(overload_unlogged_)}, {"queue_max", std::to_string(options_.queue_max)}});
      overload_logged_at_ms_ = now;
      overload_unlogged_ = 0;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    append(results_, std::move(replies));
  }
  work_ready_.notify_one();
}

std::vector<Publish> EngineLoop::take_results() {
  std::vector<Publish> out;
  std::lock_guard<std::mutex> lock(mutex_);
  host_polling_ = true;
  out.swap(results_);  // nothing waits any more: the loop stops repeating wake()
  return out;
}

bool EngineLoop::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return idle_.wait_for(lock, timeout,
                        [this] { return queue_.empty() && !busy_ && (results_.empty() || host_takes_); });
}

EngineLoop::Stats EngineLoop::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void EngineLoop::hand_back(std::unique_lock<std::mutex>& lock) {
  if (results_.empty() || host_takes_) return;
  std::vector<Publish> out;
  out.swap(results_);
  busy_ = true;  // not idle before they are out: a host stopping after wait_idle() would cut them off
  lock.unlock();
  const bool published = transport_.publish(out);
  lock.lock();
  busy_ = false;
  if (!published) {
    // This host publishes from its own thread: from now on results wait for take_results(), in
    // order (refusals may have been added meanwhile; they came later).
    host_takes_ = true;
    results_.insert(results_.begin(), std::make_move_iterator(out.begin()), std::make_move_iterator(out.end()));
  }
}

void EngineLoop::wake_host() {
  transport_.wake();
  woken_at_ = std::chrono::steady_clock::now();
}

void EngineLoop::take_batch(std::vector<Request>& batch, std::vector<std::string>& disconnected) {
  while (!queue_.empty() && queue_.front().request && batch.size() < options_.batch_max) {
    batch.push_back(std::move(*queue_.front().request));
    queue_.pop_front();
    --queued_requests_;
  }
  while (!queue_.empty() && !queue_.front().request) {
    disconnected.push_back(std::move(queue_.front().disconnected));
    queue_.pop_front();
  }
}

std::vector<Publish> EngineLoop::handle(const std::vector<Request>& batch,
                                        const std::vector<std::string>& disconnected) {
  std::vector<Publish> out;
  if (!batch.empty()) out = engine_.handle(batch);
  if (!disconnected.empty()) append(out, engine_.disconnected(disconnected));
  return out;
}

void EngineLoop::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    hand_back(lock);
    const Millis now = system_clock_ms();
    // The engine is this thread's alone: the next ring deadline or retention purge.
    auto due = engine_.next_deadline();
    if (const auto purge = engine_.next_purge(); purge && (!due || *purge < *due)) due = purge;
    const bool deadline_passed = due && *due <= now;
    if (queue_.empty() && !deadline_passed) {
      if (stopping_) break;
      if (results_.empty() || host_takes_) idle_.notify_all();
      // Wait for work, a ringing call's deadline, or the stop; wake the host while results wait.
      Millis wait = due ? std::min(*due - now, options_.idle_wait_ms) : options_.idle_wait_ms;
      if (!results_.empty() && host_polling_) {
        // Repeated only once rewake_ms has passed since the last wake-up: the one sent right after
        // the batch is usually still on its way (each is a signal the broker thread handles).
        const auto since = std::chrono::steady_clock::now() - woken_at_;
        if (since >= std::chrono::milliseconds(options_.rewake_ms)) wake_host();
        wait = std::min(wait, options_.rewake_ms);
      }
      work_ready_.wait_for(lock, std::chrono::milliseconds(wait));
      continue;
    }
    // Overdue calls (a thousand after a restart), the retention purge and requests take turns, one
    // batch each, and each turn's results go back on their own: a request waits for one batch of
    // expiries and one purge transaction at most.
    const bool expiry_turn = deadline_passed && (queue_.empty() || requests_went_last_);
    requests_went_last_ = !expiry_turn;
    std::vector<Request> batch;
    std::vector<std::string> disconnected;
    if (!expiry_turn) take_batch(batch, disconnected);
    busy_ = true;
    lock.unlock();
    std::vector<Publish> out;
    try {
      out = expiry_turn ? engine_.background() : handle(batch, disconnected);
    } catch (const std::exception& e) {
      // Engine::handle reports request failures in replies; anything escaping it is a bug. The
      // requests got no reply: their clients resend (and are deduplicated by message_id).
      log_line(LogLevel::error, "engine_batch_failed",
               {{"error", e.what()}, {"requests", std::to_string(batch.size())}});
    }
    lock.lock();
    busy_ = false;
    if (!batch.empty()) {
      ++stats_.batches;
      stats_.requests += batch.size();
      stats_.largest_batch = std::max<std::uint64_t>(stats_.largest_batch, batch.size());
    }
    append(results_, std::move(out));
    // A host that publishes from its own thread hears of them now, not when the loop next idles
    // (it may stay busy with more turns; the broker's own next pass can be 100 ms away).
    if (host_takes_ && host_polling_ && !results_.empty()) wake_host();
  }
  hand_back(lock);
  idle_.notify_all();
}

}  // namespace navietakie
