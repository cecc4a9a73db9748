// The LMDB backend of Store. Key layout: store/keys.hpp; value encoding: store/serialize.hpp.
//
// Rules kept here (lmdb.h): one env per data dir per process; a txn not committed aborts in its
// destructor; cursors are closed before their txn commits (they never outlive a method); bytes
// are decoded or copied out of an MDB_val at once, never kept past the next write or txn end.
#include <lmdb.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "store/keys.hpp"
#include "store/lmdb_handles.hpp"
#include "store/serialize.hpp"
#include "store/store.hpp"

namespace navietakie {
namespace {

using keys::kSchemaVersion;
constexpr MDB_dbi kMaxDbs = 16;

using namespace lmdb;

// ---- plain operations ----

struct Dbs {
  MDB_dbi messages = 0;
  MDB_dbi message_ids = 0;
  MDB_dbi calls = 0;
  MDB_dbi active_calls = 0;
  MDB_dbi ringing_calls = 0;
  MDB_dbi connections = 0;
  MDB_dbi presence = 0;
  MDB_dbi booking_states = 0;
  MDB_dbi closed_bookings = 0;
  MDB_dbi meta = 0;
  MDB_dbi read_receipts = 0;
};

StoreError corrupt(const std::string& what) { return StoreError(StoreError::Kind::io, "corrupt store: " + what); }

// Highest seq of the booking, leaving the cursor on its newest message when there is one.
// No counter record: the booking's keys are contiguous and ordered by seq, so the newest is the
// last key before booking '\x01'.
std::uint64_t last_seq_at(Cursor& cursor, const std::string& booking) {
  const std::string prefix = keys::booking_prefix(booking);
  const std::string end = keys::booking_end(booking);
  MDB_val key = to_val(end);
  MDB_val data{};
  const bool found =
      cursor.get(key, data, MDB_SET_RANGE) ? cursor.get(key, data, MDB_PREV) : cursor.get(key, data, MDB_LAST);
  if (!found || !keys::has_prefix(view(key), prefix)) return 0;
  return keys::message_seq(view(key), prefix);
}

// The reader methods, against whichever txn is innermost (a writer's unit() moves txn_ down into
// its nested txn, so reads see the unit's own writes).
template <class Interface>
class LmdbReadOps : public Interface {
 public:
  std::uint64_t last_seq(const std::string& booking) const override {
    Cursor cursor(txn_, dbs_.messages);
    return last_seq_at(cursor, booking);
  }

  std::optional<Message> message(const std::string& booking, std::uint64_t seq) const override {
    const auto bytes = lookup(txn_, dbs_.messages, keys::message(booking, seq));
    if (!bytes) return std::nullopt;
    return decode_message(*bytes);
  }

  std::optional<Message> message_by_id(const std::string& booking, const std::string& message_id) const override {
    const auto seq_bytes = lookup(txn_, dbs_.message_ids, keys::message_id(booking, message_id));
    if (!seq_bytes) return std::nullopt;
    const std::uint64_t seq = keys::from_be64(*seq_bytes);
    auto found = message(booking, seq);
    if (!found) throw corrupt("message_id " + message_id + " names missing seq " + std::to_string(seq));
    return found;
  }

