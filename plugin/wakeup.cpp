#include "plugin/wakeup.hpp"

#include <stdexcept>

namespace navietakie {
namespace {

void ignore_wake(int) {}

}  // namespace

ThreadWaker::ThreadWaker() : target_(pthread_self()) {
  for (int candidate = SIGRTMIN; candidate <= SIGRTMAX; ++candidate) {
    struct sigaction current {};
    if (sigaction(candidate, nullptr, &current) != 0) continue;
    if ((current.sa_flags & SA_SIGINFO) != 0 || current.sa_handler != SIG_DFL) continue;  // in use
    struct sigaction action {};
    action.sa_handler = ignore_wake;
    sigemptyset(&action.sa_mask);
    // SA_RESTART: interrupted reads and writes restart; epoll_wait never does, which is the point.
    action.sa_flags = SA_RESTART;
    if (sigaction(candidate, &action, &previous_) != 0) continue;
    signal_ = candidate;
    return;
  }
  throw std::runtime_error("no free real-time signal to wake the broker thread with");
}

ThreadWaker::~ThreadWaker() { sigaction(signal_, &previous_, nullptr); }

void ThreadWaker::wake() const { pthread_kill(target_, signal_); }

}  // namespace navietakie
