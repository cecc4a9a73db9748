// Latency distribution in microseconds, in constant memory whatever the run's length: a log-linear
// histogram (64 buckets per power of two, so a reported percentile is within ~1.6% of the true
// value; values under 64 us are exact). The maximum is kept exactly.
#pragma once

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace navietakie::sim {

class LatencyHistogram {
 public:
  void add(std::uint64_t micros);
  void merge(const LatencyHistogram& other);

  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }
  // The value at quantile q in [0, 1] (0 when empty): the midpoint of its bucket, never above max.
  std::uint64_t percentile(double q) const;

  // The non-empty buckets, and adding them back (to carry a histogram between processes).
  std::vector<std::pair<std::size_t, std::uint64_t>> nonzero_buckets() const;
  void add_bucket(std::size_t bucket, std::uint64_t count, std::uint64_t max);

 private:
  static constexpr unsigned kSubBits = 6;  // 64 sub-buckets per power of two
  static constexpr std::size_t kBuckets = (64 - kSubBits + 1) << kSubBits;
  static std::size_t bucket_of(std::uint64_t micros);
  static std::uint64_t midpoint_of(std::size_t bucket);

  std::array<std::uint64_t, kBuckets> buckets_{};
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace navietakie::sim