  HistoryPage history(const std::string& booking, const HistoryQuery& query) const override {
    if (query.before_seq && query.after_seq) {
      throw std::invalid_argument("history: before_seq and after_seq are exclusive");
    }
    HistoryPage page;
    Cursor cursor(txn_, dbs_.messages);
    page.last_seq = last_seq_at(cursor, booking);
    if (page.last_seq == 0) return page;

    const std::string prefix = keys::booking_prefix(booking);
    MDB_val key{};
    MDB_val data{};
    bool positioned = false;
    MDB_cursor_op step = MDB_PREV;
    std::string start;  // owns the bytes a seek key points at
    if (query.after_seq) {
      if (*query.after_seq >= page.last_seq) return page;
      start = keys::message(booking, *query.after_seq + 1);
      key = to_val(start);
      positioned = cursor.get(key, data, MDB_SET_RANGE);
      step = MDB_NEXT;
    } else if (query.before_seq && *query.before_seq <= page.last_seq) {
      // A key >= before_seq exists in the booking (last_seq's), so the seek lands; step back once.
      start = keys::message(booking, *query.before_seq);
      key = to_val(start);
      positioned = cursor.get(key, data, MDB_SET_RANGE) && cursor.get(key, data, MDB_PREV);
    } else {
      // Newest first: last_seq_at left the cursor on the booking's newest message.
      positioned = cursor.get(key, data, MDB_GET_CURRENT);
    }

    // Walk away from the cursor until limit+1 matches: the extra one only proves has_more.
    const bool filtered = !query.types.empty() || query.sender || query.since || query.until;
    auto& out = page.messages;
    while (positioned && keys::has_prefix(view(key), prefix)) {
      if (!filtered && out.size() == query.limit) {  // every message matches: no need to decode it
        page.has_more = true;
        break;
      }
      Message candidate = decode_message(view(data));
      if (query.matches(candidate)) {
        if (out.size() == query.limit) {
          page.has_more = true;
          break;
        }
        out.push_back(std::move(candidate));
      }
      positioned = cursor.get(key, data, step);
    }
    if (step == MDB_PREV) std::reverse(out.begin(), out.end());
    return page;
  }

  std::optional<Call> call(const std::string& booking, const std::string& call_id) const override {
    const auto bytes = lookup(txn_, dbs_.calls, keys::call(booking, call_id));
    if (!bytes) return std::nullopt;
    return decode_call(*bytes);
  }

  std::optional<Call> active_call(const std::string& booking) const override {
    const auto id = lookup(txn_, dbs_.active_calls, keys::active_call(booking));
    if (!id) return std::nullopt;
    const std::string call_id(*id);
    auto found = call(booking, call_id);
    if (!found) throw corrupt("active call " + call_id + " of " + booking + " is missing");
    return found;
  }

  std::vector<Call> ringing_calls() const override {
    std::vector<Call> out;
    Cursor cursor(txn_, dbs_.ringing_calls);
    MDB_val key{};
    MDB_val data{};
    for (bool more = cursor.get(key, data, MDB_FIRST); more; more = cursor.get(key, data, MDB_NEXT)) {
      // The index key is the calls key.
      const auto bytes = lookup(txn_, dbs_.calls, view(key));
      if (!bytes) throw corrupt("ringing index names a missing call");
      out.push_back(decode_call(*bytes));
    }
    return out;
  }

  std::vector<Connection> connections(const std::string& booking) const override {
    std::vector<Connection> out;
    const std::string prefix = keys::booking_prefix(booking);
    Cursor cursor(txn_, dbs_.connections);
    MDB_val key = to_val(prefix);
    MDB_val data{};
    for (bool more = cursor.get(key, data, MDB_SET_RANGE); more && keys::has_prefix(view(key), prefix);
         more = cursor.get(key, data, MDB_NEXT)) {
      out.push_back(decode_connection(view(data)));
    }
    return out;
  }

  std::optional<Presence> presence(const std::string& booking) const override {
    return one_record(dbs_.presence, keys::presence(booking), decode_presence);
  }

  std::vector<Presence> all_presence() const override { return every_record(dbs_.presence, decode_presence); }

  std::optional<ReadReceipts> read_receipts(const std::string& booking) const override {
    return one_record(dbs_.read_receipts, keys::read_receipts(booking), decode_read_receipts);
  }

  std::vector<ReadReceipts> all_read_receipts() const override {
    return every_record(dbs_.read_receipts, decode_read_receipts);
  }

  std::optional<BookingState> booking_state(const std::string& booking) const override {
    return one_record(dbs_.booking_states, keys::booking_state(booking), decode_booking_state);
  }

