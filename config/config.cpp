#include "config/config.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
// cxxopts' own argument matcher instead of std::regex: GCC 12 reports false -Wmaybe-uninitialized
// inside <regex> under -O2 with sanitizers, which -Werror turns into a failed build.
#define CXXOPTS_NO_REGEX 1
#include <cxxopts.hpp>
#include <fstream>
#include <iterator>
#include <optional>
#include <system_error>

#include <unistd.h>

namespace navietakie {
namespace {

constexpr std::string_view env_prefix = "NAVIETAKIE_";

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

const ConfigKey* find_key(std::string_view key) {
  for (const auto& entry : config_schema()) {
    if (entry.key == key) return &entry;
  }
  return nullptr;
}

std::string env_name(const std::string& key) {
  std::string name(env_prefix);
  for (char c : key) {
    name += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  }
  return name;
}

// RFC 3629 UTF-8, as MQTT requires of client ids and topics (no overlongs, no surrogates).
bool is_valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    std::size_t length = 0;
    std::uint32_t code = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xe0) == 0xc0) {
      length = 2;
      code = lead & 0x1fu;
    } else if ((lead & 0xf0) == 0xe0) {
      length = 3;
      code = lead & 0x0fu;
    } else if ((lead & 0xf8) == 0xf0) {
      length = 4;
      code = lead & 0x07u;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3fu);
    }
    const std::uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < smallest[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
      return false;
    }
    i += length;
  }
  return true;
}

// The merged value of every key, with where it came from (empty origin: the default).
class Resolved {
 public:
  Resolved() {
    for (const auto& entry : config_schema()) values_[entry.key] = {entry.default_value, "", true};
  }

  void apply(const ConfigLayer& layer) {
    for (const auto& [key, value] : layer) {
      const std::string origin = layer.origin_of(key);
      if (find_key(key) == nullptr) {
        throw ConfigError("unknown config key " + quote(key) + (origin.empty() ? std::string() : " (" + origin + ")"));
      }
      values_[key] = {value, origin, false};
    }
  }

  [[noreturn]] void fail(const std::string& key, const std::string& expectation) const {
    const Entry& entry = values_.at(key);
    const std::string source = entry.is_default       ? " (default)"
                               : entry.origin.empty() ? ""
                                                      : " (from " + entry.origin + ")";
    throw ConfigError("config key '" + key + "': " + expectation + ", got " + quote(entry.value) + source);
  }

  // The value as text; never contains NUL (no key has a use for one, and C APIs would cut there).
  const std::string& text(const std::string& key) const {
    const std::string& value = values_.at(key).value;
    if (value.find('\0') != std::string::npos) fail(key, "expected a value without NUL bytes");
    return value;
  }

  const std::string& non_empty(const std::string& key) const {
    const std::string& value = text(key);
    if (value.empty()) fail(key, "expected a non-empty value");
    return value;
  }

  // Decimal digits only: no sign, no spaces, no suffix, so that "10MB" or "-1" is an error and not
  // a surprise.
  std::uint64_t integer(const std::string& key, std::uint64_t low, std::uint64_t high,
                        const std::string& high_note = "") const {
    const std::string& value = text(key);
    const std::string expectation =
        "expected an integer from " + std::to_string(low) + " to " + std::to_string(high) + high_note;
    const bool all_digits = !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
    if (!all_digits) fail(key, expectation);
    std::uint64_t number = 0;
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
    if (error != std::errc() || end != value.data() + value.size() || number < low || number > high) {
      fail(key, expectation);
    }
    return number;
  }

  bool boolean(const std::string& key) const {
    const std::string& value = text(key);
    if (value == "true") return true;
    if (value == "false") return false;
    fail(key, "expected true or false");
  }

 private:
  struct Entry {
    std::string value;
    std::string origin;  // empty: not recorded
    bool is_default;
  };
  std::map<std::string, Entry> values_;
};

bool mqtt_url(std::string_view url) {
  for (std::string_view scheme : {"tcp://", "mqtt://", "ws://", "ssl://", "wss://"}) {
    if (starts_with(url, scheme) && url.size() > scheme.size()) return true;
  }
  return false;
}

