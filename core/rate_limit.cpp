#include "core/rate_limit.hpp"

#include <algorithm>
#include <iterator>

namespace navietakie {
namespace {
constexpr std::uint64_t kCost = 1000;  // milli-tokens a request takes
}  // namespace

RateLimiter::RateLimiter(std::uint32_t per_s, std::uint32_t burst)
    : per_ms_(per_s), capacity_(std::uint64_t{std::max<std::uint32_t>(burst, 1)} * kCost) {
  // Sweep about as often as an emptied bucket takes to fill again: a bucket is forgotten within
  // two fill times of its client's last request, and a sweep never runs more than once a second.
  const Millis fill_ms = per_s == 0 ? 0 : static_cast<Millis>(capacity_ / per_ms_);
  sweep_every_ = std::clamp<Millis>(fill_ms, 1000, 60'000);
}

std::uint64_t RateLimiter::refilled(const Bucket& bucket, Millis now) const {
  // A clock that stepped back refills nothing (and takes nothing back).
  const auto elapsed = static_cast<std::uint64_t>(std::max<Millis>(now - bucket.updated, 0));
  // Past the time to fill from empty, the bucket is full: no overflow however long it idled.
  if (elapsed >= capacity_ / per_ms_ + 1) return capacity_;
  return std::min(capacity_, bucket.level + elapsed * per_ms_);
}

RateLimiter::Verdict RateLimiter::admit(const std::string& client_id, Millis now) {
  if (!enabled()) return Verdict::admitted;
  if (now >= next_sweep_) {
    forget_full(now);
    next_sweep_ = now + sweep_every_;
  }
  auto [it, added] = buckets_.try_emplace(client_id, Bucket{capacity_, now, false});
  Bucket& bucket = it->second;
  if (!added) {
    bucket.level = refilled(bucket, now);
    bucket.updated = std::max(bucket.updated, now);
  }
  if (bucket.level >= kCost) {
    bucket.level -= kCost;
    bucket.refusing = false;
    return Verdict::admitted;
  }
  const bool first = !bucket.refusing;
  bucket.refusing = true;
  return first ? Verdict::first_refusal : Verdict::refused;
}

void RateLimiter::disconnected(const std::string& client_id, Millis now) {
  if (!enabled()) return;
  auto it = buckets_.find(client_id);
  if (it != buckets_.end() && refilled(it->second, now) == capacity_) buckets_.erase(it);
}

void RateLimiter::forget_full(Millis now) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    it = refilled(it->second, now) == capacity_ ? buckets_.erase(it) : std::next(it);
  }
}

}  // namespace navietakie
