// Include order matters: mosquitto_broker.h before mosquitto_plugin.h.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "plugin/host.hpp"

#include <chrono>

#include "core/log.hpp"

namespace navietakie {
namespace {

constexpr int kQos = 1;

std::int64_t now_s() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

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

// Whether a client put one of our stamp properties on its own publish (a forgery).
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
  options.require_identity = authentication_configured(settings);
  return options;
}

AclPolicy acl_policy(const Settings& settings) {
  AclPolicy policy;
  policy.topic_prefix = settings.topic_prefix;
  try {
    policy.service_grants = parse_grants(settings.auth_service_grants, settings.topic_prefix);
  } catch (const std::exception& e) {
    throw ConfigError(std::string("config key 'auth_service_grants': ") + e.what());
  }
  return policy;
}

std::optional<Access> access_of(int access) {
  switch (access) {
    case MOSQ_ACL_READ: return Access::read;
    case MOSQ_ACL_WRITE: return Access::write;
    case MOSQ_ACL_SUBSCRIBE: return Access::subscribe;
    case MOSQ_ACL_UNSUBSCRIBE: return Access::unsubscribe;
    default: return std::nullopt;
  }
}

const char* access_name(int access) {
  switch (access) {
    case MOSQ_ACL_READ: return "read";
    case MOSQ_ACL_WRITE: return "write";
    case MOSQ_ACL_SUBSCRIBE: return "subscribe";
    case MOSQ_ACL_UNSUBSCRIBE: return "unsubscribe";
    default: return "unknown";
  }
}

std::string text_or_empty(const char* text) { return text ? std::string(text) : std::string(); }

// Whether a session whose token expires at `expires_at_s` is over (saturating: exp can be huge).
bool expired(std::int64_t expires_at_s, int leeway_s, std::int64_t now) {
  return expires_at_s < now && now - expires_at_s > leeway_s;
}

}  // namespace

bool LogBudget::allow(std::int64_t now_s, std::uint64_t& suppressed) {
  if (now_s != second_) {
    second_ = now_s;
    used_ = 0;
  }
  if (used_ >= per_second_) {
    ++held_back_;
    return false;
  }
  ++used_;
  suppressed = held_back_;
  held_back_ = 0;
  return true;
}

std::string AuthMetrics::to_json() const {
  Json by_reason = Json::object();
  for (const auto& [reason, n] : refused) by_reason[reason] = n;
  return Json{{"accepted", accepted},     {"refused", by_reason},          {"acl_denied", acl_denied},
              {"forged_stamps", forged_stamps}, {"expired_kicked", expired_kicked}}
      .dump();
}

PluginHost::PluginHost(const Settings& settings)
    : settings_(settings), topics_(settings.topic_prefix), jwt_(jwt_options(settings)), acl_(acl_policy(settings)) {
  if (settings.handlers) {
    store_ = open_store(settings);
    engine_ = std::make_unique<Engine>(*store_, plugin_engine_options(settings));
    // Constructed on the broker thread: that is the thread the worker wakes.
    worker_ = std::make_unique<EngineWorker>(*engine_, settings.batch_max, ThreadWaker());
  }
  if (!jwt_) {
    log_line(LogLevel::warn, "OPEN_MODE",
             {{"warning", "no auth_jwt_secret_file nor auth_jwt_public_key_file: ANY client can read and write EVERY booking; "
                          "development only, never expose this broker"}});
  } else {
    log_line(LogLevel::info, "auth_enabled",
             {{"secret_file", settings.auth_jwt_secret_file}, {"public_key_file", settings.auth_jwt_public_key_file},
              {"grants", std::to_string(acl_.service_grants.size())}});
  }
}

PluginHost::~PluginHost() {
  // The broker is stopping: commit what was acknowledged since the last tick (the worker finishes
  // its queue before it stops). Replies can no longer be delivered; the clients resend and get
  // `duplicate`.
  if (worker_) {
    const std::size_t flushed = pending_.size();
    worker_->submit(std::move(pending_), std::move(disconnected_));
    const EngineWorker::Stats before_stop = worker_->stats();
    worker_.reset();
    if (flushed > 0) log_line(LogLevel::info, "flushed_at_shutdown", {{"requests", std::to_string(flushed)}});
    log_line(LogLevel::info, "engine_thread",
             {{"batches", std::to_string(before_stop.batches)}, {"requests", std::to_string(before_stop.requests)},
              {"largest_batch", std::to_string(before_stop.largest_batch)}});
  }
  log_line(LogLevel::info, "stopping",
           {{"metrics", engine_ ? engine_->metrics().to_json() : "{}"}, {"auth", auth_metrics_.to_json()}});
}