constexpr const char* url_expectation = "expected a URL starting with tcp://, mqtt://, ws://, ssl:// or wss:// and a host";

std::string checked_broker_url(const Resolved& resolved) {
  const std::string& url = resolved.non_empty("broker_url");
  if (!mqtt_url(url)) resolved.fail("broker_url", url_expectation);
  return url;
}

std::string checked_client_id(const Resolved& resolved, const std::string& key, const std::string& id) {
  if (id.size() > 65535) resolved.fail(key, "expected at most 65535 bytes");
  if (!is_valid_utf8(id)) resolved.fail(key, "expected valid UTF-8");
  return id;
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "unknown";
  return name;
}

// node_role and the upstream_* keys: an edge node needs an upstream to link to.
void resolve_node_role(const Resolved& resolved, Settings& settings) {
  const std::string& role = resolved.text("node_role");
  if (role == "cloud") {
    settings.node_role = NodeRole::cloud;
  } else if (role == "edge") {
    settings.node_role = NodeRole::edge;
  } else {
    resolved.fail("node_role", "expected cloud or edge");
  }
  settings.upstream_url = resolved.text("upstream_url");
  if (settings.node_role == NodeRole::edge && settings.upstream_url.empty()) {
    resolved.fail("upstream_url", "expected the cloud's MQTT URL (node_role is edge)");
  }
  if (!settings.upstream_url.empty() && !mqtt_url(settings.upstream_url)) resolved.fail("upstream_url", url_expectation);
  settings.upstream_token_file = resolved.text("upstream_token_file");
  const std::string& id = resolved.text("upstream_client_id");
  settings.upstream_client_id =
      checked_client_id(resolved, "upstream_client_id", id.empty() ? "navietakie-edge-" + host_name() : id);
}

std::string checked_topic_prefix(const Resolved& resolved) {
  const std::string& prefix = resolved.non_empty("topic_prefix");
  if (prefix.find_first_of("+#") != std::string::npos) {
    resolved.fail("topic_prefix", "expected a topic without the wildcards '+' and '#'");
  }
  if (prefix.front() == '/' || prefix.back() == '/') {
    resolved.fail("topic_prefix", "expected a topic without a leading or trailing '/'");
  }
  // Wildcard subscriptions never match topics starting with '$' ($SYS, $share).
  if (prefix.front() == '$') resolved.fail("topic_prefix", "expected a topic not starting with '$'");
  if (prefix.size() > 32767) resolved.fail("topic_prefix", "expected at most 32767 bytes");
  if (!is_valid_utf8(prefix)) resolved.fail("topic_prefix", "expected valid UTF-8");
  return prefix;
}

std::string checked_share_group(const Resolved& resolved) {
  const std::string& group = resolved.text("share_group");
  if (group.find_first_of("/+#") != std::string::npos) {
    resolved.fail("share_group", "expected a group name without '/', '+' or '#' (or empty)");
  }
  if (!is_valid_utf8(group)) resolved.fail("share_group", "expected valid UTF-8");
  return group;
}

std::optional<SyncSetting> sync_mode_named(const std::string& name) {
  for (SyncSetting mode : {SyncSetting::full, SyncSetting::nometasync, SyncSetting::nosync}) {
    if (name == to_string(mode)) return mode;
  }
  return std::nullopt;
}

std::optional<LogLevel> log_level_named(const std::string& name) {
  for (LogLevel level : {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error}) {
    if (name == to_string(level)) return level;
  }
  return std::nullopt;
}

constexpr const char* sync_choices = "expected one of full, nometasync, nosync";
constexpr const char* log_level_choices = "expected one of debug, info, warn, error";

bool takes_value(std::string_view flag) { return flag == "config" || find_key(flag) != nullptr; }

// cxxopts takes the next argument as the value even if it is a flag: `--data_dir --config x`
// would quietly set data_dir to "--config". Refuse that (the `--key=VALUE` form still allows it).
void reject_flag_as_value(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") return;
    if (!starts_with(arg, "--") || arg.find('=') != std::string_view::npos) continue;
    if (!takes_value(arg.substr(2)) || i + 1 >= argc) continue;
    const std::string_view next = argv[i + 1];
    if (next.size() > 1 && next.front() == '-') {
      throw ConfigError("command-line option " + quote(arg) + " needs a value, got the option " + quote(next) +
                        " (write " + std::string(arg) + "=" + std::string(next) + " if that is the value)");
    }
    ++i;
  }
}

