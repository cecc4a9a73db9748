#include "auth/ctl_options.hpp"

#include <cstdlib>
#include <string_view>

namespace navietakie::ctl {
namespace {

// cxxopts takes the next argument as the value even if it is an option: `--sub --role x` would
// set sub to "--role". Refuse that; `--sub=--role` still says it on purpose.
void reject_option_as_value(const std::vector<std::string>& value_options, int argc, const char* const* argv) {
  for (int i = 1; i + 1 < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") return;
    bool takes_value = false;
    for (const auto& name : value_options) takes_value = takes_value || arg == "--" + name;
    if (!takes_value) continue;
    const std::string_view next = argv[i + 1];
    if (next.size() > 1 && next.front() == '-') {
      throw UsageError("option '" + std::string(arg) + "' needs a value, got the option '" + std::string(next) +
                       "' (write " + std::string(arg) + "=" + std::string(next) + " if that is the value)");
    }
    ++i;
  }
}

}  // namespace

std::int64_t integer_option(const std::string& name, const std::string& value, std::int64_t low, std::int64_t high) {
  const std::string expectation =
      "--" + name + ": expected an integer from " + std::to_string(low) + " to " + std::to_string(high);
  if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos) {
    throw UsageError(expectation + ", got '" + value + "'");
  }
  try {
    std::size_t end = 0;
    const long long number = std::stoll(value, &end);
    if (end == value.size() && number >= low && number <= high) return number;
  } catch (const std::exception&) {  // out of range
  }
  throw UsageError(expectation + ", got '" + value + "'");
}

cxxopts::ParseResult parse(cxxopts::Options& options, const std::vector<std::string>& value_options, int argc,
                           const char* const* argv) {
  reject_option_as_value(value_options, argc, argv);
  options.allow_unrecognised_options();  // reported below, in our words
  try {
    auto parsed = options.parse(argc, argv);
    for (const std::string& argument : parsed.unmatched()) {
      if (argument.size() > 1 && argument.front() == '-') {
        throw UsageError("unknown option '" + argument.substr(0, argument.find('=')) + "' (see --help)");
      }
      throw UsageError("unexpected argument '" + argument + "' (see --help)");
    }
    return parsed;
  } catch (const cxxopts::exceptions::exception& error) {
    throw UsageError(error.what());
  }
}

std::string option_or_env(const cxxopts::ParseResult& parsed, const std::string& option, const char* env) {
  if (parsed.count(option) > 0) return parsed[option].as<std::string>();
  const char* from_env = env != nullptr ? std::getenv(env) : nullptr;
  return from_env != nullptr ? from_env : "";
}

}  // namespace navietakie::ctl
