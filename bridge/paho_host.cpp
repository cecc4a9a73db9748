#include "bridge/paho_host.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <thread>

#include "auth/jwt.hpp"
#include "bridge/log.hpp"
#include "bridge/tcp_nodelay.hpp"

namespace navietakie {
namespace {

using namespace std::chrono_literals;
constexpr int kQos = 1;
constexpr auto kIdleWait = 200ms;      // how long the worker waits for a message when nothing is due
constexpr auto kMetricsEvery = 60s;
constexpr auto kWakeEvery = 2ms;
constexpr std::chrono::seconds kMintedTokenTtl = 24h;

// The one value of a user property, if the message carries it exactly once.
std::optional<std::string> user_property(const mqtt::properties& props, std::string_view name) {
  std::optional<std::string> value;
  const std::size_t n = props.count(mqtt::property::USER_PROPERTY);
  for (std::size_t i = 0; i < n; ++i) {
    auto [key, v] = mqtt::get<mqtt::string_pair>(props, mqtt::property::USER_PROPERTY, i);
    if (key != name) continue;
    if (value) return std::nullopt;  // twice: not a stamp we made
    value = v;
  }
  return value;
}

std::string read_password_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (!in && !in.eof()) throw std::runtime_error("cannot read mqtt_password_file '" + path + "'");
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

}  // namespace

Request PahoHost::to_request(const mqtt::const_message_ptr& msg) const {
  Request r;
  r.topic = msg->get_topic();
  r.payload = msg->to_string();
  const auto& props = msg->get_properties();
  if (props.contains(mqtt::property::RESPONSE_TOPIC)) {
    r.response_topic = mqtt::get<std::string>(props, mqtt::property::RESPONSE_TOPIC);
  }
  if (props.contains(mqtt::property::CORRELATION_DATA)) {
    r.correlation_data = mqtt::get<mqtt::binary>(props, mqtt::property::CORRELATION_DATA);
  }
  if (settings_.trust_identity_property) {
    // Stamped by the broker's plugin (auth only), which refuses client-made stamps.
    if (auto stamp = user_property(props, identity_property)) r.identity = decode_identity(*stamp);
    if (auto id = user_property(props, client_id_property)) r.client_id = *id;
  }
  return r;
}

PahoHost::PahoHost(mqtt::async_client& client, Engine& engine, const Settings& settings)
    : client_(client), engine_(engine), settings_(settings) {
  connect_options_ = mqtt::connect_options_builder()
                         .mqtt_version(MQTTVERSION_5)
                         .clean_start(false)
                         // Receive Maximum: without it a broker may cap our in-flight window at its
                         // default (Mosquitto: 20) and queue, then drop, requests past its queue limit.
                         .properties({{mqtt::property::SESSION_EXPIRY_INTERVAL, 86400},
                                      {mqtt::property::RECEIVE_MAXIMUM, 65535}})
                         .keep_alive_interval(30s)
                         .finalize();
  // Reconnects are the worker's (not Paho's automatic ones), so that each one presents fresh
  // credentials: a minted token expires, a password file may have been rotated.
  if (settings_.mqtt_password_file.empty() && !settings_.auth_jwt_secret_file.empty()) {
    jwt_secret_ = read_secret_file(settings_.auth_jwt_secret_file);
  }
  wake_topic_ = settings_.topic_prefix + "/bridge/" + settings_.client_id + "/wake";
  for (const auto& filter : engine_.request_filters()) {
    filters_.push_back(settings_.share_group.empty() ? filter : "$share/" + settings_.share_group + "/" + filter);
  }
  // Paho callbacks run on its receive thread: they only set flags, never block.
  client_.set_connected_handler([this](const std::string&) {
    set_tcp_nodelay_on_open_sockets();
    resubscribe_ = true;
  });
  client_.set_connection_lost_handler([this](const std::string& cause) {
    log_line(LogLevel::warn, "connection_lost", {{"cause", cause}});
    lost_ = true;
  });
}

bool PahoHost::connect(const std::atomic<bool>& stop) {
  auto backoff = 250ms;
  while (!stop) {
    try {
      set_credentials(connect_options_);
      auto token = client_.connect(connect_options_);
      if (token->wait_for(10s)) {
        log_line(LogLevel::info, "connected", {{"broker", settings_.broker_url}, {"client_id", settings_.client_id}});
        return true;
      }
    } catch (const mqtt::exception& e) {
      log_line(LogLevel::warn, "connect_failed", {{"broker", settings_.broker_url}, {"error", e.what()}});
    }
    for (auto waited = 0ms; waited < backoff && !stop; waited += 50ms) std::this_thread::sleep_for(50ms);
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 10s);
  }
  return false;
}

