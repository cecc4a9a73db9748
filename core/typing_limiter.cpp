#include "core/typing_limiter.hpp"

#include <algorithm>

namespace navietakie {

bool TypingLimiter::allow(const std::string& booking, Role role, Millis now) {
  if (relays_.size() >= sweep_at_) forget_idle(now);
  auto [it, added] = relays_.try_emplace({booking, role});
  Recent& recent = it->second;
  if (added) recent.fill(now - wire::kTypingWindowMs);  // as if the last relays were a window ago
  // The oldest of the last N relays: a new one is allowed once it left the window. A clock that
  // stepped back leaves the hint dropped until time catches up, never relays more.
  if (now - recent.front() < wire::kTypingWindowMs) return false;
  std::rotate(recent.begin(), recent.begin() + 1, recent.end());
  recent.back() = now;
  return true;
}

void TypingLimiter::forget_idle(Millis now) {
  for (auto it = relays_.begin(); it != relays_.end();) {
    it = now - it->second.back() >= wire::kTypingWindowMs ? relays_.erase(it) : std::next(it);
  }
  // Sweep again when the live keys have doubled: amortised O(1) per hint, and the map stays within
  // twice the keys active in the last window (or kMinSweep).
  sweep_at_ = std::max(kMinSweep, 2 * relays_.size());
}

}  // namespace navietakie
