// Where a unit test's store lives, on the backend the test binary runs against: LMDB in a fresh
// temp dir (default), or, with NAVIETAKIE_TEST_STORE=postgres (the ctest entries *_postgres), a
// fresh schema of one PostgreSQL server the binary starts on first use (tests/support/postgres.*)
// and stops at exit. So the same engine and store tests run on both backends, not copied.
#pragma once

#include <memory>
#include <string>

#include "store/store.hpp"
#include "temp_dir.hpp"

namespace navietakie::test {

class PostgresServer;

// NAVIETAKIE_TEST_STORE=postgres.
bool testing_postgres();

// The binary's PostgreSQL server (started on first call, fsync off: a unit test needs no power-cut
// durability; stopped when the process exits).
PostgresServer& shared_postgres_server();

class StoreSpace {
 public:
  explicit StoreSpace(std::size_t lmdb_map_size = std::size_t{64} << 20, SyncMode lmdb_sync = SyncMode::nosync);

  // A store on this space's data; again after the last one was closed, to reopen it ("restart").
  // On PostgreSQL, several may be open at once (several hosts on one database).
  std::unique_ptr<Store> open() const;

  const std::string& dir() const { return dir_.path(); }    // LMDB's data dir
  const std::string& postgres_url() const { return url_; }  // "" on LMDB

 private:
  UnitTempDir dir_;
  std::size_t map_size_;
  SyncMode sync_;
  std::string url_;
};

// A test case that is about LMDB itself (map full, file layout, its own locking): its reason is
// in a comment at the test; on PostgreSQL it is skipped.
struct LmdbOnly {
  template <class Id>
  bool operator()(Id) const {
    return !testing_postgres();
  }
};

}  // namespace navietakie::test
