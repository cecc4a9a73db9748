// The one configuration schema shared by the bridge and the plugin.
// Sources, lowest precedence first: defaults, a config file (`key value` lines, the same keys as
// the plugin's `plugin_opt_<key>` lines), NAVIETAKIE_<KEY> environment variables, command-line flags.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace navietakie {

// How durable a commit is (the store maps it to its own mode: core/store_setup.hpp).
enum class SyncSetting { full, nometasync, nosync };

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };
// How a log line is written: `ts=... level=... event=... key=value` or one JSON object.
enum class LogFormat { text, json };

// Where the data lives: LMDB in data_dir (one machine), or PostgreSQL at postgres_url (shared by
// many bridges).
enum class StoreBackend { lmdb, postgres };
// What a node is in a deployment: the authority (`cloud`) or an in-car edge node linked to it.
enum class NodeRole { cloud, edge };

// A value as it appears in an error or log message: quoted, control bytes escaped, cut after
// `shown_max` bytes, so that a hostile or binary value cannot garble the line it ends up in.
std::string quote(std::string_view value, std::size_t shown_max = 120);

// `text` without the blanks around it (space, tab, CR, LF, FF, VT): the one whitespace set of
// config lines and of the lists inside values (auth_service_grants).
std::string_view trim(std::string_view text);

struct ConfigKey {
  std::string key;
  std::string default_value;
  std::string help;
};

// Every key, in documentation order.
const std::vector<ConfigKey>& config_schema();

// A problem with the configuration; the message names the key (and where it came from).
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Raw key -> value; every key is checked against the schema when a layer is built. It is a map,
// so a layer can be written as a literal; it also remembers where each value came from
// ("bridge.conf:3", "NAVIETAKIE_SYNC", "--sync") so that a validation error can say so.
struct ConfigLayer : std::map<std::string, std::string> {
  using std::map<std::string, std::string>::map;
  ConfigLayer() = default;
  ConfigLayer(std::map<std::string, std::string> values)  // NOLINT: implicit on purpose
      : std::map<std::string, std::string>(std::move(values)) {}

  // Sets key to value, recording its origin.
  void set(const std::string& key, std::string value, std::string origin);
  // Where key's value came from; empty if not recorded (e.g. a layer written as a literal).
  std::string origin_of(const std::string& key) const;

  std::map<std::string, std::string> origins;  // key -> origin
};

// `key value` lines, `#` starts a comment, blank lines ignored. `origin` names the source in errors.
ConfigLayer parse_config_text(std::string_view text, const std::string& origin);
ConfigLayer read_config_file(const std::string& path);
// NAVIETAKIE_<KEY> variables from a `NAME=value` environment block (as `environ`).
ConfigLayer config_from_env(const char* const* envp);

struct Settings {
  std::string broker_url;
  std::string client_id;
  std::string topic_prefix;
  std::string data_dir;
  std::size_t map_size_mb = 0;
  SyncSetting sync = SyncSetting::full;
  StoreBackend store_backend = StoreBackend::lmdb;
  std::string postgres_url;  // store_backend postgres: a libpq connection string or URI (log it redacted)
  int call_ring_timeout_s = 0;
  int retention_days = 0;  // closed bookings are purged this long after closing; 0: never
  std::size_t max_payload_bytes = 0;
  std::size_t max_text_bytes = 0;
  LogLevel log_level = LogLevel::info;
  LogFormat log_format = LogFormat::text;
  std::string share_group;  // empty: plain subscription
  std::size_t batch_max = 0;
  std::size_t queue_max = 0;  // requests waiting for the engine before new ones are refused
  // Token bucket per MQTT client id (docs/protocol.md "Rate limits"); rate_limit_per_s 0: off.
  std::uint32_t rate_limit_per_s = 0;
  std::uint32_t rate_limit_burst = 0;
  std::string environment;
  // Authentication (see README "Security"). No secret file and no public key file: open
  // development mode. Each verifies only its own algorithms (HS*; RS*, ES*, EdDSA).
  std::string auth_jwt_secret_file;
  std::string auth_jwt_public_key_file;
  std::string auth_service_grants;  // "SUBJECT:pub|sub:FILTER, ..."; parsed by auth/acl.hpp
  std::size_t auth_token_max_bytes = 0;
  int auth_leeway_s = 0;
  std::int64_t auth_max_token_ttl_s = 0;  // longest exp - iat (and exp - now) accepted
  // Plugin: host the handlers in the broker (true) or only authenticate, authorise and stamp the
  // verified identity on requests for a bridge (false).
  bool handlers = true;
  // Bridge: MQTT credentials. The password file is read at every (re)connect, so a rotated token
  // is picked up; without one, a bridge that has the JWT secret mints itself a service token.
  std::string mqtt_username;
  std::string mqtt_password_file;
  // Bridge: take each request's identity from the plugin's stamp, and refuse requests without one.
  bool trust_identity_property = false;
  // Plugin: `cloud` hosts the authority (today's system); `edge` is an in-car node linked to an
  // upstream navietakie (docs/edge.md). The bridge refuses `edge`.
  NodeRole node_role = NodeRole::cloud;
  std::string upstream_url;         // edge: the cloud's MQTT URL (required)
  std::string upstream_token_file;  // edge: a JWT sent as the MQTT password upstream; empty: none
  std::string upstream_client_id;   // edge: MQTT client id upstream (default navietakie-edge-<hostname>)
  // WebRTC calls: STUN/TURN URLs handed to the parties, and the secret shared with the TURN server
  // (coturn static-auth-secret) from which their short-lived credentials are derived.
  std::vector<std::string> ice_servers;
  std::string turn_secret;
  std::int64_t turn_ttl_s = 0;
};

// The command line of a navietakie program: `--config FILE`, `--help`, and `--<key> VALUE` (or
// `--<key>=VALUE`) for every schema key. Parsed with cxxopts; an unknown flag is a ConfigError.
struct CommandLine {
  std::string config_file;  // empty: none
  ConfigLayer flags;
  bool help = false;
  std::string help_text;  // the generated --help text, listing every key with default and help
};
CommandLine parse_command_line(int argc, const char* const* argv, const std::string& program);

// The scheme of an ICE server URL (RFC 7064 / 7065): "stun", "stuns", "turn", "turns"; empty for
// anything else.
std::string_view ice_url_scheme(std::string_view url);

// defaults < config file < NAVIETAKIE_* env < flags, validated.
Settings load_settings(const CommandLine& command_line, const char* const* envp);

// Applies the layers over the defaults, later layers winning, and validates every value.
Settings resolve_settings(const std::vector<ConfigLayer>& layers);

LogLevel parse_log_level(const std::string& value);        // throws ConfigError
SyncSetting parse_sync_setting(const std::string& value);  // throws ConfigError
std::string to_string(SyncSetting mode);
std::string to_string(LogLevel level);
std::string to_string(LogFormat format);
std::string to_string(StoreBackend backend);

// A libpq connection string or URI fit for a log line or an error: the password (the URI's
// user:password@ part, a `password=` keyword or query parameter) replaced by "***".
std::string redacted_postgres_url(const std::string& url);
std::string to_string(NodeRole role);

}  // namespace navietakie
