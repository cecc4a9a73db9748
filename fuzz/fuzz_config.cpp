// The config parser: a config file's text (or the plugin_opt_ lines, which take the same keys),
// parsed and resolved into Settings. A ConfigError is the documented refusal; anything else thrown
// is a bug. quote() is what every error message uses to show a value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "config/config.hpp"

using namespace navietakie;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Every byte of the quoted form is printable: a hostile value cannot garble a log line.
  for (char c : quote(text)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) std::abort();
  }
  try {
    const ConfigLayer layer = parse_config_text(text, "fuzz.conf");
    (void)resolve_settings({layer});
  } catch (const ConfigError&) {
  }
  return 0;
}
