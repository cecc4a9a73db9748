#include "support/processes.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

extern char** environ;

namespace navietakie::test {

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

sockaddr_in loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

// A socket fd closed on scope exit.
struct Socket {
  int fd;
  Socket() : fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd < 0) throw_errno("socket");
  }
  ~Socket() { ::close(fd); }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
};

}  // namespace

int free_port() {
  Socket socket;
  sockaddr_in address = loopback(0);
  if (::bind(socket.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) throw_errno("bind");
  socklen_t length = sizeof address;
  if (::getsockname(socket.fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) throw_errno("getsockname");
  return ntohs(address.sin_port);
}

bool wait_for_tcp(int port, Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    Socket socket;
    sockaddr_in address = loopback(port);
    if (::connect(socket.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return true;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket");
  sockaddr_in address = loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    ::close(fd);
    errno = error;
    throw_errno("connect to 127.0.0.1:" + std::to_string(port));
  }
  return fd;
}

std::string find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = std::string(path != nullptr ? path : "") + ":/usr/local/sbin:/usr/sbin:/sbin";
  std::istringstream list(dirs);
  for (std::string dir; std::getline(list, dir, ':');) {
    if (dir.empty()) continue;
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return name;
}

std::string current_user_name() {
  if (const passwd* entry = ::getpwuid(::geteuid()); entry != nullptr && entry->pw_name != nullptr) {
    return entry->pw_name;
  }
  throw std::runtime_error("getpwuid: no name for uid " + std::to_string(::geteuid()));
}

std::string random_hex(std::size_t chars) {
  static thread_local std::mt19937_64 engine{std::random_device{}()};
  static const char digits[] = "0123456789abcdef";
  std::uniform_int_distribution<int> pick(0, 15);
  std::string out;
  out.reserve(chars);
  for (std::size_t i = 0; i < chars; ++i) out.push_back(digits[pick(engine)]);
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string file_tail(const std::string& path, std::size_t max_lines) {
  std::ifstream in(path, std::ios::binary);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(std::move(line));
    if (lines.size() > max_lines) lines.pop_front();
  }
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

TempDir::TempDir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) throw_errno("mkdtemp " + pattern);
  path_ = buffer.data();
}

TempDir::~TempDir() {
  // NT_TEST_KEEP_TMP=1 keeps the logs and data of a run for a post-mortem. (Not NAVIETAKIE_*: the
  // bridge reads those as settings.)
  if (const char* keep = std::getenv("NT_TEST_KEEP_TMP"); keep != nullptr && std::string(keep) == "1") return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

Process::Process(std::vector<std::string> argv, ProcessOptions options)
    : argv_(std::move(argv)), options_(std::move(options)) {
  if (argv_.empty()) throw std::invalid_argument("Process: empty argv");
  if (options_.stdout_path.empty()) throw std::invalid_argument("Process: no stdout path");

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, options_.stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  if (options_.stderr_path.empty()) {
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, options_.stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  std::vector<char*> args;
  for (auto& arg : argv_) args.push_back(arg.data());
  args.push_back(nullptr);

  std::vector<char*> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (options_.drop_env_prefix.empty() ||
        std::strncmp(*entry, options_.drop_env_prefix.c_str(), options_.drop_env_prefix.size()) != 0) {
      env.push_back(*entry);
    }
  }
  std::vector<std::string> extra_env = options_.extra_env;  // posix_spawn wants char*, not const char*
  for (auto& entry : extra_env) env.push_back(entry.data());
  env.push_back(nullptr);

  const int rc = ::posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    throw std::system_error(rc, std::generic_category(), "posix_spawnp " + argv_[0]);
  }
}

Process::~Process() {
  try {
    stop();
  } catch (...) {
    // A destructor never throws; the child was signalled as well as it could be.
  }
}

bool Process::reap(bool block) {
  if (exit_code_) return true;
  int status = 0;
  pid_t rc;
  do {
    rc = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return false;
  if (rc < 0) {
    exit_code_ = -1;  // not our child any more (should not happen)
    return true;
  }
  if (WIFEXITED(status))
    exit_code_ = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    exit_code_ = 128 + WTERMSIG(status);
  else
    exit_code_ = -1;
  return true;
}

bool Process::alive() { return pid_ > 0 && !reap(false); }

std::optional<int> Process::wait_exit(Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!reap(false)) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
  return exit_code_;
}

void Process::stop() {
  if (!alive()) return;
  ::kill(pid_, SIGTERM);
  if (wait_exit(options_.stop_timeout)) return;
  kill9();
}

void Process::kill9() {
  if (!alive()) return;
  ::kill(pid_, SIGKILL);
  reap(true);
}

std::string Process::describe(std::size_t max_lines) {
  std::ostringstream out;
  for (const auto& arg : argv_) out << arg << ' ';
  out << "(pid " << pid_ << ", ";
  if (alive())
    out << "running";
  else
    out << "exit code " << exit_code_.value_or(-1);
  out << ")\n--- last lines of " << options_.stdout_path << " ---\n" << file_tail(options_.stdout_path, max_lines);
  if (!options_.stderr_path.empty()) {
    out << "--- last lines of " << options_.stderr_path << " ---\n" << file_tail(options_.stderr_path, max_lines);
  }
  return out.str();
}

}  // namespace navietakie::test
