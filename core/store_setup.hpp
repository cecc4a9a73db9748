// The store a host runs on, as the settings describe it. Mapping settings to store options lives
// here, with whoever builds the store, so that config/ knows nothing of store/.
#pragma once

#include <memory>

#include "config/config.hpp"
#include "store/postgres.hpp"
#include "store/store.hpp"

namespace navietakie {

// The LMDB options the settings describe (data_dir, map_size_mb, sync).
LmdbOptions lmdb_options(const Settings& settings);

// The PostgreSQL options the settings describe (postgres_url; reconnects logged through core/log).
PostgresOptions postgres_options(const Settings& settings);

// Opens the store the settings describe (one per process): store_backend lmdb or postgres.
std::unique_ptr<Store> open_store(const Settings& settings);

}  // namespace navietakie
