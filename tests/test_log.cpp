// core/log: both line formats, the request line the engine writes at debug (booking, action,
// outcome, latency), and that nothing secret reaches a log line.
#include <boost/test/unit_test.hpp>

#include "support/store_space.hpp"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "core/log.hpp"
#include "store/store.hpp"

using namespace navietakie;

namespace {

std::mutex g_lines_mutex;
std::vector<std::string> g_lines;

void capture(LogLevel, const std::string& line) {
  std::lock_guard<std::mutex> lock(g_lines_mutex);
  g_lines.push_back(line);
}

// Routes log lines into g_lines at `level` in `format` for the test's lifetime.
struct CapturedLog {
  CapturedLog(LogLevel level, LogFormat format) {
    g_lines.clear();
    set_log_sink(capture);
    set_log_level(level);
    set_log_format(format);
  }
  ~CapturedLog() {
    set_log_sink(nullptr);
    set_log_level(LogLevel::info);
    set_log_format(LogFormat::text);
  }
  std::vector<std::string> lines() const {
    std::lock_guard<std::mutex> lock(g_lines_mutex);
    return g_lines;
  }
  std::vector<std::string> with(const std::string& part) const {
    std::vector<std::string> found;
    for (const auto& line : lines()) {
      if (line.find(part) != std::string::npos) found.push_back(line);
    }
    return found;
  }
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

const std::string kToken = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkMSJ9.c2VjcmV0LXNpZ25hdHVyZQ";

}  // namespace

BOOST_AUTO_TEST_SUITE(log_lines)

BOOST_AUTO_TEST_CASE(text_line_is_key_value_with_quoting) {
  CapturedLog log(LogLevel::info, LogFormat::text);
  log_line(LogLevel::info, "starting", {{"broker", "tcp://h:1883"}, {"why", "a b=\"c\"\n"}});
  log_line(LogLevel::debug, "hidden", {});
  const auto lines = log.lines();
  BOOST_REQUIRE_EQUAL(lines.size(), 1u);
  BOOST_TEST(lines[0].rfind("ts=", 0) == 0u);
  BOOST_TEST(contains(lines[0], " level=info event=starting broker=tcp://h:1883 why=\"a b=\\\"c\\\"\\x0a\""));
  BOOST_TEST(!contains(lines[0], "\n"));
}

BOOST_AUTO_TEST_CASE(json_line_is_one_object_with_the_same_keys) {
  CapturedLog log(LogLevel::info, LogFormat::json);
  log_line(LogLevel::warn, "request", {{"booking", "BK1"}, {"message", "line\nbreak \"quoted\" \xff"}});
  const auto lines = log.lines();
  BOOST_REQUIRE_EQUAL(lines.size(), 1u);
  BOOST_TEST(!contains(lines[0], "\n"));
  const Json parsed = Json::parse(lines[0]);
  BOOST_TEST(parsed.at("level") == "warn");
  BOOST_TEST(parsed.at("event") == "request");
  BOOST_TEST(parsed.at("booking") == "BK1");
  BOOST_TEST(parsed.at("message").get<std::string>().rfind("line\nbreak \"quoted\" ", 0) == 0u);
  BOOST_TEST(parsed.at("ts").get<std::string>().back() == 'Z');
}

BOOST_AUTO_TEST_CASE(secrets_are_never_written) {
  for (LogFormat format : {LogFormat::text, LogFormat::json}) {
    CapturedLog log(LogLevel::debug, format);
    log_line(LogLevel::info, "connect",
             {{"token", kToken},
              {"mqtt_password", "hunter2-password"},
              {"jwt_secret", "s3cr3t-bytes"},
              {"authorization", "Bearer " + kToken},
              {"upstream_token", kToken},
              {"auth_jwt_secret_file", "/etc/navietakie/jwt.secret"}});
    const auto lines = log.lines();
    BOOST_REQUIRE_EQUAL(lines.size(), 1u);
    BOOST_TEST(!contains(lines[0], kToken));
    BOOST_TEST(!contains(lines[0], "hunter2"));
    BOOST_TEST(!contains(lines[0], "s3cr3t"));
    BOOST_TEST(contains(lines[0], "***"));
    // A path to a secret is not the secret: the operator needs to see which file it is.
    BOOST_TEST(contains(lines[0], "/etc/navietakie/jwt.secret"));
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(request_log)

struct EngineWithStore {
  navietakie::test::StoreSpace space;
  std::unique_ptr<Store> store = space.open();
  Engine engine{*store, EngineOptions{}};
  std::vector<Publish> ask(const std::string& booking, const std::string& action, const Json& body) {
    Request request{"navietakie/v1/bookings/" + booking + "/" + action, body.dump(), std::string("r/1"), std::nullopt,
                    "client-1"};
    return engine.handle({request});
  }
};

BOOST_AUTO_TEST_CASE(debug_request_line_has_booking_action_outcome_latency) {
  CapturedLog log(LogLevel::debug, LogFormat::json);
  EngineWithStore e;
  e.ask("BK7", "send_message", {{"sender", "driver"}, {"text", "private words " + kToken}});
  e.ask("BK7", "send_message", {{"sender", "nobody"}, {"text", "x"}});
  std::vector<Json> requests;
  for (const auto& line : log.lines()) {
    const Json parsed = Json::parse(line);
    if (parsed.at("event") == "request") requests.push_back(parsed);
    // The request's content is not logged: a token pasted into a chat stays out of the log too.
    BOOST_TEST(!contains(line, kToken));
    BOOST_TEST(!contains(line, "private words"));
  }
  BOOST_REQUIRE_EQUAL(requests.size(), 2u);
  BOOST_TEST(requests[0].at("level") == "debug");
  BOOST_TEST(requests[0].at("booking") == "BK7");
  BOOST_TEST(requests[0].at("action") == "send_message");
  BOOST_TEST(requests[0].at("outcome") == "ok");
  BOOST_TEST(std::stoll(requests[0].at("latency_us").get<std::string>()) >= 0);
  BOOST_TEST(requests[1].at("level") == "warn");
  BOOST_TEST(requests[1].at("booking") == "BK7");
  BOOST_TEST(requests[1].at("outcome") == "invalid_request");
  BOOST_TEST(requests[1].contains("latency_us"));
}

BOOST_AUTO_TEST_CASE(request_line_is_quiet_at_info) {
  CapturedLog log(LogLevel::info, LogFormat::text);
  EngineWithStore e;
  e.ask("BK8", "send_message", {{"sender", "driver"}, {"text", "hello"}});
  BOOST_TEST(log.with("event=request").empty());
}

BOOST_AUTO_TEST_SUITE_END()
