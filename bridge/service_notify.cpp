#include "bridge/service_notify.hpp"

#include <chrono>
#include <cstdint>

#ifdef NAVIETAKIE_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace navietakie {
namespace {

long long now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

void notify([[maybe_unused]] const char* state) {
#ifdef NAVIETAKIE_HAVE_SYSTEMD
  sd_notify(0, state);
#endif
}

}  // namespace

ServiceNotifier::ServiceNotifier() {
#ifdef NAVIETAKIE_HAVE_SYSTEMD
  std::uint64_t interval_us = 0;
  if (sd_watchdog_enabled(0, &interval_us) > 0) watchdog_every_us_ = static_cast<long long>(interval_us / 2);
#endif
}

void ServiceNotifier::ready() { notify("READY=1\nSTATUS=handling requests"); }

void ServiceNotifier::watchdog() {
  if (watchdog_every_us_ <= 0) return;
  const long long now = now_us();
  if (now - last_watchdog_us_ < watchdog_every_us_) return;
  last_watchdog_us_ = now;
  notify("WATCHDOG=1");
}

void ServiceNotifier::stopping() { notify("STOPPING=1\nSTATUS=draining"); }

}  // namespace navietakie
