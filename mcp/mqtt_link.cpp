#include "mcp/mqtt_link.hpp"

#include <algorithm>
#include <utility>

namespace navietakie::mcp {
namespace {

// How long the retained presence may take after the SUBACK: the broker sends retained messages
// right after it, so this only bounds a booking that has none.
constexpr std::chrono::milliseconds kRetainedGrace{1000};

bool refused(const mqtt::token_ptr& token) {
  const auto response = token->get_subscribe_response();  // by value: keep it while reading it
  for (const auto code : response.get_reason_codes()) {
    if (code >= 0x80) return true;
  }
  return false;
}

}  // namespace

MqttLink::MqttLink(LinkOptions options)
    : options_(std::move(options)),
      topics_(options_.topic_prefix),
      reply_prefix_(topics_.replies(options_.client_id) + "/"),
      client_(options_.broker_url, options_.client_id, mqtt::create_options(MQTTVERSION_5)) {
  client_.set_message_callback([this](mqtt::const_message_ptr message) { arrived(message); });
}

MqttLink::~MqttLink() {
  try {
    if (client_.is_connected()) client_.disconnect()->wait_for(options_.timeout);
  } catch (const mqtt::exception&) {  // going away anyway
  }
}

void MqttLink::ensure_connected() {
  if (client_.is_connected()) return;
  auto builder = mqtt::connect_options_builder()
                     .mqtt_version(MQTTVERSION_5)
                     .clean_start(true)
                     .connect_timeout(std::chrono::duration_cast<std::chrono::seconds>(options_.timeout) + std::chrono::seconds(1))
                     .user_name(options_.client_id);
  if (!options_.token.empty()) builder.password(options_.token);
  try {
    if (!client_.connect(builder.finalize())->wait_for(options_.timeout)) {
      throw LinkError("no answer from " + options_.broker_url + " within the timeout");
    }
    const auto subscribed = client_.subscribe(reply_prefix_ + "#", 1);
    if (!subscribed->wait_for(options_.timeout)) throw LinkError("subscribing to the reply topic timed out");
    if (refused(subscribed)) throw LinkError("the broker refused the subscription to " + reply_prefix_ + "#");
  } catch (const mqtt::exception& error) {
    throw LinkError("cannot connect to " + options_.broker_url + ": " + error.what());
  }
}

Json MqttLink::request(const std::string& booking, Action action, const Json& body) {
  ensure_connected();
  const std::string correlation = std::to_string(next_correlation_++);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    awaited_correlation_ = correlation;
    reply_.reset();
  }
  const mqtt::properties properties{{mqtt::property::RESPONSE_TOPIC, reply_prefix_ + "r"},
                                    {mqtt::property::CORRELATION_DATA, correlation}};
  const auto message = mqtt::message_ptr_builder()
                           .topic(topics_.request(booking, action))
                           .payload(body.dump())
                           .qos(1)
                           .properties(properties)
                           .finalize();
  try {
    if (!client_.publish(message)->wait_for(options_.timeout)) throw LinkError("the request was not acknowledged in time");
  } catch (const mqtt::exception& error) {
    throw LinkError(std::string("the request was refused: ") + error.what());
  }
  std::unique_lock<std::mutex> lock(mutex_);
  const bool answered = arrived_.wait_for(lock, options_.timeout, [&] { return reply_.has_value(); });
  awaited_correlation_.reset();
  if (!answered) throw LinkError("no reply within the timeout (is navietakie running on this broker and prefix?)");
  try {
    return Json::parse(*reply_);
  } catch (const Json::parse_error&) {
    throw LinkError("the reply is not JSON");
  }
}

std::optional<Json> MqttLink::retained_presence(const std::string& booking) {
  ensure_connected();
  const std::string topic = topics_.presence_events(booking);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    presence_topic_ = topic;
    presence_.reset();
  }
  std::optional<std::string> payload;
  try {
    const auto subscribed = client_.subscribe(topic, 1);
    if (!subscribed->wait_for(options_.timeout)) throw LinkError("subscribing to " + topic + " timed out");
    if (refused(subscribed)) throw LinkError("the broker refused the subscription to " + topic);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      arrived_.wait_for(lock, std::min(options_.timeout, kRetainedGrace), [&] { return presence_.has_value(); });
      payload = presence_;
      presence_topic_.reset();
    }
    client_.unsubscribe(topic)->wait_for(options_.timeout);
  } catch (const mqtt::exception& error) {
    std::lock_guard<std::mutex> lock(mutex_);
    presence_topic_.reset();
    throw LinkError(std::string("reading the presence failed: ") + error.what());
  }
  if (!payload) return std::nullopt;
  try {
    return Json::parse(*payload);
  } catch (const Json::parse_error&) {
    throw LinkError("the retained presence is not JSON");
  }
}

// Paho's receive thread: copies what is awaited and wakes the caller, nothing more.
void MqttLink::arrived(const mqtt::const_message_ptr& message) {
  const std::string& topic = message->get_topic();
  std::lock_guard<std::mutex> lock(mutex_);
  if (presence_topic_ && topic == *presence_topic_) {
    presence_ = message->to_string();
  } else if (awaited_correlation_ && topic.compare(0, reply_prefix_.size(), reply_prefix_) == 0) {
    const auto& properties = message->get_properties();
    if (!properties.contains(mqtt::property::CORRELATION_DATA)) return;
    if (mqtt::get<mqtt::binary>(properties, mqtt::property::CORRELATION_DATA) != *awaited_correlation_) return;
    reply_ = message->to_string();
  } else {
    return;
  }
  arrived_.notify_all();
}

}  // namespace navietakie::mcp
