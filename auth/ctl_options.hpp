// The command-line conventions every navietakie-ctl subcommand shares: bad input is a UsageError
// (printed, exit 2), options are parsed with cxxopts and checked in our words.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>
// cxxopts' own argument matcher instead of std::regex (see config/config.cpp).
#define CXXOPTS_NO_REGEX 1
#include <cxxopts.hpp>

namespace navietakie::ctl {

// Bad input: the message is printed and the program exits with 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A decimal integer from low to high, nothing around it.
std::int64_t integer_option(const std::string& name, const std::string& value, std::int64_t low, std::int64_t high);

// Parses a subcommand's arguments (argv[0] is the subcommand's name); unknown options, stray
// arguments and an option given as another option's value (`--sub --role x`) are usage errors.
// `value_options` names the options that take a value.
cxxopts::ParseResult parse(cxxopts::Options& options, const std::vector<std::string>& value_options, int argc,
                           const char* const* argv);

// The value of --<option>, else of the environment variable; "" if neither is set.
std::string option_or_env(const cxxopts::ParseResult& parsed, const std::string& option, const char* env);

}  // namespace navietakie::ctl
