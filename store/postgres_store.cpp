// The PostgreSQL backend of Store. Schema: store/postgres_schema.cpp.
//
// Several hosts (bridges) write the same bookings at once under READ COMMITTED. What keeps the
// engine's read-then-write sequences (last_seq + 1, the message_id lookup, the active-call check,
// the presence recompute) correct across them: before a write transaction reads or writes a
// booking, it locks the booking's row in `bookings` (created if missing, then SELECT ... FOR
// UPDATE), once per booking per transaction. The engine locks a batch's bookings up front in
// sorted order (lock_bookings), so two hosts' batches never deadlock; a deadlock or serialization
// failure anyway fails the whole transaction (StoreError unavailable), never a false success.
//
// One PostgreSQL transaction per write() (group commit: one commit, synchronous_commit as the
// server has it), a SAVEPOINT per unit() that writes (rolled back to when the unit throws).
//
// A lost connection, a refused connect or a commit whose outcome is unknown is StoreError
// `unavailable`; the next write() / read() reconnects by itself. An in-doubt commit is never
// reported as success: the client resends with the same message_id, and UNIQUE(booking_code,
// message_id) makes the resend idempotent.
//
// The connection is used by one thread at a time (a mutex): the engine's thread, and the host's
// thread while Engine::start() runs before the loop starts.
#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <utility>

#include "store/postgres.hpp"
#include "store/postgres_schema.hpp"

