#include "auth/ctl_store.hpp"

#include <cstdint>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "auth/ctl_options.hpp"
#include "config/config.hpp"
#include "core/codec.hpp"
#include "core/topics.hpp"
#include "store/lmdb_inspect.hpp"

extern char** environ;

namespace navietakie::ctl {
namespace {

constexpr std::size_t kDefaultMaxProblems = 100;

// --data-dir and --settings: where the store is, as the hosts would find it.
void add_store_options(cxxopts::OptionAdder& add) {
  add("data-dir", "the LMDB data dir (default: data_dir of --settings and NAVIETAKIE_* variables, as the hosts "
                  "read them)",
      cxxopts::value<std::string>(), "DIR");
  add("settings", "the settings file the hosts run with (config/bridge.conf format)", cxxopts::value<std::string>(),
      "FILE");
}

// The LMDB data dir: `explicit_dir` when given, else --data-dir, else the settings' data_dir. A
// PostgreSQL store is refused, naming the tool that does `what` for it.
std::string store_dir(const cxxopts::ParseResult& parsed, const std::string& explicit_dir,
                      const std::string& postgres_tool) {
  if (!explicit_dir.empty()) return explicit_dir;
  if (parsed.count("data-dir") > 0) return parsed["data-dir"].as<std::string>();
  std::vector<ConfigLayer> layers;
  if (parsed.count("settings") > 0) layers.push_back(read_config_file(parsed["settings"].as<std::string>()));
  layers.push_back(config_from_env(environ));
  const Settings settings = resolve_settings(layers);
  if (settings.store_backend == StoreBackend::postgres) {
    throw UsageError("store_backend is postgres: this command reads LMDB stores only; for PostgreSQL use " +
                     postgres_tool + " (README, \"Admin tools\")");
  }
  return settings.data_dir;
}

// Opens the store read-only; one that cannot be opened is bad input (exit 2).
LmdbInspector open_inspector(const std::string& dir) {
  try {
    return LmdbInspector(dir);
  } catch (const StoreOpenError& error) {
    throw UsageError(error.what());
  }
}

// Prints the help and returns true when --help was given.
bool help_asked(const cxxopts::ParseResult& parsed, const cxxopts::Options& options) {
  if (parsed.count("help") == 0) return false;
  std::cout << options.help({""});
  return true;
}

// Bytes for a reader: KiB below a MiB, else MiB, one decimal.
std::string mib(std::uint64_t bytes) {
  const bool small = bytes < 1024 * 1024;
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / (small ? 1024.0 : 1024.0 * 1024.0)
      << (small ? " KiB" : " MiB");
  return out.str();
}

double percent(std::uint64_t part, std::uint64_t whole) {
  return whole == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(whole);
}

Json stats_json(const StoreStats& stats) {
  Json databases = Json::object();
  for (const auto& db : stats.databases) databases[db.name] = Json{{"entries", db.entries}, {"bytes", db.bytes}};
  return Json{{"dir", stats.dir},
              {"schema_version", stats.schema_version},
              {"bookings", stats.bookings},
              {"messages", stats.messages},
              {"calls", stats.calls},
              {"active_calls", stats.active_calls},
              {"ringing_calls", stats.ringing_calls},
              {"connections", stats.connections},
              {"presence_records", stats.presence_records},
              {"map_size_bytes", stats.map_size_bytes},
              {"used_bytes", stats.used_bytes},
              {"map_used_percent", percent(stats.used_bytes, stats.map_size_bytes)},
              {"file_bytes", stats.file_bytes},
              {"page_size", stats.page_size},
              {"last_txn_id", stats.last_txn_id},
              {"readers_in_use", stats.readers_in_use},
              {"max_readers", stats.max_readers},
              {"databases", databases}};
}

void print_stats(const StoreStats& stats) {
  const auto row = [](const std::string& name, const std::string& value) {
    std::cout << std::left << std::setw(16) << name << value << "\n";
  };
  row("store", stats.dir);
  row("schema_version", std::to_string(stats.schema_version));
  row("bookings", std::to_string(stats.bookings));
  row("messages", std::to_string(stats.messages));
  row("calls", std::to_string(stats.calls) + " (active " + std::to_string(stats.active_calls) + ", ringing " +
                   std::to_string(stats.ringing_calls) + ")");
  row("connections", std::to_string(stats.connections));
  row("presence", std::to_string(stats.presence_records) + " bookings");
  std::ostringstream used;
  used << stats.used_bytes << " bytes (" << mib(stats.used_bytes) << ", " << std::fixed << std::setprecision(1)
       << percent(stats.used_bytes, stats.map_size_bytes) << "% of the map)";
  row("map_size", std::to_string(stats.map_size_bytes) + " bytes (" + mib(stats.map_size_bytes) + ")");
  row("map_used", used.str());
  row("file", std::to_string(stats.file_bytes) + " bytes (" + mib(stats.file_bytes) + ")");
  row("page_size", std::to_string(stats.page_size));
  row("last_txn_id", std::to_string(stats.last_txn_id));
  row("readers", std::to_string(stats.readers_in_use) + " of " + std::to_string(stats.max_readers) + " slots in use");
  std::cout << "databases:\n";
  for (const auto& db : stats.databases) {
    std::cout << "  " << std::left << std::setw(16) << db.name << db.entries << " entries, " << mib(db.bytes) << "\n";
  }
}

}  // namespace

bool names_store(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    // The options of either form that take their value as the next argument (a key file's path).
    if (arg == "--secret-file" || arg == "--public-key-file" || arg == "--max-problems") {
      ++i;
      continue;
    }
    if (arg.empty() || arg.front() == '-') continue;
    std::error_code ec;
    return arg.find('/') != std::string_view::npos || std::filesystem::is_directory(std::string(arg), ec);
  }
  return false;
}