// One line per option, so that `--help | grep` finds a key with its default.
std::string help_text(const std::string& program) {
  const auto line = [](const std::string& flag, const std::string& text) {
    constexpr std::size_t flag_width = 30;
    std::string out = "  " + flag;
    out += flag.size() < flag_width ? std::string(flag_width - flag.size(), ' ') : "  ";
    return out + text + "\n";
  };
  std::string text = "Usage: " + program + " [--config FILE] [--<key> VALUE]...\n\n";
  text += line("-h, --help", "print this help and exit");
  text += line("--config FILE", "read settings from FILE, one `key value` line each");
  text += "\nSettings (--key VALUE or --key=VALUE):\n";
  for (const auto& key : config_schema()) {
    const std::string shown = key.default_value.empty() ? "empty" : key.default_value;
    text += line("--" + key.key + " VALUE", key.help + " [default: " + shown + "]");
  }
  text +=
      "\nEach setting can also be a `key value` line in the --config file, or an environment\n"
      "variable NAVIETAKIE_<KEY> (e.g. NAVIETAKIE_DATA_DIR). Precedence, lowest first: defaults,\n"
      "config file, environment, command line.\n";
  return text;
}

}  // namespace

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_blank(text.back())) text.remove_suffix(1);
  return text;
}

std::string quote(std::string_view value, std::size_t shown_max) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "'";
  for (std::size_t i = 0; i < value.size() && i < shown_max; ++i) {
    const auto byte = static_cast<unsigned char>(value[i]);
    if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += hex[byte >> 4];
      out += hex[byte & 0x0f];
    } else {
      out += value[i];
    }
  }
  if (value.size() > shown_max) out += "...";
  out += "'";
  return out;
}

void ConfigLayer::set(const std::string& key, std::string value, std::string origin) {
  (*this)[key] = std::move(value);
  origins[key] = std::move(origin);
}

std::string ConfigLayer::origin_of(const std::string& key) const {
  const auto found = origins.find(key);
  return found == origins.end() ? std::string() : found->second;
}

