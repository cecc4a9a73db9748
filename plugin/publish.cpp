// Include order matters: mosquitto_broker.h before mosquitto_plugin.h.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "plugin/publish.hpp"

#include "core/log.hpp"
#include "plugin/stamp.hpp"

namespace navietakie {
namespace {

constexpr int kQos = 1;

}  // namespace

void publish_stamped_wills(const std::vector<StampedWill>& wills) {
  for (const auto& will : wills) {
    mosquitto_property* props = nullptr;
    const bool stamped =
        !will.session || add_stamp(&props, will.session->identity, will.session->client_id) == MOSQ_ERR_SUCCESS;
    // Not retained: a request is handled once, never replayed to a later subscriber.
    if (!stamped || mosquitto_broker_publish_copy(nullptr, will.topic.c_str(), static_cast<int>(will.payload.size()),
                                                  will.payload.data(), kQos, false, props) != MOSQ_ERR_SUCCESS) {
      mosquitto_property_free_all(&props);
      log_line(LogLevel::error, "publish_failed", {{"topic", will.topic}, {"error", "stamped will"}});
    }
  }
}

void publish_all(const std::vector<Publish>& publishes) {
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
                                           p.payload.data(), p.qos, p.retain, props);
    if (rc != MOSQ_ERR_SUCCESS) {
      mosquitto_property_free_all(&props);
      log_line(LogLevel::error, "publish_failed", {{"topic", p.topic}, {"rc", std::to_string(rc)}});
    }
  }
}

}  // namespace navietakie
