// Include order matters: mosquitto_broker.h before mosquitto_plugin.h.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "plugin/stamp.hpp"

namespace navietakie {

bool carries_stamp(const mosquitto_property* props) {
  bool found = false;
  bool skip_first = false;
  const mosquitto_property* p = props;
  while (p && !found) {
    char* name = nullptr;
    char* value = nullptr;
    p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, skip_first);
    skip_first = true;
    if (name && (identity_property == name || client_id_property == name)) found = true;
    mosquitto_free(name);
    mosquitto_free(value);
  }
  return found;
}

int add_stamp(mosquitto_property** props, const Identity& identity, const std::string& client_id) {
  const std::string value = encode_identity(identity);
  const std::string name(identity_property);
  const std::string id_name(client_id_property);
  int rc = mosquitto_property_add_string_pair(props, MQTT_PROP_USER_PROPERTY, name.c_str(), value.c_str());
  if (rc == MOSQ_ERR_SUCCESS)
    rc = mosquitto_property_add_string_pair(props, MQTT_PROP_USER_PROPERTY, id_name.c_str(), client_id.c_str());
  return rc;
}

}  // namespace navietakie
