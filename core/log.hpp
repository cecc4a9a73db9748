// Structured log lines `ts=... level=... event=... key=value ...`, on stderr unless a host routes
// them elsewhere (the plugin: into the broker's log, so that mosquitto.conf's log_dest applies).
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
bool log_enabled(LogLevel level);
// Values with spaces, quotes or '=' are quoted; control bytes are escaped.
void log_line(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

}  // namespace navietakie