int PluginHost::on_basic_auth(const mosquitto_evt_basic_auth& event) {
  if (!jwt_) return MOSQ_ERR_PLUGIN_DEFER;
  const std::string client_id = text_or_empty(mosquitto_client_id(event.client));
  const std::string address = text_or_empty(mosquitto_client_address(event.client));
  auto refuse = [&](const std::string& reason, const std::string& detail) {
    ++auth_metrics_.refused[reason];
    std::uint64_t suppressed = 0;
    if (auth_log_.allow(now_s(), suppressed)) {
      log_line(LogLevel::warn, "auth_refused",
               {{"reason", reason}, {"detail", detail}, {"client_id", client_id}, {"address", address},
                {"username", text_or_empty(event.username)}, {"suppressed_before", std::to_string(suppressed)}});
    }
    return MOSQ_ERR_AUTH;
  };
  if (!valid_client_id_for_auth(client_id)) {
    return refuse("bad_client_id", "client id must be 1-128 bytes without '/', '+', '#' or control bytes");
  }
  VerifyResult verified = verify_token(event.password ? std::string_view(event.password) : std::string_view(),
                                       *jwt_, now_s());
  if (!verified) return refuse(to_string(verified.failure), verified.detail);
  const Identity& identity = *verified.identity;
  if (auto owner = owners_.find(client_id); owner != owners_.end() && owner->second != identity.subject) {
    return refuse("client_id_taken", "client id in use by another subject");
  }
  owners_[client_id] = identity.subject;
  // A reconnect before the last tick: the old session's entry may still be listed as ended.
  sessions_[event.client] = Session{identity, client_id, verified.expires_at_s, ++generations_};
  ++auth_metrics_.accepted;
  log_line(LogLevel::info, "auth_ok",
           {{"client_id", client_id}, {"sub", identity.subject}, {"role", to_string(identity.principal)},
            {"booking", identity.booking}, {"address", address}});
  return MOSQ_ERR_SUCCESS;
}

const PluginHost::Session* PluginHost::session_of(const mosquitto* client) const {
  auto found = sessions_.find(client);
  if (found == sessions_.end()) return nullptr;
  // Belt and braces against a stale entry for a reused connection address.
  const char* id = mosquitto_client_id(client);
  return id && found->second.client_id == id ? &found->second : nullptr;
}

int PluginHost::on_message(mosquitto_evt_message& event) {
  if (!event.topic || !topics_.parse_request(event.topic)) return MOSQ_ERR_SUCCESS;
  if (!engine_) {
    // Auth only: the bridge handles the request and trusts our stamp; a client may not bring its own.
    if (carries_stamp(event.properties)) {
      ++auth_metrics_.forged_stamps;
      log_line(LogLevel::warn, "forged_stamp_refused",
               {{"client_id", text_or_empty(mosquitto_client_id(event.client))}, {"topic", event.topic}});
      return MOSQ_ERR_ACL_DENIED;
    }
    if (const Session* session = session_of(event.client)) {
      if (add_stamp(&event.properties, session->identity, session->client_id) != MOSQ_ERR_SUCCESS) {
        log_line(LogLevel::error, "stamp_failed", {{"topic", event.topic}});
        return MOSQ_ERR_ACL_DENIED;
      }
    }
    return MOSQ_ERR_SUCCESS;
  }
  // A request is consumed here: never kept as a retained message.
  event.retain = false;
  Request request = copy_request(event.client, event.topic, event.payload, event.payloadlen, event.properties);
  if (const Session* session = session_of(event.client)) request.identity = session->identity;
  pending_.push_back(std::move(request));
  return MOSQ_ERR_SUCCESS;
}