const std::vector<ConfigKey>& config_schema() {
  static const std::vector<ConfigKey> schema = {
      {"broker_url", "tcp://127.0.0.1:1883", "MQTT broker to connect to (tcp://, mqtt://, ws://, ssl:// or wss://)"},
      {"client_id", "navietakie-bridge", "MQTT client id; every running instance needs its own"},
      {"topic_prefix", "navietakie/v1", "prefix of every navietakie topic, without leading or trailing '/'"},
      {"data_dir", "./data", "directory of the LMDB store, created if missing"},
      {"map_size_mb", "1024", "LMDB map size in MiB, the most the store can hold (1..1048576)"},
      {"sync", "full", "commit durability: full (fsync each commit), nometasync, nosync (fastest, unsafe)"},
      {"store_backend", "lmdb",
       "where the data lives: lmdb (data_dir, map_size_mb, sync; one machine) or postgres (postgres_url; "
       "shared by many bridges)"},
      {"postgres_url", "",
       "store_backend postgres: libpq connection string or URI, e.g. "
       "postgresql://navietakie@db:5432/navietakie?connect_timeout=5 (never logged with its password)"},
      {"call_ring_timeout_s", "30", "seconds a call rings unanswered before it ends as missed (1..86400)"},
      {"retention_days", "30",
       "days a closed booking is kept before it is purged entirely, in the background (0 = keep forever; 0..36500)"},
      {"max_payload_bytes", "65536", "largest MQTT payload accepted, in bytes (256..268435455)"},
      {"max_text_bytes", "4096", "largest chat message text, in bytes (1..max_payload_bytes)"},
      {"log_level", "info", "least severe log level printed: debug, info, warn, error"},
      {"log_format", "text", "log line format: text (ts=... level=... event=... key=value) or json (one object a line)"},
      {"share_group", "", "empty: plain subscriptions; else subscribe as $share/<group>/... to spread load"},
      {"batch_max", "256", "most requests handled in one store transaction (1..10000)"},
      {"queue_max", "10000", "most requests waiting for the store; past it a request gets `unavailable` (1..1000000)"},
      {"rate_limit_per_s", "20",
       "requests a second one MQTT client id may make, past its burst (0..1000000; 0: no limit); "
       "past it a request is answered `rate_limited`"},
      {"rate_limit_burst", "40", "requests one client may make at once above rate_limit_per_s (1..1000000)"},
      {"environment", "development", "name of the deployment (development, staging, production)"},
      {"auth_jwt_secret_file", "",
       "file holding the HS256 JWT secret (32+ bytes); empty: no HS* tokens (with no public key "
       "either: open development mode, no auth)"},
      {"auth_jwt_public_key_file", "",
       "PEM public key verifying RS*/ES*/EdDSA tokens (RSA 2048+, EC P-256/384/521, Ed25519); "
       "empty: none"},
      {"auth_service_grants",
       "*:pub:{prefix}/bookings/+/send_message, *:pub:{prefix}/bookings/+/get_message, "
       "*:pub:{prefix}/bookings/+/make_call, *:pub:{prefix}/bookings/+/presence, "
       "*:pub:{prefix}/bookings/+/mark_read, *:pub:{prefix}/bookings/+/typing, "
       "*:pub:{prefix}/bookings/+/close, *:pub:{prefix}/bookings/+/signal, "
       "*:sub:{prefix}/bookings/+/events/#, *:sub:{prefix}/bookings/+/errors, *:sub:{prefix}/errors",
       "what service identities may do: comma-separated SUBJECT:pub|sub:FILTER (SUBJECT * = any)"},
      {"auth_token_max_bytes", "4096", "largest accepted token (MQTT password), in bytes (64..65535)"},
      {"auth_leeway_s", "30", "clock skew allowed when checking a token's exp and nbf (0..3600)"},
      {"auth_max_token_ttl_s", "86400",
       "longest token lifetime accepted, exp - iat (or exp - now), in seconds (60..31622400)"},
      {"handlers", "true", "plugin: true = handle requests in the broker; false = auth only, for a bridge deployment"},
      {"mqtt_username", "", "bridge: MQTT username (empty: the client id when a password is used)"},
      {"mqtt_password_file", "", "bridge: file holding the MQTT password (e.g. a service token), read at each connect"},
      {"trust_identity_property", "false",
       "bridge: take identities from the auth-only plugin's stamp; refuse unstamped requests"},
      {"node_role", "cloud",
       "plugin: cloud = the authority (stores and answers); edge = in-car node linked to upstream_url"},
      {"upstream_url", "", "edge: the cloud's MQTT URL (tcp://, mqtt://, ws://, ssl:// or wss://); required for edge"},
      {"upstream_token_file", "", "edge: file holding a JWT sent as the MQTT password upstream, read at each connect"},
      {"upstream_client_id", "", "edge: MQTT client id upstream; empty: navietakie-edge-<hostname>"},
      {"ice_servers", "",
       "WebRTC calls: comma-separated STUN/TURN URLs handed to the parties (stun:, stuns:, turn:, turns:); "
       "with a turn: URL clients relay all media (empty: none)"},
      {"turn_secret", "",
       "secret shared with the TURN server (coturn static-auth-secret), required with a turn: URL; "
       "clients get credentials derived from it, never the secret"},
      {"turn_ttl_s", "3600", "lifetime of a TURN credential handed to a party, in seconds (60..604800)"},
  };
  return schema;
}

