#include "support/postgres.hpp"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace navietakie::test {
namespace {

const char* const kSuperuser = "postgres";

bool running_as_root() { return ::geteuid() == 0; }

// chown path to the postgres user (root only: PostgreSQL will not run as root).
void give_to_postgres(const std::string& path) {
  const passwd* user = ::getpwnam(kSuperuser);
  if (user == nullptr) throw std::runtime_error("running as root, but there is no `postgres` user to run PostgreSQL");
  if (::chown(path.c_str(), user->pw_uid, user->pw_gid) != 0) {
    throw std::runtime_error("cannot chown " + path + " to postgres");
  }
}

// Runs a short command to its end (bounded); its output when it succeeds, else throws with it.
std::string run_to_end(std::vector<std::string> argv, const std::string& output_path, Millis timeout) {
  Process process(std::move(argv), ProcessOptions(output_path));
  const auto code = process.wait_exit(timeout);
  if (!code || *code != 0) throw std::runtime_error("command failed: " + process.describe());
  return read_file(output_path);
}

}  // namespace

std::string postgres_bin_dir() {
  if (const char* dir = std::getenv("PG_BINDIR"); dir != nullptr && *dir != '\0') return dir;
  std::error_code ec;
  std::vector<std::filesystem::path> found;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    if (std::filesystem::exists(entry.path() / "bin" / "postgres")) found.push_back(entry.path() / "bin");
  }
  if (found.empty()) return "";
  // Versions are numbers: compare them as such (10 after 9).
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return std::atoi(a.parent_path().filename().c_str()) < std::atoi(b.parent_path().filename().c_str());
  });
  return found.back().string();
}

PostgresServer::PostgresServer(PostgresServerOptions options) : options_(std::move(options)), dir_("navietakie-pg") {
  const std::string bin = postgres_bin_dir();
  if (bin.empty()) {
    throw std::runtime_error("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (Debian package postgresql)");
  }
  if (running_as_root()) give_to_postgres(dir_.path());
  data_dir_ = dir_.file("data");
  log_path_ = dir_.file("postgres.log");
  port_ = free_port();

  // No fsync during initdb either: it is rebuilt from scratch for each test binary anyway.
  run_to_end(as_postgres({bin + "/initdb", "-D", data_dir_, "-U", kSuperuser, "-E", "UTF8", "--locale=C.UTF-8", "-A",
                          "trust", "--no-sync"}),
             dir_.file("initdb.log"), 120s);
  // Trust, but only over the socket in the temp dir and 127.0.0.1 (the server listens nowhere else).
  write_file(data_dir_ + "/pg_hba.conf",
             "local all all trust\n"
             "host all all 127.0.0.1/32 trust\n");
  start();
  create_database(options_.database);
}

PostgresServer::~PostgresServer() {
  try {
    stop();
  } catch (...) {
    // Never throws; Process's own destructor still stops it.
  }
}

std::vector<std::string> PostgresServer::as_postgres(std::vector<std::string> argv) const {
  if (!running_as_root()) return argv;
  std::vector<std::string> wrapped = {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

std::string PostgresServer::url() const { return url(options_.database); }

std::string PostgresServer::url(const std::string& database) const {
  return std::string("postgresql://") + kSuperuser + "@127.0.0.1:" + std::to_string(port_) + "/" + database +
         "?connect_timeout=2";
}

void PostgresServer::start() {
  if (server_ && server_->alive()) return;
  const std::string bin = postgres_bin_dir();
  std::vector<std::string> argv = as_postgres({bin + "/postgres", "-D", data_dir_, "-p", std::to_string(port_), "-k",
                                               dir_.path(), "-c", "listen_addresses=127.0.0.1"});
  // A test that crashes runs no destructor: the server must not outlive it (an ASan abort once left
  // one running). setpriv sets the parent-death signal after it changes credentials (which clear it);
  // the kernel sends it when the thread that started the server exits, so start it from a thread
  // that lives as long as the test (every test here does: the main thread).
  if (running_as_root()) argv.insert(argv.begin() + 1, "--pdeathsig=TERM");
  if (!options_.fsync) {
    for (const char* setting : {"fsync=off", "full_page_writes=off"}) {
      argv.push_back("-c");
      argv.push_back(setting);
    }
  }
  // After kill9(), orphaned backends may hold the old shared memory for a moment: postgres then
  // refuses to start ("pre-existing shared memory block is still in use"). Retry until the bound.
  const auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
  for (;;) {
    server_ = std::make_unique<Process>(argv, ProcessOptions(log_path_, "", 10s));
    const auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (wait_until_ready(std::max(left, Millis{0}))) return;
    if (server_->alive() || std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error("PostgreSQL did not come up: " + describe());
    }
    std::this_thread::sleep_for(100ms);  // it exited: try again
  }
}

bool PostgresServer::wait_until_ready(Millis timeout) {
  const std::string isready = postgres_bin_dir() + "/pg_isready";
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (server_->alive()) {
    Process probe({isready, "-q", "-h", "127.0.0.1", "-p", std::to_string(port_), "-t", "1"},
                  ProcessOptions(dir_.file("pg_isready.log")));
    const auto code = probe.wait_exit(5s);
    if (code && *code == 0) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

void PostgresServer::stop() {
  if (!server_ || !server_->alive()) return;
  // SIGTERM would be a "smart" shutdown, which waits for every client to leave.
  ::kill(server_->pid(), SIGINT);
  if (server_->wait_exit(30s)) return;
  server_->kill9();
}

void PostgresServer::kill9() {
  if (!server_ || !server_->alive()) return;
  // A crash of the database server takes its backends with it. SIGKILL of the postmaster alone
  // leaves each backend running until it notices, and under load one may still answer a query
  // after the "crash" (a test then saw a commit succeed during the outage). Stopped first, the
  // postmaster forks no new backend while they are killed.
  const pid_t postmaster = server_->pid();
  ::kill(postmaster, SIGSTOP);
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;  // exited meanwhile
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    pid_t ppid = 0;
    if (rest >> state >> ppid && ppid == postmaster) ::kill(static_cast<pid_t>(std::stol(name)), SIGKILL);
  }
  server_->kill9();
}

bool PostgresServer::running() { return server_ && server_->alive(); }

std::string PostgresServer::psql(const std::string& sql, const std::string& database) {
  return run_to_end(
      {"psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", std::to_string(port_), "-U",
       kSuperuser, "-d", database.empty() ? options_.database : database, "-c", sql},
      dir_.file("psql.log"), 60s);
}

void PostgresServer::create_database(const std::string& name) { psql("CREATE DATABASE \"" + name + "\"", "postgres"); }

std::string PostgresServer::describe() {
  std::string state = server_ ? server_->describe(0) : std::string("never started\n");
  return "PostgreSQL on 127.0.0.1:" + std::to_string(port_) + " in " + data_dir_ + ": " + state + "--- last lines of " +
         log_path_ + " ---\n" + file_tail(log_path_, 40);
}

}  // namespace navietakie::test
