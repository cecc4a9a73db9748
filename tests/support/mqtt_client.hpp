// An MQTT client for the integration tests (Eclipse Paho C++): connect, subscribe, publish, and an
// inbox of everything received, filled from Paho's callback without blocking it. Request/response
// in both styles of the contract: MQTT v5 properties, or 3.1.1 payload fields.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

namespace navietakie::test {

using json = nlohmann::json;
using namespace std::chrono_literals;

enum class MqttVersion { v311, v5 };

struct Will {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retain = false;
};

struct ClientOptions {
  MqttVersion version = MqttVersion::v5;
  std::string client_id;  // empty: "nt-test-<random>"
  std::optional<Will> will;
  std::string topic_prefix = "navietakie/v1";
  std::chrono::milliseconds connect_timeout = 5s;
  // Credentials (a JWT as the password when authentication is on); unset: none sent.
  std::optional<std::string> username{};
  std::optional<std::string> password{};
  // TLS (mqtts://, ssl://, wss:// URIs): the CA certificate (PEM) the server's certificate must
  // chain to; its name must match the host of the URI. Empty: no TLS options.
  std::string trust_store{};
  // false (MQTT v5 only): resume the session of this client id, which the broker keeps for a minute
  // after a disconnect (subscriptions included). Last: aggregate initialisers list the fields above.
  bool clean_start = true;
};

// One received PUBLISH, copied out of Paho's message.
struct Received {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retained = false;
  std::optional<std::string> correlation_data;
  std::optional<std::string> response_topic;
  std::vector<std::pair<std::string, std::string>> user_properties;

  // The payload as JSON; throws (naming topic and payload) when it is not JSON.
  json body() const;
};

using Predicate = std::function<bool(const Received&)>;

// Matches messages on exactly this topic.
Predicate on_topic(std::string topic);
// Matches messages on this topic whose JSON payload satisfies `test` (non-JSON payloads never match).
Predicate on_topic_json(std::string topic, std::function<bool(const json&)> test);

struct PublishOptions {
  int qos = 1;
  bool retain = false;
  std::optional<std::string> response_topic;                           // MQTT v5 only
  std::optional<std::string> correlation_data;                         // MQTT v5 only
  std::vector<std::pair<std::string, std::string>> user_properties{};  // MQTT v5 only
};

// A request on its way: where and with what the reply is expected.
struct PendingRequest {
  std::string request_topic;
  std::string reply_topic;
  std::string correlation;  // v5 Correlation Data, or the payload's correlation_id (3.1.1 style)
  bool v311_style = false;
};

class TestClient {
 public:
  // Connects (bounded by options.connect_timeout) or throws.
  TestClient(const std::string& server_uri, ClientOptions options = {});
  ~TestClient();
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  const std::string& client_id() const { return options_.client_id; }
  MqttVersion version() const { return options_.version; }
  bool connected() const { return client_->is_connected(); }

  // Waits (bounded) for the SUBACK; throws on failure or timeout.
  void subscribe(const std::string& filter, int qos = 1);
  void unsubscribe(const std::string& filter);
  // Subscribes and returns the broker's SUBACK reason code (0-2: granted QoS; >= 0x80: refused),
  // without throwing on a refusal; throws on timeout.
  int subscribe_reason(const std::string& filter, int qos = 1);
  // Publishes at QoS 1 and returns the PUBACK reason code (0 or 0x10: accepted; 0x87: not
  // authorized), without throwing on a refusal; throws on timeout.
  int publish_reason(const std::string& topic, const std::string& payload, const PublishOptions& options = {});

  // Publishes and waits (bounded) until it is delivered to the broker (PUBACK at QoS 1).
  void publish(const std::string& topic, const std::string& payload, const PublishOptions& options = {});
  // Publishes without waiting; Paho keeps the order of publishes of one client.
  mqtt::delivery_token_ptr publish_async(const std::string& topic, const std::string& payload,
                                         const PublishOptions& options = {});

  // The first message (in arrival order) matching `match`, waiting at most `timeout`.
  std::optional<Received> wait_for(const Predicate& match, std::chrono::milliseconds timeout) const;
  // Waits until `count` messages match (or `timeout`); returns the matches, possibly fewer.
  std::vector<Received> wait_for_count(const Predicate& match, std::size_t count,
                                       std::chrono::milliseconds timeout) const;
  // Everything received so far that matches (all when `match` is empty).
  std::vector<Received> received(const Predicate& match = {}) const;
  std::size_t count(const Predicate& match) const;

  // A fresh reply topic of this client: {prefix}/replies/{client_id}/{n}.
  std::string next_reply_topic();
  // A fresh correlation id, unique across the test process.
  std::string next_correlation();

  // MQTT v5 request: Response Topic and Correlation Data set; does not wait.
  PendingRequest send_request(const std::string& topic, const std::string& payload, int qos = 1);
  // 3.1.1-style request: `reply_to` and `correlation_id` are added to the JSON object; does not wait.
  PendingRequest send_request_v311(const std::string& topic, json payload, int qos = 1);
  // The reply to `pending` (matching topic and correlation); nullopt on timeout.
  std::optional<json> try_await_reply(const PendingRequest& pending, std::chrono::milliseconds timeout) const;
  // As try_await_reply, but a timeout throws (which fails the calling test) naming the request.
  json await_reply(const PendingRequest& pending, std::chrono::milliseconds timeout = 5s) const;

  json request(const std::string& topic, const json& payload, std::chrono::milliseconds timeout = 5s);
  json request_raw(const std::string& topic, const std::string& payload, std::chrono::milliseconds timeout = 5s);
  json request_v311(const std::string& topic, const json& payload, std::chrono::milliseconds timeout = 5s);

  // A normal DISCONNECT: the broker drops the Will. (Paho C++ 1.2 cannot send DISCONNECT with reason
  // 0x04, its disconnect options ignore the reason code; for a dropped link use
  // System::start_abrupt_client and kill it.)
  void disconnect();

 private:
  void on_message(mqtt::const_message_ptr message);
  void ensure_reply_subscription();

  ClientOptions options_;
  std::unique_ptr<mqtt::async_client> client_;

  mutable std::mutex inbox_mutex_;
  mutable std::condition_variable inbox_changed_;
  std::vector<Received> inbox_;

  std::atomic<std::uint64_t> reply_counter_{0};
  bool reply_subscribed_ = false;
};

}  // namespace navietakie::test
