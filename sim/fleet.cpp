#include "sim/fleet.hpp"

#include <deque>
#include <utility>

#include "bridge/paho_compat.hpp"

namespace navietakie::sim {
namespace {

using namespace std::chrono_literals;

// Runs `begin(i)` for every i with at most `parallel` tokens outstanding, calling `end(i, token)`
// on each in the order begun. `begin` may return null (nothing to wait for).
template <typename Begin, typename End>
void bounded(std::size_t count, std::size_t parallel, Begin begin, End end) {
  std::deque<std::pair<std::size_t, mqtt::token_ptr>> in_flight;
  std::size_t next = 0;
  while (next < count || !in_flight.empty()) {
    while (next < count && in_flight.size() < parallel) {
      auto token = begin(next);
      if (token) in_flight.emplace_back(next, std::move(token));
      ++next;
    }
    if (in_flight.empty()) continue;
    auto [i, token] = std::move(in_flight.front());
    in_flight.pop_front();
    end(i, token);
  }
}

std::string describe(const mqtt::exception& e) {
  std::string text = e.what();
  if (e.get_reason_code() != 0) text += " (reason code " + std::to_string(e.get_reason_code()) + ")";
  return text;
}

}  // namespace

mqtt::connect_options participant_connect_options(const SimOptions& options, const std::string& presence_topic,
                                                  Role role, const std::string& client_id,
                                                  const std::optional<std::pair<std::string, std::string>>& login) {
  const std::string offline = presence_request(role, false, client_id);
  mqtt::message will(presence_topic, offline, 1, false);
  auto builder =
      mqtt::connect_options_builder()
          .mqtt_version(MQTTVERSION_5)
          .clean_start(true)
          .keep_alive_interval(30s)
          .connect_timeout(std::chrono::milliseconds(static_cast<std::int64_t>(options.connect_timeout_s * 1000)))
          .automatic_reconnect(false)
          // Receive Maximum: without it the broker may cap its in-flight deliveries to us
          // at its default (Mosquitto: 20) and queue the rest.
          .properties({{mqtt::property::RECEIVE_MAXIMUM, 65535}})
          .will(mqtt::will_options(will));
  if (login) builder.user_name(login->first).password(login->second);
  return builder.finalize();
}

std::vector<SetupError> connect_all(std::vector<ConnectPlan>& plans, std::size_t parallel,
                                    std::chrono::milliseconds timeout) {
  std::vector<SetupError> errors;
  std::size_t since_nodelay = 0;
  bounded(
      plans.size(), parallel,
      [&](std::size_t i) -> mqtt::token_ptr {
        try {
          return plans[i].link->client().connect(plans[i].options);
        } catch (const mqtt::exception& e) {
          errors.push_back({plans[i].link->id(), describe(e)});
          return nullptr;
        }
      },
      [&](std::size_t i, const mqtt::token_ptr& token) {
        ClientLink& link = *plans[i].link;
        try {
          if (!token->wait_for(timeout)) {
            errors.push_back({link.id(), "no CONNACK in time"});
            return;
          }
          const mqtt::connect_response response = token->get_connect_response();  // by value: keep it
          const auto& props = response.get_properties();
          if (props.contains(mqtt::property::RECEIVE_MAXIMUM)) {
            link.set_receive_maximum(mqtt::get<std::uint16_t>(props, mqtt::property::RECEIVE_MAXIMUM));
          }
        } catch (const mqtt::exception& e) {
          errors.push_back({link.id(), describe(e)});
          return;
        }
        if (++since_nodelay >= parallel) {
          set_tcp_nodelay_on_open_sockets();
          since_nodelay = 0;
        }
      });
  // Paho has no TCP_NODELAY option; without it every request waits out a delayed ACK.
  set_tcp_nodelay_on_open_sockets();
  return errors;
}

std::vector<SetupError> subscribe_all(const std::vector<SubscribePlan>& plans, std::size_t parallel,
                                      std::chrono::milliseconds timeout) {
  std::vector<SetupError> errors;
  bounded(
      plans.size(), parallel,
      [&](std::size_t i) -> mqtt::token_ptr {
        try {
          const auto& plan = plans[i];
          return plan.link->client().subscribe(mqtt::string_collection::create(plan.filters),
                                               mqtt::iasync_client::qos_collection(plan.filters.size(), 1));
        } catch (const mqtt::exception& e) {
          errors.push_back({plans[i].link->id(), describe(e)});
          return nullptr;
        }
      },
      [&](std::size_t i, const mqtt::token_ptr& token) {
        const auto& plan = plans[i];
        try {
          if (!token->wait_for(timeout)) {
            errors.push_back({plan.link->id(), "no SUBACK in time"});
            return;
          }
          const auto codes = token->get_subscribe_response().get_reason_codes();
          for (std::size_t k = 0; k < codes.size(); ++k) {
            if (static_cast<int>(codes[k]) >= 0x80) {
              errors.push_back(
                  {plan.link->id(), "subscription to " + (k < plan.filters.size() ? plan.filters[k] : "?") +
                                        " refused (reason code " + std::to_string(static_cast<int>(codes[k])) + ")"});
            }
          }
        } catch (const mqtt::exception& e) {
          errors.push_back({plan.link->id(), describe(e)});
        }
      });
  return errors;
}

void disconnect_all(const std::vector<ClientLink*>& links, std::size_t parallel, std::chrono::milliseconds timeout) {
  bounded(
      links.size(), parallel,
      [&](std::size_t i) -> mqtt::token_ptr {
        auto& client = links[i]->client();
        if (!client.is_connected()) return nullptr;
        try {
          return client.disconnect(static_cast<int>(timeout.count()));
        } catch (const mqtt::exception&) {
          return nullptr;
        }
      },
      [&](std::size_t, const mqtt::token_ptr& token) {
        try {
          token->wait_for(timeout + 1s);
        } catch (const mqtt::exception&) {
          // already gone
        }
      });
}

}  // namespace navietakie::sim
