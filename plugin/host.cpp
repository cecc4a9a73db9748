// Include order matters: mosquitto_broker.h before mosquitto_plugin.h.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "plugin/host.hpp"

#include "bridge/log.hpp"

namespace navietakie {
namespace {

constexpr int kQos = 1;

// Copies a string property out of broker-owned memory; the copy the broker made is freed with
// the broker's allocator.
std::optional<std::string> read_string(const mosquitto_property* props, int id) {
  char* value = nullptr;
  if (!mosquitto_property_read_string(props, id, &value, false) || !value) return std::nullopt;
  std::string copy(value);
  mosquitto_free(value);
  return copy;
}

std::optional<std::string> read_binary(const mosquitto_property* props, int id) {
  void* value = nullptr;
  uint16_t len = 0;
  if (!mosquitto_property_read_binary(props, id, &value, &len, false)) return std::nullopt;
  std::string copy(static_cast<const char*>(value), len);
  mosquitto_free(value);
  return copy;
}

// A request as the broker handed it over, copied out of broker-owned memory.
Request copy_request(const mosquitto* client, const char* topic, const void* payload, uint32_t payloadlen,
                     const mosquitto_property* props) {
  Request r;
  r.topic = topic;
  if (payload && payloadlen > 0) r.payload.assign(static_cast<const char*>(payload), payloadlen);
  r.response_topic = read_string(props, MQTT_PROP_RESPONSE_TOPIC);
  r.correlation_data = read_binary(props, MQTT_PROP_CORRELATION_DATA);
  if (const char* id = mosquitto_client_id(client)) r.client_id = id;
  return r;
}

EngineOptions plugin_engine_options(const Settings& settings) {
  EngineOptions options = engine_options(settings);
  options.offline_at_start = true;  // the plugin starts with the broker: nobody is connected
  return options;
}

}  // namespace

PluginHost::PluginHost(const Settings& settings)
    : settings_(settings),
      store_(open_lmdb_store(lmdb_options(settings))),
      engine_(std::make_unique<Engine>(*store_, plugin_engine_options(settings))),
      topics_(settings.topic_prefix) {}

PluginHost::~PluginHost() {
  // The broker is stopping: commit what was acknowledged since the last tick. Its replies can no
  // longer be delivered; the clients resend and get `duplicate`.
  if (!pending_.empty()) {
    engine_->handle(pending_);
    log_line(LogLevel::info, "flushed_at_shutdown", {{"requests", std::to_string(pending_.size())}});
  }
  log_line(LogLevel::info, "stopping", {{"metrics", engine_->metrics().to_json()}});
}

void PluginHost::on_message(mosquitto_evt_message& event) {
  if (!event.topic || !topics_.parse_request(event.topic)) return;
  // A request is consumed here: never kept as a retained message.
  event.retain = false;
  pending_.push_back(copy_request(event.client, event.topic, event.payload, event.payloadlen, event.properties));
}

int PluginHost::on_acl_check(const mosquitto_evt_acl_check& event) {
  if (!event.topic || !topics_.parse_request(event.topic)) return MOSQ_ERR_SUCCESS;
  if (event.access == MOSQ_ACL_READ) return MOSQ_ERR_ACL_DENIED;
  // 2.0.11 sends a client's Will without a MESSAGE event: right after its DISCONNECT event, the
  // only trace is this write check. A Will on a request topic (presence offline) is a request.
  const char* id = mosquitto_client_id(event.client);
  if (event.access == MOSQ_ACL_WRITE && id && just_disconnected_.count(id)) {
    pending_.push_back(copy_request(event.client, event.topic, event.payload, event.payloadlen, event.properties));
  }
  // Open mode. Not DEFER: in 2.0.11, when every ACL plugin defers, the broker denies.
  return MOSQ_ERR_SUCCESS;
}

void PluginHost::on_disconnect(const char* client_id) {
  if (!client_id) return;
  disconnected_.emplace_back(client_id);
  just_disconnected_.insert(client_id);
}

void PluginHost::on_tick() {
  if (!started_) {
    started_ = true;
    publish_all(engine_->start());
  }
  flush();
  if (!disconnected_.empty()) {
    publish_all(engine_->disconnected(disconnected_));
    disconnected_.clear();
    just_disconnected_.clear();
  }
  if (auto due = engine_->next_deadline(); due && *due <= system_clock_ms()) publish_all(engine_->expire_calls());
}

void PluginHost::flush() {
  if (pending_.empty()) return;
  std::vector<Request> batch;
  batch.swap(pending_);
  if (batch.size() <= settings_.batch_max) {
    publish_all(engine_->handle(batch));
    return;
  }
  for (std::size_t i = 0; i < batch.size(); i += settings_.batch_max) {
    auto end = std::min(batch.size(), i + settings_.batch_max);
    publish_all(engine_->handle(std::vector<Request>(batch.begin() + static_cast<std::ptrdiff_t>(i),
                                                     batch.begin() + static_cast<std::ptrdiff_t>(end))));
  }
}

void PluginHost::publish_all(const std::vector<Publish>& publishes) {
  for (const auto& p : publishes) {
    mosquitto_property* props = nullptr;
    if (p.correlation_data &&
        mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, p.correlation_data->data(),
                                      static_cast<uint16_t>(p.correlation_data->size())) != MOSQ_ERR_SUCCESS) {
      log_line(LogLevel::error, "publish_failed", {{"topic", p.topic}, {"error", "correlation data"}});
      mosquitto_property_free_all(&props);
      continue;
    }
    // On success the broker owns props; the payload is copied.
    int rc = mosquitto_broker_publish_copy(nullptr, p.topic.c_str(), static_cast<int>(p.payload.size()),
                                           p.payload.data(), kQos, p.retain, props);
    if (rc != MOSQ_ERR_SUCCESS) {
      mosquitto_property_free_all(&props);
      log_line(LogLevel::error, "publish_failed", {{"topic", p.topic}, {"rc", std::to_string(rc)}});
    }
  }
}

}  // namespace navietakie
