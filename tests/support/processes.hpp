// Child processes and scratch space for the integration tests: free ports on 127.0.0.1, a temporary
// directory that removes itself, and a spawned process that is always stopped (bounded) when its
// owner goes away.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace navietakie::test {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

// A port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close). Racy by nature, good
// enough on a test machine.
int free_port();

// True once a TCP connect to 127.0.0.1:port succeeds, false after `timeout`.
bool wait_for_tcp(int port, Millis timeout);

// A TCP socket connected to 127.0.0.1:port (the caller closes it); throws when it cannot connect.
// For clients written by hand on the wire.
int connect_loopback(int port);

// The path of an executable: `name` searched in $PATH, then in the sbin directories (mosquitto
// lives in /usr/sbin, which a non-login PATH may lack). `name` itself when not found.
std::string find_executable(const std::string& name);

// The name of the effective user (so a broker started as root keeps running as root).
std::string current_user_name();

// Random lowercase hex, for client ids and booking codes.
std::string random_hex(std::size_t chars);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& content);
// The last `max_lines` lines of a file ("" if it cannot be read).
std::string file_tail(const std::string& path, std::size_t max_lines = 60);

// mkdtemp under $TMPDIR (or /tmp); `rm -rf` on destruction (kept when NT_TEST_KEEP_TMP=1).
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "navietakie-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct ProcessOptions {
  ProcessOptions() = default;
  ProcessOptions(std::string stdout_path_, std::string stderr_path_ = "", Millis stop_timeout_ = 5s)
      : stdout_path(std::move(stdout_path_)), stderr_path(std::move(stderr_path_)), stop_timeout(stop_timeout_) {}

  std::string stdout_path;   // required: the child's stdout goes there (truncated)
  std::string stderr_path;   // empty: stderr goes to the stdout file too
  Millis stop_timeout = 5s;  // SIGTERM, then SIGKILL after this long
  // Environment variables whose names start with this are not passed on ("" passes everything).
  std::string drop_env_prefix;
  // `NAME=value` entries added to the child's environment (after drop_env_prefix is applied).
  std::vector<std::string> extra_env;
};

// A child started with posix_spawn (argv[0] searched in PATH), stdin from /dev/null.
// The destructor stops it: SIGTERM, bounded wait, SIGKILL.
class Process {
 public:
  Process(std::vector<std::string> argv, ProcessOptions options);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::vector<std::string>& argv() const { return argv_; }
  const std::string& log_path() const { return options_.stdout_path; }

  // Reaps the child if it has exited; true while it runs.
  bool alive();
  // SIGTERM, wait up to stop_timeout, then SIGKILL; the exit code is kept. No-op once exited.
  void stop();
  // SIGKILL and reap: the abrupt death of a host.
  void kill9();
  // Waits for the child to exit by itself; the exit code (128+signal when killed), or nullopt on
  // timeout (the child is left running).
  std::optional<int> wait_exit(Millis timeout);
  // The exit code once reaped (128+signal when killed by a signal).
  std::optional<int> exit_code() const { return exit_code_; }

  // "argv... (pid N, running|exit code X)\n--- last lines of <log> ---\n..." for failure reports.
  std::string describe(std::size_t max_lines = 60);

 private:
  bool reap(bool block);

  std::vector<std::string> argv_;
  ProcessOptions options_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

}  // namespace navietakie::test
