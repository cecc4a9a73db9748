// Connecting, subscribing and disconnecting many clients at once: a bounded number of operations
// in flight, so a thousand bookings are up in seconds without a connect storm.
#pragma once

#include <chrono>
#include <mqtt/connect_options.h>
#include <optional>
#include <string>
#include <vector>

#include "sim/link.hpp"
#include "sim/options.hpp"
#include "sim/wire.hpp"

namespace navietakie::sim {

struct SetupError {
  std::string client_id;
  std::string reason;
};

struct ConnectPlan {
  ClientLink* link;
  mqtt::connect_options options;
};

struct SubscribePlan {
  ClientLink* link;
  std::vector<std::string> filters;  // all at QoS 1
};

// MQTT v5, clean start, a Will declaring the participant offline, a large receive window, and the
// token (as password, with its subject as user name) when authentication is on.
mqtt::connect_options participant_connect_options(const SimOptions& options, const std::string& presence_topic,
                                                  Role role, const std::string& client_id,
                                                  const std::optional<std::pair<std::string, std::string>>& login);

// Connects every plan, at most `parallel` at once; records each broker's Receive Maximum on its link
// and turns Nagle's algorithm off on the new sockets. Returns the failures.
std::vector<SetupError> connect_all(std::vector<ConnectPlan>& plans, std::size_t parallel,
                                    std::chrono::milliseconds timeout);
// Subscribes every plan and checks each SUBACK reason code. Returns the failures.
std::vector<SetupError> subscribe_all(const std::vector<SubscribePlan>& plans, std::size_t parallel,
                                      std::chrono::milliseconds timeout);
// A normal DISCONNECT for every connected link (so no Will is sent), at most `parallel` at once.
void disconnect_all(const std::vector<ClientLink*>& links, std::size_t parallel, std::chrono::milliseconds timeout);

}  // namespace navietakie::sim
