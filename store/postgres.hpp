// The PostgreSQL backend of Store (store_backend postgres): many hosts on one database, each
// booking serialised across them by a row lock. Schema and its migrations: store/postgres_schema.*.
// No libpqxx type leaks out of here.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "store/store.hpp"

namespace navietakie {

struct PostgresOptions {
  // A libpq connection string or URI. A `connect_timeout` in it bounds each (re)connect.
  std::string url;
  // After a failed connect, requests fail at once (`unavailable`) for this long before the next
  // attempt, so that a batch retried one request at a time does not wait for the database N times.
  std::int64_t reconnect_backoff_ms = 500;
  // How the store reports a lost / regained connection (once per change, never per request);
  // unset: silent. (The store has no logger of its own: core/ sets this to its log.)
  std::function<void(const std::string& event, const std::string& detail)> log;
};

// Connects, creates or migrates the schema (store/postgres_schema.hpp), and returns the store.
// Throws StoreError when the database cannot be reached or its schema is newer than this build's.
// Built without libpqxx: throws StoreError saying so.
std::unique_ptr<Store> open_postgres_store(const PostgresOptions& options);

// Whether this build has the PostgreSQL backend.
bool postgres_store_available();

}  // namespace navietakie
