// Structured log lines, one per event: `ts=... level=... event=... key=value ...` or, with
// log_format json, {"ts":...,"level":...,"event":...,"key":"value",...}. On stderr unless a host
// routes them elsewhere (the plugin: into the broker's log, so that mosquitto.conf's log_dest
// applies). A field whose key names a secret (token, password, secret, authorization; not a *_file
// path) is written as "***" whatever the caller passed: a secret never reaches a log by mistake.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "config/config.hpp"

namespace navietakie {

using LogField = std::pair<std::string_view, std::string>;

// Where a formatted line (no trailing newline) goes. Called from any thread that logs, one line at a
// time (never concurrently). nullptr: stderr.
using LogSink = void (*)(LogLevel level, const std::string& line);
void set_log_sink(LogSink sink);

void set_log_level(LogLevel level);
void set_log_format(LogFormat format);
bool log_enabled(LogLevel level);
// Text: values with spaces, quotes or '=' are quoted; control bytes are escaped.
// JSON: every value a JSON string (invalid UTF-8 replaced).
void log_line(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

}  // namespace navietakie
