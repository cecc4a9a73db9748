#include "support/store_space.hpp"

#include <cstdlib>

#include "store/postgres.hpp"
#include "support/postgres.hpp"

namespace navietakie::test {

bool testing_postgres() {
  const char* backend = std::getenv("NAVIETAKIE_TEST_STORE");
  return backend != nullptr && std::string(backend) == "postgres";
}

PostgresServer& shared_postgres_server() {
  // Destroyed at exit, which stops the server and removes its dir.
  static PostgresServer server(PostgresServerOptions{"navietakie_test", false});
  return server;
}

StoreSpace::StoreSpace(std::size_t lmdb_map_size, SyncMode lmdb_sync)
    : dir_("navietakie-store"), map_size_(lmdb_map_size), sync_(lmdb_sync) {
  if (!testing_postgres()) return;
  // A schema per test case: a clean database for the price of one CREATE SCHEMA; the store's
  // tables land there through search_path.
  PostgresServer& server = shared_postgres_server();
  const std::string schema = "t_" + random_hex(12);
  server.psql("CREATE SCHEMA " + schema);
  url_ = server.url() + "&options=-csearch_path%3D" + schema;
}

std::unique_ptr<Store> StoreSpace::open() const {
  if (!url_.empty()) {
    PostgresOptions options;
    options.url = url_;
    options.reconnect_backoff_ms = 100;
    return open_postgres_store(options);
  }
  return open_lmdb_store(LmdbOptions{dir_.path(), map_size_, sync_});
}

}  // namespace navietakie::test