int run_backup(int argc, const char* const* argv) {
  cxxopts::Options options(
      "navietakie-ctl backup",
      "Copies the LMDB store into DEST/data.mdb: one consistent commit, compacted (mdb_env_copy2 with\n"
      "MDB_CP_COMPACT: free pages left out), synced to disk. Safe while the broker or the bridge runs\n"
      "(LMDB lets a reader run beside the writer; the copy holds a read snapshot, so the live store\n"
      "may grow by what is written meanwhile). DEST is created if missing and must hold no data.mdb.\n"
      "To restore: stop the host, put DEST/data.mdb in an empty data dir, start the host.\n"
      "store_backend postgres: use pg_dump (README, \"Admin tools\").\n");
  options.positional_help("DEST");
  auto add = options.add_options();
  add_store_options(add);
  add("verify", "check the copy afterwards as `verify` does (exit 1 if it has problems)");
  add("dest", "where the copy goes", cxxopts::value<std::string>());
  add("h,help", "print this help and exit");
  options.parse_positional({"dest"});
  const auto parsed = parse(options, {"data-dir", "settings"}, argc, argv);
  if (help_asked(parsed, options)) return 0;
  if (parsed.count("dest") == 0) throw UsageError("a DEST directory is required (see --help)");
  const std::string dir = store_dir(parsed, "", "pg_dump -Fc");
  const std::string dest = parsed["dest"].as<std::string>();
  const std::uint64_t bytes = open_inspector(dir).backup(dest);
  std::cout << "backup of " << dir << " written to " << (std::filesystem::path(dest) / "data.mdb").string() << ": "
            << bytes << " bytes (" << mib(bytes) << ")\n";
  if (parsed.count("verify") == 0) return 0;
  const VerifyReport report = open_inspector(dest).verify(kDefaultMaxProblems);
  for (const auto& line : report.problem_lines) std::cout << "problem: " << line << "\n";
  std::cout << (report.problems == 0 ? "copy verified: " : "copy has problems: ") << report.bookings
            << " bookings, " << report.messages << " messages, " << report.calls << " calls\n";
  return report.problems == 0 ? 0 : 1;
}

