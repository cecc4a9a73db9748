// The system under test: a real Mosquitto broker on a free port of 127.0.0.1 and a host of the
// handler logic. The contract is the same for every host, so every contract test is written once
// and run against each value of `Host`.
#pragma once

#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/mosquitto_conf.hpp"
#include "core/identity.hpp"
#include "support/mqtt_client.hpp"
#include "support/processes.hpp"

namespace navietakie::test {

enum class Host {
  bridge,  // navietakie-bridge, a Paho client of the broker
  plugin,  // mosquitto_navietakie.so: the handlers inside Mosquitto; the broker is the host
};
std::ostream& operator<<(std::ostream& out, Host host);

// The hosts the contract tests run against: both, or only the bridge when the tree was configured
// without the plugin target (NAVIETAKIE_PLUGIN_SO undefined). NT_TEST_HOSTS=bridge|plugin|bridge,plugin
// narrows it for a debugging session (not NAVIETAKIE_*: the hosts read those as settings).
const std::vector<Host>& contract_hosts();

// How a Broker process is launched.
struct BrokerLaunch {
  // Put in front of the mosquitto command line (e.g. valgrind and its flags).
  std::vector<std::string> wrapper;
  // The broker executable; empty: mosquitto from PATH (test_cross runs an unpacked arm64 one).
  std::string executable;
  // `NAME=value` entries for the broker's environment. The test process's own NAVIETAKIE_*
  // variables are never passed on: the plugin reads them as settings.
  std::vector<std::string> env;
  // How long start() waits for the port, and stop() for the exit after SIGTERM.
  Millis start_timeout = 5s;
  Millis stop_timeout = 5s;
};

// `NAME=value` entries that any mosquitto loading this build's plugin needs in its environment:
// in a NAVIETAKIE_SANITIZE build, LD_PRELOAD of the ASan runtime and libstdc++ (and no leak check,
// see system.cpp); else none.
std::vector<std::string> plugin_broker_env();

// The conf of a test broker (config/mosquitto_conf.hpp): TCP on 127.0.0.1 (the port is picked
// by Broker), every log line with a readable time, and the current user (as root, mosquitto would
// switch to `mosquitto`).
MosquittoConf test_broker_conf();

// A mosquitto started from a conf file in `dir`; its log (stderr) in `dir`.
class Broker {
 public:
  // `conf`: usually test_broker_conf() with changes; a free port is picked for mqtt_port 0.
  Broker(const TempDir& dir, MosquittoConf conf, BrokerLaunch launch = {});
  // test_broker_conf() with `extra_conf` lines appended (e.g. `plugin` lines written by hand).
  Broker(const TempDir& dir, std::vector<std::string> extra_conf = {}, BrokerLaunch launch = {});
  ~Broker();

  // Starts mosquitto and waits (bounded, launch.start_timeout) until the port accepts TCP; throws
  // with the log.
  void start();
  // Starts mosquitto without waiting for anything (for a broker expected to fail at start-up).
  void spawn();
  // SIGTERM, bounded wait (launch.stop_timeout), then SIGKILL; the exit code is kept.
  void stop();
  void kill9();
  // Stops and starts again on the same port: clients must reconnect by themselves.
  void restart();
  bool running();
  // Waits for mosquitto to exit by itself; its exit code, or nullopt on timeout.
  std::optional<int> wait_exit(Millis timeout);
  // The exit code of the last run, once it has ended.
  std::optional<int> exit_code() const;

  int port() const { return conf_.mqtt_port; }
  std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port()); }
  const MosquittoConf& conf() const { return conf_; }
  std::string log_path() const;
  // True once the broker log contains `text` (waits at most `timeout`).
  bool wait_log_contains(const std::string& text, Millis timeout) const;
  std::string describe();

  // A client that holds a connection with a Will and can die abruptly (kill9() closes its socket
  // without DISCONNECT, so the broker publishes the Will): mosquitto_sub, connected when this returns.
  // `username` / `password`: credentials, for a broker with authentication on.
  std::unique_ptr<Process> start_abrupt_client(const std::string& client_id, const Will& will,
                                               const std::string& username = "", const std::string& password = "");

 private:
  const TempDir& dir_;
  BrokerLaunch launch_;
  MosquittoConf conf_;
  std::string conf_path_;
  int starts_ = 0;
  std::unique_ptr<Process> process_;
};