namespace navietakie {
namespace {

// ---- names of the enums as stored (the CHECK constraints of the schema), indexed by the enum's
// value (store/records.hpp) ----

constexpr const char* kTypeNames[] = {"text", "call", "system"};
constexpr const char* kRoleNames[] = {"driver", "passenger", "system"};
constexpr const char* kStateNames[] = {"ringing", "connected", "ended"};
constexpr const char* kReasonNames[] = {"none", "completed", "declined", "cancelled", "missed", "booking_closed"};

StoreError corrupt(const std::string& what) { return StoreError(StoreError::Kind::io, "corrupt store: " + what); }

template <class Enum, std::size_t N>
const char* name_of(Enum value, const char* const (&names)[N]) {
  const auto index = static_cast<std::size_t>(value);
  if (index >= N) throw std::logic_error("enum value " + std::to_string(index) + " has no stored name");
  return names[index];
}

template <class Enum, std::size_t N>
Enum parse_name(const std::string& name, const char* const (&names)[N], const char* what) {
  for (std::size_t i = 0; i < N; ++i) {
    if (name == names[i]) return static_cast<Enum>(i);
  }
  throw corrupt(std::string("unknown ") + what + " '" + name + "'");
}

// ---- parameters: libpqxx 6 passes a null const char* as SQL NULL ----

const char* nullable(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }

std::optional<std::string> text_of(const std::optional<Millis>& v) {
  if (!v) return std::nullopt;
  return std::to_string(*v);
}

std::optional<Millis> optional_millis(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<Millis>();
}

// ---- rows -> records (column orders: the SELECT lists below) ----

// The columns of each table, in the order of the SELECT lists and INSERTs below; the first ones
// are the primary key.
const std::vector<std::string> kMessageColumns = {"booking_code", "seq",  "message_id", "type", "sender",
                                                  "sender_id",    "text", "data",       "ts"};
const std::vector<std::string> kCallColumns = {"booking_code", "call_id",      "caller",     "callee",
                                               "state",        "end_reason",   "created_at", "connected_at",
                                               "ended_at",     "ring_deadline"};
const std::vector<std::string> kConnectionColumns = {"booking_code", "client_id", "role", "online", "since"};
const std::vector<std::string> kBookingStateColumns = {"booking_code", "closed", "closed_at", "reason"};
const std::vector<std::string> kPresenceColumns = {"booking_code", "driver_online", "driver_since", "passenger_online",
                                                   "passenger_since"};
const std::vector<std::string> kReadReceiptColumns = {"booking_code", "driver_seq", "driver_at", "passenger_seq",
                                                      "passenger_at"};

std::string joined(const std::vector<std::string>& columns, std::size_t count = SIZE_MAX) {
  std::string out;
  for (std::size_t i = 0; i < columns.size() && i < count; ++i) out += (i > 0 ? ", " : "") + columns[i];
  return out;
}

std::string select_from(const char* table, const std::vector<std::string>& columns) {
  return "SELECT " + joined(columns) + " FROM " + table + " ";
}

// INSERT of every column ($1, $2, ... in order), or UPDATE of all but the first `key_columns`.
std::string upsert(const char* table, const std::vector<std::string>& columns, std::size_t key_columns) {
  std::string values;
  std::string updates;
  for (std::size_t i = 0; i < columns.size(); ++i) {
    values += (i > 0 ? ", $" : "$") + std::to_string(i + 1);
    if (i >= key_columns) updates += (updates.empty() ? "" : ", ") + columns[i] + " = EXCLUDED." + columns[i];
  }
  return std::string("INSERT INTO ") + table + " (" + joined(columns) + ") VALUES (" + values + ") ON CONFLICT (" +
         joined(columns, key_columns) + ") DO UPDATE SET " + updates;
}

Message message_of(const pqxx::row& r) {
  Message m;
  m.booking_code = r[0].as<std::string>();
  m.seq = r[1].as<std::uint64_t>();
  m.message_id = r[2].as<std::string>();
  m.type = parse_name<MessageType>(r[3].as<std::string>(), kTypeNames, "message type");
  m.sender = parse_name<Role>(r[4].as<std::string>(), kRoleNames, "role");
  if (!r[5].is_null()) m.sender_id = r[5].as<std::string>();
  m.text = r[6].as<std::string>();
  m.data_json = r[7].as<std::string>();
  m.ts = r[8].as<Millis>();
  return m;
}

Call call_of(const pqxx::row& r) {
  Call c;
  c.booking_code = r[0].as<std::string>();
  c.call_id = r[1].as<std::string>();
  c.from = parse_name<Role>(r[2].as<std::string>(), kRoleNames, "role");
  c.to = parse_name<Role>(r[3].as<std::string>(), kRoleNames, "role");
  c.state = parse_name<CallState>(r[4].as<std::string>(), kStateNames, "call state");
  c.end_reason = parse_name<EndReason>(r[5].as<std::string>(), kReasonNames, "end reason");
  c.created_at = r[6].as<Millis>();
  c.connected_at = optional_millis(r[7]);
  c.ended_at = optional_millis(r[8]);
  c.ring_deadline = r[9].as<Millis>();
  return c;
}

Connection connection_of(const pqxx::row& r) {
  return Connection{r[0].as<std::string>(), r[1].as<std::string>(),
                    parse_name<Role>(r[2].as<std::string>(), kRoleNames, "role"), r[3].as<bool>(), r[4].as<Millis>()};
}

Presence presence_of(const pqxx::row& r) {
  return Presence{r[0].as<std::string>(), RolePresence{r[1].as<bool>(), optional_millis(r[2])},
                  RolePresence{r[3].as<bool>(), optional_millis(r[4])}};
}

ReadReceipts read_receipts_of(const pqxx::row& r) {
  return ReadReceipts{r[0].as<std::string>(), RoleRead{r[1].as<std::uint64_t>(), optional_millis(r[2])},
                      RoleRead{r[3].as<std::uint64_t>(), optional_millis(r[4])}};
}

BookingState booking_state_of(const pqxx::row& r) {
  BookingState b{r[0].as<std::string>(), r[1].as<bool>(), r[2].as<Millis>(), std::nullopt};
  if (!r[3].is_null()) b.reason = r[3].as<std::string>();
  return b;
}

// The purge's tables, children first: the booking's row in `bookings` (its lock and last_seq) and
// its state go last, so that a purge cut short is found again and resumed.
constexpr const char* kPurgedTables[] = {"messages", "calls", "connections", "presence", "read_receipts"};

// ---- statements, prepared once per connection ----

// A message by its idempotency key; `booking` and `message_id` as placeholders or quoted literals.
std::string message_by_id_sql(const std::string& booking, const std::string& message_id) {
  return select_from("messages", kMessageColumns) + "WHERE booking_code = " + booking +
         " AND message_id = " + message_id;
}

// Locks a batch's bookings (`codes`: a quoted text[] literal): the rows first exist (a booking's
// first write), then are locked in code order; their last_seq comes along. Two statements in one
// round trip: the SELECT must see the rows the INSERT created. The INSERT leaves out the rows it
// can already see: ON CONFLICT on a row that another host's open transaction has updated waits for
// that transaction, and these rows are updated by every write.
std::string lock_bookings_sql(const std::string& codes) {
  return "INSERT INTO bookings (code) SELECT c FROM unnest(" + codes +
         "::text[]) AS c WHERE NOT EXISTS (SELECT 1 FROM bookings b WHERE b.code = c) ON CONFLICT DO NOTHING; " +
         "SELECT code, last_seq FROM bookings WHERE code = ANY(" + codes + "::text[]) ORDER BY code FOR UPDATE";
}

std::vector<std::pair<std::string, std::string>> statements() {
  const std::string messages = select_from("messages", kMessageColumns);
  const std::string calls = select_from("calls", kCallColumns);
  std::vector<std::pair<std::string, std::string>> out{
      {"last_seq", "SELECT last_seq FROM bookings WHERE code = $1"},
      {"message", messages + "WHERE booking_code = $1 AND seq = $2"},
      {"message_by_id", message_by_id_sql("$1", "$2")},
      {"call", calls + "WHERE booking_code = $1 AND call_id = $2"},
      {"active_call", calls + "WHERE booking_code = $1 AND state <> 'ended'"},
      {"ringing_calls", calls + "WHERE state = 'ringing'"},
      {"due_ringing_calls", calls + "WHERE state = 'ringing' AND ring_deadline <= $1 ORDER BY ring_deadline LIMIT $2"},
      {"connections", select_from("connections", kConnectionColumns) + "WHERE booking_code = $1 ORDER BY client_id"},
      {"presence", select_from("presence", kPresenceColumns) + "WHERE booking_code = $1"},
      {"all_presence", select_from("presence", kPresenceColumns) + "ORDER BY booking_code"},
      {"read_receipts", select_from("read_receipts", kReadReceiptColumns) + "WHERE booking_code = $1"},
      {"all_read_receipts", select_from("read_receipts", kReadReceiptColumns) + "ORDER BY booking_code"},
      // One round trip: the message and its booking's last_seq.
      {"append_message", "WITH m AS (INSERT INTO messages (" + joined(kMessageColumns) +
                             ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)) "
                             "UPDATE bookings SET last_seq = $2 WHERE code = $1"},
      {"put_call", upsert("calls", kCallColumns, 2)},
      {"put_connection", upsert("connections", kConnectionColumns, 2)},
      {"put_presence", upsert("presence", kPresenceColumns, 1)},
      {"put_read_receipts", upsert("read_receipts", kReadReceiptColumns, 1)},
      {"booking_state", select_from("booking_states", kBookingStateColumns) + "WHERE booking_code = $1"},
      {"closed_bookings", select_from("booking_states", kBookingStateColumns) + "WHERE closed ORDER BY booking_code"},
      {"closed_before", select_from("booking_states", kBookingStateColumns) +
                            "WHERE closed AND closed_at < $1 ORDER BY closed_at, booking_code LIMIT $2"},
      {"put_booking_state", upsert("booking_states", kBookingStateColumns, 1)},
      {"delete_booking_state", "DELETE FROM booking_states WHERE booking_code = $1"},
      {"delete_booking", "DELETE FROM bookings WHERE code = $1"},
  };
  // At most $2 rows of a booking per statement (a short transaction however large the booking).
  for (const char* table : kPurgedTables) {
    out.emplace_back(std::string("purge_") + table, std::string("DELETE FROM ") + table +
                                                        " WHERE ctid = ANY(ARRAY(SELECT ctid FROM " + table +
                                                        " WHERE booking_code = $1 LIMIT $2))");
  }
  return out;
}

