#include "support/mqtt_client.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "support/processes.hpp"

namespace navietakie::test {

namespace {

int paho_version(MqttVersion version) { return version == MqttVersion::v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1; }

std::string printable(const std::string& bytes, std::size_t max = 300) {
  std::string out;
  for (char c : bytes.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out.push_back(c);
    } else {
      static const char digits[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(digits[u >> 4]);
      out.push_back(digits[u & 0xf]);
    }
  }
  if (bytes.size() > max) out += "...(" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

// Paho reports failures by exception from wait(); turn them into one message naming the operation.
template <class Token>
void wait_token(const Token& token, std::chrono::milliseconds timeout, const std::string& what) {
  bool done = false;
  try {
    done = token->wait_for(timeout);
  } catch (const mqtt::exception& e) {
    throw std::runtime_error(what + " failed: " + e.what());
  }
  if (!done) throw std::runtime_error(what + " timed out after " + std::to_string(timeout.count()) + " ms");
}

std::atomic<std::uint64_t> correlation_counter{0};

// Paho C (1.3.12) notices a new connecting socket only when its receive thread's poll() returns,
// which can take a full second per connect step while other clients of the process are idle
// (paho.mqtt.c #1430). A QoS 1 publish from a live client brings a PUBACK, which ends that poll.
// Every connected TestClient is registered here so that a connecting one can wake the thread.
class LiveClients {
 public:
  void add(mqtt::async_client* client) {
    std::lock_guard<std::mutex> lock(mutex_);
    clients_.push_back(client);
  }
  void remove(mqtt::async_client* client) {
    std::lock_guard<std::mutex> lock(mutex_);
    clients_.erase(std::remove(clients_.begin(), clients_.end(), client), clients_.end());
  }
  void wake_receive_thread() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto* client : clients_) {
      try {
        if (client->is_connected()) {
          client->publish(mqtt::message::create("navietakie-test/wake", "", 0, 1, false));
          return;
        }
      } catch (const mqtt::exception&) {
        // That client is going away; try the next one.
      }
    }
  }

 private:
  std::mutex mutex_;
  std::vector<mqtt::async_client*> clients_;
};

LiveClients& live_clients() {
  static LiveClients clients;
  return clients;
}

}  // namespace

json Received::body() const {
  try {
    return json::parse(payload);
  } catch (const json::exception& e) {
    throw std::runtime_error("payload on " + topic + " is not JSON (" + e.what() + "): " + printable(payload));
  }
}

Predicate on_topic(std::string topic) {
  return [topic = std::move(topic)](const Received& m) { return m.topic == topic; };
}

Predicate on_topic_json(std::string topic, std::function<bool(const json&)> test) {
  return [topic = std::move(topic), test = std::move(test)](const Received& m) {
    if (m.topic != topic) return false;
    const json body = json::parse(m.payload, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return false;
    try {
      return test(body);
    } catch (const json::exception&) {
      return false;  // a field of another type than the predicate expects: not a match
    }
  };
}

TestClient::TestClient(const std::string& server_uri, ClientOptions options) : options_(std::move(options)) {
  if (options_.client_id.empty()) options_.client_id = "nt-test-" + random_hex(12);
  client_ = std::make_unique<mqtt::async_client>(server_uri, options_.client_id,
                                                 mqtt::create_options(paho_version(options_.version)));
  client_->set_message_callback([this](mqtt::const_message_ptr message) { on_message(std::move(message)); });

  auto connect =
      mqtt::connect_options_builder().mqtt_version(paho_version(options_.version)).keep_alive_interval(30s).finalize();
  connect.set_connect_timeout(options_.connect_timeout);
  if (options_.version == MqttVersion::v5) {
    connect.set_clean_start(options_.clean_start);
    if (!options_.clean_start) connect.set_properties({{mqtt::property::SESSION_EXPIRY_INTERVAL, 60}});
  } else
    connect.set_clean_session(true);
  if (options_.username) connect.set_user_name(*options_.username);
  if (options_.password) connect.set_password(*options_.password);
  if (!options_.trust_store.empty()) {
    connect.set_ssl(mqtt::ssl_options_builder()
                        .trust_store(options_.trust_store)
                        .enable_server_cert_auth(true)
                        .verify(true)
                        .finalize());
  }
  if (options_.will) {
    connect.set_will(
        mqtt::will_options(options_.will->topic, options_.will->payload, options_.will->qos, options_.will->retain));
  }
  const std::string what = "connect " + options_.client_id + " to " + server_uri;
  auto token = client_->connect(connect);
  const auto deadline = std::chrono::steady_clock::now() + options_.connect_timeout + 1s;
  try {
    while (!token->wait_for(20ms)) {
      if (std::chrono::steady_clock::now() >= deadline) throw std::runtime_error(what + " timed out");
      live_clients().wake_receive_thread();
    }
  } catch (const mqtt::exception& e) {
    throw std::runtime_error(what + " failed: " + e.what());
  }
  live_clients().add(client_.get());
}

TestClient::~TestClient() {
  live_clients().remove(client_.get());
  try {
    if (client_->is_connected()) client_->disconnect(0)->wait_for(2s);
  } catch (...) {
    // Best effort: the broker drops the session when the socket closes anyway.
  }
}

void TestClient::on_message(mqtt::const_message_ptr message) {
  // Runs on Paho's receive thread: copy out, append, notify. Never waits for a test.
  Received received;
  received.topic = message->get_topic();
  received.payload = message->get_payload_str();
  received.qos = message->get_qos();
  received.retained = message->is_retained();
  const mqtt::properties& props = message->get_properties();
  if (props.contains(mqtt::property::CORRELATION_DATA)) {
    received.correlation_data = mqtt::get<std::string>(props, mqtt::property::CORRELATION_DATA);
  }
  if (props.contains(mqtt::property::RESPONSE_TOPIC)) {
    received.response_topic = mqtt::get<std::string>(props, mqtt::property::RESPONSE_TOPIC);
  }
  const std::size_t user_count = props.count(mqtt::property::USER_PROPERTY);
  for (std::size_t i = 0; i < user_count; ++i) {
    auto [name, value] = mqtt::get<mqtt::string_pair>(props, mqtt::property::USER_PROPERTY, i);
    received.user_properties.emplace_back(std::move(name), std::move(value));
  }
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    inbox_.push_back(std::move(received));
  }
  inbox_changed_.notify_all();
}

