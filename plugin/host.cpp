// Include order matters: mosquitto_broker.h before mosquitto_plugin.h.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "plugin/host.hpp"

#include "auth/acl.hpp"
#include "core/log.hpp"
#include "plugin/publish.hpp"

namespace navietakie {
namespace {

EngineOptions plugin_engine_options(const Settings& settings) {
  EngineOptions options = engine_options(settings);
  options.offline_at_start = true;  // the plugin starts with the broker: nobody is connected
  options.require_identity = authentication_configured(settings);
  if (options.require_identity) options.reply_allowed = reply_address_check(acl_policy(settings));
  return options;
}

}  // namespace

PluginHost::PluginHost(const Settings& settings)
    : settings_(settings),
      topics_(settings.topic_prefix),
      access_(settings),
      intake_(topics_, settings.handlers, access_) {
  if (settings.handlers) {
    store_ = open_store(settings);
    // Constructed on the broker thread: that is the thread the loop wakes.
    wakeup_ = std::make_unique<BrokerWakeup>();
    if (settings.node_role == NodeRole::edge) {
      // The car: the cloud is the authority; the edge node forwards, queues and answers offline.
      edge_ = std::make_unique<EdgeNode>(settings, *store_, plugin_engine_options(settings), *wakeup_);
    } else {
      engine_ = std::make_unique<Engine>(*store_, plugin_engine_options(settings));
      loop_ = std::make_unique<EngineLoop>(*engine_, *wakeup_, loop_options(settings));
    }
  }
}

PluginHost::~PluginHost() {
  // The broker is stopping: commit what was acknowledged since the last tick (the loop finishes
  // its queue before it stops). Replies can no longer be delivered; the clients resend and get
  // `duplicate`.
  if (loop_) {
    const std::size_t flushed = pending_.size();
    loop_->submit(std::move(pending_), std::move(disconnected_));
    loop_->stop();
    const EngineLoop::Stats stats = loop_->stats();
    if (flushed > 0) log_line(LogLevel::info, "flushed_at_shutdown", {{"requests", std::to_string(flushed)}});
    log_line(LogLevel::info, "engine_thread",
             {{"batches", std::to_string(stats.batches)},
              {"requests", std::to_string(stats.requests)},
              {"largest_batch", std::to_string(stats.largest_batch)},
              {"overloaded", std::to_string(stats.overloaded)}});
  }
  if (edge_) {
    edge_->submit(std::move(pending_), std::move(disconnected_));
    edge_->stop();
  }
  log_line(LogLevel::info, "stopping",
           {{"metrics", engine_ ? engine_->metrics().to_json() : "{}"}, {"auth", access_.metrics().to_json()}});
}

int PluginHost::on_message(mosquitto_evt_message& event) { return intake_.on_message(event, pending_); }

int PluginHost::on_acl_check(const mosquitto_evt_acl_check& event) {
  if (!event.topic) return access_.enabled() ? MOSQ_ERR_ACL_DENIED : MOSQ_ERR_SUCCESS;
  const bool request_topic = intake_.is_request(event.topic);
  // Requests are consumed by the handlers, never delivered to subscribers.
  if (engine_ && request_topic && event.access == MOSQ_ACL_READ) return MOSQ_ERR_ACL_DENIED;
  if (access_.check(event) != MOSQ_ERR_SUCCESS) return MOSQ_ERR_ACL_DENIED;
  if (request_topic && event.access == MOSQ_ACL_WRITE) return intake_.on_request_write(event, pending_);
  // A car's local client follows a booking: the edge node follows it upstream (and keeps a replica).
  if (edge_ && event.access == MOSQ_ACL_SUBSCRIBE) {
    if (auto booking = topics_.events_booking(event.topic)) edge_->watch_booking(*booking);
  }
  // Not DEFER: in 2.0.11, when every ACL plugin defers, the broker denies.
  return MOSQ_ERR_SUCCESS;
}

void PluginHost::on_disconnect(const mosquitto* client, const char* client_id) {
  access_.on_disconnect(client);
  if (!client_id) return;
  disconnected_.emplace_back(client_id);
  intake_.on_disconnect(client, client_id);
}

void PluginHost::on_tick() {
  if (loop_) {
    loop_->submit(std::move(pending_), disconnected_);
    pending_.clear();
    publish_all(loop_->take_results());
  }
  if (edge_) {
    edge_->submit(std::move(pending_), disconnected_);
    pending_.clear();
    publish_all(edge_->take_results());
  }
  publish_stamped_wills(intake_.end_of_pass());
  disconnected_.clear();
  access_.on_tick();
}

}  // namespace navietakie
