// The identity stamp on a broker-side publish (auth-only mode): the publisher's verified identity
// and client id as MQTT v5 user properties, which the bridge trusts (trust_identity_property).
#pragma once

#include <string>

#include "core/identity.hpp"

struct mqtt5__property;  // mosquitto_property

namespace navietakie {

// Whether a client put one of our stamp properties on its own publish (a forgery).
bool carries_stamp(const mqtt5__property* props);

// Appends the stamp to `props`; a Mosquitto error code (MOSQ_ERR_SUCCESS when added).
int add_stamp(mqtt5__property** props, const Identity& identity, const std::string& client_id);

}  // namespace navietakie
