// Operator access to an LMDB data dir, beside the host that may be writing it: read-only, in
// snapshots (LMDB lets readers of other processes run beside the one writer), so backup, verify,
// export and stats are safe on a live system. Each call is one read transaction: it sees one
// consistent commit, and while it runs the writer cannot reuse the pages it reads (a long scan of
// a busy store lets the file grow by what is written meanwhile).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "store/records.hpp"

namespace navietakie {

struct DatabaseStats {
  std::string name;
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;  // its pages (branch, leaf, overflow) times the page size
};

struct StoreStats {
  std::string dir;
  std::uint64_t bookings = 0;  // bookings with at least one message
  std::uint64_t messages = 0;
  std::uint64_t calls = 0;
  std::uint64_t active_calls = 0;
  std::uint64_t ringing_calls = 0;
  std::uint64_t connections = 0;
  std::uint64_t presence_records = 0;
  std::uint64_t map_size_bytes = 0;   // the map's configured size: the store's limit
  std::uint64_t used_bytes = 0;       // pages in use up to the last one written
  std::uint64_t file_bytes = 0;       // data.mdb on disk
  std::uint64_t page_size = 0;
  std::uint64_t last_txn_id = 0;
  unsigned max_readers = 0;
  unsigned readers_in_use = 0;        // reader slots held (the hosts' and this one's)
  std::uint64_t schema_version = 0;   // 0: none recorded
  std::vector<DatabaseStats> databases;  // every named database, the ones this build does not know too
};

struct VerifyReport {
  std::uint64_t bookings = 0;
  std::uint64_t messages = 0;
  std::uint64_t calls = 0;
  std::uint64_t problems = 0;                // all found
  std::vector<std::string> problem_lines;    // the first max_problems of them, one line each
};

// Thrown when the dir is not an LMDB navietakie store that can be opened (missing, unreadable,
// another format): the caller's "cannot open", distinct from problems found inside a store.
class StoreOpenError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class LmdbInspector {
 public:
  // Opens dir read-only (MDB_RDONLY: nothing is created or written, not even the schema record).
  explicit LmdbInspector(const std::string& dir);
  ~LmdbInspector();
  LmdbInspector(const LmdbInspector&) = delete;
  LmdbInspector& operator=(const LmdbInspector&) = delete;

  // A compacted copy of one commit (mdb_env_copy2, MDB_CP_COMPACT: free pages left out) into
  // dest_dir/data.mdb, synced to disk. dest_dir is created if missing and must hold no data.mdb.
  // Returns the copy's size in bytes.
  std::uint64_t backup(const std::string& dest_dir) const;

  StoreStats stats() const;

  // Every record decodes and matches its key; every booking's seqs run from 1 without a gap; the
  // message_id index names exactly the stored messages; the call indexes name calls in the right
  // state. Keeps the first max_problems lines.
  VerifyReport verify(std::size_t max_problems = 100) const;

  // The booking's messages in seq order, from after_seq + 1; false from fn stops. Throws
  // StoreError(io) on a record that does not decode.
  void for_each_message(const std::string& booking, std::uint64_t after_seq,
                        const std::function<bool(const Message&)>& fn) const;

 private:
  struct Env;
  std::unique_ptr<Env> env_;
};

}  // namespace navietakie
