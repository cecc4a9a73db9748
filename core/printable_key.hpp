// The printable-key rule of the wire contract (core/wire.hpp kClientKey): 1 to 128 characters from 0x21 to 0x7E
// (ASCII without space or control bytes). Ids a client chooses (message_id, call_id, a presence
// client_id) and a token's subject follow it, so that any of them can be logged, compared and used
// as a key byte for byte.
#pragma once

#include <cstddef>
#include <string_view>

#include "core/wire.hpp"

namespace navietakie {

inline constexpr std::size_t kMaxPrintableKeyChars = wire::kClientKey.max_length;

// The rule in words, for error and log messages.
inline constexpr std::string_view kPrintableKeyRule = "1 to 128 characters from 0x21 to 0x7E";

inline bool valid_printable_key(std::string_view key) { return wire::matches(wire::kClientKey, key); }

}  // namespace navietakie
