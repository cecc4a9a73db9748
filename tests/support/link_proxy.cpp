#include "support/link_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/processes.hpp"

namespace navietakie::test {

namespace {

int listen_on(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("LinkProxy: socket failed");
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    throw std::runtime_error("LinkProxy: cannot listen on port " + std::to_string(port));
  }
  return fd;
}

// Writes all of it; false when the peer is gone. Loopback peers are brokers that keep reading, so a
// blocking write is bounded in practice.
bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

struct Relay {
  int client = -1;
  int upstream = -1;
};

void close_relay(Relay& r) {
  for (int fd : {r.client, r.upstream}) {
    if (fd < 0) continue;
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
  }
  r.client = r.upstream = -1;
}

}  // namespace

LinkProxy::LinkProxy(int target_port) : target_port_(target_port), port_(free_port()) {
  if (::pipe2(wake_, O_CLOEXEC) != 0) throw std::runtime_error("LinkProxy: pipe failed");
  thread_ = std::thread([this] { run(); });
  set_up(true);
}

LinkProxy::~LinkProxy() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  const char byte = 's';
  (void)!::write(wake_[1], &byte, 1);
  if (thread_.joinable()) thread_.join();
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void LinkProxy::cut() { set_up(false); }
void LinkProxy::restore() { set_up(true); }

std::size_t LinkProxy::accepted() const {
  std::lock_guard lock(mutex_);
  return accepted_;
}

void LinkProxy::set_up(bool up) {
  std::unique_lock lock(mutex_);
  want_up_ = up;
  const char byte = 'w';
  (void)!::write(wake_[1], &byte, 1);
  if (!changed_.wait_for(lock, std::chrono::seconds(10), [&] { return is_up_ == up || stop_; })) {
    throw std::runtime_error("LinkProxy: the relay thread did not follow within 10 s");
  }
}

void LinkProxy::run() {
  int listener = -1;
  std::vector<Relay> relays;
  std::array<char, 65536> buffer{};
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stop_) break;
      const bool want_up = want_up_;
      if (want_up && listener < 0) {
        try {
          listener = listen_on(port_);
        } catch (const std::exception&) {
          // Taken meanwhile (the port was free a moment ago): set_up() times out and says so.
        }
      } else if (!want_up && listener >= 0) {
        ::close(listener);
        listener = -1;
        for (auto& r : relays) close_relay(r);
        relays.clear();
      }
      if (is_up_ != (listener >= 0)) {
        is_up_ = listener >= 0;
        changed_.notify_all();
      }
    }
    std::vector<pollfd> fds{{wake_[0], POLLIN, 0}};
    if (listener >= 0) fds.push_back({listener, POLLIN, 0});
    const std::size_t first_relay_fd = fds.size();
    for (const auto& r : relays) {
      fds.push_back({r.client, POLLIN, 0});
      fds.push_back({r.upstream, POLLIN, 0});
    }
    if (::poll(fds.data(), fds.size(), 200) < 0) continue;
    if (fds[0].revents & POLLIN) {
      char drain[64];
      (void)!::read(wake_[0], drain, sizeof drain);
      continue;  // look at the wanted state first
    }
    for (std::size_t i = first_relay_fd; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      Relay& r = relays[(i - first_relay_fd) / 2];
      if (r.client < 0) continue;
      const bool from_client = fds[i].fd == r.client;
      const ssize_t n = ::recv(fds[i].fd, buffer.data(), buffer.size(), 0);
      if (n <= 0 || !write_all(from_client ? r.upstream : r.client, buffer.data(), static_cast<std::size_t>(n))) {
        close_relay(r);
      }
    }
    relays.erase(std::remove_if(relays.begin(), relays.end(), [](const Relay& r) { return r.client < 0; }), relays.end());
    if (listener >= 0 && fds.size() > 1 && (fds[1].revents & POLLIN)) {
      const int client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      int upstream = -1;
      try {
        upstream = connect_loopback(target_port_);
      } catch (const std::exception&) {
        ::close(client);  // the cloud is down: the car sees its connect fail
        continue;
      }
      relays.push_back({client, upstream});
      std::lock_guard lock(mutex_);
      ++accepted_;
    }
  }
  if (listener >= 0) ::close(listener);
  for (auto& r : relays) close_relay(r);
  std::lock_guard lock(mutex_);
  is_up_ = false;
  changed_.notify_all();
}

}  // namespace navietakie::test
