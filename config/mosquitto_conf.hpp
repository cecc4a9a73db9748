// The one generator of Mosquitto 2.0.11 configurations for navietakie: scripts/run, scripts/bench,
// bench/hosts.sh and the browser test call it through `navietakie-ctl broker-conf`, the C++ test
// harness directly. The shipped config/mosquitto*.conf are its output with comments.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace navietakie {

// MQTT's largest packet: a 1-byte header, 4 bytes of remaining length, 268,435,455 bytes.
constexpr std::size_t kMqttMaxPacketSize = 268435460;

// The largest packet a navietakie broker has to accept, for hosts that accept request payloads of
// up to `max_payload_bytes`. Not the request: in bridge mode the bridge publishes its replies
// through the broker, and a get_message reply carries up to 200 messages (the page limit of
// core/codec.cpp), each at most one request payload plus the fields the server adds. Rounded up to
// a MiB, at most kMqttMaxPacketSize. The default 65536 gives 13 MiB: a client can no longer make
// the broker reserve 256 MB by declaring it in a packet's header.
std::size_t derived_max_packet_size(std::size_t max_payload_bytes);

struct MosquittoConf {
  // Listeners; 0 = none. The TCP one is required: 2.0.11 does not start with WebSockets alone.
  int mqtt_port = 1883;
  int websockets_port = 0;
  int mqtts_port = 0;  // MQTT over TLS
  int wss_port = 0;    // WebSockets over TLS
  // Address every listener binds to; empty: every interface.
  std::string bind_address;
  // TLS listeners: the server's certificate chain and key (PEM). cafile is only needed to verify
  // client certificates; leave it empty for server-side TLS.
  std::string certfile;
  std::string keyfile;
  std::string cafile;
  // Served over HTTP by the WebSockets listeners (the web app); empty: none.
  std::string http_dir;

  // mosquitto_navietakie.so; empty: no plugin.
  std::string plugin;
  // `plugin_opt_<key> <value>` lines, in order; every key must be one of config_schema().
  std::vector<std::pair<std::string, std::string>> plugin_options;

  // 0: derived_max_packet_size(max_payload_bytes).
  std::size_t max_packet_size = 0;
  std::size_t max_payload_bytes = 65536;

  bool allow_anonymous = true;
  // The user mosquitto switches to when started as root; empty: its default (`mosquitto`).
  std::string user;
  // Per-client queue of QoS 1/2 messages beyond which a slow subscriber loses messages.
  std::size_t max_queued_messages = 10000;
  // 0: the broker's default (20), which is also the Receive Maximum a v5 client gets.
  std::size_t max_inflight_messages = 0;

  // Empty: stderr; else this file.
  std::string log_file;
  std::vector<std::string> log_types{"error", "warning", "notice", "information"};
  std::string log_timestamp_format;  // empty: the broker's (seconds since the epoch)

  // Lines appended as they are (e.g. a test's deliberately bad plugin_opt_ line).
  std::vector<std::string> extra_lines;
};

// The conf file's text. Throws ConfigError (config/config.hpp) naming the field for a value the
// broker would refuse or misread: a port out of range or used twice, no TCP listener, a TLS
// listener without certfile and keyfile, a line break in any value, whitespace in a path, an
// unknown plugin option key.
std::string render_mosquitto_conf(const MosquittoConf& conf);

}  // namespace navietakie
