# shellcheck shell=bash
# Sourced by scripts/run and scripts/test: makes sure the Debian packages needed to build, test and
# run navietakie are installed, installing the missing ones with apt-get when running as root.
# (valgrind: test_plugin_valgrind runs the broker with the plugin under it; libssl-dev: EdDSA
# tokens and PEM keys in auth/keys.cpp, and fuzz_jwt signs the tokens it makes up; openssl: the
# tests make throw-away key pairs, and a throw-away CA and server certificate for the TLS
# listeners, with it. clang, libfuzzer-14-dev, libclang-rt-14-dev: the libFuzzer targets in fuzz/,
# built with clang by `scripts/test -L fuzz`. libpqxx-dev: the PostgreSQL store backend
# (store_backend postgres), on the official C++ client; postgresql: the server the `postgres`-labelled
# tests and `scripts/run --store postgres` start in a temp or data dir, never the system cluster.
# rapidjson-dev: the request decoder and the streaming reply and event writer on the hot path;
# header-only, so the arm64 cross build needs nothing more.
# coturn: the TURN server the browser test of relay-only calls starts on a free port (and
# `scripts/run --turn`); never run as a system service by us. libsystemd-dev: the bridge's
# sd_notify (Type=notify); dpkg-dev and fakeroot: scripts/package's .deb (dpkg-shlibdeps works out
# its Depends) and the `package` test.)
#
# Shell variables here are lower case on purpose: an exported NAVIETAKIE_* variable would be read
# (and rejected if unknown) by the bridge's configuration.

navietakie_packages=(
  cmake g++ pkg-config
  libpaho-mqttpp-dev libpaho-mqtt-dev
  mosquitto mosquitto-dev libmosquitto-dev mosquitto-clients
  liblmdb-dev lmdb-utils libcereal-dev
  libboost-test-dev nlohmann-json3-dev libcxxopts-dev libjwt-dev libssl-dev openssl
  valgrind
  clang libfuzzer-14-dev libclang-rt-14-dev
  postgresql libpqxx-dev
  rapidjson-dev
  coturn
  libsystemd-dev dpkg-dev fakeroot
)

# What scripts/bench needs besides: Google Benchmark for the engine microbenchmark, and the peers
# it measures side by side (NATS JetStream with the nats.c client, Redis Streams with hiredis).
# Their servers are started by the bench on free ports of 127.0.0.1, never as system services.
navietakie_bench_packages=(
  libbenchmark-dev
  nats-server libnats-dev
  redis-server libhiredis-dev
)

navietakie_install_bench_deps() {
  command -v dpkg-query >/dev/null 2>&1 || return 0
  navietakie_install_missing "${navietakie_bench_packages[@]}"
}

# Installed means dpkg's "install ok installed", not merely known to dpkg (removed packages keep
# their config files and a status entry), for the architecture asked: `pkg` is the native one (or
# an Architecture: all package), `pkg:arm64` that one. With a foreign architecture added, dpkg-query
# prints one status per installed architecture of a multiarch package (and `pkg:amd64` matches no
# arch-all package), so each line is checked with its architecture.
navietakie_package_installed() {
  local package="${1%%:*}" arch="${1#*:}"
  [[ "$arch" == "$1" ]] && arch="$(dpkg --print-architecture)"
  dpkg-query -W -f='${Architecture} ${Status}\n' "$package" 2>/dev/null |
    grep -qE "^($arch|all) install ok installed$"
}

navietakie_install_deps() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "note: not a Debian-like system; make sure these are installed: ${navietakie_packages[*]}" >&2
    return 0
  fi
  navietakie_install_missing "${navietakie_packages[@]}"
}

