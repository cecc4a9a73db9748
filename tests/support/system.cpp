#include "support/system.hpp"

#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "auth/acl.hpp"
#include "auth/jwt.hpp"

namespace navietakie::test {

std::ostream& operator<<(std::ostream& out, Host host) {
  switch (host) {
    case Host::bridge: return out << "bridge";
    case Host::plugin: return out << "plugin";
  }
  return out << "host?";
}

namespace {

std::vector<Host> hosts_from_env() {
#ifdef NAVIETAKIE_PLUGIN_SO
  std::vector<Host> hosts{Host::bridge, Host::plugin};
#else
  std::vector<Host> hosts{Host::bridge};
#endif
  const char* wanted = std::getenv("NT_TEST_HOSTS");
  if (wanted == nullptr || *wanted == '\0') return hosts;
  hosts.clear();
  std::istringstream list(wanted);
  for (std::string name; std::getline(list, name, ',');) {
    if (name == "bridge")
      hosts.push_back(Host::bridge);
    else if (name == "plugin")
      hosts.push_back(Host::plugin);
    else
      throw std::invalid_argument("NT_TEST_HOSTS: unknown host '" + name + "' (expected bridge, plugin)");
  }
  return hosts;
}

}  // namespace

const std::vector<Host>& contract_hosts() {
  static const std::vector<Host> hosts = hosts_from_env();
  return hosts;
}

std::vector<std::string> plugin_broker_env() {
#ifdef NAVIETAKIE_SANITIZED_PRELOAD
  // The plugin is ASan-built, mosquitto is not: its runtime has to be loaded before anything else.
  // No leak check in the broker: mosquitto 2.0.11 leaks its config and websockets setup at exit,
  // and an uninstrumented binary gives LSan stacks too short to suppress only those. The plugin's
  // own leaks are caught by test_plugin_valgrind in the plain build, the core's by LSan in the
  // unit tests and the bridge.
  return {"LD_PRELOAD=" NAVIETAKIE_SANITIZED_PRELOAD, "ASAN_OPTIONS=detect_leaks=0"};
#else
  return {};
#endif
}

MosquittoConf test_broker_conf() {
  MosquittoConf conf;
  conf.mqtt_port = 0;
  conf.bind_address = "127.0.0.1";
  // max_inflight_messages stays at its default (20), as in production: it is also the Receive
  // Maximum a v5 client gets, and Paho C then waits up to a second for room when a burst fills it.
  conf.log_types = {"all"};
  conf.log_timestamp_format = "%H:%M:%S";
  conf.user = current_user_name();
  return conf;
}

Broker::Broker(const TempDir& dir, MosquittoConf conf, BrokerLaunch launch)
    : dir_(dir), launch_(std::move(launch)), conf_(std::move(conf)), conf_path_(dir.file("mosquitto.conf")) {
  if (conf_.mqtt_port == 0) conf_.mqtt_port = free_port();
  write_file(conf_path_, render_mosquitto_conf(conf_));
}

Broker::Broker(const TempDir& dir, std::vector<std::string> extra_conf, BrokerLaunch launch)
    : Broker(
          dir,
          [&] {
            MosquittoConf conf = test_broker_conf();
            conf.extra_lines = std::move(extra_conf);
            return conf;
          }(),
          std::move(launch)) {}

Broker::~Broker() = default;

std::string Broker::log_path() const { return dir_.file("mosquitto-" + std::to_string(starts_) + ".log"); }

void Broker::spawn() {
  if (process_ && process_->alive()) return;
  ++starts_;
  ProcessOptions options;
  options.stdout_path = log_path();
  options.stop_timeout = launch_.stop_timeout;
  options.drop_env_prefix = "NAVIETAKIE_";
  options.extra_env = launch_.env;
  for (auto& entry : plugin_broker_env()) options.extra_env.push_back(std::move(entry));
  std::vector<std::string> argv = launch_.wrapper;
  const std::string executable = launch_.executable.empty() ? find_executable("mosquitto") : launch_.executable;
  argv.insert(argv.end(), {executable, "-c", conf_path_});
  process_ = std::make_unique<Process>(std::move(argv), options);
}

void Broker::start() {
  if (process_ && process_->alive()) return;
  spawn();
  const auto deadline = std::chrono::steady_clock::now() + launch_.start_timeout;
  while (!wait_for_tcp(port(), 100ms)) {
    if (!process_->alive() || std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error("mosquitto did not accept TCP on port " + std::to_string(port()) + ":\n" + describe());
    }
  }
}

void Broker::stop() {
  if (process_) process_->stop();
}

void Broker::kill9() {
  if (process_) process_->kill9();
}

void Broker::restart() {
  stop();
  start();
}

bool Broker::running() { return process_ && process_->alive(); }

std::optional<int> Broker::wait_exit(Millis timeout) {
  if (!process_) throw std::logic_error("Broker::wait_exit: not started");
  return process_->wait_exit(timeout);
}

std::optional<int> Broker::exit_code() const { return process_ ? process_->exit_code() : std::nullopt; }

bool Broker::wait_log_contains(const std::string& text, Millis timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    if (read_file(log_path()).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

std::string Broker::describe() { return process_ ? process_->describe(60) : "mosquitto: not started\n"; }

System::System(SystemOptions options)
    : dir_("navietakie-it"), options_(std::move(options)), data_dir_(dir_.file("data")) {
  std::filesystem::create_directories(data_dir_);
  bridge_client_id_ = "nt-bridge-" + random_hex(8);
  if (options_.secure) {
    secret_path_ = dir_.file("jwt.secret");
    write_file(secret_path_, generate_secret() + "\n");
    if (options_.plugin_path.empty())
      throw std::invalid_argument("a secure system needs the plugin (SystemOptions.plugin_path)");
  }
  switch (options_.host) {
    case Host::bridge:
      if (options_.bridge_binary.empty()) throw std::invalid_argument("SystemOptions.bridge_binary is empty");
      broker_ = options_.secure ? std::make_unique<Broker>(dir_, auth_only_plugin_conf(), options_.broker_launch)
                                : std::make_unique<Broker>(dir_, test_broker_conf());
      broker_->start();
      start_bridge();
      break;
    case Host::plugin:
      if (options_.plugin_path.empty()) {
        throw std::invalid_argument(
            "SystemOptions.plugin_path is empty (the tree was configured without the mosquitto_navietakie target)");
      }
      broker_ = std::make_unique<Broker>(dir_, plugin_conf(), options_.broker_launch);
      broker_->start();
      wait_ready();
      break;
  }
}

MosquittoConf System::plugin_conf() const {
  MosquittoConf conf = test_broker_conf();
  conf.plugin = options_.plugin_path;
  conf.plugin_options = {
      {"data_dir", data_dir_},
      {"call_ring_timeout_s", std::to_string(options_.call_ring_timeout_s)},
      {"rate_limit_per_s", std::to_string(options_.rate_limit_per_s)},
      {"rate_limit_burst", std::to_string(options_.rate_limit_burst)},
      {"log_level", "debug"},
  };
  if (options_.secure) {
    conf.allow_anonymous = false;
    conf.plugin_options.emplace_back("auth_jwt_secret_file", secret_path_);
  }
  conf.extra_lines = options_.extra_plugin_conf;
  return conf;
}

MosquittoConf System::auth_only_plugin_conf() const {
  MosquittoConf conf = test_broker_conf();
  conf.allow_anonymous = false;
  conf.plugin = options_.plugin_path;
  conf.plugin_options = {
      {"handlers", "false"},
      {"log_level", "debug"},
      {"auth_jwt_secret_file", secret_path_},
      // The bridge takes every request and publishes under the prefix; other services get the
      // default grants.
      {"auth_service_grants", bridge_client_id_ + ":sub:{prefix}/bookings/+/+, " + bridge_client_id_ +
                                  ":pub:{prefix}/#, " + default_service_grants()},
  };
  conf.extra_lines = options_.extra_plugin_conf;
  return conf;
}

std::string System::token(const Identity& identity, std::int64_t ttl_s) const {
  if (secret_path_.empty()) throw std::logic_error("System::token: not a secure system");
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  return mint_token(identity, read_secret_file(secret_path_), now.count() + ttl_s);
}

std::unique_ptr<Process> System::start_abrupt_client(const std::string& client_id, const Will& will) const {
  if (!options_.secure) return broker_->start_abrupt_client(client_id, will);
  return broker_->start_abrupt_client(client_id, will, client_id, token(Identity{Principal::service, client_id, ""}));
}

ClientOptions System::as(const Identity& identity, ClientOptions options) const {
  options.username = identity.subject;
  options.password = token(identity);
  return options;
}

System::~System() {
  if (bridge_) bridge_->stop();
  if (broker_) broker_->stop();
}

std::unique_ptr<TestClient> System::client(ClientOptions options) const {
  if (options_.secure && !options.password) {
    if (options.client_id.empty()) options.client_id = "nt-test-" + random_hex(12);
    const Identity self{Principal::service, options.client_id, ""};
    options = as(self, std::move(options));
  }
  return std::make_unique<TestClient>(broker_uri(), std::move(options));
}

void System::start_bridge() {
  ++bridge_starts_;
  std::vector<std::string> argv{
      options_.bridge_binary,
      "--broker_url",
      broker_uri(),
      "--data_dir",
      data_dir_,
      // One client id for the life of the system, as in production: a restarted bridge resumes its
      // persistent session and gets the requests published while it was away.
      "--client_id",
      bridge_client_id_,
      "--log_level",
      "debug",
      "--call_ring_timeout_s",
      std::to_string(options_.call_ring_timeout_s),
      "--rate_limit_per_s",
      std::to_string(options_.rate_limit_per_s),
      "--rate_limit_burst",
      std::to_string(options_.rate_limit_burst),
  };
  if (options_.secure) {
    // The bridge mints itself a service token from the shared secret (sub = its client id).
    argv.insert(argv.end(), {"--auth_jwt_secret_file", secret_path_, "--trust_identity_property", "true"});
  }
  argv.insert(argv.end(), options_.extra_host_args.begin(), options_.extra_host_args.end());
  ProcessOptions process_options;
  process_options.stdout_path = dir_.file("bridge-" + std::to_string(bridge_starts_) + ".log");
  // The bridge reads NAVIETAKIE_* variables as settings: the tests pass every setting as a flag.
  process_options.drop_env_prefix = "NAVIETAKIE_";
  host_exit_code_.reset();
  bridge_ = std::make_unique<Process>(std::move(argv), process_options);
  wait_ready();
}

void System::wait_ready(std::optional<Millis> timeout_or_default) {
  const Millis timeout = timeout_or_default.value_or(options_.ready_timeout);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto probe = client();
  const std::string topic = options_.topic_prefix + "/bookings/readiness-probe/get_message";
  while (std::chrono::steady_clock::now() < deadline) {
    if (!host_alive()) {
      std::ostringstream what;
      what << "the " << options_.host << " host exited before answering:\n" << describe();
      throw std::runtime_error(what.str());
    }
    if (probe->try_await_reply(probe->send_request(topic, R"({"limit":1})"), 500ms)) return;
  }
  throw std::runtime_error("the host answered no get_message within " + std::to_string(timeout.count()) + " ms:\n" +
                           describe());
}

void System::stop_host() {
  switch (options_.host) {
    case Host::bridge:
      bridge_->stop();
      host_exit_code_ = bridge_->exit_code();
      return;
    case Host::plugin:
      broker_->stop();
      host_exit_code_ = broker_->exit_code();
      return;
  }
}

void System::kill_host() {
  switch (options_.host) {
    case Host::bridge:
      bridge_->kill9();
      host_exit_code_ = bridge_->exit_code();
      return;
    case Host::plugin:
      broker_->kill9();
      host_exit_code_ = broker_->exit_code();
      return;
  }
}

void System::start_host() {
  switch (options_.host) {
    case Host::bridge:
      if (bridge_ && bridge_->alive()) throw std::logic_error("start_host: the bridge is running");
      start_bridge();
      return;
    case Host::plugin:
      if (broker_->running()) throw std::logic_error("start_host: the broker (plugin host) is running");
      host_exit_code_.reset();
      broker_->start();
      wait_ready();
      return;
  }
}

void System::restart_host() {
  stop_host();
  start_host();
}

void System::restart_broker() {
  switch (options_.host) {
    case Host::bridge: broker_->restart(); return;
    case Host::plugin: restart_host(); return;
  }
}

std::unique_ptr<Process> Broker::start_abrupt_client(const std::string& client_id, const Will& will,
                                                     const std::string& username, const std::string& password) {
  ProcessOptions options;
  options.stdout_path = dir_.file("abrupt-" + client_id + ".log");
  // It subscribes to its own reply namespace: a topic any authenticated client may read.
  std::vector<std::string> argv{"mosquitto_sub",
                                "-h",
                                "127.0.0.1",
                                "-p",
                                std::to_string(port()),
                                "-V",
                                "5",
                                "-i",
                                client_id,
                                "-t",
                                "navietakie/v1/replies/" + client_id + "/abrupt",
                                "--will-topic",
                                will.topic,
                                "--will-payload",
                                will.payload,
                                "--will-qos",
                                std::to_string(will.qos)};
  if (!username.empty()) argv.insert(argv.end(), {"-u", username});
  if (!password.empty()) argv.insert(argv.end(), {"-P", password});
  auto process = std::make_unique<Process>(std::move(argv), options);
  if (!wait_log_contains(" as " + client_id + " (", 5s)) {
    throw std::runtime_error("abrupt client " + client_id + " did not connect:\n" + process->describe());
  }
  return process;
}

bool System::host_alive() {
  switch (options_.host) {
    case Host::bridge: return bridge_ && bridge_->alive();
    case Host::plugin: return broker_ && broker_->running();
  }
  return false;
}

std::string System::describe() {
  std::string out = "=== broker ===\n" + (broker_ ? broker_->describe() : std::string("none\n"));
  if (bridge_) out += "=== bridge ===\n" + bridge_->describe(80);
  return out;
}

System& shared_system(const std::string& name, const SystemOptions& options) {
  // Destroyed at exit: each System stops its processes and removes its directory.
  static std::map<std::string, std::unique_ptr<System>> systems;
  // A system that failed to start fails every later test of its suite at once, not after a timeout each.
  static std::map<std::string, std::string> failures;
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  std::ostringstream key;
  key << name << '/' << options.host << (options.secure ? "+auth" : "");
  if (auto failed = failures.find(key.str()); failed != failures.end()) {
    throw std::runtime_error("shared system " + key.str() + " failed to start earlier: " + failed->second);
  }
  auto& slot = systems[key.str()];
  if (!slot) {
    try {
      slot = std::make_unique<System>(options);
    } catch (const std::exception& e) {
      failures[key.str()] = e.what();
      throw;
    }
  }
  return *slot;
}

}  // namespace navietakie::test
