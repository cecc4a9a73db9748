#include "bridge/paho_compat.hpp"

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>
#include <thread>

namespace navietakie {

int set_tcp_nodelay_on_open_sockets() {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return 0;
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    struct stat st {};
    if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof addr;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) continue;
    if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) continue;
    int on = 1;
    if (setsockopt(static_cast<int>(fd), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == 0) ++count;
  }
  closedir(dir);
  return count;
}

void quiet_paho_trace() {
  const char* trace = std::getenv("MQTT_C_CLIENT_TRACE");
  if (trace && *trace) return;
  MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
}

bool nudge_send_thread(mqtt::async_client& client, const std::string& nudge_topic) {
  if (client.get_pending_delivery_tokens().empty()) return false;
  try {
    client.publish(nudge_topic, "", 0, 0, false);
  } catch (const mqtt::exception&) {
    // disconnected: nothing to wake
  }
  return true;
}

bool wait_for_pending_publishes(mqtt::async_client& client, const std::string& nudge_topic,
                                std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (nudge_send_thread(client, nudge_topic)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kSendNudgeEvery);
  }
  return true;
}

}  // namespace navietakie