void prepare_statements(pqxx::connection& c) {
  for (const auto& [name, text] : statements()) c.prepare(name, text);
}

// A text[] literal of booking codes (quoted: the codes' alphabet is the protocol's business).
std::string text_array(const std::vector<std::string>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char ch : values[i]) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }
  return out + "}";
}

// ---- errors ----

void refuse_nul(const std::string& value) {
  if (value.find('\0') != std::string::npos) {
    throw StoreError(StoreError::Kind::io, "PostgreSQL text cannot hold a NUL byte (U+0000)");
  }
}

// What a PostgreSQL failure means to the engine. Connection-class failures also mean the
// connection is to be replaced (`lost`).
struct Failure {
  StoreError error;
  bool lost;
};

bool sqlstate_class(const std::string& state, const char* cls) { return state.compare(0, 2, cls) == 0; }

// Call from a catch block only: classifies the exception being handled.
Failure classify(const std::string& what) {
  try {
    throw;
  } catch (const StoreError& e) {
    return Failure{e, false};
  } catch (const pqxx::in_doubt_error& e) {
    return Failure{StoreError(StoreError::Kind::unavailable,
                              what + ": commit outcome unknown (connection lost during COMMIT): " + e.what()),
                   true};
  } catch (const pqxx::broken_connection& e) {
    return Failure{StoreError(StoreError::Kind::unavailable, what + ": PostgreSQL connection lost: " + e.what()), true};
  } catch (const pqxx::transaction_rollback& e) {  // deadlock, serialization failure
    return Failure{StoreError(StoreError::Kind::unavailable, what + ": transaction rolled back: " + e.what()), false};
  } catch (const pqxx::sql_error& e) {
    const std::string state = e.sqlstate();
    // 08 connection exception, 57 operator intervention (shutdown, terminated backend),
    // 53 insufficient resources, 40 transaction rollback.
    const bool lost = sqlstate_class(state, "08") || sqlstate_class(state, "57");
    const bool transient = lost || sqlstate_class(state, "53") || sqlstate_class(state, "40");
    return Failure{StoreError(transient ? StoreError::Kind::unavailable : StoreError::Kind::io,
                              what + ": PostgreSQL error " + state + ": " + e.what()),
                   lost};
  } catch (const pqxx::usage_error& e) {
    return Failure{StoreError(StoreError::Kind::io, what + ": " + e.what()), false};
  } catch (const pqxx::failure& e) {  // anything else libpqxx reports about the connection
    return Failure{StoreError(StoreError::Kind::unavailable, what + ": PostgreSQL failure: " + e.what()), true};
  }
}