  std::vector<BookingState> closed_bookings() const override {
    return every_record(dbs_.booking_states, decode_booking_state);
  }

  std::vector<BookingState> closed_before(Millis cutoff, std::size_t limit) const override {
    std::vector<BookingState> out;
    Cursor cursor(txn_, dbs_.closed_bookings);
    MDB_val key{};
    MDB_val data{};
    for (bool more = cursor.get(key, data, MDB_FIRST); more && out.size() < limit;
         more = cursor.get(key, data, MDB_NEXT)) {
      const std::string_view k = view(key);
      if (k.size() <= 8) throw corrupt("closed_bookings key");
      if (static_cast<Millis>(keys::from_be64(k.substr(0, 8))) >= cutoff) break;
      auto state = booking_state(std::string(k.substr(8)));
      if (!state) throw corrupt("closed_bookings names a booking without a state");
      out.push_back(std::move(*state));
    }
    return out;
  }

 protected:
  LmdbReadOps(const Dbs& dbs, MDB_txn* txn) : dbs_(dbs), txn_(txn) {}

  // The record under `key` of a table keyed by booking alone (presence, read receipts).
  template <class Record>
  std::optional<Record> one_record(MDB_dbi dbi, const std::string& key, Record (*decode)(std::string_view)) const {
    const auto bytes = lookup(txn_, dbi, key);
    if (!bytes) return std::nullopt;
    return decode(*bytes);
  }

  // Every record of such a table, in booking order.
  template <class Record>
  std::vector<Record> every_record(MDB_dbi dbi, Record (*decode)(std::string_view)) const {
    std::vector<Record> out;
    Cursor cursor(txn_, dbi);
    MDB_val key{};
    MDB_val data{};
    for (bool more = cursor.get(key, data, MDB_FIRST); more; more = cursor.get(key, data, MDB_NEXT)) {
      out.push_back(decode(view(data)));
    }
    return out;
  }

  const Dbs& dbs_;
  MDB_txn* txn_;  // the innermost active txn
};

class LmdbReader final : public LmdbReadOps<StoreReader> {
 public:
  LmdbReader(const Dbs& dbs, MDB_txn* txn) : LmdbReadOps(dbs, txn) {}
};

// The bytes a write transaction builds its keys and values in, kept from one transaction to the
// next so that, once they have grown to the records' size, an append allocates nothing for them.
// One set per store is enough: LMDB lets one write transaction run at a time (the others wait in
// mdb_txn_begin), and a buffer is used only while its transaction is.
struct WriteBuffers {
  std::string message_key;
  std::string id_key;
  std::string value;
};

class LmdbWriter final : public LmdbReadOps<StoreWriter> {
 public:
  LmdbWriter(const Dbs& dbs, MDB_env* env, MDB_txn* txn, WriteBuffers& buffers)
      : LmdbReadOps(dbs, txn), env_(env), buffers_(buffers) {}

  void append_message(const Message& m) override {
    const std::uint64_t last = last_seq(m.booking_code);
    if (m.seq != last + 1) {
      throw std::logic_error("append_message: " + m.booking_code + " seq " + std::to_string(m.seq) +
                             " does not follow last_seq " + std::to_string(last));
    }
    const std::string& id_key = keys::message_id_into(buffers_.id_key, m.booking_code, m.message_id);
    if (lookup(txn_, dbs_.message_ids, id_key)) {
      throw std::logic_error("append_message: " + m.booking_code + " already has message_id " + m.message_id);
    }
    encode_into(m, buffers_.value);
    put(dbs_.messages, keys::message_into(buffers_.message_key, m.booking_code, m.seq), buffers_.value);
    put(dbs_.message_ids, id_key, keys::be64(m.seq));
  }

