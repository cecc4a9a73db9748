#include "sim/options.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>
// cxxopts' own argument matcher instead of std::regex (see config/config.cpp).
#define CXXOPTS_NO_REGEX 1
#include <cxxopts.hpp>

#include "core/topics.hpp"

namespace navietakie::sim {
namespace {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

const char* const kDescription =
    "Plays N bookings against a running navietakie (plugin or bridge): per booking a driver and a\n"
    "passenger client chat, fetch history and place calls, and every reply and event is verified\n"
    "(nothing lost, nothing duplicated, seq gapless, call states in order).\n"
    "Exit status: 0 all verified, 1 a violation, 2 a usage error, 3 could not set up (connect,\n"
    "subscribe).\n";

std::string random_booking_prefix(std::uint64_t seed) {
  std::mt19937_64 rng(seed ^ std::random_device{}());
  char hex[16];
  std::snprintf(hex, sizeof hex, "%06llx", static_cast<unsigned long long>(rng() & 0xffffffULL));
  return std::string("SIM-") + hex;
}

void require(bool condition, const std::string& message) {
  if (!condition) throw UsageError(message);
}

}  // namespace

std::optional<CallMix> parse_call_mix(const std::string& text) {
  CallMix mix{0, 0, 0};
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(start, comma - start);
    const std::size_t colon = item.find(':');
    if (colon == std::string::npos) return std::nullopt;
    const std::string name = item.substr(0, colon);
    const std::string weight = item.substr(colon + 1);
    if (weight.empty() || weight.size() > 6 || weight.find_first_not_of("0123456789") != std::string::npos) {
      return std::nullopt;
    }
    const auto value = static_cast<unsigned>(std::stoul(weight));
    if (name == "accept")
      mix.accept = value;
    else if (name == "decline")
      mix.decline = value;
    else if (name == "missed")
      mix.missed = value;
    else
      return std::nullopt;
    start = comma + 1;
  }
  if (mix.total() == 0) return std::nullopt;
  return mix;
}

