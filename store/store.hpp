// The store interface, in domain terms. It leaks no LMDB type so that another backend
// (a networked one for multi-machine deployments) can sit behind it.
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "store/records.hpp"

namespace navietakie {

// A storage failure. `full` means the map is full (or the disk): writes fail, reads go on.
// `unavailable` means the store cannot be reached for now (a networked store lost its connection,
// the commit's outcome is unknown, or the transaction lost a deadlock): nothing of it is stored
// and a retry may succeed. The message names the operation and the cause only; the engine says
// once what it means for a client.
class StoreError : public std::runtime_error {
 public:
  enum class Kind { full, io, unavailable };
  StoreError(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

class StoreReader {
 public:
  virtual ~StoreReader() = default;

  // Highest seq of the booking, 0 if it has no messages.
  virtual std::uint64_t last_seq(const std::string& booking) const = 0;
  virtual std::optional<Message> message(const std::string& booking, std::uint64_t seq) const = 0;
  virtual std::optional<Message> message_by_id(const std::string& booking, const std::string& message_id) const = 0;
  virtual HistoryPage history(const std::string& booking, const HistoryQuery& query) const = 0;

  virtual std::optional<Call> call(const std::string& booking, const std::string& call_id) const = 0;
  virtual std::optional<Call> active_call(const std::string& booking) const = 0;
  // Every call still ringing, in any booking (to re-arm ring timeouts after a restart).
  virtual std::vector<Call> ringing_calls() const = 0;
  // The ringing calls whose deadline is at or before `now`, earliest first, at most `limit` (a
  // shared store: the deadlines other hosts armed). A backend with an index on deadlines
  // overrides this scan of every ringing call.
  virtual std::vector<Call> due_ringing_calls(Millis now, std::size_t limit) const;

  virtual std::vector<Connection> connections(const std::string& booking) const = 0;
  virtual std::optional<Presence> presence(const std::string& booking) const = 0;
  virtual std::vector<Presence> all_presence() const = 0;

  // The booking's state; nullopt: open (never closed, or purged).
  virtual std::optional<BookingState> booking_state(const std::string& booking) const = 0;
  // Every closed booking (to republish the retained events/booking at start).
  virtual std::vector<BookingState> closed_bookings() const = 0;
  // The closed bookings with closed_at before `cutoff`, oldest first, at most `limit` (the
  // retention purge's next work; an index on closed_at in both backends).
  virtual std::vector<BookingState> closed_before(Millis cutoff, std::size_t limit) const = 0;

  // The booking's read horizons (mark_read); nullopt: no party ever marked anything read.
  virtual std::optional<ReadReceipts> read_receipts(const std::string& booking) const = 0;
  // Every booking's (to republish the retained events/read after a restart).
  virtual std::vector<ReadReceipts> all_read_receipts() const = 0;
};

class StoreWriter : public StoreReader {
 public:
  // Appends a message. Invariant: message.seq == last_seq(booking) + 1 and its message_id is new
  // for the booking; the store records the idempotency key with it.
  virtual void put_booking_state(const BookingState& state) = 0;
  // Deletes at most `max_keys` of the booking's stored keys (rows), in every table: its messages
  // and their message ids, calls, connections, presence, and its booking state last (so that a
  // purge cut short is found again by closed_before and resumed). Returns how many it deleted:
  // fewer than max_keys once nothing of the booking is left. A backend that adds a table of
  // bookings' records adds it here.
  virtual std::size_t purge_booking(const std::string& booking, std::size_t max_keys) = 0;
  virtual void append_message(const Message& message) = 0;
  // Inserts or replaces a call; keeps the active-call and ringing indexes in step.
  virtual void put_call(const Call& call) = 0;
  virtual void put_connection(const Connection& connection) = 0;
  virtual void put_presence(const Presence& presence) = 0;
  virtual void put_read_receipts(const ReadReceipts& receipts) = 0;

  // Called first in a transaction, with the distinct booking codes it is about to touch, sorted:
  // a store shared by several processes locks them in this order (so that two transactions never
  // wait for each other's bookings). A store with one writer at a time has nothing to do.
  virtual void lock_bookings(const std::vector<std::string>& /*sorted_codes*/) {}

  // Runs fn as one unit inside the transaction: if it throws, none of its writes remain and the
  // exception propagates; the rest of the transaction is untouched.
  virtual void unit(const std::function<void()>& fn) = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  // One write transaction: fn runs against it, then it commits, durably per the sync mode,
  // before write() returns. If fn throws or the commit fails, nothing of it is stored.
  virtual void write(const std::function<void(StoreWriter&)>& fn) = 0;
  // A short read transaction.
  virtual void read(const std::function<void(const StoreReader&)>& fn) const = 0;
};

enum class SyncMode { full, nometasync, nosync };

struct LmdbOptions {
  std::string dir;
  std::size_t map_size_bytes = std::size_t{1} << 30;
  SyncMode sync = SyncMode::full;
};

// Opens (creating if needed) the LMDB environment in options.dir. One per process.
std::unique_ptr<Store> open_lmdb_store(const LmdbOptions& options);

}  // namespace navietakie