int PluginHost::on_acl_check(const mosquitto_evt_acl_check& event) {
  if (!event.topic) return jwt_ ? MOSQ_ERR_ACL_DENIED : MOSQ_ERR_SUCCESS;
  const bool request_topic = topics_.parse_request(event.topic).has_value();
  // Requests are consumed by the handlers, never delivered to subscribers.
  if (engine_ && request_topic && event.access == MOSQ_ACL_READ) return MOSQ_ERR_ACL_DENIED;
  const Session* session = nullptr;
  if (jwt_) {
    session = session_of(event.client);
    const auto access = access_of(event.access);
    const char* denied_because = nullptr;
    if (!session) {
      denied_because = "not authenticated";
    } else if (!access) {
      denied_because = "unknown access";
    } else if (expired(session->expires_at_s, settings_.auth_leeway_s, now_s()) && *access != Access::unsubscribe) {
      denied_because = "token expired";
    } else if (!acl_allows(acl_, session->identity, session->client_id, *access, event.topic)) {
      denied_because = "not granted";
    }
    if (denied_because) {
      ++auth_metrics_.acl_denied;
      // Reads are checked per delivered message: denials there are expected (debug), the others
      // are a client asking for what it may not have (warn, within the log budget).
      std::uint64_t suppressed = 0;
      if (event.access == MOSQ_ACL_READ || acl_log_.allow(now_s(), suppressed)) {
        log_line(event.access == MOSQ_ACL_READ ? LogLevel::debug : LogLevel::warn, "acl_denied",
                 {{"client_id", text_or_empty(mosquitto_client_id(event.client))},
                  {"access", access_name(event.access)}, {"topic", event.topic}, {"why", denied_because},
                  {"suppressed_before", std::to_string(suppressed)}});
      }
      return MOSQ_ERR_ACL_DENIED;
    }
  }
  if (request_topic && event.access == MOSQ_ACL_WRITE) {
    // 2.0.11 sends a client's Will without a MESSAGE event: right after its DISCONNECT event, the
    // only trace is this write check. A Will on a request topic (presence offline) is a request.
    const char* id = mosquitto_client_id(event.client);
    if (id && just_disconnected_.count(id)) {
      will_as_request(event, session);
      // Auth only: the Will goes out again, stamped, at the next tick; this unstamped one may not.
      if (!engine_ && session) return MOSQ_ERR_ACL_DENIED;
    }
  }
  // Not DEFER: in 2.0.11, when every ACL plugin defers, the broker denies.
  return MOSQ_ERR_SUCCESS;
}

void PluginHost::will_as_request(const mosquitto_evt_acl_check& event, const Session* session) {
  if (engine_) {
    Request request = copy_request(event.client, event.topic, event.payload, event.payloadlen, event.properties);
    if (session) request.identity = session->identity;
    pending_.push_back(std::move(request));
  } else if (session) {
    std::string payload;
    if (event.payload && event.payloadlen > 0) payload.assign(static_cast<const char*>(event.payload), event.payloadlen);
    stamped_wills_.push_back(StampedWill{event.topic, std::move(payload), event.retain, *session});
  }
}

void PluginHost::on_disconnect(const mosquitto* client, const char* client_id) {
  if (auto session = sessions_.find(client); session != sessions_.end()) {
    ended_.emplace_back(client, session->second.generation);
  }
  if (!client_id) return;
  disconnected_.emplace_back(client_id);
  just_disconnected_.insert(client_id);
  // A clean session ends here: the id is free for anyone. A persistent one keeps its owner.
  if (client && mosquitto_client_clean_session(client)) {
    auto owner = owners_.find(client_id);
    auto session = sessions_.find(client);
    if (owner != owners_.end() && session != sessions_.end() && session->second.identity.subject == owner->second) {
      owners_.erase(owner);
    }
  }
}

void PluginHost::on_tick() {
  if (worker_) {
    worker_->submit(std::move(pending_), disconnected_);
    pending_.clear();
    publish_all(worker_->take_results());
  }
  for (auto& will : stamped_wills_) {
    mosquitto_property* props = nullptr;
    if (add_stamp(&props, will.session.identity, will.session.client_id) != MOSQ_ERR_SUCCESS ||
        mosquitto_broker_publish_copy(nullptr, will.topic.c_str(), static_cast<int>(will.payload.size()),
                                      will.payload.data(), kQos, will.retain, props) != MOSQ_ERR_SUCCESS) {
      mosquitto_property_free_all(&props);
      log_line(LogLevel::error, "publish_failed", {{"topic", will.topic}, {"error", "stamped will"}});
    }
  }
  stamped_wills_.clear();
  disconnected_.clear();
  just_disconnected_.clear();
  // Forget ended sessions (their Will has been checked by now), unless the address was reused by
  // a connection that authenticated since. The pointers are never dereferenced here.
  for (const auto& [client, generation] : ended_) {
    auto found = sessions_.find(client);
    if (found != sessions_.end() && found->second.generation == generation) sessions_.erase(found);
  }
  ended_.clear();
  if (jwt_) kick_expired();
}

void PluginHost::kick_expired() {
  const std::int64_t now = now_s();
  if (now < next_expiry_check_s_) return;
  next_expiry_check_s_ = now + 1;
  std::vector<std::string> due;
  for (const auto& [client, session] : sessions_) {
    if (expired(session.expires_at_s, settings_.auth_leeway_s, now)) due.push_back(session.client_id);
  }
  for (const auto& client_id : due) {
    ++auth_metrics_.expired_kicked;
    log_line(LogLevel::info, "token_expired_disconnect", {{"client_id", client_id}});
    mosquitto_kick_client_by_clientid(client_id.c_str(), true);
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