ConfigLayer parse_config_text(std::string_view text, const std::string& origin) {
  ConfigLayer layer;
  std::map<std::string, std::string> first_seen;  // key -> origin:line of its first setting
  std::size_t line_number = 0;
  for (std::size_t start = 0; start <= text.size();) {
    ++line_number;
    const std::size_t end = text.find('\n', start);
    std::string_view line = text.substr(start, end == std::string_view::npos ? end : end - start);
    start = end == std::string_view::npos ? text.size() + 1 : end + 1;
    if (line_number == 1 && starts_with(line, "\xEF\xBB\xBF")) line.remove_prefix(3);  // BOM

    // A comment starts at a '#' that begins the line or follows whitespace; a '#' inside a word
    // belongs to the value.
    for (std::size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '#' && (i == 0 || is_blank(line[i - 1]))) {
        line = line.substr(0, i);
        break;
      }
    }
    line = trim(line);
    if (line.empty()) continue;

    const std::string where = origin + ":" + std::to_string(line_number);
    std::size_t key_end = 0;
    while (key_end < line.size() && !is_blank(line[key_end])) ++key_end;
    const std::string key(line.substr(0, key_end));
    const std::string_view value = trim(line.substr(key_end));
    if (find_key(key) == nullptr) throw ConfigError("unknown config key " + quote(key) + " (" + where + ")");
    if (value.empty()) throw ConfigError("config key '" + key + "' has no value (" + where + ")");
    const auto [seen, inserted] = first_seen.emplace(key, where);
    if (!inserted) {
      throw ConfigError("config key '" + key + "' is set twice (" + seen->second + " and " + where + ")");
    }
    layer.set(key, std::string(value), where);
  }
  return layer;
}

ConfigLayer read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    throw ConfigError("cannot open config file '" + path +
                      "': " + (error != 0 ? std::strerror(error) : "unknown error"));
  }
  std::string text;
  try {
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::exception& error) {  // libstdc++ throws on a read error, e.g. a directory
    throw ConfigError("cannot read config file '" + path + "': " + error.what());
  }
  if (in.bad()) throw ConfigError("cannot read config file '" + path + "'");
  return parse_config_text(text, path);
}

ConfigLayer config_from_env(const char* const* envp) {
  ConfigLayer layer;
  if (envp == nullptr) return layer;
  for (; *envp != nullptr; ++envp) {
    const std::string_view entry = *envp;
    if (!starts_with(entry, env_prefix)) continue;
    const std::size_t equals = entry.find('=');
    const std::string name(entry.substr(0, equals));
    const std::string value(equals == std::string_view::npos ? std::string_view() : entry.substr(equals + 1));
    const ConfigKey* match = nullptr;
    for (const auto& key : config_schema()) {
      if (env_name(key.key) == name) match = &key;
    }
    if (match == nullptr) throw ConfigError("unknown environment variable " + name);
    // The first definition wins, as with getenv().
    if (layer.count(match->key) == 0) layer.set(match->key, value, name);
  }
  return layer;
}

CommandLine parse_command_line(int argc, const char* const* argv, const std::string& program) {
  cxxopts::Options options(program);
  options.allow_unrecognised_options();  // reported below, in our words
  options.add_options()("config", "", cxxopts::value<std::string>())("h,help", "");
  auto add_setting = options.add_options();
  for (const auto& key : config_schema()) add_setting(key.key, key.help, cxxopts::value<std::string>());

  CommandLine command_line;
  command_line.help_text = help_text(program);

  reject_flag_as_value(argc, argv);
  std::optional<cxxopts::ParseResult> parsed;
  try {
    parsed = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::missing_argument&) {
    throw ConfigError("command-line option " + quote(argv[argc - 1]) + " needs a value");
  } catch (const cxxopts::exceptions::exception& error) {
    throw ConfigError(std::string("command line: ") + error.what());
  }
  for (const std::string& argument : parsed->unmatched()) {
    if (argument.size() > 1 && argument.front() == '-') {
      throw ConfigError("unknown command-line option " + quote(argument.substr(0, argument.find('='))) +
                        " (see --help)");
    }
    throw ConfigError("unexpected command-line argument " + quote(argument) + " (settings are given as --<key> VALUE)");
  }

  command_line.help = parsed->count("help") > 0;
  if (parsed->count("config") > 0) {
    command_line.config_file = (*parsed)["config"].as<std::string>();
    if (command_line.config_file.empty()) {
      throw ConfigError("command-line option '--config' needs a file name");
    }
  }
  for (const auto& key : config_schema()) {
    if (parsed->count(key.key) > 0) {
      command_line.flags.set(key.key, (*parsed)[key.key].as<std::string>(), "--" + key.key);
    }
  }
  return command_line;
}

Settings load_settings(const CommandLine& command_line, const char* const* envp) {
  std::vector<ConfigLayer> layers;
  if (!command_line.config_file.empty()) layers.push_back(read_config_file(command_line.config_file));
  layers.push_back(config_from_env(envp));
  layers.push_back(command_line.flags);
  return resolve_settings(layers);
}

