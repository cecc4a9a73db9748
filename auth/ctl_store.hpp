// navietakie-ctl's store tools: backup, verify DIR, export and stats, on an LMDB data dir that a
// host may be writing meanwhile (store/lmdb_inspect.hpp: read-only snapshots). For store_backend
// postgres they refuse and name PostgreSQL's own tools.
#pragma once

namespace navietakie::ctl {

// True when `verify`'s arguments name a store (a path: an existing directory, or an argument with
// a '/', which a JWT never holds) rather than a token.
bool names_store(int argc, const char* const* argv);

// Each takes its subcommand's arguments (argv[0] is the subcommand's name) and returns the exit
// code; bad input and a store that cannot be opened are UsageErrors (exit 2).
int run_backup(int argc, const char* const* argv);
int run_verify_store(int argc, const char* const* argv);
int run_export(int argc, const char* const* argv);
int run_stats(int argc, const char* const* argv);

}  // namespace navietakie::ctl
