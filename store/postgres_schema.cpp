#include "store/postgres_schema.hpp"

#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/transaction>

#include <string>
#include <vector>

#include "store/store.hpp"

namespace navietakie::postgres {
namespace {

struct Migration {
  int version;
  const char* sql;
};

// Ordered; never edit a released one, append the next. Every table's key starts with the booking
// code, and every query of the store names one booking (but the start-up scans and the ring
// deadline scan), so that a distributed PostgreSQL (Citus: create_distributed_table on
// bookings.code and on booking_code of the others, colocated) keeps each booking on one node.
const std::vector<Migration>& migrations() {
  static const std::vector<Migration> all = {
      {1, R"sql(
-- One row per booking that ever had a write. Its row lock serialises the writers of the booking
-- across hosts (SELECT ... FOR UPDATE); last_seq is the highest seq of its messages.
CREATE TABLE bookings (
  code     text   PRIMARY KEY,
  last_seq bigint NOT NULL DEFAULT 0
);

-- data is the message's JSON object as sent, byte for byte: text, not jsonb (which reorders keys).
-- Times are milliseconds since the Unix epoch, as on the wire.
CREATE TABLE messages (
  booking_code text   NOT NULL,
  seq          bigint NOT NULL,
  message_id   text   NOT NULL,
  type         text   NOT NULL CHECK (type IN ('text', 'call', 'system')),
  sender       text   NOT NULL CHECK (sender IN ('driver', 'passenger', 'system')),
  sender_id    text,
  text         text   NOT NULL,
  data         text   NOT NULL,
  ts           bigint NOT NULL,
  PRIMARY KEY (booking_code, seq),
  UNIQUE (booking_code, message_id)  -- a resent message_id is idempotent whichever host it reaches
);

CREATE TABLE calls (
  booking_code  text   NOT NULL,
  call_id       text   NOT NULL,
  caller        text   NOT NULL CHECK (caller IN ('driver', 'passenger', 'system')),
  callee        text   NOT NULL CHECK (callee IN ('driver', 'passenger', 'system')),
  state         text   NOT NULL CHECK (state IN ('ringing', 'connected', 'ended')),
  end_reason    text   NOT NULL CHECK (end_reason IN ('none', 'completed', 'declined', 'cancelled', 'missed')),
  created_at    bigint NOT NULL,
  connected_at  bigint,
  ended_at      bigint,
  ring_deadline bigint NOT NULL,
  PRIMARY KEY (booking_code, call_id)
);
-- One active call per booking, whichever host started it.
CREATE UNIQUE INDEX calls_one_active_per_booking ON calls (booking_code) WHERE state <> 'ended';
-- The ring deadlines any live host may end (the due-calls scan).
CREATE INDEX calls_ringing_by_deadline ON calls (ring_deadline) WHERE state = 'ringing';

CREATE TABLE connections (
  booking_code text    NOT NULL,
  client_id    text    NOT NULL,
  role         text    NOT NULL CHECK (role IN ('driver', 'passenger', 'system')),
  online       boolean NOT NULL,
  since        bigint  NOT NULL,
  PRIMARY KEY (booking_code, client_id)
);

-- since is NULL for a role never seen.
CREATE TABLE presence (
  booking_code     text    PRIMARY KEY,
  driver_online    boolean NOT NULL,
  driver_since     bigint,
  passenger_online boolean NOT NULL,
  passenger_since  bigint
);
)sql"},
      {2, R"sql(
-- close: a closed booking's state (no row: open), and the call end reason it brings.
CREATE TABLE booking_states (
  booking_code text    PRIMARY KEY,
  closed       boolean NOT NULL,
  closed_at    bigint  NOT NULL,
  reason       text
);
-- The retention purge's order: the oldest closes first.
CREATE INDEX booking_states_closed_by_time ON booking_states (closed_at) WHERE closed;
ALTER TABLE calls DROP CONSTRAINT calls_end_reason_check;
ALTER TABLE calls ADD CONSTRAINT calls_end_reason_check
  CHECK (end_reason IN ('none', 'completed', 'declined', 'cancelled', 'missed', 'booking_closed'));
)sql"},
      {3, R"sql(
-- Read receipts (mark_read): each party's horizon; *_at is NULL for a party that never read.
CREATE TABLE read_receipts (
  booking_code   text   PRIMARY KEY,
  driver_seq     bigint NOT NULL,
  driver_at      bigint,
  passenger_seq  bigint NOT NULL,
  passenger_at   bigint
);
)sql"},
  };
  return all;
}

// The advisory lock all hosts take while migrating one schema (the second key: which schema).
constexpr int kMigrationLockSpace = 0x6e7401;  // "nt" 1

int current_version(pqxx::transaction_base& tx) {
  tx.exec0("CREATE TABLE IF NOT EXISTS navietakie_schema (version integer NOT NULL)");
  const pqxx::result rows = tx.exec("SELECT version FROM navietakie_schema");
  if (rows.empty()) {
    tx.exec0("INSERT INTO navietakie_schema (version) VALUES (0)");
    return 0;
  }
  return rows[0][0].as<int>();
}

}  // namespace

int known_schema_version() { return migrations().back().version; }

namespace {

// A session-level advisory lock: held across the migration transactions below. (libpqxx allows
// one transaction object per connection at a time, hence a short nontransaction for each call.)
void advisory(pqxx::connection& connection, const char* function) {
  pqxx::nontransaction session(connection);
  session.exec_params(std::string("SELECT ") + function + "($1, hashtext(current_schema()))", kMigrationLockSpace);
}

void migrate_locked(pqxx::connection& connection) {
  // Each step in its own transaction: a migration that fails leaves the schema at the last good
  // version, and the next start resumes there.
  for (;;) {
    pqxx::work tx(connection);
    const int version = current_version(tx);
    if (version > known_schema_version()) {
      throw StoreError(StoreError::Kind::io, "PostgreSQL schema version " + std::to_string(version) +
                                                 " is newer than this build's " +
                                                 std::to_string(known_schema_version()) +
                                                 ": upgrade navietakie before running it on this database");
    }
    const Migration* next = nullptr;
    for (const auto& m : migrations()) {
      if (m.version > version) {
        next = &m;
        break;
      }
    }
    if (!next) {
      tx.commit();  // the version table, if this was a fresh database
      return;
    }
    tx.exec0(next->sql);
    tx.exec_params0("UPDATE navietakie_schema SET version = $1", next->version);
    tx.commit();
  }
}

}  // namespace

void migrate(pqxx::connection& connection) {
  advisory(connection, "pg_advisory_lock");
  try {
    migrate_locked(connection);
  } catch (...) {
    try {
      advisory(connection, "pg_advisory_unlock");
    } catch (...) {
      // The connection is gone, and the lock with it.
    }
    throw;
  }
  advisory(connection, "pg_advisory_unlock");
}

}  // namespace navietakie::postgres
