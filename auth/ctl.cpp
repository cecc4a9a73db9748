// navietakie-ctl: operator tools. Makes a shared secret, mints tokens with it or with a private key,
// and verifies them under the same rules as the broker (never printing a secret or a key), and writes
// Mosquitto configs (broker-conf: the generator of config/mosquitto_conf.hpp, for the scripts that
// are not C++).
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
// cxxopts' own argument matcher instead of std::regex (see config/config.cpp).
#define CXXOPTS_NO_REGEX 1
#include <cxxopts.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "auth/ctl_options.hpp"
#include "auth/ctl_store.hpp"
#include "config/config.hpp"
#include "config/mosquitto_conf.hpp"
#include "core/engine.hpp"
#include "core/identity.hpp"
#include "core/store_setup.hpp"
#include "auth/jwt.hpp"

extern char** environ;

namespace {

using namespace navietakie;
using namespace navietakie::ctl;

constexpr const char* kProgram = "navietakie-ctl";
constexpr const char* kSecretFileEnv = "NAVIETAKIE_AUTH_JWT_SECRET_FILE";
constexpr const char* kPublicKeyFileEnv = "NAVIETAKIE_AUTH_JWT_PUBLIC_KEY_FILE";
constexpr std::int64_t kMaxTtlSeconds = 10LL * 366 * 24 * 3600;

const char* const kUsage =
    "Usage: navietakie-ctl COMMAND [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  secret       print a new random secret (64 hex characters), e.g. > secret.key\n"
    "  token        print a token for a driver, passenger or service (HS256 with the secret, or\n"
    "               RS256 / ES256 / EdDSA with a private key)\n"
    "  verify       check a token as the broker would and print the identity it carries;\n"
    "               verify DIR (a path) checks an LMDB store instead\n"
    "  broker-conf  print a Mosquitto config for navietakie (listeners, TLS, plugin, limits)\n"
    "  close        close a booking in a stopped store (as the `close` request does)\n"
    "  purge        delete everything of one booking from a stopped store\n"
    "  backup       copy the LMDB store, compacted, while the system runs\n"
    "  export       print a booking's messages as JSON lines\n"
    "  stats        print a store's figures (bookings, messages, calls, map usage)\n"
    "\n"
    "`navietakie-ctl COMMAND --help` describes each command.\n";

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Reads a key file with `reader`; a file that cannot be used is a usage error.
template <typename Reader>
auto load(const std::string& path, Reader&& reader) {
  try {
    return reader(path);
  } catch (const std::runtime_error& error) {
    throw UsageError(error.what());
  }
}

int run_secret(int argc, const char* const* argv) {
  cxxopts::Options options("navietakie-ctl secret",
                           "Prints a new random secret: 64 hex characters (256 bits) from "
                           "/dev/urandom.\nKeep it in a file readable only by the broker, e.g.\n"
                           "  navietakie-ctl secret > secret.key && chmod 600 secret.key\n");
  options.add_options()("h,help", "print this help and exit");
  const auto parsed = parse(options, {}, argc, argv);
  if (parsed.count("help") > 0) {
    std::cout << options.help();
    return 0;
  }
  std::cout << generate_secret() << "\n";
  return 0;
}

int run_token(int argc, const char* const* argv) {
  cxxopts::Options options("navietakie-ctl token",
                           "Prints a token for one identity: HS256 signed with the shared secret, or, with\n"
                           "--private-key-file, signed with that key (RSA: RS256, EC P-256/384/521: ES256/384/512,\n"
                           "Ed25519/Ed448: EdDSA) for brokers that hold only the public half.\n"
                           "Drivers and passengers need --booking; a service must not have one.\n");
  auto add = options.add_options();
  add("secret-file", std::string("file holding the secret (default: $") + kSecretFileEnv + ")",
      cxxopts::value<std::string>(), "FILE");
  add("private-key-file", "PEM private key to sign with instead of the secret", cxxopts::value<std::string>(), "FILE");
  add("sub", "the token's subject: 1 to 128 characters from 0x21 to 0x7E", cxxopts::value<std::string>(), "SUB");
  add("role", "driver, passenger or service", cxxopts::value<std::string>(), "ROLE");
  add("booking", "booking code (driver and passenger only)", cxxopts::value<std::string>(), "BOOKING");
  add("ttl",
      "seconds from now until the token expires (brokers refuse more than their "
      "auth_max_token_ttl_s, default 86400)",
      cxxopts::value<std::string>()->default_value("3600"), "SECONDS");
  add("nbf", "Unix time (seconds) before which the token is not valid", cxxopts::value<std::string>(), "UNIX_SECONDS");
  add("h,help", "print this help and exit");
  const auto parsed =
      parse(options, {"secret-file", "private-key-file", "sub", "role", "booking", "ttl", "nbf"}, argc, argv);
  if (parsed.count("help") > 0) {
    std::cout << options.help();
    return 0;
  }

  if (parsed.count("sub") == 0) throw UsageError("--sub is required");
  if (parsed.count("role") == 0) throw UsageError("--role is required");
  Identity identity;
  identity.subject = parsed["sub"].as<std::string>();
  const auto principal = principal_from_string(parsed["role"].as<std::string>());
  if (!principal) {
    throw UsageError("--role: expected driver, passenger or service, got '" + parsed["role"].as<std::string>() + "'");
  }
  identity.principal = *principal;
  if (parsed.count("booking") > 0) identity.booking = parsed["booking"].as<std::string>();
  if (const auto problem = identity_claims_problem(identity)) throw UsageError(*problem);

  const std::int64_t ttl = integer_option("ttl", parsed["ttl"].as<std::string>(), 1, kMaxTtlSeconds);
  std::optional<std::int64_t> not_before;
  if (parsed.count("nbf") > 0) {
    not_before = integer_option("nbf", parsed["nbf"].as<std::string>(), 0, 253402300799);
  }
  const std::int64_t now = now_s();
  if (not_before && *not_before >= now + ttl) {
    throw UsageError("--nbf is not before the expiry (now + --ttl): the token would never be valid");
  }
  if (parsed.count("private-key-file") > 0) {
    if (parsed.count("secret-file") > 0) {
      throw UsageError("--secret-file and --private-key-file exclude each other");
    }
    const PemKey key = load(parsed["private-key-file"].as<std::string>(), read_private_key_file);
    std::cout << mint_token(identity, key, now + ttl, not_before, now) << "\n";
    return 0;
  }
  const std::string secret_path = option_or_env(parsed, "secret-file", kSecretFileEnv);
  if (secret_path.empty()) {
    throw UsageError(std::string("no key: give --secret-file FILE (or set ") + kSecretFileEnv +
                     ") or --private-key-file FILE");
  }
  const std::string secret = load(secret_path, read_secret_file);
  std::cout << mint_token(identity, secret, now + ttl, not_before, now) << "\n";
  return 0;
}

int run_verify(int argc, const char* const* argv) {
  cxxopts::Options options("navietakie-ctl verify",
                           "Checks TOKEN as the broker would with the broker's defaults (signature "
                           "with the\nsecret and/or the public key, claims, exp and nbf with 30 s "
                           "leeway, a lifetime of at\nmost 86400 s). Prints the identity as JSON "
                           "and exits 0, or prints\n`refused: <failure>: <detail>` and exits 1.\n"
                           "Given a path instead (verify DIR), it checks an LMDB store: see\n"
                           "`navietakie-ctl verify ./DIR --help`.\n");
  options.positional_help("TOKEN");
  auto add = options.add_options();
  add("secret-file", std::string("file holding the secret (default: $") + kSecretFileEnv + ")",
      cxxopts::value<std::string>(), "FILE");
  add("public-key-file", std::string("PEM public key for RS*/ES*/EdDSA tokens (default: $") + kPublicKeyFileEnv + ")",
      cxxopts::value<std::string>(), "FILE");
  add("token", "the token", cxxopts::value<std::string>());
  add("h,help", "print this help and exit");
  options.parse_positional({"token"});
  const auto parsed = parse(options, {"secret-file", "public-key-file"}, argc, argv);
  if (parsed.count("help") > 0) {
    std::cout << options.help({""});
    return 0;
  }
  if (parsed.count("token") == 0) throw UsageError("a TOKEN is required (see --help)");

  JwtOptions jwt_options;
  const std::string secret_path = option_or_env(parsed, "secret-file", kSecretFileEnv);
  const std::string public_key_path = option_or_env(parsed, "public-key-file", kPublicKeyFileEnv);
  if (secret_path.empty() && public_key_path.empty()) {
    throw UsageError(std::string("no key: give --secret-file FILE or --public-key-file FILE (or set ") +
                     kSecretFileEnv + " or " + kPublicKeyFileEnv + ")");
  }
  if (!secret_path.empty()) jwt_options.secret = load(secret_path, read_secret_file);
  if (!public_key_path.empty()) {
    jwt_options.public_key = load(public_key_path, read_public_key_file);
  }
  const VerifyResult result = verify_token(parsed["token"].as<std::string>(), jwt_options, now_s());
  if (!result) {
    std::cerr << "refused: " << to_string(result.failure) << ": " << result.detail << "\n";
    return 1;
  }
  std::cout << encode_identity(*result.identity) << "\n";
  return 0;
}

int run_broker_conf(int argc, const char* const* argv) {
  cxxopts::Options options(
      "navietakie-ctl broker-conf",
      "Prints (or writes to --out) a Mosquitto 2.0.11 config for navietakie: the generator behind\n"
      "scripts/run, scripts/bench and the tests. max_packet_size is derived from max_payload_bytes\n"
      "(--max-payload-bytes, else the settings of --plugin-settings / --settings with NAVIETAKIE_*\n"
      "variables over them and --plugin-opt over both, as the hosts read them) unless given.\n");
  auto add = options.add_options();
  add("mqtt-port", "MQTT over TCP (required by 2.0.11)", cxxopts::value<std::string>()->default_value("1883"), "PORT");
  add("ws-port", "MQTT over WebSockets (serves --http-dir)", cxxopts::value<std::string>(), "PORT");
  add("mqtts-port", "MQTT over TLS", cxxopts::value<std::string>(), "PORT");
  add("wss-port", "MQTT over WebSockets over TLS", cxxopts::value<std::string>(), "PORT");
  add("bind", "address every listener binds to (default: every interface)", cxxopts::value<std::string>(), "ADDR");
  add("certfile", "TLS listeners: the server's certificate chain (PEM)", cxxopts::value<std::string>(), "FILE");
  add("keyfile", "TLS listeners: the server's private key (PEM)", cxxopts::value<std::string>(), "FILE");
  add("cafile", "TLS listeners: CA to verify client certificates with (optional)", cxxopts::value<std::string>(),
      "FILE");
  add("http-dir", "directory the WebSockets listeners serve (the web app)", cxxopts::value<std::string>(), "DIR");
  add("plugin", "mosquitto_navietakie.so", cxxopts::value<std::string>(), "FILE");
  add("plugin-settings", "a settings file (config/bridge.conf format): each key becomes a plugin_opt_ line",
      cxxopts::value<std::string>(), "FILE");
  add("plugin-opt", "one plugin_opt_KEY VALUE line (repeatable; wins over --plugin-settings)",
      cxxopts::value<std::string>(), "KEY=VALUE");
  add("settings", "the settings file the hosts run with, read only for max_payload_bytes",
      cxxopts::value<std::string>(), "FILE");
  add("max-payload-bytes", "the hosts' max_payload_bytes, to derive max_packet_size from",
      cxxopts::value<std::string>(), "N");
  add("max-packet-size", "largest MQTT packet accepted (default: derived)", cxxopts::value<std::string>(), "N");
  add("allow-anonymous", "true or false", cxxopts::value<std::string>()->default_value("true"), "BOOL");
  add("user", "user mosquitto switches to when started as root", cxxopts::value<std::string>(), "NAME");
  add("max-queued-messages", "per-client queue of QoS 1/2 messages",
      cxxopts::value<std::string>()->default_value("10000"), "N");
  add("max-inflight-messages", "QoS 1/2 messages in flight per client (default: the broker's, 20)",
      cxxopts::value<std::string>(), "N");
  add("log-file", "log to this file (default: stderr)", cxxopts::value<std::string>(), "FILE");
  add("log-type", "a log_type line (repeatable; default error, warning, notice, information)",
      cxxopts::value<std::string>(), "TYPE");
  add("log-timestamp-format", "strftime format of the log's timestamps", cxxopts::value<std::string>(), "FORMAT");
  add("out", "write the config to FILE instead of stdout", cxxopts::value<std::string>(), "FILE");
  add("h,help", "print this help and exit");
  const std::vector<std::string> value_options{"mqtt-port",
                                               "ws-port",
                                               "mqtts-port",
                                               "wss-port",
                                               "bind",
                                               "certfile",
                                               "keyfile",
                                               "cafile",
                                               "http-dir",
                                               "plugin",
                                               "plugin-settings",
                                               "plugin-opt",
                                               "settings",
                                               "max-payload-bytes",
                                               "max-packet-size",
                                               "allow-anonymous",
                                               "user",
                                               "max-queued-messages",
                                               "max-inflight-messages",
                                               "log-file",
                                               "log-type",
                                               "log-timestamp-format",
                                               "out"};
  const auto parsed = parse(options, value_options, argc, argv);
  if (parsed.count("help") > 0) {
    std::cout << options.help();
    return 0;
  }
  // The option's value, its default, or "" (cxxopts counts only options given).
  const auto text = [&](const std::string& name) {
    return parsed.count(name) > 0 || parsed[name].has_default() ? parsed[name].as<std::string>() : std::string();
  };
  const auto port = [&](const std::string& name) {
    return parsed.count(name) > 0 ? static_cast<int>(integer_option(name, text(name), 1, 65535)) : 0;
  };

  MosquittoConf conf;
  conf.mqtt_port = static_cast<int>(integer_option("mqtt-port", text("mqtt-port"), 1, 65535));
  conf.websockets_port = port("ws-port");
  conf.mqtts_port = port("mqtts-port");
  conf.wss_port = port("wss-port");
  const std::pair<const char*, std::string MosquittoConf::*> text_fields[] = {
      {"bind", &MosquittoConf::bind_address},
      {"certfile", &MosquittoConf::certfile},
      {"keyfile", &MosquittoConf::keyfile},
      {"cafile", &MosquittoConf::cafile},
      {"http-dir", &MosquittoConf::http_dir},
      {"plugin", &MosquittoConf::plugin},
      {"user", &MosquittoConf::user},
      {"log-file", &MosquittoConf::log_file},
      {"log-timestamp-format", &MosquittoConf::log_timestamp_format},
  };
  for (const auto& [flag, field] : text_fields) conf.*field = text(flag);
  const std::string anonymous = text("allow-anonymous");
  if (anonymous != "true" && anonymous != "false") {
    throw UsageError("--allow-anonymous: expected true or false, got '" + anonymous + "'");
  }
  conf.allow_anonymous = anonymous == "true";
  conf.max_queued_messages =
      static_cast<std::size_t>(integer_option("max-queued-messages", text("max-queued-messages"), 0, 1000000000));
  if (parsed.count("max-inflight-messages") > 0) {
    conf.max_inflight_messages =
        static_cast<std::size_t>(integer_option("max-inflight-messages", text("max-inflight-messages"), 1, 65535));
  }
  if (parsed.count("max-packet-size") > 0) {
    conf.max_packet_size = static_cast<std::size_t>(
        integer_option("max-packet-size", text("max-packet-size"), 20, static_cast<std::int64_t>(kMqttMaxPacketSize)));
  }

  // The plugin's settings: the file's keys, then each --plugin-opt (a key given again replaces
  // the earlier value in place).
  ConfigLayer plugin_layer;
  if (parsed.count("plugin-settings") > 0) {
    plugin_layer = read_config_file(text("plugin-settings"));
    for (const auto& [key, value] : plugin_layer) conf.plugin_options.emplace_back(key, value);
  }
  std::vector<std::string> log_types;
  for (const auto& argument : parsed.arguments()) {
    if (argument.key() == "log-type") log_types.push_back(argument.value());
    if (argument.key() != "plugin-opt") continue;
    const std::string& option = argument.value();
    const std::size_t equals = option.find('=');
    if (equals == std::string::npos || equals == 0) {
      throw UsageError("--plugin-opt: expected KEY=VALUE, got '" + option + "'");
    }
    const std::string key = option.substr(0, equals);
    const std::string value = option.substr(equals + 1);
    plugin_layer.set(key, value, "--plugin-opt " + key);
    bool replaced = false;
    for (auto& entry : conf.plugin_options) {
      if (entry.first == key) entry.second = value, replaced = true;
    }
    if (!replaced) conf.plugin_options.emplace_back(key, value);
  }
  if (!log_types.empty()) conf.log_types = log_types;

  // The payload limit the hosts will run with: what they read, in their order.
  if (parsed.count("max-payload-bytes") > 0) {
    conf.max_payload_bytes =
        static_cast<std::size_t>(integer_option("max-payload-bytes", text("max-payload-bytes"), 1, 268435455));
  } else {
    std::vector<ConfigLayer> layers;
    if (parsed.count("settings") > 0) layers.push_back(read_config_file(text("settings")));
    layers.push_back(config_from_env(environ));
    layers.push_back(plugin_layer);
    conf.max_payload_bytes = resolve_settings(layers).max_payload_bytes;
  }

  const std::string rendered = render_mosquitto_conf(conf);
  if (parsed.count("out") == 0) {
    std::cout << rendered;
    return 0;
  }
  std::ofstream out(text("out"), std::ios::binary | std::ios::trunc);
  out << rendered;
  out.close();
  if (!out) throw std::runtime_error("cannot write '" + text("out") + "'");
  return 0;
}

// ---- close / purge: one booking, in the store the settings describe, with no host running ----

// The store options of close and purge: --config FILE, NAVIETAKIE_* variables, then the flags.
void add_store_options(cxxopts::OptionAdder& add) {
  add("config", "a bridge or plugin config file naming the store (data_dir, store_backend, postgres_url)",
      cxxopts::value<std::string>(), "FILE");
  add("data-dir", "the LMDB data dir (overrides the config file)", cxxopts::value<std::string>(), "DIR");
  add("store-backend", "lmdb or postgres", cxxopts::value<std::string>(), "BACKEND");
  add("postgres-url", "the PostgreSQL connection string", cxxopts::value<std::string>(), "URL");
}
const std::vector<std::string> kStoreValueOptions{"config", "data-dir", "store-backend", "postgres-url"};

Settings store_settings(const cxxopts::ParseResult& parsed) {
  std::vector<ConfigLayer> layers;
  if (parsed.count("config") > 0) layers.push_back(read_config_file(parsed["config"].as<std::string>()));
  layers.push_back(config_from_env(environ));
  ConfigLayer flags;
  for (const auto& [flag, key] : {std::pair<const char*, const char*>{"data-dir", "data_dir"},
                                  {"store-backend", "store_backend"},
                                  {"postgres-url", "postgres_url"}}) {
    if (parsed.count(flag) > 0) flags.set(key, parsed[flag].as<std::string>(), std::string("--") + flag);
  }
  layers.push_back(flags);
  return resolve_settings(layers);
}

// LMDB holds a shared fcntl lock on byte 0 of lock.mdb in every process that has the environment
// open (lmdb.h, mdb_env_open): if another process holds one, a host is running on this store.
void refuse_lmdb_in_use(const std::string& data_dir) {
  const std::string lock_file = (std::filesystem::path(data_dir) / "lock.mdb").string();
  const int fd = ::open(lock_file.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return;  // no environment yet, or not ours to judge: opening it says more
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 1;
  const int rc = ::fcntl(fd, F_GETLK, &probe);
  ::close(fd);
  if (rc == 0 && probe.l_type != F_UNLCK) {
    throw std::runtime_error("the store in " + data_dir + " is in use by process " + std::to_string(probe.l_pid) +
                             ": stop the broker or bridge first (or send a `close` request to the running system)");
  }
}

std::unique_ptr<Store> open_stopped_store(const Settings& settings) {
  if (settings.store_backend == StoreBackend::lmdb) refuse_lmdb_in_use(settings.data_dir);
  return open_store(settings);
}

std::string booking_argument(const cxxopts::ParseResult& parsed) {
  if (parsed.count("booking") == 0) throw UsageError("a BOOKING code is required");
  const std::string booking = parsed["booking"].as<std::string>();
  if (!valid_booking_code(booking)) throw UsageError("'" + booking + "' is not a booking code");
  return booking;
}

// The command line of a command on one booking's store: BOOKING, the store options, `more` (the
// command's own options, which take values), --help. nullopt: the help was printed.
std::optional<cxxopts::ParseResult> parse_booking_command(
    cxxopts::Options& options, const std::vector<std::pair<std::string, std::string>>& more, int argc,
    const char* const* argv) {
  auto add = options.add_options();
  add("booking", "the booking code", cxxopts::value<std::string>(), "BOOKING");
  std::vector<std::string> value_options = kStoreValueOptions;
  for (const auto& [name, help] : more) {
    add(name, help, cxxopts::value<std::string>(), "VALUE");
    value_options.push_back(name);
  }
  add_store_options(add);
  add("h,help", "print this help and exit");
  options.parse_positional({"booking"});
  options.positional_help("BOOKING");
  auto parsed = parse(options, value_options, argc, argv);
  if (parsed.count("help") > 0) {
    std::cout << options.help();
    return std::nullopt;
  }
  return parsed;
}

int run_close(int argc, const char* const* argv) {
  cxxopts::Options options("navietakie-ctl close",
                           "Closes BOOKING as a `close` request would: later writes are refused with\n"
                           "booking_closed, an active call ends with end_reason booking_closed, and the\n"
                           "booking is purged retention_days later. For a stopped system (LMDB: refused while\n"
                           "a host has the store open); hosts republish the retained events/booking at start.\n"
                           "Prints the booking state (closing twice prints the first close).\n");
  const auto command_line = parse_booking_command(
      options,
      {{"reason", "why (stored and published with the state)"},
       {"closed-at", "the close's time, Unix milliseconds (default now; for tests and migrations)"}},
      argc, argv);
  if (!command_line) return 0;
  const cxxopts::ParseResult& parsed = *command_line;
  const std::string booking = booking_argument(parsed);
  const Settings settings = store_settings(parsed);
  auto store = open_stopped_store(settings);
  Clock clock = system_clock_ms;
  if (parsed.count("closed-at") > 0) {
    const Millis at = integer_option("closed-at", parsed["closed-at"].as<std::string>(), 0, 253402300799999);
    clock = [at] { return at; };
  }
  Engine engine(*store, engine_options(settings), clock);
  Json body = Json::object();
  if (parsed.count("reason") > 0) body["reason"] = parsed["reason"].as<std::string>();
  body["reply_to"] = "ctl/close";
  const Topics topics(settings.topic_prefix);
  Request request{topics.request(booking, Action::close), body.dump(), std::nullopt, std::nullopt, "navietakie-ctl"};
  for (const auto& publish : engine.handle({request})) {
    if (publish.topic != "ctl/close") continue;
    const Json reply = Json::parse(publish.payload);
    if (!reply.value("ok", false)) throw UsageError(reply.at("error").at("message").get<std::string>());
    std::cout << reply.at("booking").dump() << "\n";
    return 0;
  }
  throw std::runtime_error("no reply from the engine");
}

int run_purge(int argc, const char* const* argv) {
  cxxopts::Options options("navietakie-ctl purge",
                           "Deletes everything stored of BOOKING (messages, message ids, calls, connections,\n"
                           "presence, its closed state), open or closed, in short transactions. For a stopped\n"
                           "system (LMDB: refused while a host has the store open). The broker may still hold\n"
                           "the booking's retained events: clear them once it runs (README, \"Deleting one\n"
                           "passenger's chats\"). Prints how many keys (rows) it deleted.\n");
  const auto command_line = parse_booking_command(options, {}, argc, argv);
  if (!command_line) return 0;
  const cxxopts::ParseResult& parsed = *command_line;
  const std::string booking = booking_argument(parsed);
  auto store = open_stopped_store(store_settings(parsed));
  constexpr std::size_t kKeysPerTransaction = 1024;
  std::size_t total = 0;
  for (;;) {
    std::size_t deleted = 0;
    store->write([&](StoreWriter& w) {
      w.lock_bookings({booking});
      deleted = w.purge_booking(booking, kKeysPerTransaction);
    });
    total += deleted;
    if (deleted < kKeysPerTransaction) break;
  }
  std::cout << "{\"booking_code\":\"" << booking << "\",\"deleted_keys\":" << total << "}\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view command = argc > 1 ? argv[1] : "";
  try {
    // The subcommand sees its own name as argv[0].
    if (command == "secret") return run_secret(argc - 1, argv + 1);
    if (command == "token") return run_token(argc - 1, argv + 1);
    if (command == "verify" && names_store(argc - 1, argv + 1)) return run_verify_store(argc - 1, argv + 1);
    if (command == "verify") return run_verify(argc - 1, argv + 1);
    if (command == "backup") return run_backup(argc - 1, argv + 1);
    if (command == "export") return run_export(argc - 1, argv + 1);
    if (command == "stats") return run_stats(argc - 1, argv + 1);
    if (command == "broker-conf") return run_broker_conf(argc - 1, argv + 1);
    if (command == "close") return run_close(argc - 1, argv + 1);
    if (command == "purge") return run_purge(argc - 1, argv + 1);
    if (command == "-h" || command == "--help" || command == "help") {
      std::cout << kUsage;
      return 0;
    }
    std::cerr << kProgram << ": "
              << (command.empty() ? std::string("no command") : "unknown command '" + std::string(command) + "'")
              << "\n\n"
              << kUsage;
    return 2;
  } catch (const UsageError& error) {
    std::cerr << kProgram << " " << command << ": " << error.what() << "\n";
    return 2;
  } catch (const ConfigError& error) {  // a bad setting or broker conf value: bad input too
    std::cerr << kProgram << " " << command << ": " << error.what() << "\n";
    return 2;
  } catch (const std::exception& error) {
    std::cerr << kProgram << " " << command << ": " << error.what() << "\n";
    return 1;
  }
}
