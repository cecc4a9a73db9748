// The configuration schema, its four sources and their precedence, and the error messages; the
// Mosquitto config generator (config/mosquitto_conf.hpp) and the shipped broker confs.
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/mosquitto_conf.hpp"

namespace nt = navietakie;

namespace {

// A NULL-terminated `NAME=value` block, as `environ`.
class Environment {
 public:
  Environment(std::initializer_list<std::string> entries) : entries_(entries) {
    for (const auto& entry : entries_) pointers_.push_back(entry.c_str());
    pointers_.push_back(nullptr);
  }
  const char* const* envp() const { return pointers_.data(); }

 private:
  std::vector<std::string> entries_;
  std::vector<const char*> pointers_;
};

// argv with a program name in front.
class Arguments {
 public:
  Arguments(std::initializer_list<std::string> arguments) : arguments_{"navietakie-bridge"} {
    arguments_.insert(arguments_.end(), arguments);
    for (const auto& argument : arguments_) pointers_.push_back(argument.c_str());
    pointers_.push_back(nullptr);
  }
  nt::CommandLine parse() const {
    return nt::parse_command_line(static_cast<int>(arguments_.size()), pointers_.data(), "navietakie-bridge");
  }

 private:
  std::vector<std::string> arguments_;
  std::vector<const char*> pointers_;
};

// A config file that is removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("navietakie-test-config-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + ".conf");
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempFile() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// The message of the ConfigError that fn throws, or "" if it throws none.
template <typename Fn>
std::string config_error(Fn&& fn) {
  try {
    fn();
  } catch (const nt::ConfigError& error) {
    return error.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

nt::Settings settings_with(const std::string& key, const std::string& value) {
  nt::ConfigLayer layer;
  layer.set(key, value, "--" + key);
  return nt::resolve_settings({layer});
}

std::string error_with(const std::string& key, const std::string& value) {
  return config_error([&] { settings_with(key, value); });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(config)

BOOST_AUTO_TEST_CASE(schema_lists_every_key_in_order_with_help) {
  std::vector<std::string> keys;
  for (const auto& key : nt::config_schema()) {
    keys.push_back(key.key);
    BOOST_TEST(!key.help.empty(), key.key);
    BOOST_TEST(key.help.find('\n') == std::string::npos, key.key);
  }
  const std::vector<std::string> expected = {"broker_url",
                                             "client_id",
                                             "topic_prefix",
                                             "data_dir",
                                             "map_size_mb",
                                             "sync",
                                             "store_backend",
                                             "postgres_url",
                                             "call_ring_timeout_s",
                                             "retention_days",
                                             "max_payload_bytes",
                                             "max_text_bytes",
                                             "log_level",
                                             "log_format",
                                             "share_group",
                                             "batch_max",
                                             "queue_max",
                                             "rate_limit_per_s",
                                             "rate_limit_burst",
                                             "environment",
                                             "auth_jwt_secret_file",
                                             "auth_jwt_public_key_file",
                                             "auth_service_grants",
                                             "auth_token_max_bytes",
                                             "auth_leeway_s",
                                             "auth_max_token_ttl_s",
                                             "handlers",
                                             "mqtt_username",
                                             "mqtt_password_file",
                                             "trust_identity_property",
                                             "node_role",
                                             "upstream_url",
                                             "upstream_token_file",
                                             "upstream_client_id",
                                             "ice_servers",
                                             "turn_secret",
                                             "turn_ttl_s"};
  BOOST_TEST(keys == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(defaults) {
  const nt::Settings settings = nt::resolve_settings({});
  BOOST_TEST(settings.broker_url == "tcp://127.0.0.1:1883");
  BOOST_TEST(settings.client_id == "navietakie-bridge");
  BOOST_TEST(settings.topic_prefix == "navietakie/v1");
  BOOST_TEST(settings.data_dir == "./data");
  BOOST_TEST(settings.map_size_mb == 1024u);
  BOOST_TEST((settings.sync == nt::SyncSetting::full));
  BOOST_TEST(settings.call_ring_timeout_s == 30);
  BOOST_TEST(settings.rate_limit_per_s == 20u);
  BOOST_TEST(settings.rate_limit_burst == 40u);
  BOOST_TEST(settings.max_payload_bytes == 65536u);
  BOOST_TEST(settings.max_text_bytes == 4096u);
  BOOST_TEST((settings.log_level == nt::LogLevel::info));
  BOOST_TEST(settings.share_group == "");
  BOOST_TEST(settings.batch_max == 256u);
  BOOST_TEST(settings.queue_max == 10000u);
  BOOST_TEST(settings.environment == "development");
  BOOST_TEST(settings.auth_jwt_secret_file == "");  // open mode unless configured
  BOOST_TEST(settings.auth_token_max_bytes == 4096u);
  BOOST_TEST(settings.auth_leeway_s == 30);
  BOOST_TEST(settings.auth_jwt_public_key_file == "");
  BOOST_TEST(settings.auth_max_token_ttl_s == 86400);  // a day
  BOOST_TEST(settings.handlers);
  BOOST_TEST(!settings.trust_identity_property);
  BOOST_TEST(settings.mqtt_password_file == "");

  // Nothing set anywhere gives the same.
  const nt::Settings loaded = nt::load_settings(Arguments{}.parse(), Environment{}.envp());
  BOOST_TEST(loaded.client_id == "navietakie-bridge");
  BOOST_TEST(nt::load_settings(Arguments{}.parse(), nullptr).batch_max == 256u);
}

BOOST_AUTO_TEST_CASE(precedence_file_then_env_then_flag) {
  const TempFile file(
      "client_id from-file\n"
      "data_dir /from/file\n"
      "batch_max 10\n");
  const Environment env{"NAVIETAKIE_CLIENT_ID=from-env", "NAVIETAKIE_DATA_DIR=/from/env", "PATH=/usr/bin",
                        "NAVIETAKIEX=ignored"};
  const nt::CommandLine command_line = Arguments{"--config", file.path(), "--client_id", "from-flag"}.parse();
  BOOST_TEST(command_line.config_file == file.path());

  const nt::Settings settings = nt::load_settings(command_line, env.envp());
  BOOST_TEST(settings.client_id == "from-flag");           // file < env < flag
  BOOST_TEST(settings.data_dir == "/from/env");            // file < env
  BOOST_TEST(settings.batch_max == 10u);                   // file < nothing else
  BOOST_TEST((settings.log_level == nt::LogLevel::info));  // default

  // Later layers win in resolve_settings too.
  BOOST_TEST(
      (nt::resolve_settings({{{"sync", "nosync"}}, {{"sync", "nometasync"}}}).sync == nt::SyncSetting::nometasync));
}

BOOST_AUTO_TEST_CASE(file_comments_blank_lines_and_values_with_spaces) {
  const nt::ConfigLayer layer = nt::parse_config_text(
      "# the bridge\n"
      "\n"
      "   \t\n"
      "  client_id   bridge one  # trailing comment\n"
      "topic_prefix\tacme#1/chat\r\n"
      "    # indented comment\n"
      "data_dir /var/lib/navie takie#x #comment\n"
      "share_group g",  // no final newline
      "test.conf");
  const nt::ConfigLayer expected{{"client_id", "bridge one"},
                                 {"topic_prefix", "acme#1/chat"},
                                 {"data_dir", "/var/lib/navie takie#x"},
                                 {"share_group", "g"}};
  BOOST_TEST((layer == expected));
  BOOST_TEST(layer.origin_of("client_id") == "test.conf:4");
  BOOST_TEST(layer.origin_of("share_group") == "test.conf:8");
  BOOST_TEST(nt::parse_config_text("", "empty.conf").empty());
  BOOST_TEST(nt::parse_config_text("\xEF\xBB\xBF"
                                   "sync nosync\n",
                                   "bom.conf")
                 .at("sync") == "nosync");
}

BOOST_AUTO_TEST_CASE(file_errors_name_key_and_line) {
  BOOST_TEST(config_error([] { nt::parse_config_text("sync full\n\ncolour blue\n", "a.conf"); }) ==
             "unknown config key 'colour' (a.conf:3)");
  BOOST_TEST(config_error([] { nt::parse_config_text("client_id\n", "a.conf"); }) ==
             "config key 'client_id' has no value (a.conf:1)");
  BOOST_TEST(config_error([] { nt::parse_config_text("client_id   # none\n", "a.conf"); }) ==
             "config key 'client_id' has no value (a.conf:1)");
  BOOST_TEST(config_error([] { nt::parse_config_text("sync=full\n", "a.conf"); }) ==
             "unknown config key 'sync=full' (a.conf:1)");
  BOOST_TEST(config_error([] { nt::parse_config_text("sync full\nsync nosync\n", "a.conf"); }) ==
             "config key 'sync' is set twice (a.conf:1 and a.conf:2)");

  // A bad value is reported with the file and line it came from.
  const TempFile file("# comment\nmap_size_mb 12MB\n");
  BOOST_TEST(config_error([&] { nt::resolve_settings({nt::read_config_file(file.path())}); }) ==
             "config key 'map_size_mb': expected an integer from 1 to 1048576, got '12MB' (from " + file.path() +
                 ":2)");
}

BOOST_AUTO_TEST_CASE(missing_config_file_is_an_error) {
  const std::string path = "/nonexistent/navietakie.conf";
  const std::string message = config_error([&] { nt::load_settings(Arguments{"--config", path}.parse(), nullptr); });
  BOOST_TEST(contains(message, "cannot open config file '" + path + "'"), message);
  BOOST_TEST(!config_error([] { nt::read_config_file("/"); }).empty());
}

BOOST_AUTO_TEST_CASE(environment_variables) {
  const Environment env{"HOME=/root", "NAVIETAKIE_SYNC=nosync", "NAVIETAKIE_SHARE_GROUP=", "NAVIETAKIE_MAP_SIZE_MB=64"};
  const nt::ConfigLayer layer = nt::config_from_env(env.envp());
  const nt::ConfigLayer expected{{"sync", "nosync"}, {"share_group", ""}, {"map_size_mb", "64"}};
  BOOST_TEST((layer == expected));
  BOOST_TEST(layer.origin_of("sync") == "NAVIETAKIE_SYNC");
  BOOST_TEST(nt::config_from_env(nullptr).empty());

  BOOST_TEST(config_error([] { nt::config_from_env(Environment{"NAVIETAKIE_FOO=1"}.envp()); }) ==
             "unknown environment variable NAVIETAKIE_FOO");
  // Names are upper case only.
  BOOST_TEST(config_error([] { nt::config_from_env(Environment{"NAVIETAKIE_sync=full"}.envp()); }) ==
             "unknown environment variable NAVIETAKIE_sync");
  BOOST_TEST(config_error([] {
               nt::load_settings(Arguments{}.parse(), Environment{"NAVIETAKIE_CALL_RING_TIMEOUT_S=abc"}.envp());
             }) ==
             "config key 'call_ring_timeout_s': expected an integer from 1 to 86400, got 'abc' "
             "(from NAVIETAKIE_CALL_RING_TIMEOUT_S)");
}

BOOST_AUTO_TEST_CASE(command_line_forms) {
  const nt::CommandLine command_line =
      Arguments{"--client_id=a b", "--sync", "nosync", "--share_group=", "--batch_max", "7"}.parse();
  BOOST_TEST(!command_line.help);
  BOOST_TEST(command_line.config_file.empty());
  const nt::ConfigLayer expected{{"client_id", "a b"}, {"sync", "nosync"}, {"share_group", ""}, {"batch_max", "7"}};
  BOOST_TEST((command_line.flags == expected));
  BOOST_TEST(command_line.flags.origin_of("sync") == "--sync");

  const nt::Settings settings = nt::load_settings(command_line, nullptr);
  BOOST_TEST(settings.client_id == "a b");
  BOOST_TEST((settings.sync == nt::SyncSetting::nosync));
  BOOST_TEST(settings.batch_max == 7u);

  // The last of a repeated flag wins; --config=FILE works like --config FILE.
  const Arguments repeated{"--sync", "full", "--sync=nosync"};
  BOOST_TEST(repeated.parse().flags.at("sync") == "nosync");
  BOOST_TEST(Arguments{"--config=x.conf"}.parse().config_file == "x.conf");

  // Values starting with '-' need the `=` form, so that a forgotten value is not a silent surprise.
  BOOST_TEST(Arguments{"--client_id=-x"}.parse().flags.at("client_id") == "-x");
}

BOOST_AUTO_TEST_CASE(command_line_errors) {
  BOOST_TEST(config_error([] {
               Arguments{"--colour", "blue"}.parse();
             }) == "unknown command-line option '--colour' (see --help)");
  BOOST_TEST(config_error([] { Arguments{"--colour=blue"}.parse(); }) ==
             "unknown command-line option '--colour' (see --help)");
  BOOST_TEST(config_error([] { Arguments{"-x"}.parse(); }) == "unknown command-line option '-x' (see --help)");
  // Keys are spelled exactly, with underscores.
  BOOST_TEST(contains(config_error([] { Arguments{"--client-id", "x"}.parse(); }), "'--client-id'"));
  BOOST_TEST(contains(config_error([] { Arguments{"extra"}.parse(); }), "unexpected command-line argument 'extra'"));
  BOOST_TEST(config_error([] { Arguments{"--client_id"}.parse(); }) ==
             "command-line option '--client_id' needs a value");
  BOOST_TEST(contains(config_error([] {
                        Arguments{"--data_dir", "--config", "x"}.parse();
                      }),
                      "command-line option '--data_dir' needs a value, got the option '--config'"));
  BOOST_TEST(!config_error([] { Arguments{"--config="}.parse(); }).empty());

  // A bad flag value names the flag.
  BOOST_TEST(config_error([] {
               nt::load_settings(Arguments{"--log_level", "loud"}.parse(), nullptr);
             }) ==
             "config key 'log_level': expected one of debug, info, warn, error, got 'loud' (from "
             "--log_level)");
}

BOOST_AUTO_TEST_CASE(help_lists_every_key) {
  for (const std::string flag : {"--help", "-h"}) {
    const nt::CommandLine command_line = Arguments{flag}.parse();
    BOOST_TEST(command_line.help, flag);
  }
  const std::string help = Arguments{}.parse().help_text;
  BOOST_TEST(contains(help, "--config"));
  BOOST_TEST(contains(help, "NAVIETAKIE_"));
  for (const auto& key : nt::config_schema()) {
    BOOST_TEST(contains(help, "--" + key.key + " "), key.key);
    const std::string shown = key.default_value.empty() ? "empty" : key.default_value;
    BOOST_TEST(contains(help, "[default: " + shown + "]"), key.key);
  }
}

BOOST_AUTO_TEST_CASE(node_role_edge_needs_an_upstream) {
  const nt::Settings defaults = nt::resolve_settings({});
  BOOST_TEST((defaults.node_role == nt::NodeRole::cloud));
  BOOST_TEST(defaults.upstream_url == "");
  BOOST_TEST(defaults.upstream_client_id.rfind("navietakie-edge-", 0) == 0u);
  const nt::Settings edge = nt::resolve_settings(
      {{{"node_role", "edge"}, {"upstream_url", "tcp://cloud.example:1883"}, {"upstream_client_id", "car-7"}}});
  BOOST_TEST((edge.node_role == nt::NodeRole::edge));
  BOOST_TEST(edge.upstream_url == "tcp://cloud.example:1883");
  BOOST_TEST(edge.upstream_client_id == "car-7");
  BOOST_TEST(contains(config_error([] { nt::resolve_settings({{{"node_role", "edge"}}}); }),
                      "config key 'upstream_url': expected the cloud's MQTT URL (node_role is edge)"));
  BOOST_TEST(contains(config_error([] { nt::resolve_settings({{{"node_role", "car"}}}); }),
                      "config key 'node_role': expected cloud or edge"));
  BOOST_TEST(contains(config_error([] { nt::resolve_settings({{{"upstream_url", "cloud:1883"}}}); }),
                      "config key 'upstream_url': expected a URL"));
}

BOOST_AUTO_TEST_CASE(unknown_key_in_a_layer) {
  nt::ConfigLayer layer;
  layer.set("colour", "blue", "somewhere");
  BOOST_TEST(config_error([&] { nt::resolve_settings({layer}); }) == "unknown config key 'colour' (somewhere)");
  BOOST_TEST(config_error([] { nt::resolve_settings({{{"colour", "blue"}}}); }) == "unknown config key 'colour'");
}

BOOST_AUTO_TEST_CASE(integers_are_strict_and_ranged) {
  BOOST_TEST(settings_with("map_size_mb", "1").map_size_mb == 1u);
  BOOST_TEST(settings_with("map_size_mb", "1048576").map_size_mb == 1048576u);
  BOOST_TEST(settings_with("map_size_mb", "007").map_size_mb == 7u);
  BOOST_TEST(settings_with("call_ring_timeout_s", "86400").call_ring_timeout_s == 86400);
  BOOST_TEST(settings_with("max_payload_bytes", "268435455").max_payload_bytes == 268435455u);
  BOOST_TEST(settings_with("batch_max", "10000").batch_max == 10000u);

  const std::string range = "expected an integer from 1 to 1048576, got ";
  for (const std::string bad :
       {"0", "1048577", "-1", "+5", " 5", "5 ", "", "1e3", "0x10", "12MB", "99999999999999999999999"}) {
    BOOST_TEST(
        error_with("map_size_mb", bad) == "config key 'map_size_mb': " + range + "'" + bad + "' (from --map_size_mb)",
        bad);
  }
  BOOST_TEST(contains(error_with("call_ring_timeout_s", "0"), "from 1 to 86400, got '0'"));
  BOOST_TEST(contains(error_with("max_payload_bytes", "255"), "from 256 to 268435455, got '255'"));
  BOOST_TEST(contains(error_with("batch_max", "10001"), "from 1 to 10000, got '10001'"));
  BOOST_TEST(settings_with("rate_limit_per_s", "0").rate_limit_per_s == 0u);  // off
  BOOST_TEST(settings_with("rate_limit_burst", "1000000").rate_limit_burst == 1000000u);
  BOOST_TEST(contains(error_with("rate_limit_per_s", "1000001"), "from 0 to 1000000, got '1000001'"));
  BOOST_TEST(contains(error_with("rate_limit_burst", "0"), "from 1 to 1000000, got '0'"));

  // max_text_bytes is bounded by max_payload_bytes, whichever layer set it.
  BOOST_TEST(nt::resolve_settings({{{"max_payload_bytes", "1000"}, {"max_text_bytes", "1000"}}}).max_text_bytes ==
             1000u);
  BOOST_TEST(config_error([] {
               nt::resolve_settings({{{"max_payload_bytes", "1000"}}, {{"max_text_bytes", "1001"}}});
             }) ==
             "config key 'max_text_bytes': expected an integer from 1 to 1000 (max_payload_bytes), "
             "got '1001'");
  BOOST_TEST(contains(error_with("max_text_bytes", "65537"), "from 1 to 65536"));
}

BOOST_AUTO_TEST_CASE(enumerations) {
  BOOST_TEST((settings_with("sync", "nometasync").sync == nt::SyncSetting::nometasync));
  BOOST_TEST((settings_with("log_level", "debug").log_level == nt::LogLevel::debug));
  BOOST_TEST((settings_with("log_format", "json").log_format == nt::LogFormat::json));
  BOOST_TEST((nt::resolve_settings({}).log_format == nt::LogFormat::text));
  BOOST_TEST(error_with("log_format", "JSON") ==
             "config key 'log_format': expected one of text, json, got 'JSON' (from --log_format)");
  BOOST_TEST(error_with("sync", "Full") ==
             "config key 'sync': expected one of full, nometasync, nosync, got 'Full' (from --sync)");
  BOOST_TEST(error_with("log_level", "warning") ==
             "config key 'log_level': expected one of debug, info, warn, error, got 'warning' "
             "(from --log_level)");

  for (auto level : {nt::LogLevel::debug, nt::LogLevel::info, nt::LogLevel::warn, nt::LogLevel::error}) {
    BOOST_TEST((nt::parse_log_level(nt::to_string(level)) == level));
  }
  for (auto mode : {nt::SyncSetting::full, nt::SyncSetting::nometasync, nt::SyncSetting::nosync}) {
    BOOST_TEST((nt::parse_sync_setting(nt::to_string(mode)) == mode));
  }
  BOOST_TEST(contains(config_error([] { nt::parse_log_level("trace"); }), "'trace'"));
  BOOST_TEST(contains(config_error([] { nt::parse_sync_setting("async"); }), "'async'"));
}

BOOST_AUTO_TEST_CASE(strings) {
  for (const std::string good :
       {"tcp://127.0.0.1:1883", "mqtt://broker", "ws://h:9001/mqtt", "ssl://h:8883", "wss://h/mqtt"}) {
    BOOST_TEST(settings_with("broker_url", good).broker_url == good);
  }
  BOOST_TEST(error_with("broker_url", "") ==
             "config key 'broker_url': expected a non-empty value, got '' (from --broker_url)");
  for (const std::string bad : {"127.0.0.1:1883", "http://h", "tcp://", "TCP://h"}) {
    BOOST_TEST(contains(error_with("broker_url", bad), "config key 'broker_url': expected a URL"), bad);
    BOOST_TEST(contains(error_with("broker_url", bad), "got '" + bad + "' (from --broker_url)"), bad);
  }

  BOOST_TEST(settings_with("topic_prefix", "acme").topic_prefix == "acme");
  BOOST_TEST(settings_with("topic_prefix", "a/b/c").topic_prefix == "a/b/c");
  const std::vector<std::string> bad_prefixes = {
      "", "/a", "a/", "a/+/b", "a/#", "$SYS/a", std::string("a\0b", 3), "\xff", "\xc0\xaf"};
  for (const std::string& bad : bad_prefixes) {
    BOOST_TEST(contains(error_with("topic_prefix", bad), "config key 'topic_prefix': expected"), bad);
  }
  // Control bytes are escaped in the message.
  BOOST_TEST(contains(error_with("topic_prefix", std::string("a\0b", 3)), "got 'a\\x00b'"));

  BOOST_TEST(settings_with("client_id", std::string(65535, 'c')).client_id.size() == 65535u);
  BOOST_TEST(contains(error_with("client_id", ""), "config key 'client_id': expected a non-empty"));
  BOOST_TEST(contains(error_with("client_id", std::string(65536, 'c')), "at most 65535 bytes"));

  BOOST_TEST(settings_with("share_group", "workers").share_group == "workers");
  for (const std::string bad : {"a/b", "a+", "#"}) {
    BOOST_TEST(contains(error_with("share_group", bad), "config key 'share_group'"), bad);
  }
  BOOST_TEST(contains(error_with("data_dir", ""), "config key 'data_dir'"));
  BOOST_TEST(contains(error_with("environment", ""), "config key 'environment'"));
  BOOST_TEST(!settings_with("handlers", "false").handlers);
  BOOST_TEST(settings_with("trust_identity_property", "true").trust_identity_property);
  for (const std::string bad : {"yes", "1", "TRUE", ""}) {
    BOOST_TEST(contains(error_with("handlers", bad), "config key 'handlers': expected true or false"), bad);
  }
  BOOST_TEST(contains(error_with("auth_token_max_bytes", "10"), "config key 'auth_token_max_bytes'"));
  BOOST_TEST(contains(error_with("auth_leeway_s", "-1"), "config key 'auth_leeway_s'"));
}

BOOST_AUTO_TEST_CASE(trim_takes_one_whitespace_set) {
  BOOST_TEST(nt::trim(" \t\r\n\f\va b\v\f\n\r\t ") == "a b");
  BOOST_TEST(nt::trim(" \n ").empty());
  BOOST_TEST(nt::trim("x") == "x");
}

BOOST_AUTO_TEST_CASE(token_lifetime_and_public_key_keys) {
  BOOST_TEST(settings_with("auth_max_token_ttl_s", "60").auth_max_token_ttl_s == 60);
  BOOST_TEST(settings_with("auth_max_token_ttl_s", "31622400").auth_max_token_ttl_s == 31622400);
  for (const std::string bad : {"0", "59", "31622401", "-1", "1d", ""}) {
    BOOST_TEST(error_with("auth_max_token_ttl_s", bad) ==
                   "config key 'auth_max_token_ttl_s': expected an integer from 60 to 31622400, "
                   "got '" +
                       bad + "' (from --auth_max_token_ttl_s)",
               bad);
  }
  // The file is read (and its key checked) by whoever verifies: auth/jwt.hpp jwt_options.
  BOOST_TEST(settings_with("auth_jwt_public_key_file", "/etc/navietakie/jwt.pub").auth_jwt_public_key_file ==
             "/etc/navietakie/jwt.pub");
  BOOST_TEST(contains(error_with("auth_jwt_public_key_file", std::string("a\0b", 3)),
                      "config key 'auth_jwt_public_key_file': expected a value without NUL"));
}

BOOST_AUTO_TEST_CASE(store_backend_and_postgres_url) {
  BOOST_TEST((nt::resolve_settings({}).store_backend == nt::StoreBackend::lmdb));
  BOOST_TEST(nt::to_string(nt::StoreBackend::postgres) == "postgres");
  BOOST_TEST(error_with("store_backend", "mysql") ==
             "config key 'store_backend': expected one of lmdb, postgres, got 'mysql' (from --store_backend)");
  // postgres needs a URL; the message says so without echoing anything.
  BOOST_TEST(contains(error_with("store_backend", "postgres"),
                      "config key 'postgres_url': required with store_backend postgres"));

  const std::string url = "postgresql://nt:s3cret@db:5432/navietakie?connect_timeout=5";
  const Environment env{"NAVIETAKIE_STORE_BACKEND=postgres", "NAVIETAKIE_POSTGRES_URL=" + url};
  const nt::Settings settings = nt::load_settings(Arguments{}.parse(), env.envp());
  BOOST_TEST((settings.store_backend == nt::StoreBackend::postgres));
  BOOST_TEST(settings.postgres_url == url);
  // An LMDB deployment may keep a URL around; it is not used.
  BOOST_TEST((settings_with("postgres_url", url).store_backend == nt::StoreBackend::lmdb));
}

BOOST_AUTO_TEST_CASE(a_postgres_url_is_logged_without_its_password) {
  BOOST_TEST(nt::redacted_postgres_url("postgresql://nt:s3cret@db:5432/x?connect_timeout=5") ==
             "postgresql://nt:***@db:5432/x?connect_timeout=5");
  BOOST_TEST(nt::redacted_postgres_url("postgres://nt@db/x?password=s3cret&sslmode=require") ==
             "postgres://nt@db/x?password=***&sslmode=require");
  BOOST_TEST(nt::redacted_postgres_url("host=db user=nt password = 's3 cr\\'et' dbname=x") ==
             "host=db user=nt password = *** dbname=x");
  BOOST_TEST(nt::redacted_postgres_url("host=db password=s3cret") == "host=db password=***");
  BOOST_TEST(nt::redacted_postgres_url("postgresql://db:5432/x") == "postgresql://db:5432/x");
  BOOST_TEST(nt::redacted_postgres_url("postgresql://nt@db/x") == "postgresql://nt@db/x");
}

// WebRTC calls' ICE servers: STUN/TURN URLs, and a TURN server only with the secret its
// credentials are derived from (and that secret only with a TURN server).
BOOST_AUTO_TEST_CASE(ice_servers_turn_secret_and_ttl) {
  const nt::Settings defaults = nt::resolve_settings({});
  BOOST_TEST(defaults.ice_servers.empty());
  BOOST_TEST(defaults.turn_secret == "");
  BOOST_TEST(defaults.turn_ttl_s == 3600);
  const nt::Settings set = nt::resolve_settings({{{"ice_servers",
                                                   " stun:stun.example.org:3478 ,turn:turn.example.org:3478?transport=udp,"
                                                   "turns:turn.example.org:5349, "},
                                                  {"turn_secret", "north-wind"},
                                                  {"turn_ttl_s", "600"}}});
  BOOST_TEST(set.ice_servers == (std::vector<std::string>{"stun:stun.example.org:3478",
                                                           "turn:turn.example.org:3478?transport=udp",
                                                           "turns:turn.example.org:5349"}),
             boost::test_tools::per_element());
  BOOST_TEST(set.turn_secret == "north-wind");
  BOOST_TEST(set.turn_ttl_s == 600);
  BOOST_TEST(nt::resolve_settings({{{"ice_servers", "stun:127.0.0.1:3478"}}}).ice_servers.size() == 1u);
  BOOST_TEST(contains(config_error([] { nt::resolve_settings({{{"ice_servers", "http://turn.example.org"}}}); }),
                      "config key 'ice_servers': expected stun:, stuns:, turn: or turns: URLs"));
  BOOST_TEST(contains(config_error([] { nt::resolve_settings({{{"ice_servers", "stun: x"}}}); }),
                      "config key 'ice_servers': expected URLs without blanks"));
  BOOST_TEST(contains(config_error([] { nt::resolve_settings({{{"ice_servers", "turn:t.example.org"}}}); }),
                      "config key 'turn_secret': expected the TURN server's shared secret"));
  BOOST_TEST(contains(config_error([] {
                        nt::resolve_settings({{{"ice_servers", "stun:s.example.org"}, {"turn_secret", "x"}}});
                      }),
                      "config key 'ice_servers': expected a turn: or turns: URL (turn_secret is set)"));
  BOOST_TEST(contains(config_error([] { nt::resolve_settings({{{"turn_ttl_s", "59"}}}); }),
                      "config key 'turn_ttl_s': expected an integer from 60 to 604800"));
  BOOST_TEST(nt::ice_url_scheme("turns:t:5349") == "turns");
  BOOST_TEST(nt::ice_url_scheme("stun:") == "");
  BOOST_TEST(nt::ice_url_scheme("turnx:t") == "");
}

BOOST_AUTO_TEST_CASE(sample_bridge_conf_is_the_defaults) {
  const std::string path = std::string(NAVIETAKIE_SOURCE_DIR) + "/config/bridge.conf";
  const nt::ConfigLayer layer = nt::read_config_file(path);
  std::ifstream in(path);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  for (const auto& key : nt::config_schema()) {
    // Every key is documented; every key with a non-empty default is set to it.
    BOOST_TEST((contains(text, "\n" + key.key + " ") || contains(text, "# " + key.key + " ")), key.key);
    if (!key.default_value.empty()) {
      BOOST_TEST(layer.count(key.key) == 1u, key.key);
      BOOST_TEST(layer.at(key.key) == key.default_value, key.key);
    }
  }
  const nt::Settings from_file = nt::resolve_settings({layer});
  const nt::Settings defaults = nt::resolve_settings({});
  BOOST_TEST(from_file.client_id == defaults.client_id);
  BOOST_TEST(from_file.share_group == defaults.share_group);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- the Mosquitto config generator (config/mosquitto_conf.hpp) ----

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool has_line(const std::string& text, const std::string& line) {
  const auto lines = lines_of(text);
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

// The lines of the listener block that starts with `listener_line`, up to the next blank line.
std::vector<std::string> block(const std::string& text, const std::string& listener_line) {
  std::vector<std::string> out;
  bool inside = false;
  for (const auto& line : lines_of(text)) {
    if (line == listener_line)
      inside = true;
    else if (inside && line.empty())
      break;
    if (inside) out.push_back(line);
  }
  return out;
}

std::string file_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string broker_conf_error(const nt::MosquittoConf& conf) {
  return config_error([&] { nt::render_mosquitto_conf(conf); });
}

}  // namespace

BOOST_AUTO_TEST_SUITE(mosquitto_conf)

BOOST_AUTO_TEST_CASE(max_packet_size_covers_a_bridge_history_page) {
  // 200 messages of up to one payload each, plus headroom, in whole MiB.
  BOOST_TEST(nt::derived_max_packet_size(65536) == 13u * 1024 * 1024);
  for (const std::size_t payload : {256u, 4096u, 65536u, 1048576u}) {
    const std::size_t size = nt::derived_max_packet_size(payload);
    BOOST_TEST(size >= 200 * (payload + 1024), payload);
    BOOST_TEST(size % (1024 * 1024) == 0u, payload);
    BOOST_TEST(size < 256u * 1024 * 1024, payload);
  }
  BOOST_TEST(nt::derived_max_packet_size(268435455) == nt::kMqttMaxPacketSize);
}

BOOST_AUTO_TEST_CASE(defaults) {
  const std::string conf = nt::render_mosquitto_conf({});
  for (const std::string& line : std::vector<std::string>{
           "per_listener_settings false", "allow_anonymous true", "persistence false", "max_queued_messages 10000",
           "max_packet_size 13631488", "set_tcp_nodelay true", "log_dest stderr", "log_type error", "log_type warning",
           "log_type notice", "log_type information", "listener 1883"}) {
    BOOST_TEST(has_line(conf, line), line);
  }
  BOOST_TEST(!contains(conf, "\nuser "));
  BOOST_TEST(!contains(conf, "max_inflight_messages"));
  BOOST_TEST(!contains(conf, "websockets"));
  BOOST_TEST(!contains(conf, "plugin"));
  BOOST_TEST(!contains(conf, "certfile"));
}

BOOST_AUTO_TEST_CASE(every_setting_reaches_its_line) {
  nt::MosquittoConf in;
  in.mqtt_port = 2883;
  in.websockets_port = 2901;
  in.mqtts_port = 2884;
  in.wss_port = 2902;
  in.bind_address = "127.0.0.1";
  in.certfile = "/tls/server.crt";
  in.keyfile = "/tls/server.key";
  in.cafile = "/tls/ca.crt";
  in.http_dir = "/srv/web";
  in.plugin = "/lib/mosquitto_navietakie.so";
  in.plugin_options = {{"data_dir", "/var/lib/nt"}, {"auth_service_grants", "*:pub:{prefix}/a, *:sub:{prefix}/b"}};
  in.max_payload_bytes = 4096;
  in.allow_anonymous = false;
  in.user = "nt";
  in.max_queued_messages = 100000;
  in.max_inflight_messages = 40;
  in.log_file = "/var/log/nt/mosquitto.log";
  in.log_types = {"all"};
  in.log_timestamp_format = "%H:%M:%S";
  in.extra_lines = {"# the end"};
  const std::string conf = nt::render_mosquitto_conf(in);
  for (const std::string& line : std::vector<std::string>{
           "allow_anonymous false", "user nt", "max_queued_messages 100000", "max_inflight_messages 40",
           "max_packet_size " + std::to_string(nt::derived_max_packet_size(4096)),
           "log_dest file /var/log/nt/mosquitto.log", "log_type all", "log_timestamp_format %H:%M:%S",
           "plugin /lib/mosquitto_navietakie.so", "plugin_opt_data_dir /var/lib/nt",
           "plugin_opt_auth_service_grants *:pub:{prefix}/a, *:sub:{prefix}/b", "# the end"}) {
    BOOST_TEST(has_line(conf, line), line);
  }
  BOOST_TEST(!has_line(conf, "log_type error"));
  // Plugin options keep their order, after the plugin line.
  BOOST_TEST(conf.find("plugin /lib") < conf.find("plugin_opt_data_dir"));
  BOOST_TEST(conf.find("plugin_opt_data_dir") < conf.find("plugin_opt_auth_service_grants"));

  using Lines = std::vector<std::string>;
  BOOST_TEST(block(conf, "listener 2883 127.0.0.1") == Lines{"listener 2883 127.0.0.1"},
             boost::test_tools::per_element());
  BOOST_TEST(block(conf, "listener 2901 127.0.0.1") ==
                 (Lines{"listener 2901 127.0.0.1", "protocol websockets", "socket_domain ipv4", "http_dir /srv/web"}),
             boost::test_tools::per_element());
  BOOST_TEST(block(conf, "listener 2884 127.0.0.1") == (Lines{"listener 2884 127.0.0.1", "certfile /tls/server.crt",
                                                              "keyfile /tls/server.key", "cafile /tls/ca.crt"}),
             boost::test_tools::per_element());
  BOOST_TEST(block(conf, "listener 2902 127.0.0.1") ==
                 (Lines{"listener 2902 127.0.0.1", "protocol websockets", "socket_domain ipv4", "http_dir /srv/web",
                        "certfile /tls/server.crt", "keyfile /tls/server.key", "cafile /tls/ca.crt"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(an_explicit_max_packet_size_wins) {
  nt::MosquittoConf in;
  in.max_packet_size = 1000;
  BOOST_TEST(has_line(nt::render_mosquitto_conf(in), "max_packet_size 1000"));
}

BOOST_AUTO_TEST_CASE(values_the_broker_would_refuse_or_misread) {
  const auto with = [](auto change) {
    nt::MosquittoConf conf;
    change(conf);
    return broker_conf_error(conf);
  };
  BOOST_TEST(contains(with([](auto& c) { c.mqtt_port = 0; }), "mqtt_port"));
  BOOST_TEST(contains(with([](auto& c) { c.websockets_port = 70000; }), "websockets_port"));
  BOOST_TEST(contains(with([](auto& c) { c.websockets_port = 1883; }), "used twice"));
  BOOST_TEST(contains(with([](auto& c) { c.mqtts_port = 8883; }), "certfile and keyfile"));
  BOOST_TEST(contains(with([](auto& c) { c.wss_port = 8884, c.certfile = "c.pem"; }), "certfile and keyfile"));
  BOOST_TEST(contains(with([](auto& c) { c.certfile = "c.pem"; }), "without a TLS listener"));
  BOOST_TEST(contains(with([](auto& c) { c.http_dir = "/srv"; }), "without a WebSockets listener"));
  BOOST_TEST(contains(with([](auto& c) { c.plugin = "/a b/p.so"; }), "plugin: whitespace"));
  BOOST_TEST(contains(with([](auto& c) { c.user = "nt\nlistener 1"; }), "user: line break"));
  BOOST_TEST(contains(with([](auto& c) { c.plugin_options = {{"sync", "full"}}; }), "without a plugin"));
  BOOST_TEST(contains(with([](auto& c) { c.plugin = "p.so", c.plugin_options = {{"bogus", "1"}}; }), "'bogus'"));
  BOOST_TEST(contains(with([](auto& c) {
                        c.plugin = "p.so", c.plugin_options = {{"sync", "full\nuser root"}};
                      }),
                      "plugin_opt_sync: line break"));
  BOOST_TEST(contains(with([](auto& c) { c.max_packet_size = 19; }), "max_packet_size"));
  BOOST_TEST(contains(with([](auto& c) { c.extra_lines = {"a\nb"}; }), "extra_lines"));
  BOOST_TEST(with([](auto& c) { c.mqtts_port = 8883, c.certfile = "c.pem", c.keyfile = "k.pem"; }).empty());
}

// The shipped configs are what the generator writes for them, with comments: the same packet
// limit, and a TLS listener to switch on.
BOOST_AUTO_TEST_CASE(shipped_confs_carry_max_packet_size_and_a_tls_example) {
  const std::string expected = "max_packet_size " + std::to_string(nt::derived_max_packet_size(65536));
  for (const std::string name : {"mosquitto.conf", "mosquitto-bridge.conf"}) {
    const std::string text = file_text(std::string(NAVIETAKIE_SOURCE_DIR) + "/config/" + name);
    BOOST_TEST(has_line(text, expected), name);
    BOOST_TEST(has_line(text, "#listener 8883"), name);
    BOOST_TEST(has_line(text, "#certfile /etc/navietakie/tls/server.crt"), name);
    BOOST_TEST(has_line(text, "#keyfile /etc/navietakie/tls/server.key"), name);
    BOOST_TEST(has_line(text, "#listener 8884"), name);
  }
}

BOOST_AUTO_TEST_SUITE_END()
