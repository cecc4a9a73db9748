#include "core/store_setup.hpp"

#include "core/log.hpp"
#include "store/postgres.hpp"

namespace navietakie {
namespace {

SyncMode sync_mode(SyncSetting setting) {
  switch (setting) {
    case SyncSetting::full: return SyncMode::full;
    case SyncSetting::nometasync: return SyncMode::nometasync;
    case SyncSetting::nosync: return SyncMode::nosync;
  }
  return SyncMode::full;
}

}  // namespace

LmdbOptions lmdb_options(const Settings& settings) {
  return LmdbOptions{settings.data_dir, settings.map_size_mb * std::size_t{1024} * 1024, sync_mode(settings.sync)};
}

PostgresOptions postgres_options(const Settings& settings) {
  PostgresOptions options;
  options.url = settings.postgres_url;
  // A lost or regained database is worth a line at warn/info, once per change.
  options.log = [](const std::string& event, const std::string& detail) {
    if (detail.empty()) {
      log_line(LogLevel::info, event);
    } else {
      log_line(LogLevel::warn, event, {{"error", detail}});
    }
  };
  return options;
}

std::unique_ptr<Store> open_store(const Settings& settings) {
  switch (settings.store_backend) {
    case StoreBackend::lmdb: return open_lmdb_store(lmdb_options(settings));
    case StoreBackend::postgres: {
      log_line(LogLevel::info, "store",
               {{"backend", "postgres"}, {"postgres_url", redacted_postgres_url(settings.postgres_url)}});
      return open_postgres_store(postgres_options(settings));
    }
  }
  return open_lmdb_store(lmdb_options(settings));
}

}  // namespace navietakie
