#include "sim/latency.hpp"

#include <algorithm>
#include <cmath>

namespace navietakie::sim {

std::size_t LatencyHistogram::bucket_of(std::uint64_t micros) {
  constexpr std::uint64_t sub = 1ULL << kSubBits;
  if (micros < sub) return static_cast<std::size_t>(micros);
  // Highest set bit e >= kSubBits: the value's top kSubBits + 1 bits pick the bucket.
  const auto e = static_cast<unsigned>(63 - __builtin_clzll(micros));
  const std::uint64_t mantissa = (micros >> (e - kSubBits)) & (sub - 1);
  return static_cast<std::size_t>((static_cast<std::uint64_t>(e - kSubBits + 1) << kSubBits) + mantissa);
}

std::uint64_t LatencyHistogram::midpoint_of(std::size_t bucket) {
  constexpr std::size_t sub = std::size_t{1} << kSubBits;
  if (bucket < sub) return bucket;
  const unsigned e = static_cast<unsigned>(bucket >> kSubBits) + kSubBits - 1;
  const std::uint64_t mantissa = bucket & (sub - 1);
  const std::uint64_t low = (1ULL << e) + (mantissa << (e - kSubBits));
  const std::uint64_t width = 1ULL << (e - kSubBits);
  return low + width / 2;
}

void LatencyHistogram::add(std::uint64_t micros) {
  ++buckets_[bucket_of(micros)];
  ++count_;
  max_ = std::max(max_, micros);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (std::size_t i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
}

std::uint64_t LatencyHistogram::percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The rank of the q-quantile among count_ sorted values (nearest rank, at least the first).
  const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_))));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min(midpoint_of(i), max_);
  }
  return max_;
}

std::vector<std::pair<std::size_t, std::uint64_t>> LatencyHistogram::nonzero_buckets() const {
  std::vector<std::pair<std::size_t, std::uint64_t>> out;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    if (buckets_[i] != 0) out.emplace_back(i, buckets_[i]);
  }
  return out;
}

void LatencyHistogram::add_bucket(std::size_t bucket, std::uint64_t count, std::uint64_t max) {
  if (bucket >= kBuckets) return;
  buckets_[bucket] += count;
  count_ += count;
  max_ = std::max(max_, max);
}

}  // namespace navietakie::sim
