// A throw-away PostgreSQL server for the tests: initdb into a temp dir, run `postgres` on a free
// port of 127.0.0.1 (trust auth, loopback only), create one database, and remove everything at the
// end. It can be stopped, killed and started again on the same dir and port, for the tests that
// restart the database under load.
//
// PostgreSQL refuses to run as root: when the tests run as root, the dir is chowned to the
// `postgres` user and initdb / postgres run as it through `setpriv` (which execs without forking,
// so the PID the harness holds is the postmaster's own).
//
// No Paho and no libpqxx here: unit test binaries link it (navietakie_test_processes).
#pragma once

#include <memory>
#include <string>

#include "support/processes.hpp"

namespace navietakie::test {

struct PostgresServerOptions {
  std::string database = "navietakie";
  // fsync off is safe against a killed server (the OS keeps its page cache) and makes unit tests
  // fast; benchmarks and anything measuring durability keep it on.
  bool fsync = true;
  Millis start_timeout = 30s;
};

class PostgresServer {
 public:
  explicit PostgresServer(PostgresServerOptions options = {});
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // "postgresql://postgres@127.0.0.1:<port>/<database>?connect_timeout=2" (trust auth: no password).
  std::string url() const;
  // The same server, another database of it (created by create_database()).
  std::string url(const std::string& database) const;
  int port() const { return port_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& log_path() const { return log_path_; }

  // Starts the server on the same dir and port again (after stop() or kill9()); waits until it
  // accepts connections. Bounded by options.start_timeout; throws with the log's tail if it does
  // not come up.
  void start();
  // Fast shutdown (SIGINT: open transactions roll back, clients are disconnected), bounded.
  void stop();
  // SIGKILL to the postmaster: the database host dies. Its backends notice and exit by themselves;
  // start() waits for them.
  void kill9();
  bool running();

  // Runs SQL through psql as the superuser against `database` (default: the server's); returns its
  // stdout (unaligned, tuples only); throws with psql's output when it fails.
  std::string psql(const std::string& sql, const std::string& database = "");
  void create_database(const std::string& name);

  std::string describe();  // the server's state and the tail of its log, for failure reports

 private:
  std::vector<std::string> as_postgres(std::vector<std::string> argv) const;
  bool wait_until_ready(Millis timeout);

  PostgresServerOptions options_;
  TempDir dir_;
  std::string data_dir_;
  std::string log_path_;
  int port_ = 0;
  std::unique_ptr<Process> server_;
};

// The directory of the PostgreSQL server binaries (initdb, postgres, pg_isready): $PG_BINDIR when
// set, else the newest /usr/lib/postgresql/<version>/bin. "" when none is found.
std::string postgres_bin_dir();

}  // namespace navietakie::test