  void put_call(const Call& record) override {
    const std::string key = keys::call(record.booking_code, record.call_id);
    const std::string active_key = keys::active_call(record.booking_code);
    std::optional<std::string> active_id;
    if (const auto id = lookup(txn_, dbs_.active_calls, active_key)) active_id = std::string(*id);

    // The index holds one call per booking; overwriting it would orphan the other active call.
    if (record.active() && active_id && *active_id != record.call_id) {
      throw std::logic_error("put_call: " + record.booking_code + " already has active call " + *active_id);
    }
    encode_into(record, buffers_.value);
    put(dbs_.calls, key, buffers_.value);
    if (record.state == CallState::ringing) {
      put(dbs_.ringing_calls, key, std::string_view(""));  // presence of the key is the index
    } else {
      del(dbs_.ringing_calls, key);
    }
    if (record.active()) {
      if (!active_id) put(dbs_.active_calls, active_key, record.call_id);
    } else if (active_id == record.call_id) {
      del(dbs_.active_calls, active_key);
    }
  }

  void put_connection(const Connection& record) override {
    encode_into(record, buffers_.value);
    put(dbs_.connections, keys::connection(record.booking_code, record.client_id), buffers_.value);
  }

  void put_presence(const Presence& record) override {
    encode_into(record, buffers_.value);
    put(dbs_.presence, keys::presence(record.booking_code), buffers_.value);
  }

  void put_read_receipts(const ReadReceipts& record) override {
    encode_into(record, buffers_.value);
    put(dbs_.read_receipts, keys::read_receipts(record.booking_code), buffers_.value);
  }

  void put_booking_state(const BookingState& record) override {
    const std::string key = keys::booking_state(record.booking_code);
    if (const auto old = lookup(txn_, dbs_.booking_states, key)) {
      const BookingState before = decode_booking_state(*old);
      if (before.closed) del(dbs_.closed_bookings, keys::closed_booking(before.closed_at, before.booking_code));
    }
    encode_into(record, buffers_.value);
    put(dbs_.booking_states, key, buffers_.value);
    if (record.closed) put(dbs_.closed_bookings, keys::closed_booking(record.closed_at, record.booking_code), "");
  }

  std::size_t purge_booking(const std::string& booking, std::size_t max_keys) override {
    std::size_t deleted = 0;
    const std::string prefix = keys::booking_prefix(booking);
    // Ids before their messages: a message id never names a missing message (message_by_id).
    for (MDB_dbi dbi : {dbs_.message_ids, dbs_.messages, dbs_.ringing_calls, dbs_.calls, dbs_.connections}) {
      Cursor cursor(txn_, dbi);
      MDB_val key{};
      MDB_val data{};
      // Seeks the booking's first key again after each delete (a few pages, cached): simpler to
      // trust than the cursor's position after mdb_cursor_del.
      for (;;) {
        key = to_val(prefix);
        if (!cursor.get(key, data, MDB_SET_RANGE) || !keys::has_prefix(view(key), prefix)) break;
        if (deleted == max_keys) return deleted;
        checked_write(cursor.del(), "mdb_cursor_del");
        ++deleted;
      }
    }
    // The single keys, the booking state last.
    const auto state = booking_state(booking);
    for (auto [dbi, key] : {std::pair{dbs_.active_calls, keys::active_call(booking)},
                            std::pair{dbs_.presence, keys::presence(booking)},
                            std::pair{dbs_.read_receipts, keys::read_receipts(booking)}}) {
      if (!lookup(txn_, dbi, key)) continue;
      if (deleted == max_keys) return deleted;
      del(dbi, key);
      ++deleted;
    }
    if (state) {  // the state and its index entry count as one
      if (deleted == max_keys) return deleted;
      if (state->closed) del(dbs_.closed_bookings, keys::closed_booking(state->closed_at, booking));
      del(dbs_.booking_states, keys::booking_state(booking));
      ++deleted;
    }
    return deleted;
  }

