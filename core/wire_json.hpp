// The wire tables (core/wire.hpp) as JSON, and as the browser's classic script web/public/wire.js
// (`window.NavietakieWire`). The committed wire.js must equal wire_js(): tests/test_wire.cpp.
#pragma once

#include <string>

#include "core/codec.hpp"

namespace navietakie::wire {

// Every table, plus the configurable limits' defaults from the config schema.
Json to_json();

// The text of web/public/wire.js.
std::string web_module();

// The command that rewrites web/public/wire.js from the tables (run from the repository root).
inline constexpr const char* kRefreshCommand = "build/core/navietakie-wire > web/public/wire.js";

}  // namespace navietakie::wire
