#include "plugin/worker.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>

#include "core/log.hpp"

namespace navietakie {
namespace {

void ignore_wake(int) {}

// How often the worker repeats the wake-up while its results wait: a signal that lands just before
// the broker enters its poll (after it took the last results) is otherwise lost for up to 100 ms.
constexpr Millis kRewakeMs = 1;
// The longest wait when nothing is due, so that a missed notification cannot stall the worker.
constexpr Millis kIdleWaitMs = 1000;

}  // namespace

int ThreadWaker::signal_number() { return SIGRTMIN + 4; }

ThreadWaker::ThreadWaker() : target_(pthread_self()) {
  static std::once_flag installed;
  std::call_once(installed, [] {
    struct sigaction action {};
    action.sa_handler = ignore_wake;
    sigemptyset(&action.sa_mask);
    // SA_RESTART: interrupted reads and writes restart; epoll_wait never does, which is the point.
    action.sa_flags = SA_RESTART;
    sigaction(signal_number(), &action, nullptr);
  });
}

void ThreadWaker::wake() const { pthread_kill(target_, signal_number()); }

EngineWorker::EngineWorker(Engine& engine, std::size_t batch_max, ThreadWaker waker)
    : engine_(engine), batch_max_(std::max<std::size_t>(1, batch_max)), waker_(waker) {
  thread_ = std::thread([this] { run(); });
}

EngineWorker::~EngineWorker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_one();
  thread_.join();
}

void EngineWorker::submit(std::vector<Request> requests, std::vector<std::string> disconnected) {
  if (requests.empty() && disconnected.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (requests_.empty()) {
      requests_ = std::move(requests);
    } else {
      requests_.insert(requests_.end(), std::make_move_iterator(requests.begin()),
                       std::make_move_iterator(requests.end()));
    }
    disconnected_.insert(disconnected_.end(), std::make_move_iterator(disconnected.begin()),
                         std::make_move_iterator(disconnected.end()));
  }
  work_ready_.notify_one();
}

std::vector<Publish> EngineWorker::take_results() {
  std::vector<Publish> out;
  std::lock_guard<std::mutex> lock(mutex_);
  broker_polling_ = true;
  out.swap(results_);
  return out;
}

EngineWorker::Stats EngineWorker::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void EngineWorker::handle(std::vector<Request>& requests, std::vector<std::string>& disconnected,
                          std::vector<Publish>& out) {
  auto append = [&out](std::vector<Publish> more) {
    out.insert(out.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  };
  for (std::size_t i = 0; i < requests.size(); i += batch_max_) {
    const auto end = std::min(requests.size(), i + batch_max_);
    if (i == 0 && end == requests.size()) {
      append(engine_.handle(requests));
    } else {
      append(engine_.handle(std::vector<Request>(requests.begin() + static_cast<std::ptrdiff_t>(i),
                                                 requests.begin() + static_cast<std::ptrdiff_t>(end))));
    }
  }
  if (!disconnected.empty()) append(engine_.disconnected(disconnected));
  if (auto due = engine_.next_deadline(); due && *due <= system_clock_ms()) append(engine_.expire_calls());
}

void EngineWorker::run() {
  // Only the broker thread takes the wake-up signal.
  sigset_t blocked;
  sigemptyset(&blocked);
  sigaddset(&blocked, ThreadWaker::signal_number());
  pthread_sigmask(SIG_BLOCK, &blocked, nullptr);

  std::vector<Publish> out;
  try {
    out = engine_.start();
  } catch (const std::exception& e) {
    log_line(LogLevel::error, "engine_start_failed", {{"error", e.what()}});
  }
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (!out.empty()) {
      results_.insert(results_.end(), std::make_move_iterator(out.begin()), std::make_move_iterator(out.end()));
      out.clear();
    }
    // Wait for work, a ringing call's deadline, or the stop; wake the broker while results wait.
    while (requests_.empty() && disconnected_.empty() && !stopping_) {
      const Millis now = system_clock_ms();
      const auto due = engine_.next_deadline();
      if (due && *due <= now) break;
      Millis wait = due ? std::min(*due - now, kIdleWaitMs) : kIdleWaitMs;
      if (!results_.empty() && broker_polling_) {
        waker_.wake();
        wait = std::min(wait, kRewakeMs);
      }
      work_ready_.wait_for(lock, std::chrono::milliseconds(wait));
    }
    std::vector<Request> requests;
    std::vector<std::string> disconnected;
    requests.swap(requests_);
    disconnected.swap(disconnected_);
    const bool stop = stopping_;
    lock.unlock();
    try {
      handle(requests, disconnected, out);
    } catch (const std::exception& e) {
      // Engine::handle reports request failures in replies; anything escaping it is a bug. The
      // requests got no reply: their clients resend (and are deduplicated by message_id).
      log_line(LogLevel::error, "engine_batch_failed", {{"error", e.what()}, {"requests", std::to_string(requests.size())}});
    }
    lock.lock();
    if (!requests.empty()) {
      ++stats_.batches;
      stats_.requests += requests.size();
      stats_.largest_batch = std::max<std::uint64_t>(stats_.largest_batch, requests.size());
    }
    if (stop && requests_.empty() && disconnected_.empty()) break;
    if (!out.empty()) {
      results_.insert(results_.end(), std::make_move_iterator(out.begin()), std::make_move_iterator(out.end()));
      out.clear();
      if (broker_polling_) {
        lock.unlock();
        waker_.wake();
        lock.lock();
      }
    }
  }
}

}  // namespace navietakie
