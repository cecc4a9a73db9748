// The bridge's side of systemd's service protocol (Type=notify, WatchdogSec=): READY=1 once the
// engine runs and the request topics are subscribed, WATCHDOG=1 from the host's loop, STOPPING=1
// when it starts to drain. Each is a no-op without NOTIFY_SOCKET (not started by systemd) or in a
// build without libsystemd.
#pragma once

namespace navietakie {

class ServiceNotifier {
 public:
  ServiceNotifier();
  void ready();
  // Cheap to call on every pass of a loop: sends only when half the watchdog interval has passed.
  void watchdog();
  void stopping();

 private:
  long long watchdog_every_us_ = 0;  // 0: no watchdog asked for
  long long last_watchdog_us_ = 0;
};

}  // namespace navietakie
