#include "core/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "core/json_writer.hpp"

namespace navietakie {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::info)};
std::atomic<bool> g_json{false};
std::mutex g_mutex;
LogSink g_sink = nullptr;  // guarded by g_mutex

void append_value(std::string& out, std::string_view value) {
  bool quote = value.empty();
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) quote = true;
  }
  if (!quote) {
    out += value;
    return;
  }
  out += '"';
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
}

// A key naming a file (auth_jwt_secret_file) holds a path, which an operator needs to see.
bool names_a_secret(std::string_view key) {
  constexpr std::string_view file_suffix = "_file";
  if (key.size() > file_suffix.size() && key.substr(key.size() - file_suffix.size()) == file_suffix) return false;
  for (std::string_view secret : {"token", "password", "secret", "authorization"}) {
    if (key.find(secret) != std::string_view::npos) return true;
  }
  return false;
}

std::string_view shown_value(std::string_view key, const std::string& value) {
  return names_a_secret(key) ? std::string_view("***") : std::string_view(value);
}

std::string timestamp() {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t secs = system_clock::to_time_t(now);
  auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[96];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  return ts;
}

std::string text_line(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  std::string line = "ts=";
  line += timestamp();
  line += " level=";
  line += to_string(level);
  line += " event=";
  line += event;
  for (const auto& [key, value] : fields) {
    line += ' ';
    line += key;
    line += '=';
    append_value(line, shown_value(key, value));
  }
  return line;
}

std::string json_line(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  JsonWriter json;
  json.begin_object().key("ts").string(timestamp()).key("level").string(to_string(level));
  json.key("event").string(event);
  for (const auto& [key, value] : fields) json.key(key).string(shown_value(key, value));
  json.end_object();
  return json.str();
}

}  // namespace

void set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_sink = sink;
}

void set_log_level(LogLevel level) { g_level = static_cast<int>(level); }

void set_log_format(LogFormat format) { g_json = format == LogFormat::json; }

bool log_enabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void log_line(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  if (!log_enabled(level)) return;
  std::string line = g_json.load() ? json_line(level, event, fields) : text_line(level, event, fields);
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_sink) {
    g_sink(level, line);
    return;
  }
  line += '\n';
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace navietakie
