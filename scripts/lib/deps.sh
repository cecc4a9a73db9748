# shellcheck shell=bash
# Sourced by scripts/run and scripts/test: makes sure the Debian packages needed to build, test and
# run navietakie are installed, installing the missing ones with apt-get when running as root.
# (valgrind: test_plugin_valgrind runs the broker with the plugin under it.)
#
# Shell variables here are lower case on purpose: an exported NAVIETAKIE_* variable would be read
# (and rejected if unknown) by the bridge's configuration.

navietakie_packages=(
  cmake g++ pkg-config
  libpaho-mqttpp-dev libpaho-mqtt-dev
  mosquitto mosquitto-dev libmosquitto-dev mosquitto-clients
  liblmdb-dev lmdb-utils libcereal-dev
  libboost-test-dev nlohmann-json3-dev libcxxopts-dev libjwt-dev
  valgrind
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
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "error: missing packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "installing missing packages: ${missing[*]}" >&2
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}
