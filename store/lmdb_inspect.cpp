// LmdbInspector: read-only scans of an LMDB data dir with the layout of store/keys.hpp. Apart from
// the LMDB store on purpose: it opens the env with MDB_RDONLY in a process of its own (the ctl),
// never through the hosts' Store, which would create the dir and write the schema record.
#include "store/lmdb_inspect.hpp"

#include <fcntl.h>
#include <lmdb.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string_view>
#include <utility>

#include "store/keys.hpp"
#include "store/lmdb_handles.hpp"
#include "store/serialize.hpp"
#include "store/store.hpp"

namespace navietakie {
namespace {

// Room for the databases of later builds too: stats lists every named one.
constexpr MDB_dbi kMaxDbs = 64;
constexpr std::uint64_t kKnownSchemaVersion = keys::kSchemaVersion;

using namespace lmdb;

// A cursor and where it stands: valid until the txn ends.
class Scan {
 public:
  Scan(MDB_txn* txn, MDB_dbi dbi) : cursor_(txn, dbi) {}
  bool first() { return cursor_.get(key, data, MDB_FIRST); }
  bool next() { return cursor_.get(key, data, MDB_NEXT); }
  bool seek(std::string_view at) {
    key = to_val(at);
    return cursor_.get(key, data, MDB_SET_RANGE);
  }

  MDB_val key{};
  MDB_val data{};

 private:
  Cursor cursor_;
};

Txn read_txn(MDB_env* env) { return Txn::begin(env, nullptr, MDB_RDONLY); }

// A composite key (booking '\0' rest) split, or nullopt when it has no '\0'.
std::optional<std::pair<std::string, std::string>> split_key(std::string_view key) {
  const std::size_t nul = key.find('\0');
  if (nul == std::string_view::npos || nul == 0) return std::nullopt;
  return std::make_pair(std::string(key.substr(0, nul)), std::string(key.substr(nul + 1)));
}

// A key for a problem line: printable bytes as they are, others as \xHH.
std::string printable(std::string_view bytes) {
  static const char* const hex = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && byte != '\\') {
      out.push_back(c);
    } else {
      out += "\\x";
      out.push_back(hex[byte >> 4]);
      out.push_back(hex[byte & 0xfU]);
    }
  }
  return out;
}

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) throw StoreError(StoreError::Kind::io, "open " + path + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) throw StoreError(StoreError::Kind::io, "fsync " + path + ": " + std::strerror(saved));
}

// Collects problems: counts them all, keeps the first `max` lines.
class Problems {
 public:
  Problems(VerifyReport& report, std::size_t max) : report_(report), max_(max) {}
  void add(std::string line) {
    ++report_.problems;
    if (report_.problem_lines.size() < max_) report_.problem_lines.push_back(std::move(line));
  }

 private:
  VerifyReport& report_;
  std::size_t max_;
};

}  // namespace

struct LmdbInspector::Env {
  std::string dir;
  MDB_env* env = nullptr;
  std::map<std::string, MDB_dbi, std::less<>> dbs;  // the databases of store/keys.hpp, by name

  MDB_dbi db(std::string_view name) const { return dbs.find(name)->second; }

  ~Env() {
    if (env != nullptr) mdb_env_close(env);
  }
};

LmdbInspector::LmdbInspector(const std::string& dir) : env_(std::make_unique<Env>()) {
  namespace fs = std::filesystem;
  env_->dir = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw StoreOpenError("cannot open " + dir + ": not a directory");
  if (!fs::exists(fs::path(dir) / "data.mdb", ec)) {
    throw StoreOpenError("cannot open " + dir + ": no data.mdb (not an LMDB data dir)");
  }
  auto open_error = [&](const std::string& what, int rc) {
    return StoreOpenError("cannot open " + dir + ": " + what + ": " + mdb_strerror(rc));
  };
  int rc = mdb_env_create(&env_->env);
  if (rc != MDB_SUCCESS) throw open_error("mdb_env_create", rc);
  rc = mdb_env_set_maxdbs(env_->env, kMaxDbs);
  if (rc != MDB_SUCCESS) throw open_error("mdb_env_set_maxdbs", rc);
  // The map size is the one the store recorded (LMDB adopts it when opening an existing file).
  rc = mdb_env_open(env_->env, dir.c_str(), MDB_RDONLY | MDB_NOTLS, 0644);
  if (rc != MDB_SUCCESS) throw open_error("mdb_env_open", rc);

  // Handles opened in a read txn that commits stay valid for the env's life.
  MDB_txn* txn = nullptr;
  rc = mdb_txn_begin(env_->env, nullptr, MDB_RDONLY, &txn);
  if (rc != MDB_SUCCESS) throw open_error("mdb_txn_begin", rc);
  for (const char* name : {keys::db::messages, keys::db::message_ids, keys::db::calls, keys::db::active_calls,
                           keys::db::ringing_calls, keys::db::connections, keys::db::presence, keys::db::meta}) {
    MDB_dbi dbi = 0;
    rc = mdb_dbi_open(txn, name, 0, &dbi);
    if (rc != MDB_SUCCESS) {
      mdb_txn_abort(txn);
      if (rc == MDB_NOTFOUND) {
        throw StoreOpenError("cannot open " + dir + ": not a navietakie store (no '" + name + "' database)");
      }
      throw open_error(std::string("mdb_dbi_open ") + name, rc);
    }
    env_->dbs.emplace(name, dbi);
  }
  rc = mdb_txn_commit(txn);
  if (rc != MDB_SUCCESS) throw open_error("mdb_txn_commit", rc);
}

