// The identity stamp: the navietakie-identity user property the bridge reads off a request. It is
// set by the plugin, but a broker without the plugin passes on whatever a client wrote, so the
// value is untrusted. decode_identity must not throw, and what it accepts must survive a round
// trip through encode_identity unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/identity.hpp"

using namespace navietakie;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view value(reinterpret_cast<const char*>(data), size);
  const auto identity = decode_identity(value);
  if (identity) {
    const auto again = decode_identity(encode_identity(*identity));
    if (!again || *again != *identity) std::abort();
  }
  return 0;
}
