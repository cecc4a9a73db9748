#include "config/mosquitto_conf.hpp"

#include <algorithm>
#include <string_view>

#include "config/config.hpp"

namespace navietakie {
namespace {

// core/codec.cpp: get_message's `limit` is 1 to 200 (config/ cannot include core/).
constexpr std::size_t kHistoryPageMessages = 200;
// What a stored message adds to its request payload: booking code, seq, times, sender id.
constexpr std::size_t kStoredMessageOverhead = 1024;
// Topic, MQTT v5 properties (response topic, correlation data, user properties) and the reply's
// own fields.
constexpr std::size_t kPacketHeadroom = 64 * 1024;
constexpr std::size_t kMiB = 1024 * 1024;

[[noreturn]] void refuse(const std::string& field, const std::string& problem) {
  throw ConfigError("broker conf: " + field + ": " + problem);
}

// A value on one conf line: a line break would start another directive.
const std::string& one_line(const std::string& field, const std::string& value) {
  if (value.find_first_of(std::string_view("\n\r\0", 3)) != std::string::npos) {
    refuse(field, "line break or NUL in " + quote(value));
  }
  return value;
}

// Paths and names: mosquitto reads them up to the first blank.
const std::string& one_word(const std::string& field, const std::string& value) {
  one_line(field, value);
  if (value.find_first_of(" \t\f\v") != std::string::npos) refuse(field, "whitespace in " + quote(value));
  return value;
}

void check_port(const std::string& field, int port, bool required) {
  if (port == 0 && !required) return;
  if (port < 1 || port > 65535) refuse(field, "expected a port from 1 to 65535, got " + std::to_string(port));
}

bool known_setting(const std::string& key) {
  const auto& schema = config_schema();
  return std::any_of(schema.begin(), schema.end(), [&](const ConfigKey& entry) { return entry.key == key; });
}

void check(const MosquittoConf& conf) {
  check_port("mqtt_port", conf.mqtt_port, true);
  check_port("websockets_port", conf.websockets_port, false);
  check_port("mqtts_port", conf.mqtts_port, false);
  check_port("wss_port", conf.wss_port, false);
  const std::vector<int> ports{conf.mqtt_port, conf.websockets_port, conf.mqtts_port, conf.wss_port};
  for (std::size_t i = 0; i < ports.size(); ++i) {
    for (std::size_t k = i + 1; k < ports.size(); ++k) {
      if (ports[i] != 0 && ports[i] == ports[k]) refuse("ports", "port " + std::to_string(ports[i]) + " used twice");
    }
  }
  one_word("bind_address", conf.bind_address);
  const bool tls = conf.mqtts_port != 0 || conf.wss_port != 0;
  for (const auto& [field, path] : {std::pair<std::string, const std::string&>{"certfile", conf.certfile},
                                    {"keyfile", conf.keyfile},
                                    {"cafile", conf.cafile}}) {
    one_word(field, path);
    if (!path.empty() && !tls) refuse(field, "given without a TLS listener (mqtts_port, wss_port)");
  }
  if (tls && (conf.certfile.empty() || conf.keyfile.empty())) {
    refuse("certfile", "a TLS listener needs certfile and keyfile");
  }
  one_word("http_dir", conf.http_dir);
  if (!conf.http_dir.empty() && conf.websockets_port == 0 && conf.wss_port == 0) {
    refuse("http_dir", "given without a WebSockets listener (websockets_port, wss_port)");
  }
  one_word("plugin", conf.plugin);
  if (!conf.plugin_options.empty() && conf.plugin.empty()) refuse("plugin_options", "given without a plugin");
  for (const auto& [key, value] : conf.plugin_options) {
    if (!known_setting(key)) refuse("plugin_options", "unknown key " + quote(key) + " (navietakie-bridge --help)");
    one_line("plugin_opt_" + key, value);
    if (value.empty()) refuse("plugin_opt_" + key, "empty value");
  }
  if (conf.max_packet_size != 0 && (conf.max_packet_size < 20 || conf.max_packet_size > kMqttMaxPacketSize)) {
    refuse("max_packet_size",
           "expected 20 to " + std::to_string(kMqttMaxPacketSize) + ", got " + std::to_string(conf.max_packet_size));
  }
  if (conf.max_payload_bytes == 0) refuse("max_payload_bytes", "must be positive");
  if (conf.max_inflight_messages > 65535) refuse("max_inflight_messages", "expected 0 to 65535");
  one_word("user", conf.user);
  one_line("log_file", conf.log_file);
  for (const auto& type : conf.log_types) one_word("log_types", type);
  one_line("log_timestamp_format", conf.log_timestamp_format);
  for (const auto& line : conf.extra_lines) one_line("extra_lines", line);
}

std::string listener(int port, const std::string& bind_address) {
  return "listener " + std::to_string(port) + (bind_address.empty() ? "" : " " + bind_address) + "\n";
}

std::string tls_files(const MosquittoConf& conf) {
  std::string out = "certfile " + conf.certfile + "\nkeyfile " + conf.keyfile + "\n";
  if (!conf.cafile.empty()) out += "cafile " + conf.cafile + "\n";
  return out;
}

std::string websockets(const MosquittoConf& conf) {
  // socket_domain ipv4: one socket, not a second IPv6 one on every interface.
  std::string out = "protocol websockets\nsocket_domain ipv4\n";
  if (!conf.http_dir.empty()) out += "http_dir " + conf.http_dir + "\n";
  return out;
}

}  // namespace

std::size_t derived_max_packet_size(std::size_t max_payload_bytes) {
  const std::size_t cap = kMqttMaxPacketSize;
  const std::size_t per_message = max_payload_bytes + kStoredMessageOverhead;
  if (per_message > (cap - kPacketHeadroom) / kHistoryPageMessages) return cap;
  const std::size_t page = kHistoryPageMessages * per_message + kPacketHeadroom;
  return std::min(cap, (page + kMiB - 1) / kMiB * kMiB);
}

std::string render_mosquitto_conf(const MosquittoConf& conf) {
  check(conf);
  const std::size_t max_packet_size =
      conf.max_packet_size != 0 ? conf.max_packet_size : derived_max_packet_size(conf.max_payload_bytes);
  std::string out = "# Written by navietakie (config/mosquitto_conf.cpp).\n";
  out += "per_listener_settings false\n";
  out += std::string("allow_anonymous ") + (conf.allow_anonymous ? "true" : "false") + "\n";
  if (!conf.user.empty()) out += "user " + conf.user + "\n";
  // navietakie's LMDB store holds what must survive a restart.
  out += "persistence false\n";
  out += "max_queued_messages " + std::to_string(conf.max_queued_messages) + "\n";
  if (conf.max_inflight_messages != 0) {
    out += "max_inflight_messages " + std::to_string(conf.max_inflight_messages) + "\n";
  }
  out += "max_packet_size " + std::to_string(max_packet_size) + "\n";
  // With Nagle's algorithm a reply can wait ~40 ms for a delayed ACK.
  out += "set_tcp_nodelay true\n";
  out += conf.log_file.empty() ? std::string("log_dest stderr\n") : "log_dest file " + conf.log_file + "\n";
  for (const auto& type : conf.log_types) out += "log_type " + type + "\n";
  if (!conf.log_timestamp_format.empty()) out += "log_timestamp_format " + conf.log_timestamp_format + "\n";
  out += "connection_messages true\n";

  out += "\n" + listener(conf.mqtt_port, conf.bind_address);
  if (conf.websockets_port != 0) out += "\n" + listener(conf.websockets_port, conf.bind_address) + websockets(conf);
  if (conf.mqtts_port != 0) out += "\n" + listener(conf.mqtts_port, conf.bind_address) + tls_files(conf);
  if (conf.wss_port != 0) {
    out += "\n" + listener(conf.wss_port, conf.bind_address) + websockets(conf) + tls_files(conf);
  }

  if (!conf.plugin.empty()) {
    out += "\nplugin " + conf.plugin + "\n";
    for (const auto& [key, value] : conf.plugin_options) out += "plugin_opt_" + key + " " + value + "\n";
  }
  if (!conf.extra_lines.empty()) out += "\n";
  for (const auto& line : conf.extra_lines) out += line + "\n";
  return out;
}

}  // namespace navietakie