void TestClient::subscribe(const std::string& filter, int qos) {
  wait_token(client_->subscribe(filter, qos), 5s, options_.client_id + " subscribe " + filter);
}

int TestClient::subscribe_reason(const std::string& filter, int qos) {
  auto token = client_->subscribe(filter, qos);
  try {
    if (!token->wait_for(5s)) throw std::runtime_error(options_.client_id + " subscribe " + filter + " timed out");
  } catch (const mqtt::exception& e) {
    return e.get_reason_code() != 0 ? e.get_reason_code() : 0x80;
  }
  if (options_.version == MqttVersion::v5) {
    const auto codes = token->get_subscribe_response().get_reason_codes();
    return codes.empty() ? 0x80 : static_cast<int>(codes.front());
  }
  return token->get_return_code();
}

int TestClient::publish_reason(const std::string& topic, const std::string& payload, const PublishOptions& options) {
  PublishOptions qos1 = options;
  qos1.qos = 1;
  auto token = publish_async(topic, payload, qos1);
  try {
    if (!token->wait_for(10s)) throw std::runtime_error(options_.client_id + " publish to " + topic + " timed out");
  } catch (const mqtt::exception& e) {
    return e.get_reason_code() != 0 ? e.get_reason_code() : -1;
  }
  return token->get_reason_code();
}

void TestClient::unsubscribe(const std::string& filter) {
  wait_token(client_->unsubscribe(filter), 5s, options_.client_id + " unsubscribe " + filter);
}

mqtt::delivery_token_ptr TestClient::publish_async(const std::string& topic, const std::string& payload,
                                                   const PublishOptions& options) {
  auto message = mqtt::message::create(topic, payload.data(), payload.size(), options.qos, options.retain);
  if (options.response_topic || options.correlation_data || !options.user_properties.empty()) {
    if (options_.version != MqttVersion::v5) throw std::logic_error("v5 properties on a 3.1.1 client");
    mqtt::properties props;
    for (const auto& [name, value] : options.user_properties) {
      props.add(mqtt::property(mqtt::property::USER_PROPERTY, name, value));
    }
    if (options.response_topic) props.add(mqtt::property(mqtt::property::RESPONSE_TOPIC, *options.response_topic));
    if (options.correlation_data) {
      props.add(mqtt::property(mqtt::property::CORRELATION_DATA, *options.correlation_data));
    }
    message->set_properties(std::move(props));
  }
  try {
    return client_->publish(std::move(message));
  } catch (const mqtt::exception& e) {
    throw std::runtime_error(options_.client_id + " publish to " + topic + " failed: " + e.what());
  }
}

void TestClient::publish(const std::string& topic, const std::string& payload, const PublishOptions& options) {
  wait_token(publish_async(topic, payload, options), 10s, options_.client_id + " publish to " + topic);
}

std::optional<Received> TestClient::wait_for(const Predicate& match, std::chrono::milliseconds timeout) const {
  auto found = wait_for_count(match, 1, timeout);
  if (found.empty()) return std::nullopt;
  return std::move(found.front());
}