LmdbInspector::~LmdbInspector() = default;

std::uint64_t LmdbInspector::backup(const std::string& dest_dir) const {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dest_dir, ec);
  if (ec) throw StoreError(StoreError::Kind::io, "cannot create " + dest_dir + ": " + ec.message());
  const std::string copy = (fs::path(dest_dir) / "data.mdb").string();
  if (fs::exists(copy, ec)) {
    throw StoreError(StoreError::Kind::io, copy + " exists: a backup never overwrites one (give an empty DEST)");
  }
  if (fs::equivalent(dest_dir, env_->dir, ec)) throw StoreError(StoreError::Kind::io, "DEST is the data dir itself");
  check(mdb_env_copy2(env_->env, dest_dir.c_str(), MDB_CP_COMPACT), ("mdb_env_copy2 to " + dest_dir).c_str());
  // LMDB writes the copy without syncing it: the backup is on disk when this returns.
  fsync_path(copy, O_RDONLY);
  fsync_path(dest_dir, O_RDONLY | O_DIRECTORY);
  return fs::file_size(copy);
}

StoreStats LmdbInspector::stats() const {
  StoreStats out;
  out.dir = env_->dir;
  MDB_envinfo info{};
  check(mdb_env_info(env_->env, &info), "mdb_env_info");
  MDB_stat env_stat{};
  check(mdb_env_stat(env_->env, &env_stat), "mdb_env_stat");
  out.page_size = env_stat.ms_psize;
  out.map_size_bytes = info.me_mapsize;
  out.max_readers = info.me_maxreaders;
  std::error_code ec;
  const auto file_size = std::filesystem::file_size(std::filesystem::path(env_->dir) / "data.mdb", ec);
  out.file_bytes = ec ? 0 : file_size;
  // Reader slots held now, before this call takes one (mdb_reader_list: a header line, then one
  // line per reader).
  unsigned lines = 0;
  mdb_reader_list(
      env_->env,
      [](const char*, void* ctx) {
        ++*static_cast<unsigned*>(ctx);
        return 0;
      },
      &lines);
  out.readers_in_use = lines > 0 ? lines - 1 : 0;

  const Txn txn = read_txn(env_->env);
  // The snapshot's own figures (mdb_env_info's are of the newest commit, which may be later).
  out.last_txn_id = mdb_txn_id(txn.get());
  info = MDB_envinfo{};
  check(mdb_env_info(env_->env, &info), "mdb_env_info");
  out.used_bytes = (static_cast<std::uint64_t>(info.me_last_pgno) + 1) * out.page_size;

  auto entries = [&](MDB_dbi dbi) {
    MDB_stat st{};
    check(mdb_stat(txn.get(), dbi, &st), "mdb_stat");
    return static_cast<std::uint64_t>(st.ms_entries);
  };
  out.messages = entries(env_->db(keys::db::messages));
  out.calls = entries(env_->db(keys::db::calls));
  out.active_calls = entries(env_->db(keys::db::active_calls));
  out.ringing_calls = entries(env_->db(keys::db::ringing_calls));
  out.connections = entries(env_->db(keys::db::connections));
  out.presence_records = entries(env_->db(keys::db::presence));
  if (const auto version = lookup(txn.get(), env_->db(keys::db::meta), keys::schema_version)) out.schema_version = keys::from_be64(*version);

  // Distinct bookings: one seek per booking, past its last message key.
  Scan messages(txn.get(), env_->db(keys::db::messages));
  for (bool more = messages.first(); more;) {
    const auto parts = split_key(view(messages.key));
    ++out.bookings;
    if (!parts) {
      more = messages.next();
      continue;
    }
    const std::string end = keys::booking_end(parts->first);
    more = messages.seek(end);
  }

  // Every named database: the keys of the unnamed (main) one.
  MDB_dbi main_db = 0;
  check(mdb_dbi_open(txn.get(), nullptr, 0, &main_db), "mdb_dbi_open");
  Scan names(txn.get(), main_db);
  for (bool more = names.first(); more; more = names.next()) {
    DatabaseStats db;
    db.name = std::string(view(names.key));
    MDB_dbi dbi = 0;
    if (mdb_dbi_open(txn.get(), db.name.c_str(), 0, &dbi) != MDB_SUCCESS) continue;  // not a database
    MDB_stat st{};
    check(mdb_stat(txn.get(), dbi, &st), ("mdb_stat " + db.name).c_str());
    db.entries = st.ms_entries;
    db.bytes = (static_cast<std::uint64_t>(st.ms_branch_pages) + st.ms_leaf_pages + st.ms_overflow_pages) * st.ms_psize;
    out.databases.push_back(std::move(db));
  }
  return out;
}

