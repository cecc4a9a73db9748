// navietakie-wire: prints the wire tables (core/wire.hpp) as web/public/wire.js, or with --json
// as plain JSON. Refresh the committed module with `build/core/navietakie-wire > web/public/wire.js`.
#include <iostream>
#include <string_view>

#include "core/wire_json.hpp"

int main(int argc, char** argv) {
  const std::string_view mode = argc > 1 ? argv[1] : "";
  if (argc > 2 || (!mode.empty() && mode != "--json")) {
    const bool help = mode == "--help" || mode == "-h";
    (help ? std::cout : std::cerr) << "Usage: navietakie-wire [--json]\n"
                                      "Prints the wire rules as web/public/wire.js (default) or as JSON.\n";
    return help ? 0 : 2;
  }
  if (mode == "--json") {
    std::cout << navietakie::wire::to_json().dump(2) << "\n";
  } else {
    std::cout << navietakie::wire::web_module();
  }
  return 0;
}