std::vector<Received> TestClient::wait_for_count(const Predicate& match, std::size_t count,
                                                 std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<Received> matches;
  std::size_t scanned = 0;
  for (;;) {
    // Copy the new arrivals under the lock, test them outside it: the callback never waits on a predicate.
    std::vector<Received> fresh;
    {
      std::unique_lock<std::mutex> lock(inbox_mutex_);
      inbox_changed_.wait_until(lock, deadline, [&] { return inbox_.size() > scanned; });
      fresh.assign(inbox_.begin() + static_cast<std::ptrdiff_t>(scanned), inbox_.end());
      scanned = inbox_.size();
    }
    for (auto& message : fresh) {
      if (match(message)) {
        matches.push_back(std::move(message));
        if (matches.size() >= count) return matches;
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) return matches;
  }
}

std::vector<Received> TestClient::received(const Predicate& match) const {
  std::vector<Received> all;
  {
    std::lock_guard<std::mutex> lock(inbox_mutex_);
    all = inbox_;
  }
  if (!match) return all;
  std::vector<Received> matches;
  for (auto& message : all) {
    if (match(message)) matches.push_back(std::move(message));
  }
  return matches;
}

std::size_t TestClient::count(const Predicate& match) const { return received(match).size(); }

std::string TestClient::next_reply_topic() {
  return options_.topic_prefix + "/replies/" + options_.client_id + "/" + std::to_string(++reply_counter_);
}

std::string TestClient::next_correlation() {
  return "corr-" + random_hex(8) + "-" + std::to_string(++correlation_counter);
}

void TestClient::ensure_reply_subscription() {
  if (reply_subscribed_) return;
  subscribe(options_.topic_prefix + "/replies/" + options_.client_id + "/#", 1);
  reply_subscribed_ = true;
}

PendingRequest TestClient::send_request(const std::string& topic, const std::string& payload, int qos) {
  if (options_.version != MqttVersion::v5) throw std::logic_error("send_request needs an MQTT v5 client");
  ensure_reply_subscription();
  PendingRequest pending{topic, next_reply_topic(), next_correlation(), false};
  PublishOptions options;
  options.qos = qos;
  options.response_topic = pending.reply_topic;
  options.correlation_data = pending.correlation;
  publish_async(topic, payload, options);
  return pending;
}

PendingRequest TestClient::send_request_v311(const std::string& topic, json payload, int qos) {
  ensure_reply_subscription();
  PendingRequest pending{topic, next_reply_topic(), next_correlation(), true};
  payload["reply_to"] = pending.reply_topic;
  payload["correlation_id"] = pending.correlation;
  PublishOptions options;
  options.qos = qos;
  publish_async(topic, payload.dump(), options);
  return pending;
}

std::optional<json> TestClient::try_await_reply(const PendingRequest& pending,
                                                std::chrono::milliseconds timeout) const {
  auto reply = wait_for(on_topic(pending.reply_topic), timeout);
  if (!reply) return std::nullopt;
  json body = reply->body();
  // The reply topic is unique per request; the correlation must still be the one sent.
  if (pending.v311_style) {
    if (!body.is_object() || body.value("correlation_id", json()) != json(pending.correlation)) {
      throw std::runtime_error("reply on " + pending.reply_topic + " does not echo correlation_id " +
                               pending.correlation + ": " + reply->payload);
    }
  } else if (reply->correlation_data != pending.correlation) {
    throw std::runtime_error("reply on " + pending.reply_topic + " has correlation data '" +
                             printable(reply->correlation_data.value_or("<none>")) + "', expected '" +
                             pending.correlation + "': " + reply->payload);
  }
  return body;
}

json TestClient::await_reply(const PendingRequest& pending, std::chrono::milliseconds timeout) const {
  if (auto reply = try_await_reply(pending, timeout)) return std::move(*reply);
  throw std::runtime_error("no reply within " + std::to_string(timeout.count()) + " ms to the request on " +
                           pending.request_topic + " (reply topic " + pending.reply_topic + ", correlation " +
                           pending.correlation + ")");
}

json TestClient::request(const std::string& topic, const json& payload, std::chrono::milliseconds timeout) {
  return await_reply(send_request(topic, payload.dump()), timeout);
}

json TestClient::request_raw(const std::string& topic, const std::string& payload, std::chrono::milliseconds timeout) {
  return await_reply(send_request(topic, payload), timeout);
}

json TestClient::request_v311(const std::string& topic, const json& payload, std::chrono::milliseconds timeout) {
  return await_reply(send_request_v311(topic, payload), timeout);
}

void TestClient::disconnect() { wait_token(client_->disconnect(), 5s, options_.client_id + " disconnect"); }

}  // namespace navietakie::test
