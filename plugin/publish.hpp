// Publishing from the plugin, on the broker thread only (mosquitto_broker_publish_copy): what the
// engine produced, and Wills re-published with their identity stamp (auth only). A publish that
// fails is logged; it goes out in the broker's next loop pass.
#pragma once

#include <vector>

#include "core/engine.hpp"
#include "plugin/intake.hpp"

namespace navietakie {

void publish_all(const std::vector<Publish>& publishes);
void publish_stamped_wills(const std::vector<StampedWill>& wills);

}  // namespace navietakie
