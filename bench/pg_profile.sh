#!/usr/bin/env bash
# Where a send_message's time goes on the PostgreSQL store: one Mosquitto, N bridges on a local
# PostgreSQL (scripts/lib/postgres.sh, its defaults: fsync and synchronous_commit on) with
# pg_stat_statements, the same load as scripts/bench's (K bench_rr clients, window W, until the
# event), then per message: statements and their server time, commits, WAL flushes, and the CPU
# seconds of the broker, the bridges and PostgreSQL.
# Usage: bench/pg_profile.sh [BUILD_DIR] [BRIDGES] [CLIENTS] [COUNT_PER_CLIENT] [WINDOW]
#        (default build-release 1 8 4000 16)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build-release}"
bridges="${2:-1}" clients="${3:-8}" count="${4:-4000}" window="${5:-16}"
# shellcheck source=scripts/lib/postgres.sh
source "$root/scripts/lib/postgres.sh"
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
tmp="$(mktemp -d /tmp/navietakie-pgprof-XXXXXX)"
chmod 755 "$tmp"  # PostgreSQL's user must enter it when we are root
pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  navietakie_postgres_stop
  rm -rf "$tmp"
}
trap stop_all EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_s() {  # pid...: user+system CPU seconds of these processes and their reaped children
  local total=0 p f
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    read -r -a f < <(cut -d')' -f2- "/proc/$p/stat")
    total=$((total + f[11] + f[12] + f[13] + f[14]))
  done
  awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
children_of() {  # pid: its live children (PostgreSQL's backends, WAL writer, checkpointer)
  local f s
  for f in /proc/[0-9]*/stat; do
    read -r -a s < <(cut -d')' -f2- "$f" 2>/dev/null) || continue
    [[ "${s[1]:-}" == "$1" ]] && { f="${f#/proc/}"; echo "${f%/stat}"; }
  done
}
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

pg_port="$(free_port)"
navietakie_postgres_start "$tmp" "$pg_port" >/dev/null
psql "$postgres_url" -qc "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" \
  -c "ALTER SYSTEM SET track_wal_io_timing = on" -c "ALTER SYSTEM SET track_io_timing = on"
navietakie_postgres_stop
navietakie_postgres_start "$tmp" "$pg_port" >/dev/null
psql "$postgres_url" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"

port="$(free_port)"
"$build/auth/navietakie-ctl" broker-conf --mqtt-port "$port" --bind 127.0.0.1 --user "$(id -un)" \
  --max-queued-messages 100000 --out "$tmp/m.conf"
"$mosquitto_bin" -c "$tmp/m.conf" >"$tmp/mosquitto.log" 2>&1 &
broker=$!
pids+=("$broker")
sleep 0.3
group=()
((bridges > 1)) && group=(--share_group prof)
bridge_pids=()
for ((i = 0; i < bridges; i++)); do
  "$build/bridge/navietakie-bridge" --broker_url "tcp://127.0.0.1:$port" --store_backend postgres \
    --postgres_url "$postgres_url" "${group[@]}" --client_id "prof-bridge-$i" --log_level warn --rate_limit_per_s 0 \
    >"$tmp/bridge-$i.log" 2>&1 &
  bridge_pids+=($!)
  pids+=($!)
done
for _ in $(seq 1 100); do
  mosquitto_rr -V 5 -p "$port" -t navietakie/v1/bookings/WARM/get_message -e r/warm -m '{}' -W 1 >/dev/null 2>&1 && break
done

psql "$postgres_url" -qAtc "SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal')" >/dev/null
commits_before="$(psql "$postgres_url" -Atc "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")"
broker_cpu0="$(cpu_s "$broker")" bridge_cpu0="$(cpu_s "${bridge_pids[@]}")"
pg_cpu0="$(cpu_s "$postgres_pid" $(children_of "$postgres_pid"))"
start="$(date +%s.%N)"
load=()
for ((i = 0; i < clients; i++)); do
  "$build/bench/bench_rr" --url "tcp://127.0.0.1:$port" --count "$count" --window "$window" --booking "PROF$i" \
    --until-event >"$tmp/rr-$i.json" &
  load+=($!)
done
wait "${load[@]}"
elapsed="$(calc "$(date +%s.%N) - $start")"
messages=$((clients * count))
pg_cpu="$(calc "$(cpu_s "$postgres_pid" $(children_of "$postgres_pid")) - $pg_cpu0")"
broker_cpu="$(calc "$(cpu_s "$broker") - $broker_cpu0")"
bridge_cpu="$(calc "$(cpu_s "${bridge_pids[@]}") - $bridge_cpu0")"
commits="$(psql "$postgres_url" -Atc "SELECT xact_commit - $commits_before FROM pg_stat_database WHERE datname = current_database()")"

echo "bridges=$bridges clients=$clients x window $window: $messages messages in ${elapsed} s = $(calc "$messages / $elapsed" 0) msg/s"
echo "p50 per client (us): $(cat "$tmp"/rr-*.json | grep -o '"p50_us":[0-9.]*' | cut -d: -f2 | tr '\n' ' ')"
echo "CPU seconds: broker $broker_cpu, bridges $bridge_cpu, postgres $pg_cpu (wall $elapsed, 2 cores)"
echo "per message: commits $(calc "$commits / $messages" 3)"
psql "$postgres_url" -Atc "SELECT 'per message: WAL flushes ' || round(wal_sync::numeric / $messages, 3) ||
  ', WAL bytes ' || round(wal_bytes / $messages) || ', flush ms total ' || round(wal_sync_time::numeric) ||
  ' (' || round(wal_sync_time::numeric * 1000 / greatest(wal_sync, 1)) || ' us each)' FROM pg_stat_wal"
echo "statements (calls per message, server ms in all, share of the wall time):"
psql "$postgres_url" -Atc "SELECT rpad(round(calls::numeric / $messages, 3)::text, 7) || ' ' ||
  lpad(round(total_exec_time::numeric)::text, 7) || ' ms ' ||
  lpad(round(100 * total_exec_time::numeric / ($elapsed * 1000), 1)::text, 5) || '%  ' || left(regexp_replace(query, '\s+', ' ', 'g'), 90)
  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  ORDER BY total_exec_time DESC LIMIT 12"
