// Include order matters: mosquitto_broker.h before mosquitto_plugin.h.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "plugin/access.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string_view>

#include "core/codec.hpp"
#include "core/log.hpp"

namespace navietakie {
namespace {

std::int64_t now_s() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
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

// What the log may say of a username. A client may put its token there by mistake (or a secret of
// any kind): a username that looks like a JWT (two dots or more) or is longer than a subject needs is logged
// only as a short hash (FNV-1a, 32 bits), enough to tell the lines of one client apart.
std::string loggable_username(const char* username) {
  constexpr std::size_t kMaxLoggedBytes = 64;
  const std::string_view name = username ? std::string_view(username) : std::string_view();
  if (name.size() <= kMaxLoggedBytes && std::count(name.begin(), name.end(), '.') < 2) return std::string(name);
  std::uint32_t hash = 2166136261u;
  for (char c : name) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 16777619u;
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", hash);
  return std::string("redacted:") + hex;
}

// Whether a session whose token expires at `expires_at_s` is over (saturating: exp can be huge).
bool expired(std::int64_t expires_at_s, int leeway_s, std::int64_t now) {
  return expires_at_s < now && now - expires_at_s > leeway_s;
}

}  // namespace

bool LogBudget::allow(std::int64_t now, std::uint64_t& suppressed) {
  if (now != second_) {
    second_ = now;
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
  return Json{{"accepted", accepted},
              {"refused", by_reason},
              {"acl_denied", acl_denied},
              {"forged_stamps", forged_stamps},
              {"expired_kicked", expired_kicked}}
      .dump();
}

AccessControl::AccessControl(const Settings& settings)
    : settings_(settings), jwt_(jwt_options(settings)), acl_(acl_policy(settings)) {
  if (!jwt_) {
    log_line(LogLevel::warn, "OPEN_MODE",
             {{"warning",
               "no auth_jwt_secret_file nor auth_jwt_public_key_file: ANY client can read and write "
               "EVERY booking; development only, never expose this broker"}});
  } else {
    log_line(LogLevel::info, "auth_enabled",
             {{"secret_file", settings.auth_jwt_secret_file},
              {"public_key_file", settings.auth_jwt_public_key_file},
              {"grants", std::to_string(acl_.service_grants.size())}});
  }
}

int AccessControl::on_basic_auth(const mosquitto_evt_basic_auth& event) {
  if (!jwt_) return MOSQ_ERR_PLUGIN_DEFER;
  const std::string client_id = text_or_empty(mosquitto_client_id(event.client));
  const std::string address = text_or_empty(mosquitto_client_address(event.client));
  auto refuse = [&](const std::string& reason, const std::string& detail) {
    ++metrics_.refused[reason];
    std::uint64_t suppressed = 0;
    if (auth_log_.allow(now_s(), suppressed)) {
      log_line(LogLevel::warn, "auth_refused",
               {{"reason", reason},
                {"detail", detail},
                {"client_id", client_id},
                {"address", address},
                {"username", loggable_username(event.username)},
                {"suppressed_before", std::to_string(suppressed)}});
    }
    return MOSQ_ERR_AUTH;
  };
  if (!valid_client_id_for_auth(client_id)) {
    return refuse("bad_client_id", "client id must be 1-128 bytes without '/', '+', '#' or control bytes");
  }
  VerifyResult verified =
      verify_token(event.password ? std::string_view(event.password) : std::string_view(), *jwt_, now_s());
  if (!verified) return refuse(to_string(verified.failure), verified.detail);
  const Identity& identity = *verified.identity;
  if (auto owner = owners_.find(client_id); owner != owners_.end() && owner->second.subject != identity.subject) {
    return refuse("client_id_taken", "client id in use by another subject");
  }
  // A reconnect before the last tick: the old session's entry may still be listed as ended.
  const Session& session =
      sessions_
          .insert_or_assign(event.client, Session{identity, client_id, verified.expires_at_s, ++generations_,
                                                  SessionAcl(acl_, identity, client_id)})
          .first->second;
  Owner& owner = owners_[client_id];
  owner.subject = identity.subject;
  owner.live.insert(session.generation);
  ++metrics_.accepted;
  log_line(LogLevel::info, "auth_ok",
           {{"client_id", client_id},
            {"sub", identity.subject},
            {"role", to_string(identity.principal)},
            {"booking", identity.booking},
            {"address", address}});
  return MOSQ_ERR_SUCCESS;
}

const Session* AccessControl::session_of(const mosquitto* client) const {
  auto found = sessions_.find(client);
  if (found == sessions_.end()) return nullptr;
  // Belt and braces against a stale entry for a reused connection address.
  const char* id = mosquitto_client_id(client);
  return id && found->second.client_id == id ? &found->second : nullptr;
}

int AccessControl::check(const mosquitto_evt_acl_check& event) {
  if (!jwt_) return MOSQ_ERR_SUCCESS;
  const Session* session = session_of(event.client);
  const auto access = access_of(event.access);
  const char* denied_because = nullptr;
  if (!session) {
    denied_because = "not authenticated";
  } else if (!access) {
    denied_because = "unknown access";
  } else if (expired(session->expires_at_s, settings_.auth_leeway_s, now_s()) && *access != Access::unsubscribe) {
    denied_because = "token expired";
  } else if (!session->acl.allows(*access, event.topic)) {
    denied_because = "not granted";
  }
  if (!denied_because) return MOSQ_ERR_SUCCESS;
  ++metrics_.acl_denied;
  // Reads are checked per delivered message: denials there are expected (debug), the others
  // are a client asking for what it may not have (warn, within the log budget).
  std::uint64_t suppressed = 0;
  if (event.access == MOSQ_ACL_READ || acl_log_.allow(now_s(), suppressed)) {
    log_line(event.access == MOSQ_ACL_READ ? LogLevel::debug : LogLevel::warn, "acl_denied",
             {{"client_id", text_or_empty(mosquitto_client_id(event.client))},
              {"access", access_name(event.access)},
              {"topic", event.topic},
              {"why", denied_because},
              {"suppressed_before", std::to_string(suppressed)}});
  }
  return MOSQ_ERR_ACL_DENIED;
}

void AccessControl::on_disconnect(const mosquitto* client) {
  auto session = sessions_.find(client);
  if (session == sessions_.end()) return;
  ended_.emplace_back(client, session->second.generation);
  // This connection no longer holds its id. A reconnect over a still-open socket authenticated
  // before the broker closed the old one: the id stays with the live connection. When the last
  // one ends with a clean session the id is free for anyone; a persistent session keeps its owner.
  auto owner = owners_.find(session->second.client_id);
  if (owner == owners_.end()) return;
  owner->second.live.erase(session->second.generation);
  if (owner->second.live.empty() && mosquitto_client_clean_session(client)) owners_.erase(owner);
}

void AccessControl::on_tick() {
  // Forget ended sessions (their Will has been checked by now), unless the address was reused by
  // a connection that authenticated since. The pointers are never dereferenced here.
  for (const auto& [client, generation] : ended_) {
    auto found = sessions_.find(client);
    if (found != sessions_.end() && found->second.generation == generation) sessions_.erase(found);
  }
  ended_.clear();
  if (jwt_) kick_expired();
}

void AccessControl::kick_expired() {
  const std::int64_t now = now_s();
  if (now < next_expiry_check_s_) return;
  next_expiry_check_s_ = now + 1;
  std::vector<std::string> due;
  for (const auto& [client, session] : sessions_) {
    if (expired(session.expires_at_s, settings_.auth_leeway_s, now)) due.push_back(session.client_id);
  }
  for (const auto& client_id : due) {
    ++metrics_.expired_kicked;
    log_line(LogLevel::info, "token_expired_disconnect", {{"client_id", client_id}});
    mosquitto_kick_client_by_clientid(client_id.c_str(), true);
  }
}

}  // namespace navietakie