  // A nested txn: aborting it drops exactly the unit's writes, and an LMDB failure inside it
  // (MDB_MAP_FULL poisons the txn it happens in) poisons only the child.
  void unit(const std::function<void()>& fn) override {
    Txn child = Txn::begin(env_, txn_, 0);
    MDB_txn* const parent = txn_;
    std::optional<StoreError> parent_failure = std::exchange(failure_, std::nullopt);
    txn_ = child.get();
    try {
      fn();
    } catch (...) {
      txn_ = parent;
      failure_ = std::move(parent_failure);
      throw;  // child aborts as it goes out of scope
    }
    txn_ = parent;
    std::optional<StoreError> child_failure = std::exchange(failure_, std::move(parent_failure));
    // fn swallowed an LMDB write failure: the child cannot commit, so the unit fails as a whole.
    if (child_failure) throw *child_failure;
    child.commit();
  }

  // An LMDB write failure that fn caught at the top level: the txn cannot commit.
  const std::optional<StoreError>& failure() const { return failure_; }

 private:
  void put(MDB_dbi dbi, std::string_view key, std::string_view value) {
    MDB_val k = to_val(key);
    MDB_val v = to_val(value);
    checked_write(mdb_put(txn_, dbi, &k, &v, 0), "mdb_put");
  }

  void del(MDB_dbi dbi, std::string_view key) {
    MDB_val k = to_val(key);
    const int rc = mdb_del(txn_, dbi, &k, nullptr);
    if (rc != MDB_NOTFOUND) checked_write(rc, "mdb_del");
  }

  void checked_write(int rc, const char* what) {
    if (rc == MDB_SUCCESS) return;
    try {
      fail(rc, what);
    } catch (const StoreError& e) {
      failure_ = e;
      throw;
    }
  }

  MDB_env* env_;
  WriteBuffers& buffers_;
  std::optional<StoreError> failure_;  // of the innermost txn
};

// One env per data dir per process (lmdb.h: opening it twice breaks its locking).
class DirClaim {
 public:
  explicit DirClaim(std::string dir) : dir_(std::move(dir)) {
    std::lock_guard<std::mutex> lock(mutex());
    if (!claimed().insert(dir_).second) {
      throw StoreError(StoreError::Kind::io, "LMDB data dir already open in this process: " + dir_);
    }
  }
  ~DirClaim() {
    std::lock_guard<std::mutex> lock(mutex());
    claimed().erase(dir_);
  }
  DirClaim(const DirClaim&) = delete;
  DirClaim& operator=(const DirClaim&) = delete;

  const std::string& dir() const { return dir_; }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::set<std::string>& claimed() {
    static std::set<std::string> dirs;
    return dirs;
  }
  std::string dir_;
};

// mkdir -p, then the canonical path (so two spellings of one dir are one claim).
std::string prepare_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw StoreError(StoreError::Kind::io, "cannot create data dir " + dir + ": " + ec.message());
  auto canonical = std::filesystem::canonical(dir, ec);
  if (ec) throw StoreError(StoreError::Kind::io, "cannot resolve data dir " + dir + ": " + ec.message());
  return canonical.string();
}

unsigned env_flags(SyncMode sync) {
  // MDB_NOTLS: read txns are not tied to a thread (a reader slot per txn, not per thread).
  unsigned flags = MDB_NOTLS;
  switch (sync) {
    case SyncMode::full: break;
    case SyncMode::nometasync: flags |= MDB_NOMETASYNC; break;
    case SyncMode::nosync: flags |= MDB_NOSYNC; break;
  }
  return flags;
}

class LmdbStore final : public Store {
 public:
  explicit LmdbStore(const LmdbOptions& options) : claim_(prepare_dir(options.dir)), sync_(options.sync) {
    check(mdb_env_set_maxdbs(env_.get(), kMaxDbs), "mdb_env_set_maxdbs");
    check(mdb_env_set_mapsize(env_.get(), options.map_size_bytes), "mdb_env_set_mapsize");
    const int rc = mdb_env_open(env_.get(), claim_.dir().c_str(), env_flags(sync_), 0644);
    if (rc != MDB_SUCCESS) fail(rc, "mdb_env_open " + claim_.dir());

    // Handles opened in a write txn are shared by every txn once it commits.
    Txn txn = Txn::begin(env_.get(), nullptr, 0);
    auto open_db = [&](const char* name) {
      MDB_dbi dbi = 0;
      check(mdb_dbi_open(txn.get(), name, MDB_CREATE, &dbi), name);
      return dbi;
    };
    dbs_.messages = open_db(keys::db::messages);
    dbs_.message_ids = open_db(keys::db::message_ids);
    dbs_.calls = open_db(keys::db::calls);
    dbs_.active_calls = open_db(keys::db::active_calls);
    dbs_.ringing_calls = open_db(keys::db::ringing_calls);
    dbs_.connections = open_db(keys::db::connections);
    dbs_.presence = open_db(keys::db::presence);
    dbs_.booking_states = open_db(keys::db::booking_states);
    dbs_.closed_bookings = open_db(keys::db::closed_bookings);
    dbs_.meta = open_db(keys::db::meta);
    // Created in a data dir from before receipts too: a new table, not a new schema version.
    dbs_.read_receipts = open_db(keys::db::read_receipts);
    check_schema(txn.get());
    txn.commit();
  }

