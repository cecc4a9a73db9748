// The replica's gap tracking, per booking: the car stores the cloud's messages in the cloud's seq
// order with no gap (the car's store requires seq == last_seq + 1), so `replica_until_seq` is
// simply the replica's last seq. An event that arrives past a gap waits here (bounded) while a
// catch-up (`get_message after_seq`) upstream fills the gap. Pure logic, no I/O: unit-tested.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/codec.hpp"
#include "store/records.hpp"

namespace navietakie {

// A message record as the cloud publishes it (docs/protocol.md "Message record"); nullopt if the
// JSON is not one (logged and counted by the caller, never stored).
std::optional<Message> message_from_json(const Json& j);

class ReplicaTracker {
 public:
  // Most messages held past a gap per booking; beyond, they are dropped (the catch-up brings them).
  static constexpr std::size_t kMaxHeld = 1000;

  // The replica's last seq for a booking (read from the store when the booking is first seen).
  void set_until(const std::string& booking, std::uint64_t last_seq);
  std::uint64_t until(const std::string& booking) const;
  bool known(const std::string& booking) const { return bookings_.count(booking) > 0; }

  struct Outcome {
    std::vector<Message> append;  // in seq order, contiguous from until()+1: store these, then applied()
    bool gap = false;             // a message is missing below one received: catch up from until()
  };
  // A message from upstream (an event or a catch-up page).
  Outcome receive(const Message& message);
  // The messages of `receive` were stored: until() moves to the last of them.
  void applied(const std::string& booking, std::uint64_t seq);

  // Catch-up bookkeeping: one at a time per booking.
  bool catching_up(const std::string& booking) const;
  void set_catching_up(const std::string& booking, bool on);
  void reset_catch_ups();  // the link dropped: nothing is in flight any more

 private:
  struct Booking {
    std::uint64_t until = 0;
    std::map<std::uint64_t, Message> held;
    bool catching_up = false;
  };
  std::map<std::string, Booking> bookings_;
};

}  // namespace navietakie
