// Include order matters: mosquitto_broker.h before mosquitto_plugin.h.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "plugin/intake.hpp"

#include "core/log.hpp"
#include "plugin/stamp.hpp"

namespace navietakie {
namespace {

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

}  // namespace

RequestIntake::RequestIntake(const Topics& topics, bool handlers, AccessControl& access)
    : topics_(topics), handlers_(handlers), access_(access) {}

bool RequestIntake::is_request(const char* topic) const { return topic && topics_.parse_request(topic).has_value(); }

int RequestIntake::on_message(mosquitto_evt_message& event, std::vector<Request>& pending) {
  if (!is_request(event.topic)) return MOSQ_ERR_SUCCESS;
  // A request is consumed once, by the handlers or by the bridge: never kept as a retained message,
  // which the broker would deliver again (with the publisher's stamp) at every subscription.
  event.retain = false;
  if (!handlers_) {
    // Auth only: the bridge handles the request and trusts our stamp; a client may not bring its own.
    if (carries_stamp(event.properties)) {
      access_.count_forged_stamp();
      const char* client_id = mosquitto_client_id(event.client);
      log_line(LogLevel::warn, "forged_stamp_refused",
               {{"client_id", client_id ? client_id : ""}, {"topic", event.topic}});
      return MOSQ_ERR_ACL_DENIED;
    }
    if (const Session* session = access_.session_of(event.client)) {
      if (add_stamp(&event.properties, session->identity, session->client_id) != MOSQ_ERR_SUCCESS) {
        log_line(LogLevel::error, "stamp_failed", {{"topic", event.topic}});
        return MOSQ_ERR_ACL_DENIED;
      }
    }
    return MOSQ_ERR_SUCCESS;
  }
  Request request = copy_request(event.client, event.topic, event.payload, event.payloadlen, event.properties);
  if (const Session* session = access_.session_of(event.client)) request.identity = session->identity;
  pending.push_back(std::move(request));
  return MOSQ_ERR_SUCCESS;
}

int RequestIntake::on_request_write(const mosquitto_evt_acl_check& event, std::vector<Request>& pending) {
  // 2.0.11 sends a client's Will without a MESSAGE event: right after its DISCONNECT event, the
  // only trace is this write check. A Will on a request topic (presence offline) is a request.
  if (just_disconnected_.empty()) return MOSQ_ERR_SUCCESS;  // every request's write check: no copy of the id
  const char* id = mosquitto_client_id(event.client);
  if (!id || !just_disconnected_.count({event.client, id})) return MOSQ_ERR_SUCCESS;
  const Session* session = access_.session_of(event.client);
  if (handlers_) {
    Request request = copy_request(event.client, event.topic, event.payload, event.payloadlen, event.properties);
    if (session) request.identity = session->identity;
    pending.push_back(std::move(request));
  } else {
    // Auth only: the Will goes out again at the next tick, stamped and not retained.
    std::string payload;
    if (event.payload && event.payloadlen > 0)
      payload.assign(static_cast<const char*>(event.payload), event.payloadlen);
    std::optional<Session> stamp;
    if (session) stamp = *session;
    stamped_wills_.push_back(StampedWill{event.topic, std::move(payload), std::move(stamp)});
  }
  return MOSQ_ERR_ACL_DENIED;
}

void RequestIntake::on_disconnect(const mosquitto* client, const char* client_id) {
  just_disconnected_.insert({client, client_id});
}

std::vector<StampedWill> RequestIntake::end_of_pass() {
  just_disconnected_.clear();
  return std::exchange(stamped_wills_, {});
}

}  // namespace navietakie
