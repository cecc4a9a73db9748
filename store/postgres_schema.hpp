// The PostgreSQL schema of navietakie and its migrations, applied by the program at start.
// Internal to the PostgreSQL backend (store/postgres_store.cpp); tests use it too.
#pragma once

#include <pqxx/connection>

namespace navietakie::postgres {

// The schema version this build creates and understands.
int known_schema_version();

// Brings the schema of the connection's current schema (search_path) to known_schema_version():
// each missing migration in its own transaction, all under an advisory lock so that hosts starting
// together do not race. Throws StoreError (naming both versions) when the database's schema is
// newer than this build's.
void migrate(pqxx::connection& connection);

}  // namespace navietakie::postgres
