#!/bin/sh
# Installs the real peers the tests and benchmarks use, from Debian's packages, when missing:
# Mosquitto (MQTT broker, and its clients) and Chromium (the dashboard's browser test). Needs root for apt-get;
# without it, prints what to install and the tests that need them skip with that reason.
missing=""
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$missing mosquitto"
# docs/mqtt.md publishes and watches with the broker's command-line clients.
command -v mosquitto_pub >/dev/null 2>&1 || missing="$missing mosquitto-clients"
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing="$missing chromium"
# docs/wasm-processors.md builds its C and Rust modules for wasm32: clang + lld (wasm-ld), and
# Debian's own Rust with its wasm32 standard library (a rustup toolchain has no wasm32 target here).
command -v clang >/dev/null 2>&1 || missing="$missing clang"
command -v wasm-ld >/dev/null 2>&1 || missing="$missing lld"
[ -x /usr/bin/rustc ] || missing="$missing rustc"
[ -x /usr/bin/cargo ] || missing="$missing cargo"
[ -d /usr/lib/rustlib/wasm32-unknown-unknown ] || missing="$missing libstd-rust-dev-wasm32"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing from Debian's packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null \
    || echo "warning: could not install$missing; tests needing them will skip"
  # The Debian package starts a system broker on 1883; tests start their own on free ports.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop mosquitto >/dev/null 2>&1 || true; fi
else
  echo "note: not root; install$missing (e.g. sudo apt-get install$missing) or the tests needing them skip"
fi
exit 0
