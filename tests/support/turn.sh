#!/usr/bin/env bash
# A throw-away TURN server for tests (the relay-only browser call): coturn on a free 127.0.0.1
# port, TURN REST credentials from a random shared secret, state in a temp dir removed at exit.
#
#   tests/support/turn.sh
#
# Prints one JSON line, then runs turnserver in the foreground until it gets SIGTERM:
#   {"pid":N,"port":P,"secret":"...","ice_servers":"turn:127.0.0.1:P?transport=udp,turn:..."}
# `pid` is this script's: SIGTERM to it stops turnserver and removes the temp dir. ice_servers and
# secret are the navietakie settings (ice_servers, turn_secret) to give the broker under test.
# turnserver's log goes to stderr.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/lib/turn.sh
source "$root/scripts/lib/turn.sh"

dir="$(mktemp -d "${TMPDIR:-/tmp}/navietakie-turn.XXXXXX")"
trap 'rm -rf "$dir"' EXIT
port="$(navietakie_turn_free_port)"
secret="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
navietakie_turn_args "$dir" 127.0.0.1 "$port" "$secret"
printf '{"pid":%d,"port":%d,"secret":"%s","ice_servers":"turn:127.0.0.1:%d?transport=udp,turn:127.0.0.1:%d?transport=tcp"}\n' \
  "$$" "$port" "$secret" "$port" "$port"
# Not exec: the EXIT trap removes the temp dir after turnserver stops. SIGTERM to this script is
# passed on to turnserver.
"${turn_args[@]}" >&2 &
turn_pid=$!
trap 'kill -TERM "$turn_pid" 2>/dev/null || true' TERM INT
wait "$turn_pid" || true
wait "$turn_pid" 2>/dev/null || true
