#!/bin/sh
# The window-1 latency of live sends while the retention purge deletes a closed booking of
# MESSAGES messages (issue 13): bench_fill makes a store with one booking of MESSAGES messages,
# navietakie-ctl closes it with a closed_at two days back, and the plugin host starts on a copy
# of it twice: retention_days 0 (nothing to purge: the baseline) and retention_days 1 (the purge
# starts at once, 256 keys per transaction, taking turns with request batches). bench_rr sends
# COUNT messages one at a time to another booking meanwhile and prints its percentiles.
# Usage: bench/purge_latency.sh [BUILD_DIR] [MESSAGES] [COUNT]   (sync full, as deployed)
set -eu
BUILD=$(cd "${1:-build-release}" && pwd)
MESSAGES=${2:-100000}
COUNT=${3:-3000}
WORK=$(mktemp -d /tmp/nt-purge-XXXXXX)
BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$BUILD/bench/bench_fill" --dir "$WORK/filled" --messages "$MESSAGES" --bookings 1 >"$WORK/fill.json"
CLOSED_AT=$(( $(date +%s) * 1000 - 2 * 86400000 ))
"$BUILD/auth/navietakie-ctl" close E0 --data-dir "$WORK/filled" --closed-at "$CLOSED_AT" --reason bench >/dev/null

for RETENTION in 0 1; do
  RUN="$WORK/run-$RETENTION"
  mkdir -p "$RUN"
  cp -r "$WORK/filled" "$RUN/data"
  PORT=$(free_port)
  "$BUILD/auth/navietakie-ctl" broker-conf --mqtt-port "$PORT" --bind 127.0.0.1 --user "$(id -un)" \
    --max-queued-messages 100000 --out "$RUN/mosquitto.conf" \
    --plugin "$BUILD/plugin/mosquitto_navietakie.so" --plugin-opt "data_dir=$RUN/data" \
    --plugin-opt "retention_days=$RETENTION" --plugin-opt log_level=info
  /usr/sbin/mosquitto -c "$RUN/mosquitto.conf" >"$RUN/mosquitto.log" 2>&1 &
  BROKER_PID=$!
  tries=0
  until mosquitto_rr -V 5 -p "$PORT" -t navietakie/v1/bookings/WARM/get_message -e navietakie/v1/replies/warm/1 \
      -m '{}' -W 1 >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 200 ]; then echo "broker did not answer" >&2; exit 1; fi
    sleep 0.05
  done
  RESULT=$("$BUILD/bench/bench_rr" --url "tcp://127.0.0.1:$PORT" --count "$COUNT" --window 1 --booking LIVE | tail -1)
  PURGED=$(grep -c 'event=booking_purged' "$RUN/mosquitto.log" || true)
  echo "{\"retention_days\":$RETENTION,\"purged_during_or_after\":$PURGED,\"bench_rr\":$RESULT}"
  kill "$BROKER_PID"
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
  grep -E 'event=(purge_started|booking_purged)' "$RUN/mosquitto.log" >&2 || true
done
