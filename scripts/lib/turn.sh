# shellcheck shell=bash
# Sourced by scripts/run and tests/support/turn.sh: a coturn TURN server (Debian package coturn,
# binary turnserver) for the web app's relay-only calls, with TURN REST credentials from a shared
# secret (use-auth-secret / static-auth-secret), the scheme navietakie's ice_servers/turn_secret
# settings derive clients' short-lived credentials from (docs/protocol.md, "signal").
#
#   navietakie_turn_free_port                   prints a port free for both UDP and TCP on 127.0.0.1
#   navietakie_turn_args DIR BIND PORT SECRET   sets turn_args: turnserver's command line, its
#                                               config (with the secret: mode 600), database and
#                                               pid file in DIR, listening on BIND:PORT (UDP and
#                                               TCP), relaying on BIND (0.0.0.0 / ::: every
#                                               interface, coturn's choice)
#
# No TLS/DTLS listeners and no CLI: a TURN server beside a development broker. Loopback peers are
# allowed when BIND is a loopback address (two browsers on one machine relay to each other).
#
# Shell variables are lower case on purpose (see deps.sh).

turn_args=()

navietakie_turn_free_port() {
  /usr/bin/python3 - <<'PY'
import socket
for _ in range(50):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        tcp.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        tcp.close()
        udp.close()
    print(port)
    break
else:
    raise SystemExit("no port free for both UDP and TCP")
PY
}

navietakie_turn_args() {
  local dir="$1" bind="$2" port="$3" secret="$4"
  command -v turnserver >/dev/null 2>&1 || {
    echo "error: turnserver not found; install the Debian package coturn" >&2
    return 1
  }
  mkdir -p "$dir" || return 1
  # The secret in a file only this user reads, not on a command line every user's ps shows.
  (umask 077 && printf 'use-auth-secret\nstatic-auth-secret=%s\n' "$secret" >"$dir/turnserver.conf") || return 1
  turn_args=(turnserver -c "$dir/turnserver.conf" --listening-port "$port" --realm navietakie
    --fingerprint --no-tls --no-dtls --no-cli --no-software-attribute --no-multicast-peers
    --db "$dir/turndb" --pidfile "$dir/turnserver.pid" --log-file stdout --simple-log)
  case "$bind" in
    0.0.0.0 | ::) ;;
    *) turn_args+=(--listening-ip "$bind" --relay-ip "$bind") ;;
  esac
  case "$bind" in
    127.* | ::1) turn_args+=(--allow-loopback-peers) ;;
  esac
}