void PahoHost::set_credentials(mqtt::connect_options& options) const {
  std::string password;
  if (!settings_.mqtt_password_file.empty()) {
    password = read_password_file(settings_.mqtt_password_file);
  } else if (!jwt_secret_.empty()) {
    Identity self{Principal::service, settings_.client_id, ""};
    password = mint_token(self, jwt_secret_, system_clock_ms() / 1000 + kMintedTokenTtl.count());
  } else {
    return;
  }
  options.set_user_name(settings_.mqtt_username.empty() ? settings_.client_id : settings_.mqtt_username);
  options.set_password(password);
}

void PahoHost::subscribe() {
  try {
    std::vector<int> qos(filters_.size(), kQos);
    client_.subscribe(mqtt::string_collection::create(filters_), qos);
    for (const auto& f : filters_) log_line(LogLevel::info, "subscribed", {{"filter", f}});
  } catch (const mqtt::exception& e) {
    log_line(LogLevel::error, "subscribe_failed", {{"error", e.what()}});
    resubscribe_ = true;
  }
}

void PahoHost::publish_all(const std::vector<Publish>& publishes) {
  for (const auto& p : publishes) {
    auto msg = mqtt::make_message(p.topic, p.payload, kQos, p.retain);
    if (p.correlation_data) {
      mqtt::properties props;
      props.add(mqtt::property(mqtt::property::CORRELATION_DATA, *p.correlation_data));
      msg->set_properties(props);
    }
    try {
      client_.publish(msg);
    } catch (const mqtt::exception& e) {
      log_line(LogLevel::error, "publish_failed", {{"topic", p.topic}, {"error", e.what()}});
    }
  }
}

void PahoHost::publish_metrics() {
  std::string metrics = engine_.metrics().to_json();
  log_line(LogLevel::info, "metrics", {{"counters", metrics}});
  publish_all({Publish{settings_.topic_prefix + "/metrics/" + settings_.client_id, metrics, true, std::nullopt}});
}

bool PahoHost::run(const std::atomic<bool>& stop) {
  client_.start_consuming();
  if (!connect(stop)) return false;
  publish_all(engine_.start());
  auto next_metrics = std::chrono::steady_clock::now() + kMetricsEvery;
  std::vector<Request> batch;
  batch.reserve(settings_.batch_max);
  while (!stop) {
    if (lost_.exchange(false) && !client_.is_connected() && !connect(stop)) break;
    if (resubscribe_.exchange(false)) subscribe();
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(kIdleWait);
    if (auto due = engine_.next_deadline()) {
      auto until_due = std::chrono::milliseconds(std::max<Millis>(0, *due - system_clock_ms()));
      wait = std::min(wait, until_due);
    }
    // Paho C 1.3 wakes its send thread only when a command is queued, not when a PUBACK frees a
    // slot of the broker's receive window: publishes queued behind a full window would wait up to
    // 1 s. While any are pending, queue a tiny QoS 0 publish every few ms to wake it.
    if (!client_.get_pending_delivery_tokens().empty()) {
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(kWakeEvery));
      try {
        client_.publish(wake_topic_, "", 0, 0, false);
      } catch (const mqtt::exception&) {
        // disconnected: nothing to wake
      }
    }
    mqtt::const_message_ptr msg;
    batch.clear();
    // Drain what is queued, up to batch_max: one commit (one fsync) serves them all.
    if (client_.try_consume_message_for(&msg, wait)) {
      do {
        if (msg) batch.push_back(to_request(msg));  // a null message marks a lost connection
      } while (batch.size() < settings_.batch_max && client_.try_consume_message(&msg));
    }
    if (!batch.empty()) publish_all(engine_.handle(batch));
    publish_all(engine_.expire_calls());
    if (std::chrono::steady_clock::now() >= next_metrics) {
      publish_metrics();
      next_metrics += kMetricsEvery;
    }
  }
  log_line(LogLevel::info, "stopping", {{"metrics", engine_.metrics().to_json()}});
  client_.stop_consuming();
  try {
    client_.disconnect(5s)->wait_for(10s);  // lets in-flight publishes complete first
  } catch (const mqtt::exception& e) {
    log_line(LogLevel::warn, "disconnect_failed", {{"error", e.what()}});
  }
  return true;
}

}  // namespace navietakie
