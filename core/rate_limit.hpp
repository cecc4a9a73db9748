// Token buckets per MQTT client id: how many requests one client connection may make
// (docs/protocol.md, "Rate limits"). Pure logic with the time passed in, so tests drive the clock.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "store/records.hpp"  // Millis

namespace navietakie {

class RateLimiter {
 public:
  enum class Verdict {
    admitted,
    first_refusal,  // refused, and the client's last request was admitted: worth a log line
    refused,        // refused again: counted, logged in aggregate
  };

  // `per_s` tokens a second into buckets of `burst` tokens (a new client starts full); per_s 0: off.
  RateLimiter(std::uint32_t per_s, std::uint32_t burst);

  bool enabled() const { return per_ms_ > 0; }

  // Takes a token from the bucket of `client_id` at `now`. Off: always admitted, nothing kept.
  // Also forgets idle buckets, at most once per sweep interval (memory stays bounded by the
  // clients active within about burst / per_s seconds).
  Verdict admit(const std::string& client_id, Millis now);

  // The client disconnected: forget its bucket if it is full (a reconnect then starts where it
  // would anyway); a bucket still refilling is kept, so reconnecting does not reset it.
  void disconnected(const std::string& client_id, Millis now);

  // Forgets every bucket that is full at `now` (an idle client's is the same as a new one's).
  void forget_full(Millis now);

  std::size_t buckets() const { return buckets_.size(); }

 private:
  // Integer arithmetic in milli-tokens: a request costs 1000, and per_s tokens a second refill
  // exactly per_s milli-tokens a millisecond.
  struct Bucket {
    std::uint64_t level = 0;  // milli-tokens
    Millis updated = 0;
    bool refusing = false;    // its last request was refused
  };
  std::uint64_t refilled(const Bucket& bucket, Millis now) const;

  std::uint64_t per_ms_;    // milli-tokens a millisecond (= per_s)
  std::uint64_t capacity_;  // milli-tokens (= burst * 1000)
  Millis sweep_every_;
  Millis next_sweep_ = 0;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace navietakie
