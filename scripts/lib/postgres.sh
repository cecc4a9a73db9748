# shellcheck shell=bash
# Sourced by scripts/run and scripts/bench: a local PostgreSQL cluster for the postgres store
# backend, kept in <data dir>/postgres (initdb on first use) and run in the background of the
# calling script, which stops it by the PID in its postmaster.pid.
#
#   navietakie_postgres_start DATA_DIR [PORT]   starts it; sets postgres_pid, postgres_port,
#                                               postgres_url, postgres_log; prints the URL
#                                               (call it directly, not in $(...): the variables
#                                               and the background child belong to the caller)
#   navietakie_postgres_stop                    stops the cluster started above (bounded)
#
# PostgreSQL refuses to run as root: as root the cluster runs as the user `postgres` (Debian's
# package makes it; `nobody` otherwise), its directory chowned to that user. Authentication is
# `trust`, for 127.0.0.1 and the unix socket (in the cluster's directory) only: a development
# database on this machine, never one to expose. The database and its superuser are both named
# `navietakie`.
#
# Shell variables are lower case on purpose (see deps.sh).

# shellcheck disable=SC2034  # postgres_port and postgres_log are for the caller
postgres_pid=""
postgres_port=""
postgres_url=""
postgres_log=""
postgres_dir=""

# The directory of initdb / postgres / pg_isready: pg_config's, else Debian's newest
# /usr/lib/postgresql/<version>/bin (not on PATH there).
navietakie_postgres_bin_dir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir="$(pg_config --bindir 2>/dev/null || true)"
    [[ -x "$dir/initdb" ]] && { echo "$dir"; return 0; }
  fi
  dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$dir" && -x "$dir/initdb" ]] && { echo "$dir"; return 0; }
  echo "error: PostgreSQL's server binaries (initdb, postgres) not found; install the Debian package postgresql" >&2
  return 1
}

# The command prefix that runs a command as the cluster's owner (in the array
# navietakie_postgres_as): nothing, or, as root, setpriv to `postgres` (else `nobody`). setpriv
# execs without forking, so `"${navietakie_postgres_as[@]}" postgres ... &` leaves $! the
# postmaster's own PID.
navietakie_postgres_user() {
  if [[ "$(id -u)" -ne 0 ]]; then
    id -un
  elif id postgres >/dev/null 2>&1; then
    echo postgres
  else
    echo nobody
  fi
}
navietakie_postgres_as=()
navietakie_postgres_set_user() {
  navietakie_postgres_as=()
  if [[ "$(id -u)" -eq 0 ]]; then
    local user
    user="$(navietakie_postgres_user)"
    navietakie_postgres_as=(setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups)
  fi
}

navietakie_postgres_port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

navietakie_postgres_start() {
  local data_dir="$1" port="${2:-}" bin user tries
  bin="$(navietakie_postgres_bin_dir)" || return 1
  user="$(navietakie_postgres_user)"
  navietakie_postgres_set_user
  postgres_dir="$data_dir/postgres"
  postgres_log="$data_dir/postgres.log"
  mkdir -p "$postgres_dir" || { echo "error: cannot create '$postgres_dir'" >&2; return 1; }
  if [[ "$(id -u)" -eq 0 ]]; then
    chown "$user:" "$postgres_dir" && chmod 700 "$postgres_dir" || return 1
    # The cluster's user must reach its directory: a data dir under /root (mode 700) it cannot.
    if ! "${navietakie_postgres_as[@]}" test -w "$postgres_dir"; then
      echo "error: user '$user' (PostgreSQL refuses to run as root) cannot reach '$postgres_dir';" \
        "pick a --data-dir whose parent directories it may enter (e.g. under /var/lib or /srv)" >&2
      return 1
    fi
  fi
  if [[ -f "$postgres_dir/postmaster.pid" ]]; then
    local running
    running="$(head -n 1 "$postgres_dir/postmaster.pid")"
    if [[ "$running" =~ ^[0-9]+$ ]] && kill -0 "$running" 2>/dev/null; then
      echo "error: a PostgreSQL already runs on '$postgres_dir' (pid $running); stop it or use --postgres-url" >&2
      return 1
    fi
  fi

  if [[ ! -f "$postgres_dir/PG_VERSION" ]]; then
    echo "scripts: creating a PostgreSQL cluster in $postgres_dir (first use)" >&2
    "${navietakie_postgres_as[@]}" "$bin/initdb" -D "$postgres_dir" --username=navietakie --auth=trust \
      --encoding=UTF8 --no-locale >"$postgres_log" 2>&1 || {
      echo "error: initdb failed:" >&2
      tail -n 20 "$postgres_log" >&2
      return 1
    }
    # Trust only this machine: the unix socket and 127.0.0.1 (initdb's default also trusts ::1
    # and replication connections).
    printf '%s\n' '# written by scripts/lib/postgres.sh: a development cluster, this machine only' \
      'local all all trust' 'host all all 127.0.0.1/32 trust' >"$postgres_dir/pg_hba.conf"
  fi

  if [[ -z "$port" ]]; then
    # 5432 when free, else the next free one: a system PostgreSQL may hold 5432.
    for ((port = 5432; port < 5532; port++)); do
      navietakie_postgres_port_open "$port" || break
    done
  fi
  if navietakie_postgres_port_open "$port"; then
    echo "error: port $port on 127.0.0.1 is already in use" >&2
    return 1
  fi

  "${navietakie_postgres_as[@]}" "$bin/postgres" -D "$postgres_dir" -p "$port" -k "$postgres_dir" \
    -c listen_addresses=127.0.0.1 >>"$postgres_log" 2>&1 &
  postgres_pid=$!
  # shellcheck disable=SC2034
  postgres_port="$port"

  # Ready within 30 s (crash recovery after a kill may take a moment), or it failed.
  for ((tries = 0; ; tries++)); do
    if ! kill -0 "$postgres_pid" 2>/dev/null; then
      wait "$postgres_pid" 2>/dev/null || true
      postgres_pid=""
      echo "error: PostgreSQL failed to start; the end of $postgres_log:" >&2
      tail -n 20 "$postgres_log" >&2
      return 1
    fi
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U navietakie -d postgres && break
    if ((tries >= 300)); then
      echo "error: PostgreSQL not ready within 30 s (see $postgres_log)" >&2
      return 1
    fi
    sleep 0.1
  done

  local admin="host=127.0.0.1 port=$port user=navietakie dbname=postgres"
  if [[ "$(psql "$admin" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'navietakie'")" != 1 ]]; then
    psql "$admin" -qc "CREATE DATABASE navietakie" >/dev/null || {
      echo "error: cannot create the database navietakie" >&2
      return 1
    }
  fi
  postgres_url="postgresql://navietakie@127.0.0.1:$port/navietakie"
  echo "$postgres_url"
}

# Fast shutdown (SIGINT: clients disconnected, a clean checkpoint), at most ~10 s, then SIGKILL
# (the next start recovers from the WAL). The PID started, which postmaster.pid names too.
navietakie_postgres_stop() {
  local pid="$postgres_pid" tries
  if [[ -z "$pid" && -n "$postgres_dir" && -f "$postgres_dir/postmaster.pid" ]]; then
    pid="$(head -n 1 "$postgres_dir/postmaster.pid")"
  fi
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -INT "$pid" 2>/dev/null || { postgres_pid=""; return 0; }
  for ((tries = 0; tries < 100; tries++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  postgres_pid=""
}
