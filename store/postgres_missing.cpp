// The stand-in for a build without libpqxx (NAVIETAKIE_POSTGRES=OFF, or not found).
#include "store/postgres.hpp"

namespace navietakie {

std::unique_ptr<Store> open_postgres_store(const PostgresOptions&) {
  throw StoreError(StoreError::Kind::io,
                   "store_backend postgres: this build has no PostgreSQL support (libpqxx-dev was not found when it "
                   "was built; rebuild with it, or use store_backend lmdb)");
}

bool postgres_store_available() { return false; }

}  // namespace navietakie
