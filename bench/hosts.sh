#!/usr/bin/env bash
# Both hosts side by side on fresh brokers and data dirs: send_message request/response at
# window 1 (idle latency) and at a pipelined window (throughput), via bench_rr.
# Usage: bench/hosts.sh [BUILD_DIR]   (default build-test; needs bench_rr, the plugin, the bridge,
# navietakie-ctl)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build-test}"
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
pids=()
tmp=""
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); [ -z "$tmp" ] || rm -rf "$tmp"; }
trap stop_all EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_host() {  # host sync
  local host="$1" sync="$2" port
  tmp="$(mktemp -d)"
  port="$(free_port)"
  local conf=(--mqtt-port "$port" --bind 127.0.0.1 --user "$(id -un)" --out "$tmp/m.conf")
  if [ "$host" = plugin ]; then
    conf+=(--plugin "$build/plugin/mosquitto_navietakie.so" --plugin-opt "data_dir=$tmp/data"
      --plugin-opt "sync=$sync" --plugin-opt log_level=warn --plugin-opt rate_limit_per_s=0)  # flat out
  fi
  "$build/auth/navietakie-ctl" broker-conf "${conf[@]}"
  "$mosquitto_bin" -c "$tmp/m.conf" >"$tmp/mosquitto.log" 2>&1 & pids+=($!)
  sleep 0.3
  if [ "$host" = bridge ]; then
    "$build/bridge/navietakie-bridge" --broker_url "tcp://127.0.0.1:$port" --data_dir "$tmp/data" \
      --sync "$sync" --log_level warn --rate_limit_per_s 0 >"$tmp/bridge.log" 2>&1 & pids+=($!)
  fi
  for _ in $(seq 1 50); do
    mosquitto_rr -V 5 -p "$port" -t navietakie/v1/bookings/WARM/get_message -e r/warm -m '{}' -W 1 >/dev/null 2>&1 && break
  done
  echo "host=$host sync=$sync window=1   $("$build/bench/bench_rr" --url "tcp://127.0.0.1:$port" --count 2000 --window 1)"
  echo "host=$host sync=$sync window=64  $("$build/bench/bench_rr" --url "tcp://127.0.0.1:$port" --count 20000 --window 64 --booking LOAD)"
  stop_all
}

run_host plugin full
run_host plugin nosync
run_host bridge full
run_host bridge nosync
