#!/usr/bin/env bash
# End-to-end burst through Mosquitto and the bridge: N send_message requests published at once
# with mosquitto_pub (QoS 1), timed until all N events/message arrive at a QoS 1 subscriber.
# Usage: bench/burst.sh [N] [sync]     (defaults: 5000 full). Needs a built build-test/ or BRIDGE=path.
set -euo pipefail
n="${1:-5000}"
sync="${2:-full}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bridge="${BRIDGE:-$root/build-test/bridge/navietakie-bridge}"
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
tmp="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

cat >"$tmp/m.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
user $(id -un)
max_queued_messages 10000
CONF
"$mosquitto_bin" -c "$tmp/m.conf" >"$tmp/mosquitto.log" 2>&1 & pids+=($!)
sleep 0.3
"$bridge" --broker_url "tcp://127.0.0.1:$port" --data_dir "$tmp/data" --sync "$sync" --log_level warn --rate_limit_per_s 0 \
  >"$tmp/bridge.log" 2>&1 & pids+=($!)
for _ in $(seq 1 50); do
  mosquitto_rr -V 5 -p "$port" -t navietakie/v1/bookings/WARM/get_message -e r/warm -m '{}' -W 1 >/dev/null 2>&1 && break
done
for i in $(seq 1 "$n"); do printf '{"sender":"driver","text":"burst message %d with some text"}\n' "$i"; done >"$tmp/msgs"
mosquitto_sub -p "$port" -q 1 -t navietakie/v1/bookings/BURST/events/message -C "$n" -W 120 >"$tmp/events" & sub=$!
sleep 0.3
start=$(date +%s%N)
mosquitto_pub -p "$port" -q 1 -t navietakie/v1/bookings/BURST/send_message -l <"$tmp/msgs"
wait "$sub" || true
end=$(date +%s%N)
got=$(wc -l <"$tmp/events")
ms=$(( (end - start) / 1000000 ))
echo "burst n=$n sync=$sync events=$got elapsed_ms=$ms msgs_per_s=$(( got * 1000 / (ms > 0 ? ms : 1) ))"
[ "$got" -eq "$n" ]