using Clock = std::chrono::steady_clock;

// The state a unit() restores when it is rolled back to its savepoint.
struct UnitFrame {
  std::string savepoint;  // empty until the unit's first write (reads need none)
  std::size_t locks_before = 0;
  std::map<std::string, std::uint64_t> last_seq_before;
};

// The reader methods over a libpqxx transaction; the writer adds locking and writes.
template <class Interface>
class PgReadOps : public Interface {
 public:
  std::uint64_t last_seq(const std::string& booking) const override {
    const pqxx::result r = run([&] { return tx_.exec_prepared("last_seq", booking); });
    return r.empty() ? 0 : r[0][0].as<std::uint64_t>();
  }

  std::optional<Message> message(const std::string& booking, std::uint64_t seq) const override {
    touch(booking);
    return one(run([&] { return tx_.exec_prepared("message", booking, seq); }), message_of);
  }

  // The lookup that starts a send_message with a message_id: the unit's SAVEPOINT, if it needs one,
  // travels with it in one round trip (set before the unit writes anything, so rolling back to it
  // undoes the same writes).
  std::optional<Message> message_by_id(const std::string& booking, const std::string& message_id) const override {
    touch(booking);
    const std::string savepoints = savepoints_due();
    if (savepoints.empty()) {
      return one(run([&] { return tx_.exec_prepared("message_by_id", booking, message_id); }), message_of);
    }
    return one(run_as_text(
                   [&] { return tx_.exec(savepoints + message_by_id_sql(tx_.quote(booking), tx_.quote(message_id))); }),
               message_of);
  }

  HistoryPage history(const std::string& booking, const HistoryQuery& query) const override {
    if (query.before_seq && query.after_seq) {
      throw std::invalid_argument("history: before_seq and after_seq are exclusive");
    }
    HistoryPage page;
    page.last_seq = this->last_seq(booking);
    if (page.last_seq == 0) return page;
    // The filters are the query's own (HistoryQuery::matches), so both backends agree on them;
    // the database walks the booking's primary key away from the bound, a chunk at a time.
    std::string text = select_from("messages", kMessageColumns) + "WHERE booking_code = $1";
    const bool ascending = query.after_seq.has_value();
    std::uint64_t bound = 0;  // exclusive
    if (ascending) {
      if (*query.after_seq >= page.last_seq) return page;
      text += " AND seq > $2 ORDER BY seq ASC LIMIT $3";
      bound = *query.after_seq;
    } else {
      text += " AND seq < $2 ORDER BY seq DESC LIMIT $3";
      bound = query.before_seq ? *query.before_seq : page.last_seq + 1;
    }
    const bool filtered = !query.types.empty() || query.sender || query.since || query.until;
    const std::size_t chunk = filtered ? std::max<std::size_t>(query.limit + 1, 256) : query.limit + 1;
    auto& out = page.messages;
    for (bool more = true; more && !page.has_more;) {
      const pqxx::result rows = run([&] { return tx_.exec_params(text, booking, bound, chunk); });
      more = rows.size() == chunk;
      for (const auto& row : rows) {
        Message candidate = message_of(row);
        bound = candidate.seq;
        if (!query.matches(candidate)) continue;
        if (out.size() == query.limit) {
          page.has_more = true;
          break;
        }
        out.push_back(std::move(candidate));
      }
    }
    if (!ascending) std::reverse(out.begin(), out.end());
    return page;
  }