int run_verify_store(int argc, const char* const* argv) {
  cxxopts::Options options(
      "navietakie-ctl verify DIR",
      "Opens the LMDB store in DIR read-only (safe while a host runs: it checks one snapshot) and\n"
      "checks that every record decodes and matches its key, that every booking's seqs run from 1\n"
      "without a gap, that the message_id index names exactly the stored messages and that the call\n"
      "indexes agree with the calls. Prints each problem found, then a summary.\n"
      "Exit code: 0 no problem, 1 problems found, 2 the store cannot be opened (or bad input).\n");
  options.positional_help("DIR");
  auto add = options.add_options();
  add("max-problems", "print at most N problems (all are counted)",
      cxxopts::value<std::string>()->default_value(std::to_string(kDefaultMaxProblems)), "N");
  add("dir", "the store", cxxopts::value<std::string>());
  add("h,help", "print this help and exit");
  options.parse_positional({"dir"});
  const auto parsed = parse(options, {"max-problems"}, argc, argv);
  if (help_asked(parsed, options)) return 0;
  if (parsed.count("dir") == 0) throw UsageError("a DIR is required (see --help)");
  const auto max_problems = static_cast<std::size_t>(
      integer_option("max-problems", parsed["max-problems"].as<std::string>(), 0, 1000000));
  const std::string dir = parsed["dir"].as<std::string>();
  const VerifyReport report = open_inspector(dir).verify(max_problems);
  for (const auto& line : report.problem_lines) std::cout << "problem: " << line << "\n";
  if (report.problems > report.problem_lines.size()) {
    std::cout << "... and " << report.problems - report.problem_lines.size() << " more\n";
  }
  std::cout << dir << ": " << (report.problems == 0 ? "ok" : std::to_string(report.problems) + " problems") << " ("
            << report.bookings << " bookings, " << report.messages << " messages, " << report.calls << " calls)\n";
  return report.problems == 0 ? 0 : 1;
}

int run_export(int argc, const char* const* argv) {
  cxxopts::Options options(
      "navietakie-ctl export",
      "Prints the messages of BOOKING, one JSON object per line in seq order, exactly as the protocol\n"
      "shows them (get_message, events/message). Reads one snapshot of the LMDB store: safe while a\n"
      "host runs. store_backend postgres: use psql (README, \"Admin tools\").\n");
  options.positional_help("BOOKING");
  auto add = options.add_options();
  add_store_options(add);
  add("after-seq", "only the messages after this seq", cxxopts::value<std::string>()->default_value("0"), "SEQ");
  add("booking", "the booking code", cxxopts::value<std::string>());
  add("h,help", "print this help and exit");
  options.parse_positional({"booking"});
  const auto parsed = parse(options, {"data-dir", "settings", "after-seq"}, argc, argv);
  if (help_asked(parsed, options)) return 0;
  if (parsed.count("booking") == 0) throw UsageError("a BOOKING code is required (see --help)");
  const std::string booking = parsed["booking"].as<std::string>();
  if (!valid_booking_code(booking)) {
    throw UsageError("'" + booking + "' is not a booking code (1 to 64 of A-Z a-z 0-9 _ -, starting with a letter or digit)");
  }
  const auto after_seq = static_cast<std::uint64_t>(integer_option(
      "after-seq", parsed["after-seq"].as<std::string>(), 0, std::numeric_limits<std::int64_t>::max() - 1));
  const std::string dir = store_dir(parsed, "", "psql");
  std::uint64_t count = 0;
  open_inspector(dir).for_each_message(booking, after_seq, [&](const Message& message) {
    std::cout << json_text(message) << '\n';
    ++count;
    return static_cast<bool>(std::cout);
  });
  std::cout.flush();
  if (!std::cout) throw std::runtime_error("cannot write to stdout");
  std::cerr << "exported " << count << " messages of " << booking << "\n";
  return 0;
}

int run_stats(int argc, const char* const* argv) {
  cxxopts::Options options(
      "navietakie-ctl stats",
      "Prints the figures of the LMDB store in DIR (or --data-dir / --settings): bookings, messages,\n"
      "calls, connections, the map's size and how much of it is used, the data file, reader slots\n"
      "and every database's entries. Read-only, safe while a host runs.\n");
  options.positional_help("[DIR]");
  auto add = options.add_options();
  add_store_options(add);
  add("json", "print one JSON object instead");
  add("dir", "the store", cxxopts::value<std::string>());
  add("h,help", "print this help and exit");
  options.parse_positional({"dir"});
  const auto parsed = parse(options, {"data-dir", "settings"}, argc, argv);
  if (help_asked(parsed, options)) return 0;
  const std::string dir =
      store_dir(parsed, parsed.count("dir") > 0 ? parsed["dir"].as<std::string>() : "", "psql (\\dt+, pg_database_size)");
  const StoreStats stats = open_inspector(dir).stats();
  if (parsed.count("json") > 0) {
    std::cout << stats_json(stats).dump() << "\n";
  } else {
    print_stats(stats);
  }
  return 0;
}

}  // namespace navietakie::ctl