# The arm64 cross build (scripts/test -L cross, docs/arm64.md): the cross compiler, qemu to run
# its programs, and the :arm64 -dev packages beside the amd64 ones (libssl-dev: Paho's CMake
# files need it). nlohmann-json3-dev, libcxxopts-dev and libcereal-dev are arch-independent and in
# the list above. libpqxx-dev:arm64 is left out: it would replace the amd64 libpq-dev.
navietakie_cross_packages=(
  g++-aarch64-linux-gnu qemu-user-static
  libpaho-mqttpp-dev:arm64 libpaho-mqtt-dev:arm64 libmosquitto-dev:arm64 liblmdb-dev:arm64
  libboost-test-dev:arm64 libjwt-dev:arm64 libssl-dev:arm64
)
# mosquitto:arm64 cannot be installed beside the amd64 broker: it is unpacked instead, with the
# arm64 libraries it needs that the -dev packages above do not bring.
navietakie_arm64_broker_packages=(
  mosquitto libcjson1 libdlt2 libsystemd0 libwrap0 libcap2 libgcrypt20 libgpg-error0 liblz4-1
  liblzma5 libzstd1
)

navietakie_install_cross_deps() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "note: not a Debian-like system; the cross build needs: ${navietakie_cross_packages[*]}" >&2
    return 0
  fi
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    if [[ "$(id -u)" -ne 0 ]]; then
      echo "error: the arm64 architecture is not enabled: sudo dpkg --add-architecture arm64" >&2
      return 1
    fi
    dpkg --add-architecture arm64
    apt-get update
  fi
  navietakie_install_missing "${navietakie_cross_packages[@]}"
}

# Unpacks mosquitto:arm64 and navietakie_arm64_broker_packages into $1 (once: the versions are
# stamped; a new candidate version unpacks again). The broker is then $1/usr/sbin/mosquitto.
navietakie_unpack_arm64_broker() {
  local root="$1" versions package
  versions="$(for package in "${navietakie_arm64_broker_packages[@]}"; do
    apt-cache policy "$package:arm64" | awk -v p="$package" '/Candidate:/ {print p, $2}'
  done)"
  if [[ -x "$root/usr/sbin/mosquitto" && "$(cat "$root/.versions" 2>/dev/null)" == "$versions" ]]; then
    return 0
  fi
  rm -rf "$root" && mkdir -p "$root/debs"
  (cd "$root/debs" && apt-get -o APT::Sandbox::User=root download "${navietakie_arm64_broker_packages[@]/%/:arm64}") || return 1
  for package in "$root"/debs/*.deb; do
    dpkg-deb -x "$package" "$root"
  done
  echo "$versions" >"$root/.versions"
}

# Installs those of the given Debian packages that are not installed (navietakie_package_installed).
navietakie_install_missing() {
  local missing=() package
  for package in "$@"; do
    navietakie_package_installed "$package" || missing+=("$package")
  done
  navietakie_apt_install "${missing[@]}"
}

# Installs the given Debian packages (none: nothing to do); as a user, prints the command instead.
navietakie_apt_install() {
  (($# > 0)) || return 0
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "error: missing packages: $*" >&2
    echo "install them with: sudo apt-get update && sudo apt-get install -y $*" >&2
    return 1
  fi
  echo "installing missing packages: $*" >&2
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# The web client (web/): Node.js and npm to fetch mqtt.js from the npm registry and copy its browser
# build into web/public/vendor/ (`npm run build`); with --browser also Debian's chromium, which the
# browser test drives through playwright-core. Node is taken as found (any >= 18); only when there
# is none are Debian's nodejs and npm installed.
navietakie_install_web_deps() {
  local root="$1" browser="${2:-}" packages=()
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || packages+=(npm)
  if [[ "$browser" == --browser ]] && ! navietakie_package_installed chromium; then
    packages+=(chromium)
  fi
  navietakie_apt_install "${packages[@]}" || return 1
  # npm ci only when the lock file changed since the last install (a copy is kept as a stamp).
  local stamp="$root/web/node_modules/.navietakie-installed-lock.json"
  if ! cmp -s "$root/web/package-lock.json" "$stamp" 2>/dev/null; then
    (cd "$root/web" && npm ci --no-audit --no-fund)
    cp "$root/web/package-lock.json" "$stamp"
  fi
  (cd "$root/web" && npm run --silent build)
}