  std::optional<Call> call(const std::string& booking, const std::string& call_id) const override {
    touch(booking);
    return one(run([&] { return tx_.exec_prepared("call", booking, call_id); }), call_of);
  }

  std::optional<Call> active_call(const std::string& booking) const override {
    touch(booking);
    return one(run([&] { return tx_.exec_prepared("active_call", booking); }), call_of);
  }

  std::vector<Call> ringing_calls() const override {
    return all(run([&] { return tx_.exec_prepared("ringing_calls"); }), call_of);
  }

  std::vector<Call> due_ringing_calls(Millis now, std::size_t limit) const override {
    return all(run([&] { return tx_.exec_prepared("due_ringing_calls", now, limit); }), call_of);
  }

  std::vector<Connection> connections(const std::string& booking) const override {
    touch(booking);
    return all(run([&] { return tx_.exec_prepared("connections", booking); }), connection_of);
  }

  std::optional<Presence> presence(const std::string& booking) const override {
    touch(booking);
    return one(run([&] { return tx_.exec_prepared("presence", booking); }), presence_of);
  }

  std::vector<Presence> all_presence() const override {
    return all(run([&] { return tx_.exec_prepared("all_presence"); }), presence_of);
  }

  std::optional<ReadReceipts> read_receipts(const std::string& booking) const override {
    touch(booking);
    return one(run([&] { return tx_.exec_prepared("read_receipts", booking); }), read_receipts_of);
  }

  std::vector<ReadReceipts> all_read_receipts() const override {
    return all(run([&] { return tx_.exec_prepared("all_read_receipts"); }), read_receipts_of);
  }

  std::optional<BookingState> booking_state(const std::string& booking) const override {
    touch(booking);
    return one(run([&] { return tx_.exec_prepared("booking_state", booking); }), booking_state_of);
  }

  std::vector<BookingState> closed_bookings() const override {
    return all(run([&] { return tx_.exec_prepared("closed_bookings"); }), booking_state_of);
  }

  std::vector<BookingState> closed_before(Millis cutoff, std::size_t limit) const override {
    return all(run([&] { return tx_.exec_prepared("closed_before", cutoff, limit); }), booking_state_of);
  }

  // The first failure that left the transaction unable to commit (a lost connection, a deadlock,
  // an error outside a savepoint), even if the caller swallowed it.
  const std::optional<Failure>& failure() const { return failure_; }

 protected:
  explicit PgReadOps(pqxx::transaction_base& tx) : tx_(tx) {}

  // A writer locks the booking before its first read of it; a reader has nothing to do.
  virtual void touch(const std::string& /*booking*/) const {}
  // Whether a failure now can be undone by rolling back to a savepoint (a writer inside a unit).
  virtual bool recoverable() const { return false; }
  // The SAVEPOINT statements of the units that have none yet (now counted as set); a reader has
  // no units.
  virtual std::string savepoints_due() const { return ""; }

  // Runs a statement sent as SQL text (tx.exec). libpqxx 6 closes its transaction object when
  // such a statement fails, so no savepoint can undo the failure: the transaction fails.
  template <class Fn>
  auto run_as_text(Fn&& fn) const -> decltype(fn()) {
    try {
      return run(std::forward<Fn>(fn));
    } catch (const StoreError& e) {
      if (!failure_) failure_ = Failure{e, false};
      throw;
    } catch (const std::logic_error& e) {
      if (!failure_) failure_ = Failure{StoreError(StoreError::Kind::io, e.what()), false};
      throw;
    }
  }

  // Runs a statement; a libpqxx failure becomes StoreError, and poisons the transaction when no
  // savepoint can undo it.
  template <class Fn>
  auto run(Fn&& fn) const -> decltype(fn()) {
    if (failure_) throw failure_->error;  // the transaction is aborted: fail fast, same cause
    try {
      return fn();
    } catch (const pqxx::unique_violation& e) {
      // A second active call in a booking, a message_id or seq used twice: the caller broke the
      // interface's invariant, as the LMDB backend reports it.
      if (!recoverable()) failure_ = Failure{StoreError(StoreError::Kind::io, e.what()), false};
      throw std::logic_error(std::string("constraint violated: ") + e.what());
    } catch (...) {
      Failure f = classify("statement");
      if (f.lost || f.error.kind() == StoreError::Kind::unavailable || !recoverable()) failure_ = f;
      throw f.error;
    }
  }

