// Test-side helpers shared by the integration test files: topic names of the contract, booking
// codes, the per-test context that prints the logs of a failed test, and reply assertions.
// Header-only because it uses Boost.Test, which only the test executables link.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/results_collector.hpp>
#include <boost/test/unit_test.hpp>

#include "support/mqtt_client.hpp"
#include "support/system.hpp"

#ifndef NAVIETAKIE_BRIDGE_BIN
#error "NAVIETAKIE_BRIDGE_BIN must name the navietakie-bridge executable (set by tests/CMakeLists.txt)"
#endif

namespace navietakie::test {

namespace bdata = boost::unit_test::data;

inline const std::string topic_prefix = "navietakie/v1";

inline std::string request_topic(const std::string& code, const std::string& action) {
  return topic_prefix + "/bookings/" + code + "/" + action;
}
// kind: message | call | presence
inline std::string event_topic(const std::string& code, const std::string& kind) {
  return topic_prefix + "/bookings/" + code + "/events/" + kind;
}
inline std::string events_filter(const std::string& code) { return topic_prefix + "/bookings/" + code + "/events/#"; }
inline std::string errors_topic(const std::string& code) { return topic_prefix + "/bookings/" + code + "/errors"; }
inline std::string global_errors_topic() { return topic_prefix + "/errors"; }

// A booking code unique to this run: "<tag>-<random>", valid by the contract (tag starts with a letter).
inline std::string booking(const std::string& tag) { return tag + "-" + random_hex(8); }

inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline SystemOptions system_options(Host host, int call_ring_timeout_s = 30) {
  SystemOptions options;
  options.host = host;
  options.bridge_binary = NAVIETAKIE_BRIDGE_BIN;
#ifdef NAVIETAKIE_PLUGIN_SO
  options.plugin_path = NAVIETAKIE_PLUGIN_SO;
#endif
  options.call_ring_timeout_s = call_ring_timeout_s;
  return options;
}

// A host with or without authentication: the contract suites run against every combination.
struct HostSetup {
  Host host = Host::bridge;
  bool secure = false;
};
inline std::ostream& operator<<(std::ostream& out, const HostSetup& setup) {
  return out << setup.host << (setup.secure ? "+auth" : "");
}
// contract_hosts(), each open and then secure (clients authenticate with service tokens, so
// every request of the contract is allowed; participants are tested in test_security).
inline const std::vector<HostSetup>& contract_setups() {
  static const std::vector<HostSetup> setups = [] {
    std::vector<HostSetup> all;
    for (bool secure : {false, true}) {
#ifndef NAVIETAKIE_PLUGIN_SO
      if (secure) break;  // authentication needs the plugin
#endif
      for (Host host : contract_hosts()) all.push_back(HostSetup{host, secure});
    }
    return all;
  }();
  return setups;
}
inline SystemOptions system_options(const HostSetup& setup, int call_ring_timeout_s = 30) {
  SystemOptions options = system_options(setup.host, call_ring_timeout_s);
  options.secure = setup.secure;
  return options;
}

inline bool current_test_failing() {
  namespace utf = boost::unit_test;
  return std::uncaught_exceptions() > 0 ||
         !utf::results_collector.results(utf::framework::current_test_case().p_id).passed();
}

// Held for the length of one test: prints the broker and host logs if the test failed.
class TestContext {
 public:
  explicit TestContext(System& system) : system_(system) {}
  // Prints the logs of a failed test. A host that died during the test fails it, and is started
  // again so that the next tests sharing the system get a verdict of their own.
  ~TestContext() {
    bool died = false;
    try {
      died = !system_.host_alive();
    } catch (...) {
    }
    if (died) BOOST_ERROR("the host is not running at the end of this test");
    if (died || current_test_failing()) std::cerr << "\n" << system_.describe() << std::endl;
    if (died) {
      try {
        system_.start_host();
      } catch (const std::exception& e) {
        std::cerr << "could not start the host again: " << e.what() << std::endl;
      }
    }
  }
  TestContext(const TestContext&) = delete;
  TestContext& operator=(const TestContext&) = delete;

  System& system() { return system_; }
  std::unique_ptr<TestClient> client(ClientOptions options = {}) { return system_.client(std::move(options)); }