namespace {

// store_backend and what it needs. postgres_url is never echoed: it may hold a password.
void checked_store(const Resolved& resolved, Settings& settings) {
  const std::string& backend = resolved.text("store_backend");
  if (backend == "lmdb") {
    settings.store_backend = StoreBackend::lmdb;
  } else if (backend == "postgres") {
    settings.store_backend = StoreBackend::postgres;
  } else {
    resolved.fail("store_backend", "expected one of lmdb, postgres");
  }
  settings.postgres_url = resolved.text("postgres_url");
  if (settings.store_backend == StoreBackend::postgres && settings.postgres_url.empty()) {
    resolved.fail("postgres_url", "required with store_backend postgres (a libpq connection string or URI)");
  }
}

// ice_servers, turn_secret, turn_ttl_s: every URL a STUN or TURN one, and TURN only with a secret
// to derive its credentials from.
void checked_ice(const Resolved& resolved, Settings& settings) {
  const std::string& list = resolved.text("ice_servers");
  bool turn = false;
  for (std::size_t start = 0; start <= list.size();) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    const std::string_view url = trim(std::string_view(list).substr(start, comma - start));
    start = comma + 1;
    if (url.empty()) continue;
    if (url.find_first_of(" \t\"") != std::string_view::npos) {
      resolved.fail("ice_servers", "expected URLs without blanks or quotes, separated by commas");
    }
    const std::string_view scheme = ice_url_scheme(url);
    if (scheme.empty()) resolved.fail("ice_servers", "expected stun:, stuns:, turn: or turns: URLs");
    turn = turn || scheme == "turn" || scheme == "turns";
    settings.ice_servers.emplace_back(url);
  }
  settings.turn_secret = resolved.text("turn_secret");
  if (turn && settings.turn_secret.empty()) {
    resolved.fail("turn_secret", "expected the TURN server's shared secret (ice_servers has a turn: URL)");
  }
  if (!turn && !settings.turn_secret.empty()) {
    resolved.fail("ice_servers", "expected a turn: or turns: URL (turn_secret is set)");
  }
  settings.turn_ttl_s = static_cast<std::int64_t>(resolved.integer("turn_ttl_s", 60, 604800));
}

}  // namespace

Settings resolve_settings(const std::vector<ConfigLayer>& layers) {
  Resolved resolved;
  for (const auto& layer : layers) resolved.apply(layer);

  Settings settings;
  settings.broker_url = checked_broker_url(resolved);
  settings.client_id = checked_client_id(resolved, "client_id", resolved.non_empty("client_id"));
  settings.topic_prefix = checked_topic_prefix(resolved);
  settings.data_dir = resolved.non_empty("data_dir");
  settings.map_size_mb = static_cast<std::size_t>(resolved.integer("map_size_mb", 1, 1048576));
  const auto sync = sync_mode_named(resolved.text("sync"));
  if (!sync) resolved.fail("sync", sync_choices);
  settings.sync = *sync;
  checked_store(resolved, settings);
  settings.call_ring_timeout_s = static_cast<int>(resolved.integer("call_ring_timeout_s", 1, 86400));
  settings.retention_days = static_cast<int>(resolved.integer("retention_days", 0, 36500));
  settings.max_payload_bytes = static_cast<std::size_t>(resolved.integer("max_payload_bytes", 256, 268435455));
  settings.max_text_bytes = static_cast<std::size_t>(
      resolved.integer("max_text_bytes", 1, settings.max_payload_bytes, " (max_payload_bytes)"));
  const auto log_level = log_level_named(resolved.text("log_level"));
  if (!log_level) resolved.fail("log_level", log_level_choices);
  settings.log_level = *log_level;
  const std::string log_format = resolved.text("log_format");
  if (log_format == "json") {
    settings.log_format = LogFormat::json;
  } else if (log_format != "text") {
    resolved.fail("log_format", "expected one of text, json");
  }
  settings.share_group = checked_share_group(resolved);
  settings.batch_max = static_cast<std::size_t>(resolved.integer("batch_max", 1, 10000));
  settings.queue_max = static_cast<std::size_t>(resolved.integer("queue_max", 1, 1000000));
  settings.rate_limit_per_s = static_cast<std::uint32_t>(resolved.integer("rate_limit_per_s", 0, 1000000));
  settings.rate_limit_burst = static_cast<std::uint32_t>(resolved.integer("rate_limit_burst", 1, 1000000));
  settings.environment = resolved.non_empty("environment");
  settings.auth_jwt_secret_file = resolved.text("auth_jwt_secret_file");
  settings.auth_jwt_public_key_file = resolved.text("auth_jwt_public_key_file");
  settings.auth_service_grants = resolved.text("auth_service_grants");
  settings.auth_token_max_bytes = static_cast<std::size_t>(resolved.integer("auth_token_max_bytes", 64, 65535));
  settings.auth_leeway_s = static_cast<int>(resolved.integer("auth_leeway_s", 0, 3600));
  settings.auth_max_token_ttl_s = static_cast<std::int64_t>(resolved.integer("auth_max_token_ttl_s", 60, 31622400));
  settings.handlers = resolved.boolean("handlers");
  settings.mqtt_username = resolved.text("mqtt_username");
  settings.mqtt_password_file = resolved.text("mqtt_password_file");
  settings.trust_identity_property = resolved.boolean("trust_identity_property");
  resolve_node_role(resolved, settings);
  checked_ice(resolved, settings);
  return settings;
}

