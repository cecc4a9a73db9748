#include "plugin/broker_log.hpp"

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <pthread.h>

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/log.hpp"

namespace navietakie {
namespace {

// A burst of engine-thread lines between two ticks is small; this only bounds a pathological one.
constexpr std::size_t kMaxDeferredLines = 10000;

pthread_t g_broker_thread;
std::mutex g_deferred_mutex;
std::vector<std::pair<int, std::string>> g_deferred;  // guarded by g_deferred_mutex
std::size_t g_dropped = 0;                            // guarded by g_deferred_mutex

int broker_level(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return MOSQ_LOG_DEBUG;
    case LogLevel::info: return MOSQ_LOG_INFO;
    case LogLevel::warn: return MOSQ_LOG_WARNING;
    case LogLevel::error: return MOSQ_LOG_ERR;
  }
  return MOSQ_LOG_ERR;
}

void to_broker(LogLevel level, const std::string& line) {
  if (pthread_equal(pthread_self(), g_broker_thread)) {
    mosquitto_log_printf(broker_level(level), "%s", line.c_str());
    return;
  }
  std::lock_guard<std::mutex> lock(g_deferred_mutex);
  if (g_deferred.size() >= kMaxDeferredLines) {
    ++g_dropped;
    return;
  }
  g_deferred.emplace_back(broker_level(level), line);
}

}  // namespace

void route_log_to_broker() {
  g_broker_thread = pthread_self();
  set_log_sink(to_broker);
}

void drain_broker_log() {
  std::vector<std::pair<int, std::string>> lines;
  std::size_t dropped = 0;
  {
    std::lock_guard<std::mutex> lock(g_deferred_mutex);
    if (g_deferred.empty() && g_dropped == 0) return;
    lines.swap(g_deferred);
    std::swap(dropped, g_dropped);
  }
  for (const auto& [level, line] : lines) mosquitto_log_printf(level, "%s", line.c_str());
  if (dropped > 0) log_line(LogLevel::warn, "log_lines_dropped", {{"lines", std::to_string(dropped)}});
}

void unroute_log_from_broker() {
  drain_broker_log();
  set_log_sink(nullptr);
}

}  // namespace navietakie
