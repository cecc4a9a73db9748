# shellcheck shell=bash
# Sourced by scripts/run and scripts/test: makes sure the Debian packages needed to build, test and
# run navietakie are installed, installing the missing ones with apt-get when running as root.
# (valgrind: test_plugin_valgrind runs the broker with the plugin under it; libssl-dev: EdDSA
# tokens and PEM keys in auth/keys.cpp, and fuzz_jwt signs the tokens it makes up; openssl: the
# tests make throw-away key pairs, and a throw-away CA and server certificate for the TLS
# listeners, with it. clang, libfuzzer-14-dev, libclang-rt-14-dev: the libFuzzer targets in fuzz/,
# built with clang by `scripts/test -L fuzz`. libpqxx-dev: the PostgreSQL store backend
# (store_backend postgres), on the official C++ client; postgresql: the server the `postgres`-labelled
# tests and `scripts/run --store postgres` start in a temp or data dir, never the system cluster.)
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
)

# Installed means dpkg's "install ok installed", not merely known to dpkg (removed packages keep
# their config files and a status entry).
navietakie_package_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

navietakie_install_deps() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "note: not a Debian-like system; make sure these are installed: ${navietakie_packages[*]}" >&2
    return 0
  fi
  local missing=() package
  for package in "${navietakie_packages[@]}"; do
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

