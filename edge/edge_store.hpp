// The car's own bookkeeping as an edge node, in a small LMDB environment of its own
// ({data_dir}/edge), beside the replica (the car's ordinary store, holding the cloud's messages by
// the cloud's seq). Kept apart so that the Store interface, which other backends implement, does
// not grow edge-only records. Used on the edge node's thread only: every commit (an fsync with
// `sync full`) happens there, never on the broker thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "store/store.hpp"

namespace navietakie {

// A local send_message waiting for the cloud's confirmation, in arrival order.
struct OutboxEntry {
  std::uint64_t key = 0;  // arrival order; assigned by EdgeStore::add_outbox
  std::string booking;
  std::string message_id;
  std::string payload;  // the request as forwarded upstream (message_id and sender_id filled in)
};

class EdgeStore {
 public:
  // Opens (creating) {dir}; throws StoreError naming the cause.
  EdgeStore(const std::string& dir, std::size_t map_size_bytes, SyncMode sync);
  ~EdgeStore();
  EdgeStore(const EdgeStore&) = delete;
  EdgeStore& operator=(const EdgeStore&) = delete;

  // Appends the entries in order, in one durable commit, and assigns their keys. An entry whose
  // (booking, message_id) is already waiting is not added again: its waiting twin is returned in
  // its place. Throws StoreError (kind full when the map or disk is full): nothing was added.
  std::vector<OutboxEntry> add_outbox(std::vector<OutboxEntry> entries);
  // Every waiting entry, oldest first.
  std::vector<OutboxEntry> outbox() const;
  std::optional<OutboxEntry> outbox_entry(const std::string& booking, const std::string& message_id) const;
  // Removes the entry (once the cloud confirmed or finally refused it). Absent: nothing.
  void remove_outbox(const std::string& booking, const std::string& message_id);

  // Bookings the car follows upstream (its local clients use them), kept across restarts.
  void add_booking(const std::string& booking);
  std::vector<std::string> bookings() const;

  // The last retained presence event seen upstream per booking, republished locally at start.
  void put_presence(const std::string& booking, const std::string& payload);
  std::vector<std::pair<std::string, std::string>> all_presence() const;

 private:
  struct Env;
  std::unique_ptr<Env> env_;
};

}  // namespace navietakie
