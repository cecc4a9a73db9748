// mosquitto_navietakie.so: the Mosquitto 2.0 plugin entry points (plugin API v5).
// State lives in a context passed as userdata; every callback registration is checked; one
// cleanup path unregisters what was registered.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "core/log.hpp"
#include "config/config.hpp"
#include "plugin/broker_log.hpp"
#include "plugin/host.hpp"

extern char** environ;

namespace {

using navietakie::PluginHost;

struct Context {
  mosquitto_plugin_id_t* id = nullptr;
  std::unique_ptr<PluginHost> host;
  std::vector<int> registered;  // events whose callback is registered
};

Context& context(void* userdata) { return *static_cast<Context*>(userdata); }

// Runs the body of a broker callback so that no exception of any type reaches the broker (C code
// that cannot unwind): a failure is logged and the callback returns its fail-safe value instead.
template <typename Body>
int guarded(const char* callback, int fail_safe, Body&& body) noexcept {
  const char* failure = "unknown exception";
  std::string what;
  try {
    return body();
  } catch (const std::exception& e) {
    try {
      what = e.what();
      failure = what.c_str();
    } catch (...) {
    }
  } catch (...) {
  }
  try {
    navietakie::log_line(navietakie::LogLevel::error, "callback_failed", {{"callback", callback}, {"error", failure}});
  } catch (...) {
  }
  return fail_safe;
}

int on_message(int, void* event_data, void* userdata) {
  // Success, or ACL_DENIED for a request that forged an identity stamp: any other error would
  // disconnect the publisher. Not handled: refused, so the publisher is not told it was taken.
  return guarded("MESSAGE", MOSQ_ERR_ACL_DENIED,
                 [&] { return context(userdata).host->on_message(*static_cast<mosquitto_evt_message*>(event_data)); });
}

int on_basic_auth(int, void* event_data, void* userdata) {
  return guarded("BASIC_AUTH", MOSQ_ERR_AUTH, [&] {  // a check that failed refuses
    return context(userdata).host->on_basic_auth(*static_cast<mosquitto_evt_basic_auth*>(event_data));
  });
}

int on_acl_check(int, void* event_data, void* userdata) {
  return guarded("ACL_CHECK", MOSQ_ERR_ACL_DENIED, [&] {  // a check that failed denies
    return context(userdata).host->on_acl_check(*static_cast<mosquitto_evt_acl_check*>(event_data));
  });
}

int on_tick(int, void*, void* userdata) {
  return guarded("TICK", MOSQ_ERR_SUCCESS, [&] {
    navietakie::drain_broker_log();
    context(userdata).host->on_tick();
    return MOSQ_ERR_SUCCESS;
  });
}

int on_disconnect(int, void* event_data, void* userdata) {
  return guarded("DISCONNECT", MOSQ_ERR_SUCCESS, [&] {
    const mosquitto* client = static_cast<mosquitto_evt_disconnect*>(event_data)->client;
    context(userdata).host->on_disconnect(client, mosquitto_client_id(client));
    return MOSQ_ERR_SUCCESS;
  });
}

struct Registration {
  int event;
  MOSQ_FUNC_generic_callback callback;
  const char* name;
};

constexpr Registration kRegistrations[] = {
    {MOSQ_EVT_BASIC_AUTH, on_basic_auth, "BASIC_AUTH"},  // only when authentication is on
    {MOSQ_EVT_MESSAGE, on_message, "MESSAGE"},
    {MOSQ_EVT_ACL_CHECK, on_acl_check, "ACL_CHECK"},
    {MOSQ_EVT_TICK, on_tick, "TICK"},
    {MOSQ_EVT_DISCONNECT, on_disconnect, "DISCONNECT"},
};

MOSQ_FUNC_generic_callback callback_of(int event) {
  for (const auto& r : kRegistrations) {
    if (r.event == event) return r.callback;
  }
  return nullptr;
}

// Unregisters what was registered, stops the host (its engine loop first) and logs to stderr again.
void cleanup(Context* ctx) noexcept {
  for (int event : ctx->registered) mosquitto_callback_unregister(ctx->id, event, callback_of(event), nullptr);
  try {
    delete ctx;
  } catch (...) {
  }
  navietakie::unroute_log_from_broker();
}

}  // namespace

// The only symbols the .so exports (everything else is hidden).
#define NAVIETAKIE_EXPORT __attribute__((visibility("default")))

extern "C" {

NAVIETAKIE_EXPORT int mosquitto_plugin_version(int supported_version_count, const int* supported_versions) {
  for (int i = 0; i < supported_version_count; ++i) {
    if (supported_versions[i] == 5) return 5;
  }
  return -1;
}

NAVIETAKIE_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void** userdata,
                                            struct mosquitto_opt* options, int option_count) {
  // init runs on the broker thread, which is the only one that may write the broker's log.
  navietakie::route_log_to_broker();
  Context* ctx = nullptr;
  std::optional<std::string> failure;
  try {
    ctx = new Context;
    ctx->id = identifier;
    navietakie::ConfigLayer conf;
    for (int i = 0; i < option_count; ++i) {
      std::string key = options[i].key ? options[i].key : "";
      conf.set(key, options[i].value ? options[i].value : "", "mosquitto.conf plugin_opt_" + key);
    }
    navietakie::Settings settings = navietakie::resolve_settings({conf, navietakie::config_from_env(environ)});
    navietakie::set_log_level(settings.log_level);
    navietakie::set_log_format(settings.log_format);
    ctx->host = std::make_unique<PluginHost>(settings);
    navietakie::log_line(navietakie::LogLevel::info, "plugin_loaded",
                         {{"data_dir", settings.data_dir},
                          {"sync", navietakie::to_string(settings.sync)},
                          {"prefix", settings.topic_prefix},
                          {"environment", settings.environment},
                          {"handlers", settings.handlers ? "on" : "off (auth only)"},
                          {"auth", ctx->host->auth_enabled() ? "jwt" : "OPEN"}});
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  if (failure) {
    // Also when the engine cannot start (e.g. the store cannot re-arm ring deadlines): the broker
    // does not start, and says why.
    mosquitto_log_printf(MOSQ_LOG_ERR, "navietakie: cannot start: %s", failure->c_str());
    if (ctx) cleanup(ctx);
    navietakie::unroute_log_from_broker();
    return MOSQ_ERR_INVAL;
  }
  for (const auto& r : kRegistrations) {
    if (r.event == MOSQ_EVT_BASIC_AUTH && !ctx->host->auth_enabled()) continue;
    int rc = mosquitto_callback_register(identifier, r.event, r.callback, nullptr, ctx);
    if (rc != MOSQ_ERR_SUCCESS) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "navietakie: cannot register the %s callback (error %d)", r.name, rc);
      cleanup(ctx);
      return rc;
    }
    ctx->registered.push_back(r.event);
  }
  *userdata = ctx;
  return MOSQ_ERR_SUCCESS;
}

NAVIETAKIE_EXPORT int mosquitto_plugin_cleanup(void* userdata, struct mosquitto_opt*, int) {
  if (userdata) cleanup(static_cast<Context*>(userdata));
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