LogLevel parse_log_level(const std::string& value) {
  const auto level = log_level_named(value);
  if (!level) throw ConfigError(std::string("log level: ") + log_level_choices + ", got " + quote(value));
  return *level;
}

SyncSetting parse_sync_setting(const std::string& value) {
  const auto mode = sync_mode_named(value);
  if (!mode) throw ConfigError(std::string("sync mode: ") + sync_choices + ", got " + quote(value));
  return *mode;
}

std::string to_string(SyncSetting mode) {
  switch (mode) {
    case SyncSetting::full: return "full";
    case SyncSetting::nometasync: return "nometasync";
    case SyncSetting::nosync: return "nosync";
  }
  return "full";
}

std::string to_string(StoreBackend backend) {
  switch (backend) {
    case StoreBackend::lmdb: return "lmdb";
    case StoreBackend::postgres: return "postgres";
  }
  return "lmdb";
}

std::string redacted_postgres_url(const std::string& url) {
  std::string out = url;
  // URI: scheme://user:password@host...
  if (const auto scheme = out.find("://"); scheme != std::string::npos) {
    const auto authority = scheme + 3;
    const auto at = out.find('@', authority);
    const auto slash = out.find('/', authority);
    if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
      const auto colon = out.find(':', authority);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // Keyword form `password=secret` / `password = 'a b'`, or the URI's `?password=secret`.
  for (std::size_t from = 0;;) {
    const auto key = out.find("password", from);
    if (key == std::string::npos) break;
    std::size_t i = key + 8;
    while (i < out.size() && out[i] == ' ') ++i;
    if (i >= out.size() || out[i] != '=') {
      from = key + 8;
      continue;
    }
    ++i;
    while (i < out.size() && out[i] == ' ') ++i;
    std::size_t end = i;
    if (end < out.size() && out[end] == '\'') {
      for (++end; end < out.size() && out[end] != '\''; ++end) {
        if (out[end] == '\\') ++end;
      }
      end = std::min(end + 1, out.size());
    } else {
      while (end < out.size() && out[end] != ' ' && out[end] != '&') ++end;
    }
    out.replace(i, end - i, "***");
    from = i + 3;
  }
  return out;
}
std::string_view ice_url_scheme(std::string_view url) {
  const auto colon = url.find(':');
  if (colon == std::string_view::npos || colon + 1 >= url.size()) return {};
  const std::string_view scheme = url.substr(0, colon);
  for (std::string_view known : {"stun", "stuns", "turn", "turns"}) {
    if (scheme == known) return scheme;
  }
  return {};
}

std::string to_string(NodeRole role) { return role == NodeRole::edge ? "edge" : "cloud"; }

std::string to_string(LogFormat format) { return format == LogFormat::json ? "json" : "text"; }

std::string to_string(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "info";
}

}  // namespace navietakie
