#include "edge/upstream.hpp"

#include <mqtt/async_client.h>

#include <chrono>
#include <fstream>
#include <iterator>

#include "bridge/paho_compat.hpp"
#include "core/log.hpp"
#include "core/topics.hpp"

namespace navietakie {
namespace {

using namespace std::chrono_literals;

std::string read_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read upstream_token_file '" + path + "'");
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

UpstreamLink::UpstreamLink(const Settings& settings, std::function<void()> notify)
    : settings_(settings),
      notify_(std::move(notify)),
      // Room for a drain of the outbox while the window is full (Paho's default is 100).
      client_(std::make_unique<mqtt::async_client>(settings.upstream_url, settings.upstream_client_id,
                                                   mqtt::create_options(MQTTVERSION_5, 100000))),
      nudge_topic_(Topics(settings.topic_prefix).bridge_wake(settings.upstream_client_id)) {
  quiet_paho_trace();  // Paho C's trace bookkeeping costs the car CPU on every packet (bridge/paho_compat.hpp)
  client_->set_connected_handler([this](const std::string&) {
    set_tcp_nodelay_on_open_sockets();
    reported_up_.store(true, std::memory_order_relaxed);
    push(LinkEvent{LinkEvent::Kind::connected, {}, {}, std::nullopt, false});
  });
  client_->set_connection_lost_handler(
      [this](const std::string& cause) {
        reported_up_.store(false, std::memory_order_relaxed);
        push(LinkEvent{LinkEvent::Kind::lost, cause, {}, std::nullopt, false});
      });
  client_->set_message_callback([this](mqtt::const_message_ptr msg) {
    LinkEvent e{LinkEvent::Kind::message, msg->get_topic(), msg->to_string(), std::nullopt, msg->is_retained()};
    const auto& props = msg->get_properties();
    if (props.contains(mqtt::property::CORRELATION_DATA)) {
      e.correlation_data = mqtt::get<mqtt::binary>(props, mqtt::property::CORRELATION_DATA);
    }
    push(std::move(e));
  });
}

UpstreamLink::~UpstreamLink() { stop(); }

void UpstreamLink::push(LinkEvent event) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(std::move(event));
  }
  notify_();
}

std::vector<LinkEvent> UpstreamLink::take_events() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(events_, {});
}

bool UpstreamLink::up() const { return client_->is_connected(); }

bool UpstreamLink::connect() {
  if (up() || (connecting_ && !connecting_->is_complete())) return true;
  try {
    // A clean session: after a reconnect the car resubscribes and catches up with after_seq,
    // so nothing needs to wait in the cloud's broker for it.
    mqtt::connect_options options = mqtt::connect_options_builder()
                                        .mqtt_version(MQTTVERSION_5)
                                        .clean_start(true)
                                        .keep_alive_interval(10s)
                                        .connect_timeout(5s)
                                        .finalize();
    if (!settings_.upstream_token_file.empty()) {
      options.set_user_name(settings_.upstream_client_id);
      options.set_password(read_token_file(settings_.upstream_token_file));
    }
    connecting_ = client_->connect(options);
    return true;
  } catch (const std::exception& e) {
    connecting_.reset();
    log_line(LogLevel::warn, "upstream_connect_failed", {{"upstream", settings_.upstream_url}, {"error", e.what()}});
    return false;
  }
}

bool UpstreamLink::connect_failed() {
  if (!connecting_ || !connecting_->is_complete()) return false;
  const bool failed = !up();
  if (failed) {
    int rc = 0;
    try {
      rc = connecting_->get_return_code();
    } catch (...) {
    }
    log_line(LogLevel::debug, "upstream_connect_failed",
             {{"upstream", settings_.upstream_url}, {"rc", std::to_string(rc)}});
  }
  connecting_.reset();
  return failed;
}

bool UpstreamLink::publish(const std::string& topic, const std::string& payload, bool retain,
                           const std::optional<std::string>& response_topic,
                           const std::optional<std::string>& correlation_data) {
  if (!up()) return false;
  try {
    auto msg = mqtt::make_message(topic, payload, 1, retain);
    mqtt::properties props;
    if (response_topic) props.add(mqtt::property(mqtt::property::RESPONSE_TOPIC, *response_topic));
    if (correlation_data) props.add(mqtt::property(mqtt::property::CORRELATION_DATA, *correlation_data));
    msg->set_properties(props);
    client_->publish(msg);
    return true;
  } catch (const mqtt::exception& e) {
    log_line(LogLevel::warn, "upstream_publish_failed", {{"topic", topic}, {"error", e.what()}});
    return false;
  }
}

bool UpstreamLink::subscribe(const std::vector<std::string>& filters) {
  if (filters.empty()) return true;
  if (!up()) return false;
  try {
    client_->subscribe(mqtt::string_collection::create(filters), std::vector<int>(filters.size(), 1));
    return true;
  } catch (const mqtt::exception& e) {
    log_line(LogLevel::warn, "upstream_subscribe_failed", {{"error", e.what()}});
    return false;
  }
}

bool UpstreamLink::nudge() { return nudge_send_thread(*client_, nudge_topic_); }

void UpstreamLink::stop() {
  reported_up_.store(false, std::memory_order_relaxed);
  try {
    if (client_->is_connected()) client_->disconnect(2s)->wait_for(3s);
  } catch (const std::exception& e) {
    log_line(LogLevel::debug, "upstream_disconnect_failed", {{"error", e.what()}});
  }
}

}  // namespace navietakie