  ~LmdbStore() override {
    // Commits under nosync/nometasync left data or meta unsynced: flush before closing. A
    // destructor cannot report a failure; the data then is as durable as the sync mode promised.
    if (sync_ != SyncMode::full) (void)mdb_env_sync(env_.get(), 1);
  }

  LmdbStore(const LmdbStore&) = delete;
  LmdbStore& operator=(const LmdbStore&) = delete;

  void write(const std::function<void(StoreWriter&)>& fn) override {
    Txn txn = Txn::begin(env_.get(), nullptr, 0);
    LmdbWriter writer(dbs_, env_.get(), txn.get(), buffers_);
    fn(writer);  // on throw, txn aborts
    // LMDB refuses to commit a txn a write failed in; report the original failure, not that.
    if (writer.failure()) throw *writer.failure();
    txn.commit();
  }

  void read(const std::function<void(const StoreReader&)>& fn) const override {
    Txn txn = Txn::begin(env_.get(), nullptr, MDB_RDONLY);
    const LmdbReader reader(dbs_, txn.get());
    fn(reader);
  }  // a read txn just ends (abort releases its reader slot)

 private:
  void check_schema(MDB_txn* txn) {
    const std::string key(keys::schema_version);
    const auto stored = lookup(txn, dbs_.meta, key);
    const auto write_version = [&] {
      const std::string value = keys::be64(kSchemaVersion);
      MDB_val k = to_val(key);
      MDB_val v = to_val(value);
      check(mdb_put(txn, dbs_.meta, &k, &v, 0), "mdb_put schema_version");
    };
    if (!stored) {
      write_version();
      return;
    }
    std::uint64_t version = keys::from_be64(*stored);
    if (version == 1) {  // before close: its new databases were just created, empty
      write_version();
      version = kSchemaVersion;
    }
    if (version > kSchemaVersion) {
      throw StoreError(StoreError::Kind::io, "data dir " + claim_.dir() + " has schema version " +
                                                 std::to_string(version) + ", newer than this build's " +
                                                 std::to_string(kSchemaVersion));
    }
    if (version < kSchemaVersion) {  // none exist: version 1 is the first, upgraded above
      throw StoreError(StoreError::Kind::io,
                       "data dir " + claim_.dir() + " has unknown schema version " + std::to_string(version));
    }
  }

  DirClaim claim_;  // declared first: released only after the env is closed
  Env env_;
  Dbs dbs_;
  SyncMode sync_;
  WriteBuffers buffers_;  // for whichever write() holds LMDB's write lock
};

}  // namespace

std::unique_ptr<Store> open_lmdb_store(const LmdbOptions& options) { return std::make_unique<LmdbStore>(options); }

}  // namespace navietakie
