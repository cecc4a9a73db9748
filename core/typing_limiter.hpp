// How often a party's typing hint is relayed: at most wire::kTypingRelaysPerWindow in any window of
// wire::kTypingWindowMs, per role and booking. In memory only (typing is not stored), and bounded:
// a key whose last relay is a whole window old constrains nothing and is forgotten.
#pragma once

#include <array>
#include <cstddef>
#include <map>
#include <string>
#include <utility>

#include "core/wire.hpp"
#include "store/records.hpp"

namespace navietakie {

class TypingLimiter {
 public:
  // Whether a hint from `role` in `booking` at `now` may be relayed; if so, it is counted.
  bool allow(const std::string& booking, Role role, Millis now);
  // Keys remembered (for tests of the bound).
  std::size_t tracked() const { return relays_.size(); }

 private:
  // The times of the last relays, oldest first (0: none).
  using Recent = std::array<Millis, wire::kTypingRelaysPerWindow>;
  void forget_idle(Millis now);

  std::map<std::pair<std::string, Role>, Recent> relays_;
  std::size_t sweep_at_ = kMinSweep;  // forget idle keys when this many are tracked
  static constexpr std::size_t kMinSweep = 256;
};

}  // namespace navietakie
