// Structured log lines on stderr: `ts=... level=... event=... key=value ...`.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "config/config.hpp"

namespace navietakie {

using LogField = std::pair<std::string_view, std::string>;

void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
// Values with spaces, quotes or '=' are quoted; control bytes are escaped.
void log_line(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

}  // namespace navietakie