  template <class Row>
  static std::optional<Row> one(const pqxx::result& r, Row (*of)(const pqxx::row&)) {
    if (r.empty()) return std::nullopt;
    return of(r[0]);
  }
  template <class Row>
  static std::vector<Row> all(const pqxx::result& r, Row (*of)(const pqxx::row&)) {
    std::vector<Row> out;
    out.reserve(r.size());
    for (const auto& row : r) out.push_back(of(row));
    return out;
  }

  pqxx::transaction_base& tx_;
  mutable std::optional<Failure> failure_;
};

class PgReader final : public PgReadOps<StoreReader> {
 public:
  explicit PgReader(pqxx::transaction_base& tx) : PgReadOps(tx) {}
};

class PgWriter final : public PgReadOps<StoreWriter> {
 public:
  explicit PgWriter(pqxx::transaction_base& tx) : PgReadOps(tx) {}

  std::uint64_t last_seq(const std::string& booking) const override {
    touch(booking);
    return last_seq_.at(booking);
  }

  void lock_bookings(const std::vector<std::string>& sorted_codes) override {
    std::vector<std::string> missing;
    for (const auto& code : sorted_codes) {
      if (!locked_.count(code)) missing.push_back(code);
    }
    if (missing.empty()) return;
    const pqxx::result rows = run_as_text([&] { return tx_.exec(lock_bookings_sql(tx_.quote(text_array(missing)))); });
    for (const auto& row : rows) {
      const std::string code = row[0].as<std::string>();
      if (locked_.insert(code).second) lock_log_.push_back(code);
      last_seq_[code] = row[1].as<std::uint64_t>();
    }
  }

  void append_message(const Message& m) override {
    const std::uint64_t last = last_seq(m.booking_code);
    if (m.seq != last + 1) {
      throw std::logic_error("append_message: " + m.booking_code + " seq " + std::to_string(m.seq) +
                             " does not follow last_seq " + std::to_string(last));
    }
    // libpq sends text parameters as C strings: a NUL would cut the value short, silently.
    for (const std::string* field : {&m.message_id, &m.text, &m.data_json}) refuse_nul(*field);
    if (m.sender_id) refuse_nul(*m.sender_id);
    write([&] {
      return tx_.exec_prepared("append_message", m.booking_code, m.seq, m.message_id, name_of(m.type, kTypeNames),
                               name_of(m.sender, kRoleNames), nullable(m.sender_id), m.text, m.data_json, m.ts);
    });
    last_seq_[m.booking_code] = m.seq;
  }

  void put_call(const Call& c) override {
    touch(c.booking_code);
    write([&] {
      const auto connected_at = text_of(c.connected_at);
      const auto ended_at = text_of(c.ended_at);
      return tx_.exec_prepared("put_call", c.booking_code, c.call_id, name_of(c.from, kRoleNames),
                               name_of(c.to, kRoleNames), name_of(c.state, kStateNames),
                               name_of(c.end_reason, kReasonNames), c.created_at, nullable(connected_at),
                               nullable(ended_at), c.ring_deadline);
    });
  }

  void put_connection(const Connection& c) override {
    touch(c.booking_code);
    write([&] {
      return tx_.exec_prepared("put_connection", c.booking_code, c.client_id, name_of(c.role, kRoleNames), c.online,
                               c.since);
    });
  }

  void put_presence(const Presence& p) override {
    touch(p.booking_code);
    write([&] {
      const auto driver_since = text_of(p.driver.since);
      const auto passenger_since = text_of(p.passenger.since);
      return tx_.exec_prepared("put_presence", p.booking_code, p.driver.online, nullable(driver_since),
                               p.passenger.online, nullable(passenger_since));
    });
  }

  void put_read_receipts(const ReadReceipts& r) override {
    touch(r.booking_code);
    write([&] {
      const auto driver_at = text_of(r.driver.at);
      const auto passenger_at = text_of(r.passenger.at);
      return tx_.exec_prepared("put_read_receipts", r.booking_code, r.driver.seq, nullable(driver_at),
                               r.passenger.seq, nullable(passenger_at));
    });
  }

  void put_booking_state(const BookingState& b) override {
    touch(b.booking_code);
    if (b.reason) refuse_nul(*b.reason);
    write([&] {
      return tx_.exec_prepared("put_booking_state", b.booking_code, b.closed, b.closed_at, nullable(b.reason));
    });
  }

