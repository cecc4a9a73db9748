// navietakie-bridge: the standalone host of the handlers, for any MQTT v5 broker.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "auth/acl.hpp"
#include "core/engine.hpp"
#include "core/store_setup.hpp"
#include "core/log.hpp"
#include "bridge/paho_compat.hpp"
#include "bridge/paho_host.hpp"
#include "config/config.hpp"

extern char** environ;

namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

void on_signal(int) { g_stop = true; }

}  // namespace

int main(int argc, char** argv) {
  using namespace navietakie;
  Settings settings;
  try {
    CommandLine command_line = parse_command_line(argc, argv, "navietakie-bridge");
    if (command_line.help) {
      std::cout << command_line.help_text;
      return 0;
    }
    settings = load_settings(command_line, environ);
    if (settings.node_role == NodeRole::edge) {
      // The edge node answers from the car's broker while the link is down: that needs the
      // broker's own thread, i.e. the plugin (docs/edge.md).
      throw ConfigError(
          "config key 'node_role': edge mode runs in the broker (the plugin, plugin_opt_node_role edge); "
          "the bridge is a cloud host only");
    }
  } catch (const ConfigError& e) {
    std::cerr << "navietakie-bridge: " << e.what() << "\n";
    return 2;
  }
  set_log_level(settings.log_level);
  set_log_format(settings.log_format);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    auto store = open_store(settings);
    EngineOptions options = engine_options(settings);
    options.require_identity = settings.trust_identity_property;
    // The stamp names the publisher and its client id: its reply address is held to the same
    // policy as in the broker (configure the same auth_service_grants on both).
    if (settings.trust_identity_property) options.reply_allowed = reply_address_check(acl_policy(settings));
    Engine engine(*store, options);
    if (!settings.trust_identity_property) {
      log_line(LogLevel::warn, "OPEN_MODE",
               {{"warning",
                 "trust_identity_property is false: requests are not tied to an authenticated "
                 "identity; safe only behind a broker that lets no untrusted client publish requests"}});
    }
    log_line(LogLevel::info, "starting",
             {{"broker", settings.broker_url},
              {"client_id", settings.client_id},
              {"data_dir", settings.data_dir},
              {"sync", to_string(settings.sync)},
              {"prefix", settings.topic_prefix},
              {"share_group", settings.share_group},
              {"environment", settings.environment}});

    quiet_paho_trace();
    // Room for bursts while the worker commits; Paho's default buffer holds only 100 messages.
    mqtt::async_client client(settings.broker_url, settings.client_id, mqtt::create_options(MQTTVERSION_5, 100000));
    PahoHost host(client, engine, settings);
    if (!host.run(g_stop)) {
      log_line(LogLevel::error, "never_connected", {{"broker", settings.broker_url}});
      return 1;
    }
  } catch (const std::exception& e) {
    log_line(LogLevel::error, "fatal", {{"error", e.what()}});
    return 1;
  }
  log_line(LogLevel::info, "stopped");
  return 0;
}
