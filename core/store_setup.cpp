#include "core/store_setup.hpp"

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

std::unique_ptr<Store> open_store(const Settings& settings) { return open_lmdb_store(lmdb_options(settings)); }

}  // namespace navietakie