  std::size_t purge_booking(const std::string& booking, std::size_t max_keys) override {
    touch(booking);
    std::size_t deleted = 0;
    const auto delete_rows = [&](const std::string& statement, std::size_t limit) {
      std::size_t affected = 0;
      write([&] {
        const pqxx::result r = tx_.exec_prepared(statement, booking, limit);
        affected = static_cast<std::size_t>(r.affected_rows());
        return r;
      });
      return affected;
    };
    for (const char* table : kPurgedTables) {
      if (deleted == max_keys) return deleted;
      const std::size_t left = max_keys - deleted;
      const std::size_t n = delete_rows(std::string("purge_") + table, left);
      deleted += n;
      if (n == left) return deleted;  // perhaps more of this table
    }
    if (deleted == max_keys) return deleted;
    // The state and the booking's row count as one: what is left of the booking.
    write([&] { return tx_.exec_prepared("delete_booking_state", booking); });
    std::size_t n = 0;
    write([&] {
      const pqxx::result r = tx_.exec_prepared("delete_booking", booking);
      n = static_cast<std::size_t>(r.affected_rows());
      return r;
    });
    // The row is gone: the next write of this code in the transaction creates it afresh.
    locked_.erase(booking);
    last_seq_.erase(booking);
    return deleted + n;
  }

  void unit(const std::function<void()>& fn) override {
    units_.push_back(UnitFrame{});
    try {
      fn();
    } catch (...) {
      roll_back_unit();
      throw;
    }
    // Its savepoint is not released: RELEASE would cost a round trip and changes nothing; every
    // savepoint ends with the transaction.
    units_.pop_back();
  }

 private:
  void touch(const std::string& booking) const override {
    if (booking.empty()) throw std::invalid_argument("empty booking code");
    if (!locked_.count(booking)) const_cast<PgWriter*>(this)->lock_bookings({booking});
  }

  bool recoverable() const override {
    for (const auto& u : units_) {
      if (!u.savepoint.empty()) return true;
    }
    return false;
  }

  std::string savepoints_due() const override {
    std::string statements;
    for (auto& u : units_) {
      if (!u.savepoint.empty()) continue;
      u.savepoint = "u" + std::to_string(++savepoints_);
      u.locks_before = lock_log_.size();
      u.last_seq_before = last_seq_;
      statements += "SAVEPOINT " + u.savepoint + "; ";
    }
    return statements;
  }

  // A write statement: inside a unit, its savepoint (and any enclosing unit's) is set first.
  template <class Fn>
  void write(Fn&& fn) {
    const std::string savepoints = savepoints_due();
    if (!savepoints.empty()) run_as_text([&] { return tx_.exec(savepoints); });
    run(std::forward<Fn>(fn));
  }

  // Undoes the innermost unit: its writes, the locks it took (PostgreSQL releases row locks taken
  // after a savepoint when rolling back to it) and the seqs it counted.
  void roll_back_unit() {
    UnitFrame u = std::move(units_.back());
    units_.pop_back();
    if (u.savepoint.empty() || failure_) return;  // nothing written, or the whole transaction fails
    try {
      tx_.exec("ROLLBACK TO SAVEPOINT " + u.savepoint);
    } catch (...) {
      failure_ = classify("rollback to savepoint");
      return;
    }
    while (lock_log_.size() > u.locks_before) {
      locked_.erase(lock_log_.back());
      lock_log_.pop_back();
    }
    last_seq_ = std::move(u.last_seq_before);
  }

  std::set<std::string> locked_;                   // bookings whose row this transaction holds locked
  std::vector<std::string> lock_log_;              // the same, in the order taken
  std::map<std::string, std::uint64_t> last_seq_;  // of the locked bookings: nobody else can move it
  mutable std::vector<UnitFrame> units_;           // savepoints_due() sets their savepoints from a read
  mutable std::uint64_t savepoints_ = 0;
};

class PostgresStore final : public Store {
 public:
  explicit PostgresStore(PostgresOptions options) : options_(std::move(options)) {
    std::lock_guard<std::mutex> lock(mutex_);
    connect();  // at start, a database that cannot be reached is fatal: the caller says so
  }

  void write(const std::function<void(StoreWriter&)>& fn) override {
    std::lock_guard<std::mutex> lock(mutex_);
    transaction("write transaction", [&](pqxx::connection& c, std::optional<Failure>& seen) {
      pqxx::work tx(c);
      PgWriter writer(tx);
      run_noting_failure(writer, seen, [&] { fn(writer); });
      // A failure fn swallowed (a lost connection, a deadlock) still fails the transaction.
      if (writer.failure()) {
        seen = writer.failure();
        throw writer.failure()->error;
      }
      tx.commit();
    });
  }

