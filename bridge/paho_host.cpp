#include "bridge/paho_host.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <thread>

#include "auth/jwt.hpp"
#include "core/log.hpp"
#include "core/topics.hpp"
#include "bridge/paho_compat.hpp"
#include "bridge/service_notify.hpp"

namespace navietakie {
namespace {

using namespace std::chrono_literals;
constexpr int kQos = 1;
constexpr std::chrono::seconds kMintedTokenTtl = 24h;
constexpr int kSessionExpiry = 86400;  // seconds the broker keeps the session while we are away

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

// An engine Publish as a Paho message (at its QoS, with the reply's Correlation Data).
mqtt::message_ptr to_message(const Publish& p) {
  auto msg = mqtt::make_message(p.topic, p.payload, p.qos, p.retain);
  if (p.correlation_data) {
    mqtt::properties props;
    props.add(mqtt::property(mqtt::property::CORRELATION_DATA, *p.correlation_data));
    msg->set_properties(props);
  }
  return msg;
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

bool PahoHost::stored_copy(const mqtt::message& msg) {
  if (!msg.is_retained()) return false;
  // A live delivery never carries the retain flag (we do not subscribe with Retain As Published):
  // this is a retained request the broker stored and hands to every new subscription. It was
  // handled when it was published, under the identity of a publisher who may be long gone.
  ++retained_ignored_;
  log_line(LogLevel::warn, "retained_request_ignored",
           {{"topic", msg.get_topic()}, {"ignored_so_far", std::to_string(retained_ignored_)}});
  return true;
}

PahoHost::PahoHost(mqtt::async_client& client, Engine& engine, const Settings& settings, PahoHostTimings timings)
    : client_(client), engine_(engine), settings_(settings), timings_(timings) {
  connect_options_ = mqtt::connect_options_builder()
                         .mqtt_version(MQTTVERSION_5)
                         .clean_start(false)
                         // Receive Maximum: without it a broker may cap our in-flight window at its
                         // default (Mosquitto: 20) and queue, then drop, requests past its queue limit.
                         .properties({{mqtt::property::SESSION_EXPIRY_INTERVAL, kSessionExpiry},
                                      {mqtt::property::RECEIVE_MAXIMUM, 65535}})
                         .keep_alive_interval(30s)
                         .finalize();
  // Reconnects are the worker's (not Paho's automatic ones), so that each one presents fresh
  // credentials: a minted token expires, a password file may have been rotated.
  if (settings_.mqtt_password_file.empty() && !settings_.auth_jwt_secret_file.empty()) {
    jwt_secret_ = read_secret_file(settings_.auth_jwt_secret_file);
  } else if (settings_.mqtt_password_file.empty() && !settings_.auth_jwt_public_key_file.empty()) {
    // Without a secret nothing here can sign: connecting without credentials would only be refused.
    throw ConfigError(
        "config key 'mqtt_password_file': required when the bridge has auth_jwt_public_key_file and no "
        "auth_jwt_secret_file (a public key only verifies, the bridge cannot mint its own token): give it "
        "a service token, e.g. from `navietakie-ctl token --private-key-file KEY --role service --sub " +
        settings_.client_id + "`");
  }
  wake_topic_ = Topics(settings_.topic_prefix).bridge_wake(settings_.client_id);
  for (const auto& filter : engine_.request_filters()) {
    filters_.push_back(settings_.share_group.empty() ? filter : "$share/" + settings_.share_group + "/" + filter);
  }
  // Paho callbacks run on its receive thread: they only set flags, never block.
  client_.set_connected_handler([this](const std::string&) {
    set_tcp_nodelay_on_open_sockets();
    {
      std::lock_guard<std::mutex> lock(signal_mutex_);
      resubscribe_ = true;
    }
    signalled_.notify_one();
  });
  client_.set_connection_lost_handler([this](const std::string& cause) {
    log_line(LogLevel::warn, "connection_lost", {{"cause", cause}});
    {
      std::lock_guard<std::mutex> lock(signal_mutex_);
      lost_ = true;
    }
    signalled_.notify_one();
  });
  client_.set_message_callback([this](mqtt::const_message_ptr msg) { arrived(msg); });
}

void PahoHost::arrived(const mqtt::const_message_ptr& msg) {
  last_arrival_ns_ = std::chrono::steady_clock::now().time_since_epoch().count();
  std::lock_guard<std::mutex> lock(arrival_mutex_);
  if (!msg || stored_copy(*msg)) return;
  if (!loop_) {
    held_.push_back(to_request(msg));
    return;
  }
  // Under arrival_mutex_: attach_loop() may be handing the held requests over; these come after.
  std::vector<Request> one;
  one.push_back(to_request(msg));
  loop_->submit(std::move(one));
}

std::size_t PahoHost::attach_loop(EngineLoop* loop) {
  std::lock_guard<std::mutex> lock(arrival_mutex_);
  loop_ = loop;
  const std::size_t held = loop_ ? held_.size() : 0;
  if (held > 0) loop_->submit(std::exchange(held_, {}));
  return held;
}

std::chrono::milliseconds PahoHost::nudge_if_due() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_nudge_) return std::chrono::ceil<std::chrono::milliseconds>(next_nudge_ - now);
  // Set before counting: a publish handed over after the count sees it and wakes this thread.
  awaiting_publishes_ = true;
  const std::size_t pending = client_.get_pending_delivery_tokens().size();
  next_nudge_ = now + kSendNudgeEvery;
  if (pending == 0) {
    stall_nudge_at_ = now + timings_.stall_nudge;
    return timings_.poll;
  }
  awaiting_publishes_ = false;
  // A nudge is a publish too (for the broker as well): one per request under load was a third
  // publish per request. Only a full window makes Paho hold publishes routinely; anything else
  // (a partial socket write) gets a nudge once publishes have been pending for stall_nudge.
  if (pending > receive_maximum_ || now >= stall_nudge_at_) {
    nudge_send_thread(client_, wake_topic_);
    stall_nudge_at_ = now + timings_.stall_nudge;
  }
  return kSendNudgeEvery;
}

void PahoHost::sleep_unless_signalled(std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(signal_mutex_);
  signalled_.wait_for(lock, wait, [this] { return lost_.load() || resubscribe_.load() || published_; });
  published_ = false;
}

bool PahoHost::connect(const std::atomic<bool>& stop) {
  auto backoff = 250ms;
  while (!stop) {
    try {
      set_credentials(connect_options_);
      // Set on the member itself: Paho C++ 1.2.0 loses the properties of connect_options when the
      // object is copied or assigned (its C struct keeps pointing at the old copy), and the broker
      // then sees no Session Expiry (the session ends at disconnect) and no Receive Maximum.
      connect_options_.set_properties(
          {{mqtt::property::SESSION_EXPIRY_INTERVAL, kSessionExpiry}, {mqtt::property::RECEIVE_MAXIMUM, 65535}});
      auto token = client_.connect(connect_options_);
      if (token->wait_for(10s)) {
        const mqtt::connect_response response = token->get_connect_response();
        const auto& props = response.get_properties();
        receive_maximum_ = props.contains(mqtt::property::RECEIVE_MAXIMUM)
                               ? mqtt::get<std::uint16_t>(props, mqtt::property::RECEIVE_MAXIMUM)
                               : 65535;
        log_line(LogLevel::info, "connected",
                 {{"broker", settings_.broker_url},
                  {"client_id", settings_.client_id},
                  {"receive_maximum", std::to_string(receive_maximum_)}});
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
    // Within the broker's auth_max_token_ttl_s (the bridge reads the same key), else it is refused.
    const std::int64_t now = system_clock_ms() / 1000;
    const std::int64_t ttl = std::min<std::int64_t>(kMintedTokenTtl.count(), settings_.auth_max_token_ttl_s);
    password = mint_token(self, jwt_secret_, now + ttl, std::nullopt, now);
  } else {
    return;
  }
  options.set_user_name(settings_.mqtt_username.empty() ? settings_.client_id : settings_.mqtt_username);
  options.set_password(password);
}

void PahoHost::subscribe() {
  try {
    std::vector<int> qos(filters_.size(), kQos);
    // Waited for (bounded), so that "subscribed" and the service's READY=1 mean the broker has it.
    if (!client_.subscribe(mqtt::string_collection::create(filters_), qos)->wait_for(10s)) {
      log_line(LogLevel::error, "subscribe_failed", {{"error", "no SUBACK within 10 s"}});
      resubscribe_ = true;
      return;
    }
    for (const auto& f : filters_) log_line(LogLevel::info, "subscribed", {{"filter", f}});
  } catch (const mqtt::exception& e) {
    log_line(LogLevel::error, "subscribe_failed", {{"error", e.what()}});
    resubscribe_ = true;
  }
}

void PahoHost::publish_all(const std::vector<Publish>& publishes) {
  for (const auto& p : publishes) {
    try {
      client_.publish(to_message(p));
    } catch (const mqtt::exception& e) {
      log_line(LogLevel::error, "publish_failed", {{"topic", p.topic}, {"error", e.what()}});
    }
  }
}

void PahoHost::publish_metrics() {
  std::string metrics = engine_.metrics().to_json();
  log_line(LogLevel::info, "metrics", {{"counters", metrics}});
  publish_all(
      {Publish{Topics(settings_.topic_prefix).bridge_metrics(settings_.client_id), metrics, true, std::nullopt}});
}

bool PahoHost::publish(const std::vector<Publish>& results) {
  {
    std::lock_guard<std::mutex> lock(after_disconnect_mutex_);
    if (after_disconnect_) {
      late_.insert(late_.end(), results.begin(), results.end());
      return true;
    }
  }
  publish_all(results);
  if (awaiting_publishes_.exchange(false)) {
    // The host thread sleeps for a while since nothing was pending: these may fill the window.
    {
      std::lock_guard<std::mutex> lock(signal_mutex_);
      published_ = true;
    }
    signalled_.notify_one();
  }
  return true;
}

void PahoHost::publish_final(const std::vector<Publish>& publishes) {
  try {
    mqtt::async_client final_client(settings_.broker_url, settings_.client_id + "-final",
                                    mqtt::create_options(MQTTVERSION_5));
    auto options = mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).clean_start(true).finalize();
    set_credentials(options);
    if (!final_client.connect(options)->wait_for(5s)) throw std::runtime_error("connect timed out");
    for (const auto& p : publishes) final_client.publish(to_message(p));
    wait_for_pending_publishes(final_client, wake_topic_, 10s);
    final_client.disconnect(5s)->wait_for(10s);
    log_line(LogLevel::info, "published_after_disconnect", {{"publishes", std::to_string(publishes.size())}});
  } catch (const std::exception& e) {
    // The requests are stored: their clients resend and get the original back.
    log_line(LogLevel::warn, "final_publish_failed",
             {{"publishes", std::to_string(publishes.size())}, {"error", e.what()}});
  }
}

bool PahoHost::run(const std::atomic<bool>& stop) {
  if (!connect(stop)) return false;
  EngineLoop loop(engine_, *this, loop_options(settings_));  // publishes the start-up presence first
  // Requests that came with the session, before the loop: handed over first. And whatever way
  // run() ends, the receive thread stops submitting before the loop is gone.
  attach_loop(&loop);
  struct Detach {
    PahoHost& host;
    ~Detach() { host.attach_loop(nullptr); }
  } detach{*this};
  auto next_metrics = std::chrono::steady_clock::now() + timings_.metrics_every;
  ServiceNotifier service;
  bool ready = false;
  while (!stop) {
    if (lost_.exchange(false) && !client_.is_connected() && !connect(stop)) break;
    if (resubscribe_.exchange(false)) subscribe();
    // The engine runs and the request topics are subscribed (now, or kept by the broker's session).
    if (!ready && !resubscribe_) {
      service.ready();
      ready = true;
    }
    service.watchdog();
    const auto wait = std::min(nudge_if_due(), timings_.poll);
    if (std::chrono::steady_clock::now() >= next_metrics) {
      publish_metrics();
      next_metrics += timings_.metrics_every;
    }
    sleep_unless_signalled(std::max(1ms, wait));
  }
  service.stopping();
  // Paho acknowledged (PUBACK) every request the loop has: answer them, and those still coming,
  // before leaving, until none has come for a moment (bounded).
  const auto drain_until = std::chrono::steady_clock::now() + timings_.drain_max;
  const auto quiet = [this] {
    const auto last = std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(last_arrival_ns_.load()));
    return std::chrono::steady_clock::now() - last >= timings_.drain_quiet;
  };
  while (std::chrono::steady_clock::now() < drain_until && !quiet()) {
    std::this_thread::sleep_for(std::min(nudge_if_due(), 20ms));
  }
  // From here requests wait in held_: their results need the connection that the DISCONNECT ends.
  attach_loop(nullptr);
  loop.wait_idle(timings_.drain_max);
  std::uint64_t retained_ignored = 0;
  {
    std::lock_guard<std::mutex> lock(arrival_mutex_);
    retained_ignored = retained_ignored_;
  }
  log_line(
      LogLevel::info, "stopping",
      {{"metrics", engine_.metrics().to_json()}, {"retained_requests_ignored", std::to_string(retained_ignored)}});
  try {
    // Lets in-flight publishes complete first. The session expiry is repeated in the DISCONNECT:
    // without it Mosquitto 2.0.11 ended the session at a clean disconnect (CONNACK "session
    // present" 0 at the next start), dropping the requests published while the bridge was away.
    auto options = mqtt::disconnect_options_builder()
                       .timeout(5s)
                       .properties({{mqtt::property::SESSION_EXPIRY_INTERVAL, kSessionExpiry}})
                       .finalize();
    client_.disconnect(options)->wait_for(10s);
  } catch (const mqtt::exception& e) {
    log_line(LogLevel::warn, "disconnect_failed", {{"error", e.what()}});
  }
  // What arrived after the drain, until the DISCONNECT, was acknowledged too: commit it, and
  // send its replies and events over a short second connection that subscribes to nothing (the
  // session, and the requests it keeps for the next start, stay untouched).
  {
    std::lock_guard<std::mutex> lock(after_disconnect_mutex_);
    after_disconnect_ = true;
  }
  const std::size_t late_requests = attach_loop(&loop);
  attach_loop(nullptr);
  loop.stop();
  if (late_requests > 0)
    log_line(LogLevel::info, "handled_after_disconnect", {{"requests", std::to_string(late_requests)}});
  std::vector<Publish> late;
  {
    std::lock_guard<std::mutex> lock(after_disconnect_mutex_);
    late.swap(late_);
  }
  if (!late.empty()) publish_final(late);
  return true;
}

}  // namespace navietakie