struct SystemOptions {
  Host host = Host::bridge;
  // The navietakie-bridge executable (the tests pass NAVIETAKIE_BRIDGE_BIN from CMake).
  std::string bridge_binary;
  // mosquitto_navietakie.so (the tests pass NAVIETAKIE_PLUGIN_SO from CMake).
  std::string plugin_path;
  int call_ring_timeout_s = 30;
  // rate_limit_per_s / rate_limit_burst of the host. Off by default: test clients send as fast as
  // the test runs (hundreds of requests from one client), which is no client's normal rate; the
  // tests about rate limits set them.
  std::uint32_t rate_limit_per_s = 0;
  std::uint32_t rate_limit_burst = 40;
  std::vector<std::string> extra_host_args;    // more `--key value` flags for the bridge
  std::vector<std::string> extra_plugin_conf;  // more conf lines for the plugin (`plugin_opt_<key> value`)
  // How the broker is launched; for the plugin host, also its environment (NAVIETAKIE_* settings).
  BrokerLaunch broker_launch;
  // How long the host may take to answer its first request after a start.
  Millis ready_timeout = 10s;
  // Where the readiness probe is sent: the host's topic_prefix, when a test changes it.
  std::string topic_prefix = "navietakie/v1";
  // Authentication on (a JWT secret in the system's dir, allow_anonymous false). Plugin host: the
  // plugin verifies tokens and enforces the ACL. Bridge host: the plugin runs beside it in
  // auth-only mode (handlers false) and the bridge trusts its identity stamp. Clients made by
  // client() without credentials get a service token (sub = their client id).
  bool secure = false;
};

class System {
 public:
  // Starts the broker and the host and waits until the host answers requests; throws with logs.
  explicit System(SystemOptions options);
  ~System();
  System(const System&) = delete;
  System& operator=(const System&) = delete;

  Host host() const { return options_.host; }
  const SystemOptions& options() const { return options_; }
  Broker& broker() { return *broker_; }
  std::string broker_uri() const { return broker_->uri(); }
  const std::string& data_dir() const { return data_dir_; }
  const TempDir& dir() const { return dir_; }

  // A connected test client of this system's broker.
  std::unique_ptr<TestClient> client(ClientOptions options = {}) const;

  // Secure systems: the secret file, and tokens signed with it.
  const std::string& secret_path() const { return secret_path_; }
  std::string token(const Identity& identity, std::int64_t ttl_s = 3600) const;
  // Broker::start_abrupt_client, with a service token when the system is secure.
  std::unique_ptr<Process> start_abrupt_client(const std::string& client_id, const Will& will) const;
  // Options for a client that authenticates as `identity` (username = subject).
  ClientOptions as(const Identity& identity, ClientOptions options = {}) const;

  // Graceful stop (SIGTERM, bounded): the host's exit code is kept in host_exit_code().
  // For the plugin host, the host is the broker: every client connection ends with it.
  void stop_host();
  // The abrupt death of the host (SIGKILL).
  void kill_host();
  // Starts the host again on the same data dir and waits until it answers.
  void start_host();
  void restart_host();
  // Stops the broker and starts it on the same port. The bridge must reconnect and resubscribe
  // itself; the plugin restarts with the broker (same data dir) and is waited for.
  void restart_broker();

  bool host_alive();
  std::optional<int> host_exit_code() const { return host_exit_code_; }

  // Retries a get_message request (v5, 500 ms per try) until it is answered; throws after
  // `timeout` (options().ready_timeout when not given).
  void wait_ready(std::optional<Millis> timeout = std::nullopt);

  // Broker and host log tails, for failure reports.
  std::string describe();

 private:
  void start_bridge();
  MosquittoConf plugin_conf() const;
  MosquittoConf auth_only_plugin_conf() const;

  TempDir dir_;
  SystemOptions options_;
  std::string data_dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Process> bridge_;
  int bridge_starts_ = 0;
  std::string secret_path_;  // secure only
  std::string bridge_client_id_;
  std::optional<int> host_exit_code_;
};

// One System per name, shared by the tests of a suite that do not interfere (each uses its own
// booking codes). Started on first use with `options`, stopped at process exit.
System& shared_system(const std::string& name, const SystemOptions& options);

}  // namespace navietakie::test