  void read(const std::function<void(const StoreReader&)>& fn) const override {
    std::lock_guard<std::mutex> lock(mutex_);
    transaction("read transaction", [&](pqxx::connection& c, std::optional<Failure>& seen) {
      pqxx::read_transaction tx(c);
      const PgReader reader(tx);
      run_noting_failure(reader, seen, [&] { fn(reader); });
    });
  }

 private:
  // Runs body on the connection (reconnecting if needed); a libpqxx failure of the transaction
  // itself (BEGIN, COMMIT) becomes StoreError, and a lost connection is dropped for the next call.
  //
  // body owns the libpqxx transaction object, whose destructor (an abort) still uses the
  // connection: a failure seen inside body is only noted there (`seen`), and the connection is
  // dropped here, once body has returned or unwound and that object is gone.
  template <class Body>
  void transaction(const char* what, Body&& body) const {
    pqxx::connection& c = connection();
    std::optional<Failure> seen;
    try {
      body(c, seen);
    } catch (const pqxx::failure&) {
      Failure f = classify(what);
      lost_if(f);
      if (seen) lost_if(*seen);
      throw f.error;
    } catch (...) {
      if (seen) lost_if(*seen);
      throw;
    }
  }

  // Runs fn; if it throws after the reader or writer saw a failure, notes it for transaction().
  template <class Ops, class Fn>
  static void run_noting_failure(const Ops& ops, std::optional<Failure>& seen, Fn&& fn) {
    try {
      fn();
    } catch (...) {
      if (ops.failure()) seen = ops.failure();
      throw;
    }
  }

  void log(const std::string& event, const std::string& detail) const {
    if (options_.log) options_.log(event, detail);
  }

  void connect() const {
    auto c = std::make_unique<pqxx::connection>(options_.url);
    // libpqxx 6 would silently reconnect a broken connection outside a transaction; this store
    // decides when to reconnect (and says so) itself.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"  // deprecated in 6.x, still what we mean
    c->inhibit_reactivation(true);
#pragma GCC diagnostic pop
    postgres::migrate(*c);
    prepare_statements(*c);
    connection_ = std::move(c);
  }

  // The open connection, reconnecting when the last one was lost. Within the backoff after a
  // failed attempt, fails at once with that attempt's error.
  pqxx::connection& connection() const {
    if (connection_) return *connection_;
    if (Clock::now() < retry_at_) throw StoreError(StoreError::Kind::unavailable, last_connect_error_);
    try {
      connect();
    } catch (...) {
      Failure f = classify("reconnect to PostgreSQL");
      try {
        throw;
      } catch (const pqxx::broken_connection& e) {
        last_connect_error_ = std::string("cannot connect to PostgreSQL: ") + e.what();
      } catch (...) {
        last_connect_error_ = f.error.what();
      }
      if (!outage_logged_) log("postgres_reconnect_failed", last_connect_error_ + " (retrying on the next request)");
      outage_logged_ = true;
      retry_at_ = Clock::now() + std::chrono::milliseconds(options_.reconnect_backoff_ms);
      throw StoreError(StoreError::Kind::unavailable, last_connect_error_);
    }
    log("postgres_reconnected", "");
    outage_logged_ = false;
    return *connection_;
  }

  // Only from transaction(), once its body (and the libpqxx transaction object in it, whose
  // destructor aborts on the connection) is gone: freeing the connection earlier crashed every
  // bridge when PostgreSQL restarted under load.
  void lost_if(const Failure& f) const {
    if (!f.lost || !connection_) return;
    log("postgres_connection_lost", f.error.what());
    connection_.reset();
    retry_at_ = Clock::time_point{};  // the first request after a loss tries at once
  }

  PostgresOptions options_;
  mutable std::mutex mutex_;  // one user of the connection at a time
  mutable std::unique_ptr<pqxx::connection> connection_;
  mutable Clock::time_point retry_at_{};
  mutable std::string last_connect_error_;
  mutable bool outage_logged_ = false;  // one line per outage, not one per request
};

}  // namespace

std::unique_ptr<Store> open_postgres_store(const PostgresOptions& options) {
  try {
    return std::make_unique<PostgresStore>(options);
  } catch (const StoreError&) {
    throw;
  } catch (...) {
    throw classify("open PostgreSQL store").error;
  }
}

bool postgres_store_available() { return true; }

}  // namespace navietakie
