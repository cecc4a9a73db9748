#include "core/errors.hpp"

#include "core/wire.hpp"

namespace navietakie {

const char* to_string(ErrorCode code) {
  const auto index = static_cast<std::size_t>(code);
  if (index >= wire::kErrorCodes.size()) return "internal";
  // The names are literals, so the view is NUL-terminated.
  return wire::kErrorCodes[index].name.data();
}

}  // namespace navietakie
