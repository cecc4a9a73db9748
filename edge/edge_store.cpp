#include "edge/edge_store.hpp"

#include <lmdb.h>
#include <sys/stat.h>

#include <cereal/archives/portable_binary.hpp>
#include <cereal/cereal.hpp>
#include <cereal/types/string.hpp>
#include <cerrno>
#include <sstream>

CEREAL_CLASS_VERSION(navietakie::OutboxEntry, 1)

namespace navietakie {

template <class Archive>
void serialize(Archive& ar, OutboxEntry& e, std::uint32_t const version) {
  if (version != 1) throw StoreError(StoreError::Kind::io, "outbox entry of unknown version " + std::to_string(version));
  ar(e.key, e.booking, e.message_id, e.payload);
}

namespace {

[[noreturn]] void fail(int rc, const std::string& what) {
  const bool full = rc == MDB_MAP_FULL || rc == ENOSPC;
  throw StoreError(full ? StoreError::Kind::full : StoreError::Kind::io, "edge store: " + what + ": " + mdb_strerror(rc));
}

void check(int rc, const std::string& what) {
  if (rc != MDB_SUCCESS) fail(rc, what);
}

std::string encode_entry(const OutboxEntry& e) {
  std::ostringstream out;
  {
    cereal::PortableBinaryOutputArchive ar(out);
    ar(e);
  }
  return out.str();
}

OutboxEntry decode_entry(std::string_view bytes) {
  std::istringstream in{std::string(bytes)};
  OutboxEntry e;
  try {
    cereal::PortableBinaryInputArchive ar(in);
    ar(e);
  } catch (const cereal::Exception& ex) {
    throw StoreError(StoreError::Kind::io, std::string("edge store: corrupt outbox entry: ") + ex.what());
  }
  return e;
}

// Big-endian, so that LMDB's byte order is arrival order.
std::string order_key(std::uint64_t n) {
  std::string k(8, '\0');
  for (int i = 7; i >= 0; --i) {
    k[static_cast<std::size_t>(i)] = static_cast<char>(n & 0xff);
    n >>= 8;
  }
  return k;
}

std::string id_key(const std::string& booking, const std::string& message_id) { return booking + '\0' + message_id; }

MDB_val val(const std::string& s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view view(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

}  // namespace

struct EdgeStore::Env {
  MDB_env* env = nullptr;
  MDB_dbi outbox = 0;       // order_key -> OutboxEntry
  MDB_dbi outbox_ids = 0;   // booking \0 message_id -> order_key
  MDB_dbi bookings = 0;     // booking -> ""
  MDB_dbi presence = 0;     // booking -> retained presence payload
  std::uint64_t next_key = 1;

  ~Env() {
    if (env) mdb_env_close(env);
  }

  // Runs fn in one transaction; a write commits (durably per the sync mode) or throws.
  template <typename Fn>
  void txn(bool write, Fn&& fn) const {
    MDB_txn* t = nullptr;
    check(mdb_txn_begin(env, nullptr, write ? 0 : MDB_RDONLY, &t), "mdb_txn_begin");
    try {
      fn(t);
    } catch (...) {
      mdb_txn_abort(t);
      throw;
    }
    if (write) {
      check(mdb_txn_commit(t), "commit");
    } else {
      mdb_txn_abort(t);
    }
  }

  // The outbox key of (booking, message_id), if that message waits.
  std::optional<std::string> order_of(MDB_txn* t, const std::string& booking, const std::string& message_id) const {
    const std::string id = id_key(booking, message_id);
    MDB_val k = val(id), ok;
    const int rc = mdb_get(t, outbox_ids, &k, &ok);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    check(rc, "outbox_ids lookup");
    return std::string(view(ok));
  }

  template <typename Fn>
  void each(MDB_txn* t, MDB_dbi dbi, Fn&& fn) const {
    MDB_cursor* c = nullptr;
    check(mdb_cursor_open(t, dbi, &c), "mdb_cursor_open");
    MDB_val k, v;
    int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (rc == MDB_SUCCESS) {
      fn(view(k), view(v));
      rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND) fail(rc, "cursor");
  }
};

EdgeStore::EdgeStore(const std::string& dir, std::size_t map_size_bytes, SyncMode sync) : env_(std::make_unique<Env>()) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) fail(errno, "mkdir " + dir);
  check(mdb_env_create(&env_->env), "mdb_env_create");
  check(mdb_env_set_maxdbs(env_->env, 8), "mdb_env_set_maxdbs");
  check(mdb_env_set_mapsize(env_->env, map_size_bytes), "mdb_env_set_mapsize");
  unsigned flags = MDB_NOTLS;
  if (sync == SyncMode::nometasync) flags |= MDB_NOMETASYNC;
  if (sync == SyncMode::nosync) flags |= MDB_NOSYNC;
  check(mdb_env_open(env_->env, dir.c_str(), flags, 0644), "mdb_env_open " + dir);
  env_->txn(true, [&](MDB_txn* t) {
    check(mdb_dbi_open(t, "outbox", MDB_CREATE, &env_->outbox), "open outbox");
    check(mdb_dbi_open(t, "outbox_ids", MDB_CREATE, &env_->outbox_ids), "open outbox_ids");
    check(mdb_dbi_open(t, "bookings", MDB_CREATE, &env_->bookings), "open bookings");
    check(mdb_dbi_open(t, "presence", MDB_CREATE, &env_->presence), "open presence");
  });
  for (const auto& e : outbox()) env_->next_key = std::max(env_->next_key, e.key + 1);
}

EdgeStore::~EdgeStore() = default;

std::vector<OutboxEntry> EdgeStore::add_outbox(std::vector<OutboxEntry> entries) {
  std::uint64_t next = env_->next_key;
  env_->txn(true, [&](MDB_txn* t) {
    for (auto& e : entries) {
      if (const auto order = env_->order_of(t, e.booking, e.message_id)) {
        MDB_val ek = val(*order), ev;
        check(mdb_get(t, env_->outbox, &ek, &ev), "outbox lookup");
        e = decode_entry(view(ev));
        continue;
      }
      const std::string id = id_key(e.booking, e.message_id);
      e.key = next++;
      const std::string ok = order_key(e.key), bytes = encode_entry(e);
      MDB_val okv = val(ok), bv = val(bytes);
      check(mdb_put(t, env_->outbox, &okv, &bv, 0), "put outbox");
      MDB_val idv = val(id), okv2 = val(ok);
      check(mdb_put(t, env_->outbox_ids, &idv, &okv2, 0), "put outbox_ids");
    }
  });
  env_->next_key = next;  // only once committed
  return entries;
}

std::vector<OutboxEntry> EdgeStore::outbox() const {
  std::vector<OutboxEntry> out;
  env_->txn(false, [&](MDB_txn* t) {
    env_->each(t, env_->outbox, [&](std::string_view, std::string_view v) { out.push_back(decode_entry(v)); });
  });
  return out;
}

std::optional<OutboxEntry> EdgeStore::outbox_entry(const std::string& booking, const std::string& message_id) const {
  std::optional<OutboxEntry> out;
  env_->txn(false, [&](MDB_txn* t) {
    const auto order = env_->order_of(t, booking, message_id);
    if (!order) return;
    MDB_val ok = val(*order), ev;
    check(mdb_get(t, env_->outbox, &ok, &ev), "outbox lookup");
    out = decode_entry(view(ev));
  });
  return out;
}

void EdgeStore::remove_outbox(const std::string& booking, const std::string& message_id) {
  env_->txn(true, [&](MDB_txn* t) {
    const auto order = env_->order_of(t, booking, message_id);
    if (!order) return;
    const std::string id = id_key(booking, message_id);
    MDB_val okv = val(*order), k = val(id);
    check(mdb_del(t, env_->outbox, &okv, nullptr), "del outbox");
    check(mdb_del(t, env_->outbox_ids, &k, nullptr), "del outbox_ids");
  });
}

void EdgeStore::add_booking(const std::string& booking) {
  env_->txn(true, [&](MDB_txn* t) {
    MDB_val k = val(booking), v{0, nullptr};
    const int rc = mdb_put(t, env_->bookings, &k, &v, MDB_NOOVERWRITE);
    if (rc != MDB_KEYEXIST) check(rc, "put booking");
  });
}

std::vector<std::string> EdgeStore::bookings() const {
  std::vector<std::string> out;
  env_->txn(false, [&](MDB_txn* t) {
    env_->each(t, env_->bookings, [&](std::string_view k, std::string_view) { out.emplace_back(k); });
  });
  return out;
}

void EdgeStore::put_presence(const std::string& booking, const std::string& payload) {
  env_->txn(true, [&](MDB_txn* t) {
    MDB_val k = val(booking), v = val(payload);
    check(mdb_put(t, env_->presence, &k, &v, 0), "put presence");
  });
}

std::vector<std::pair<std::string, std::string>> EdgeStore::all_presence() const {
  std::vector<std::pair<std::string, std::string>> out;
  env_->txn(false, [&](MDB_txn* t) {
    env_->each(t, env_->presence, [&](std::string_view k, std::string_view v) { out.emplace_back(k, v); });
  });
  return out;
}

}  // namespace navietakie