VerifyReport LmdbInspector::verify(std::size_t max_problems) const {
  VerifyReport report;
  Problems problems(report, max_problems);
  const Txn txn = read_txn(env_->env);

  if (const auto version = lookup(txn.get(), env_->db(keys::db::meta), keys::schema_version)) {
    try {
      const std::uint64_t number = keys::from_be64(*version);
      if (number != kKnownSchemaVersion) {
        problems.add("meta: schema version " + std::to_string(number) + " (this build reads " +
                     std::to_string(kKnownSchemaVersion) + ")");
      }
    } catch (const StoreError& error) {
      problems.add(std::string("meta: schema version: ") + error.what());
    }
  } else {
    problems.add("meta: no schema version");
  }

  // Messages, in key order: each booking's run of seqs, and each message's index entry.
  std::string booking;
  std::uint64_t previous_seq = 0;
  std::uint64_t indexed = 0;
  std::uint64_t undecodable = 0;  // their index entries cannot be checked
  Scan messages(txn.get(), env_->db(keys::db::messages));
  for (bool more = messages.first(); more; more = messages.next()) {
    ++report.messages;
    const std::string_view key = view(messages.key);
    const auto parts = split_key(key);
    if (!parts || parts->second.size() != 8) {
      problems.add("messages: malformed key '" + printable(key) + "'");
      continue;
    }
    const std::uint64_t seq = keys::from_be64(parts->second);
    const std::string where = parts->first + " seq " + std::to_string(seq);
    if (parts->first != booking) {
      booking = parts->first;
      ++report.bookings;
      previous_seq = 0;
      if (seq != 1) problems.add(booking + ": seqs start at " + std::to_string(seq) + ", not 1");
    } else if (seq != previous_seq + 1) {
      problems.add(booking + ": gap after seq " + std::to_string(previous_seq) + " (next is " + std::to_string(seq) +
                   ")");
    }
    previous_seq = seq;

    Message message;
    try {
      message = decode_message(view(messages.data));
    } catch (const StoreError& error) {
      problems.add(where + ": does not decode: " + error.what());
      ++undecodable;
      continue;
    }
    if (message.booking_code != parts->first || message.seq != seq) {
      problems.add(where + ": the record says " + message.booking_code + " seq " + std::to_string(message.seq));
    }
    const auto index = lookup(txn.get(), env_->db(keys::db::message_ids), keys::message_id(parts->first, message.message_id));
    if (!index) {
      problems.add(where + ": message_id '" + printable(message.message_id) + "' is not in the message_id index");
    } else if (index->size() != 8 || keys::from_be64(*index) != seq) {
      problems.add(where + ": message_id '" + printable(message.message_id) + "' is indexed to another seq");
    } else {
      ++indexed;
    }
  }
  // Every message found its own entry, so the index has no other entries when the counts agree
  // (allowing one each to the messages that do not decode, reported above).
  MDB_stat id_stat{};
  check(mdb_stat(txn.get(), env_->db(keys::db::message_ids), &id_stat), "mdb_stat message_ids");
  if (id_stat.ms_entries > indexed + undecodable) {
    problems.add("message_ids: " + std::to_string(id_stat.ms_entries) + " entries for " + std::to_string(indexed) +
                 " indexed messages (entries naming no message)");
  }

  // Calls, and the two indexes over them.
  std::map<std::string, std::string> active_by_booking;  // booking -> call_id of its active calls
  std::uint64_t active = 0;
  std::uint64_t ringing = 0;
  Scan calls(txn.get(), env_->db(keys::db::calls));
  for (bool more = calls.first(); more; more = calls.next()) {
    ++report.calls;
    const std::string_view key = view(calls.key);
    const auto parts = split_key(key);
    if (!parts) {
      problems.add("calls: malformed key '" + printable(key) + "'");
      continue;
    }
    const std::string where = parts->first + " call " + printable(parts->second);
    Call call;
    try {
      call = decode_call(view(calls.data));
    } catch (const StoreError& error) {
      problems.add(where + ": does not decode: " + error.what());
      continue;
    }
    if (call.booking_code != parts->first || call.call_id != parts->second) {
      problems.add(where + ": the record says " + call.booking_code + " call " + printable(call.call_id));
    }
    if (call.active()) {
      ++active;
      if (!active_by_booking.emplace(call.booking_code, call.call_id).second) {
        problems.add(call.booking_code + ": more than one active call");
      }
      const auto index = lookup(txn.get(), env_->db(keys::db::active_calls), keys::active_call(call.booking_code));
      if (!index || *index != call.call_id) problems.add(where + ": active but not the booking's active call");
    }
    const bool in_ringing_index = lookup(txn.get(), env_->db(keys::db::ringing_calls), key).has_value();
    if (call.state == CallState::ringing) ++ringing;
    if ((call.state == CallState::ringing) != in_ringing_index) {
      problems.add(where + (in_ringing_index ? ": in the ringing index but not ringing" : ": ringing but not indexed"));
    }
  }
  MDB_stat index_stat{};
  check(mdb_stat(txn.get(), env_->db(keys::db::active_calls), &index_stat), "mdb_stat active_calls");
  if (index_stat.ms_entries != active_by_booking.size()) {
    problems.add("active_calls: " + std::to_string(index_stat.ms_entries) + " entries for " + std::to_string(active) +
                 " active calls");
  }
  check(mdb_stat(txn.get(), env_->db(keys::db::ringing_calls), &index_stat), "mdb_stat ringing_calls");
  if (index_stat.ms_entries != ringing) {
    problems.add("ringing_calls: " + std::to_string(index_stat.ms_entries) + " entries for " +
                 std::to_string(ringing) + " ringing calls");
  }

  Scan connections(txn.get(), env_->db(keys::db::connections));
  for (bool more = connections.first(); more; more = connections.next()) {
    const std::string_view key = view(connections.key);
    const auto parts = split_key(key);
    try {
      const Connection record = decode_connection(view(connections.data));
      if (!parts || record.booking_code != parts->first || record.client_id != parts->second) {
        problems.add("connections: key '" + printable(key) + "' holds " + record.booking_code + " client " +
                     printable(record.client_id));
      }
    } catch (const StoreError& error) {
      problems.add("connections: '" + printable(key) + "' does not decode: " + error.what());
    }
  }
  Scan presence(txn.get(), env_->db(keys::db::presence));
  for (bool more = presence.first(); more; more = presence.next()) {
    const std::string_view key = view(presence.key);
    try {
      const Presence record = decode_presence(view(presence.data));
      if (record.booking_code != key) problems.add("presence: key '" + printable(key) + "' holds " + record.booking_code);
    } catch (const StoreError& error) {
      problems.add("presence: '" + printable(key) + "' does not decode: " + error.what());
    }
  }
  return report;
}

void LmdbInspector::for_each_message(const std::string& booking, std::uint64_t after_seq,
                                     const std::function<bool(const Message&)>& fn) const {
  const Txn txn = read_txn(env_->env);
  const std::string prefix = keys::booking_prefix(booking);
  const std::string start = keys::message(booking, after_seq + 1);
  Scan cursor(txn.get(), env_->db(keys::db::messages));
  for (bool more = cursor.seek(start); more && keys::has_prefix(view(cursor.key), prefix); more = cursor.next()) {
    if (!fn(decode_message(view(cursor.data)))) return;
  }
}

}  // namespace navietakie