 private:
  System& system_;
};

// --- replies ---------------------------------------------------------------------------------------

inline bool is_ok(const json& reply) { return reply.is_object() && reply.value("ok", json()) == json(true); }

// The error code of a failure reply, "" when the reply is not a well-formed failure.
inline std::string error_code(const json& reply) {
  if (!reply.is_object() || reply.value("ok", json()) != json(false)) return "";
  const json error = reply.value("error", json());
  if (!error.is_object() || !error.contains("code") || !error["code"].is_string()) return "";
  return error["code"].get<std::string>();
}

inline std::string error_message(const json& reply) {
  if (!reply.is_object() || !reply.contains("error") || !reply["error"].is_object()) return "";
  const json& error = reply["error"];
  return error.contains("message") && error["message"].is_string() ? error["message"].get<std::string>() : "";
}

// An error reply must carry a human-readable message.
inline bool is_error(const json& reply, const std::string& code) {
  return error_code(reply) == code && !error_message(reply).empty();
}

// "invalid_request (a field missing, of the wrong type or out of range; the message names the field)".
inline bool is_error_naming(const json& reply, const std::string& code, const std::string& field) {
  return is_error(reply, code) && error_message(reply).find(field) != std::string::npos;
}

inline bool is_absent_or_null(const json& object, const std::string& key) {
  return !object.contains(key) || object[key].is_null();
}

// --- requests (MQTT v5, with a reply address) -------------------------------------------------------

inline json send_message(TestClient& client, const std::string& code, const json& body) {
  return client.request(request_topic(code, "send_message"), body);
}
inline json get_message(TestClient& client, const std::string& code, const json& body = json::object()) {
  return client.request(request_topic(code, "get_message"), body);
}
inline json make_call(TestClient& client, const std::string& code, const json& body) {
  return client.request(request_topic(code, "make_call"), body);
}
inline json set_presence(TestClient& client, const std::string& code, const json& body) {
  return client.request(request_topic(code, "presence"), body);
}

// The reply to a request sent to a broker that was just started without waiting for its plugin
// (its port opens first): resent every 500 ms, at most 20 times; nullopt if none came.
inline std::optional<json> first_reply(TestClient& client, const std::string& topic, const std::string& payload) {
  std::optional<json> reply;
  for (int tries = 0; tries < 20 && !reply; ++tries) {
    reply = client.try_await_reply(client.send_request(topic, payload), 500ms);
  }
  return reply;
}

inline json text_message(const std::string& sender, const std::string& text) {
  return json{{"sender", sender}, {"text", text}};
}
inline json call_request(const std::string& action, const std::string& by, const std::string& call_id = "") {
  json body{{"action", action}, {"by", by}};
  if (!call_id.empty()) body["call_id"] = call_id;
  return body;
}

// The seqs of a get_message reply's page, in order.
inline std::vector<std::int64_t> page_seqs(const json& reply) {
  std::vector<std::int64_t> seqs;
  if (!reply.contains("messages") || !reply["messages"].is_array()) return seqs;
  for (const auto& message : reply["messages"]) seqs.push_back(message.value("seq", std::int64_t{-1}));
  return seqs;
}

}  // namespace navietakie::test

// One test case per host of the contract, with a timeout: the body sees `host`.
#define NT_HOST_TEST(name, seconds)                         \
  BOOST_TEST_DECORATOR(*boost::unit_test::timeout(seconds)) \
  BOOST_DATA_TEST_CASE(name, ::navietakie::test::bdata::make(::navietakie::test::contract_hosts()), host)

// One test case per host setup of the contract (open and secure): the body sees `host`, a HostSetup.
#define NT_CONTRACT_TEST(name, seconds)                     \
  BOOST_TEST_DECORATOR(*boost::unit_test::timeout(seconds)) \
  BOOST_DATA_TEST_CASE(name, ::navietakie::test::bdata::make(::navietakie::test::contract_setups()), host)

// Macros rather than functions so that a failure names the line of the test. Each evaluates its
// `reply` argument once (it is often the request itself).
#define NT_REQUIRE_OK(reply)                                                                                   \
  do {                                                                                                         \
    const ::navietakie::test::json& nt_reply_ = (reply);                                                       \
    BOOST_REQUIRE_MESSAGE(::navietakie::test::is_ok(nt_reply_), "expected ok:true, got " << nt_reply_.dump()); \
  } while (false)
#define NT_CHECK_OK(reply)                                                                                   \
  do {                                                                                                       \
    const ::navietakie::test::json& nt_reply_ = (reply);                                                     \
    BOOST_CHECK_MESSAGE(::navietakie::test::is_ok(nt_reply_), "expected ok:true, got " << nt_reply_.dump()); \
  } while (false)
#define NT_CHECK_ERROR(reply, code)                                                                  \
  do {                                                                                               \
    const ::navietakie::test::json& nt_reply_ = (reply);                                             \
    BOOST_CHECK_MESSAGE(::navietakie::test::is_error(nt_reply_, (code)),                             \
                        "expected error " << (code) << " with a message, got " << nt_reply_.dump()); \
  } while (false)
#define NT_CHECK_ERROR_NAMING(reply, code, field)                                                             \
  do {                                                                                                        \
    const ::navietakie::test::json& nt_reply_ = (reply);                                                      \
    BOOST_CHECK_MESSAGE(                                                                                      \
        ::navietakie::test::is_error_naming(nt_reply_, (code), (field)),                                      \
        "expected error " << (code) << " whose message names '" << (field) << "', got " << nt_reply_.dump()); \
  } while (false)