ParsedOptions parse_options(int argc, char** argv) {
  SimOptions o;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  o.workers = std::min<std::size_t>(4, cores);
  cxxopts::Options spec("navietakie-sim", kDescription);
  spec.set_width(100);
  // clang-format off
  spec.add_options()
    ("url", "broker URL", cxxopts::value<std::string>()->default_value(o.url))
    ("prefix", "topic prefix", cxxopts::value<std::string>()->default_value(o.prefix))
    ("bookings", "bookings to play (2 clients each)", cxxopts::value<std::size_t>()->default_value("10"))
    ("rate", "messages per second per booking; 0 = as fast as the window allows",
     cxxopts::value<double>()->default_value("1"))
    ("size", "text length of each message, bytes", cxxopts::value<std::size_t>()->default_value("100"))
    ("window", "send_message requests awaiting a reply, per client", cxxopts::value<std::size_t>()->default_value("1"))
    ("messages", "total messages to send, then stop; 0 = unbounded", cxxopts::value<std::uint64_t>()->default_value("0"))
    ("duration", "seconds to run; 0 = unbounded (--messages or --duration must bound the run)",
     cxxopts::value<double>()->default_value("0"))
    ("calls", "calls per booking per minute; 0 = none", cxxopts::value<double>()->default_value("0"))
    ("call-mix", "how callees answer, as weights", cxxopts::value<std::string>()->default_value("accept:2,decline:1,missed:1"))
    ("ring-timeout", "the system's call_ring_timeout_s (a missed call ends after it)",
     cxxopts::value<double>()->default_value("30"))
    ("history-every", "seconds between history fetches per client; 0 = never",
     cxxopts::value<double>()->default_value("10"))
    ("reply-timeout", "seconds a request may wait for its reply", cxxopts::value<double>()->default_value("10"))
    ("shared", "several hosts serve the bookings (shared subscriptions): events may arrive out of seq "
     "order; a seq missing for --gap-wait ms is read back with after_seq")
    ("gap-wait", "with --shared: milliseconds a missing seq may take to arrive before it is read back",
     cxxopts::value<double>()->default_value("1000"))
    ("resend-after", "faults expected: a request with no reply after MS milliseconds, or answered "
     "`unavailable`, is sent again unchanged (same message_id); 0 = never", cxxopts::value<double>()->default_value("0"))
    ("resend-tries", "with --resend-after: resends per request before it counts as unanswered",
     cxxopts::value<unsigned>()->default_value("10"))
    ("booking-prefix", "booking codes are PREFIX-<n> (default SIM-<random hex>)", cxxopts::value<std::string>())
    ("secret-file", "authentication on: mint a driver / passenger token per client with this secret",
     cxxopts::value<std::string>())
    ("json", "print one JSON summary object as the last line of stdout")
    ("quiet", "no progress lines")
    ("seed", "random seed (schedules, call outcomes, texts)", cxxopts::value<std::uint64_t>())
    ("connect-timeout", "seconds to wait for each connection", cxxopts::value<double>()->default_value("10"))
    ("workers", "verifier threads (default: min(4, cores))", cxxopts::value<std::size_t>())
    ("processes", "simulator processes sharing the bookings (Paho handles all of a process's connections "
     "on one receive thread)", cxxopts::value<std::size_t>()->default_value("1"))
    ("connect-parallel", "connects / subscribes in flight at once during setup",
     cxxopts::value<std::size_t>()->default_value("1000"))
    ("h,help", "print this help");
  // clang-format on
  try {
    auto args = spec.parse(argc, argv);
    if (args.count("help")) {
      std::cout << spec.help();
      return {std::nullopt, 0};
    }
    require(args.unmatched().empty(),
            "unexpected argument '" + (args.unmatched().empty() ? std::string() : args.unmatched().front()) + "'");
    o.url = args["url"].as<std::string>();
    o.prefix = args["prefix"].as<std::string>();
    o.bookings = args["bookings"].as<std::size_t>();
    o.rate = args["rate"].as<double>();
    o.text_bytes = args["size"].as<std::size_t>();
    o.window = args["window"].as<std::size_t>();
    o.messages = args["messages"].as<std::uint64_t>();
    o.duration_s = args["duration"].as<double>();
    o.calls_per_minute = args["calls"].as<double>();
    o.ring_timeout_s = args["ring-timeout"].as<double>();
    o.history_every_s = args["history-every"].as<double>();
    o.reply_timeout_s = args["reply-timeout"].as<double>();
    o.connect_timeout_s = args["connect-timeout"].as<double>();
    o.shared = args.count("shared") > 0;
    o.gap_wait_s = args["gap-wait"].as<double>() / 1000;
    o.resend_after_s = args["resend-after"].as<double>() / 1000;
    o.resend_tries = args["resend-tries"].as<unsigned>();
    o.json = args.count("json") > 0;
    o.quiet = args.count("quiet") > 0;
    o.seed = args.count("seed") ? args["seed"].as<std::uint64_t>() : std::random_device{}();
    if (args.count("secret-file")) o.secret_file = args["secret-file"].as<std::string>();
    if (args.count("workers")) o.workers = args["workers"].as<std::size_t>();
    o.connect_parallel = args["connect-parallel"].as<std::size_t>();
    o.processes = args["processes"].as<std::size_t>();
    o.booking_prefix =
        args.count("booking-prefix") ? args["booking-prefix"].as<std::string>() : random_booking_prefix(o.seed);
    auto mix = parse_call_mix(args["call-mix"].as<std::string>());
    require(mix.has_value(), "--call-mix: expected weights like accept:2,decline:1,missed:1 (not all 0)");
    o.call_mix = *mix;

    require(o.bookings >= 1 && o.bookings <= 100000, "--bookings: 1 to 100000");
    require(o.rate >= 0 && o.rate <= 1e6, "--rate: 0 to 1000000");
    require(o.text_bytes >= 1 && o.text_bytes <= 1000000, "--size: 1 to 1000000 bytes");
    require(o.window >= 1 && o.window <= 65535, "--window: 1 to 65535");
    require(o.duration_s >= 0, "--duration: 0 or more seconds");
    require(o.messages > 0 || o.duration_s > 0, "the run needs a bound: give --messages M and/or --duration S");
    require(o.calls_per_minute >= 0 && o.calls_per_minute <= 600, "--calls: 0 to 600 per minute");
    require(o.ring_timeout_s > 0, "--ring-timeout: more than 0 seconds");
    require(o.history_every_s >= 0, "--history-every: 0 or more seconds");
    require(o.reply_timeout_s > 0, "--reply-timeout: more than 0 seconds");
    require(o.gap_wait_s > 0, "--gap-wait: more than 0 ms");
    require(o.resend_after_s >= 0, "--resend-after: 0 or more ms");
    require(o.resend_tries >= 1 && o.resend_tries <= 1000, "--resend-tries: 1 to 1000");
    require(o.connect_timeout_s > 0, "--connect-timeout: more than 0 seconds");
    require(o.workers >= 1 && o.workers <= 64, "--workers: 1 to 64");
    require(o.connect_parallel >= 1 && o.connect_parallel <= 10000, "--connect-parallel: 1 to 10000");
    require(o.processes >= 1 && o.processes <= 64 && o.processes <= o.bookings,
            "--processes: 1 to 64, and no more than --bookings");
    require(o.messages == 0 || o.messages >= o.processes, "--messages: at least one per process");
    require(!o.prefix.empty() && o.prefix.find_first_of("+#") == std::string::npos && o.prefix.back() != '/',
            "--prefix: a topic prefix without + or # and without a trailing /");
    const std::string longest_code = o.booking_prefix + "-" + std::to_string(o.bookings - 1);
    require(valid_booking_code(longest_code),
            "--booking-prefix: '" + longest_code + "' is not a booking code (A-Z a-z 0-9 _ -, up to 64)");
  } catch (const UsageError& e) {
    std::cerr << "navietakie-sim: " << e.what() << "\n";
    return {std::nullopt, 2};
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << "navietakie-sim: " << e.what() << "\n";
    return {std::nullopt, 2};
  }
  return {o, 0};
}

}  // namespace navietakie::sim
