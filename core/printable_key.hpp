// The printable-key rule of the wire contract, written once: 1 to 128 characters from 0x21 to 0x7E
// (ASCII without space or control bytes). Ids a client chooses (message_id, call_id, a presence
// client_id) and a token's subject follow it, so that any of them can be logged, compared and used
// as a key byte for byte.
#pragma once

#include <cstddef>
#include <string_view>

namespace navietakie {

inline constexpr std::size_t kMaxPrintableKeyChars = 128;

// The rule in words, for error and log messages.
inline constexpr std::string_view kPrintableKeyRule = "1 to 128 characters from 0x21 to 0x7E";

inline bool valid_printable_key(std::string_view key) {
  if (key.empty() || key.size() > kMaxPrintableKeyChars) return false;
  for (char c : key) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace navietakie
