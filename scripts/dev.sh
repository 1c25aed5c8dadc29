#!/usr/bin/env bash
# One entry point for a fresh machine: installs what Rudder needs, then runs it or tests it.
#   scripts/dev.sh up [rudder up flags]   build and start a local 3-member cluster on loopback
#   scripts/dev.sh test                   fmt, clippy, and the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."

# Build outside the clone so CI and later checkouts reuse it; still works without.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/rudder-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Incremental compilation kept ~20 GB of state in the shared target directory and filled
# this machine's disk once; CI builds whole crates anyway.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

APT_PACKAGES=(build-essential python3 curl libclang-dev libseccomp-dev pkg-config etcd-client etcd-server busybox-static iproute2 procps docker-registry skopeo nftables iptables conntrack kmod dnsperf chromium)

install_system_packages() {
  local missing=()
  for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    echo "==> installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
}

# The HTTP API's judge in tests: a kubectl already on the machine (1.32 here) is kept;
# otherwise Debian's kubernetes-client (an older kubectl; the tests skip what it lacks).
install_kubectl() {
  if ! command -v kubectl >/dev/null && [ ! -x /usr/bin/kubectl ]; then
    echo "==> installing Debian's kubectl (kubernetes-client)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq kubernetes-client
  fi
}

# The judge of every component's /metrics: promtool from Debian's prometheus package,
# unpacked alone (installing the package would start a Prometheus server on 0.0.0.0:9090).
install_promtool() {
  if ! command -v promtool >/dev/null; then
    echo "==> installing promtool (from Debian's prometheus package)"
    local sudo="" dir
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    dir=$(mktemp -d)
    (cd "$dir" && chmod 777 . && apt-get download -qq prometheus && dpkg-deb -x prometheus_*.deb unpacked)
    $sudo install -m 0755 "$dir/unpacked/usr/bin/promtool" /usr/local/bin/promtool
    rm -rf "$dir"
  fi
}

install_cargo_tools() {
  command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "==> installing cargo-nextest"
    cargo install --locked cargo-nextest
  fi
}

case "${1:-}" in
  up)
    shift
    install_system_packages
    cargo build --locked -p rudder-cli
    exec "$CARGO_TARGET_DIR/debug/rudder" up "$@"
    ;;
  build-release)
    install_system_packages
    cargo build --locked --release -p rudder-cli
    ;;
  test)
    install_system_packages
    install_kubectl
    install_promtool
    install_cargo_tools
    cargo fmt --all -- --check
    scripts/check-import-circles
    cargo clippy --locked --workspace --all-targets --features rudder-cli/chaos -- -D warnings
    # The build users run has no failpoints: lint it, and test that it refuses them.
    cargo clippy --locked -p rudder-cli -- -D warnings
    cargo nextest run --locked -p rudder-proto -E 'test(failpoint)'
    # The protobuf message table matches the k8s-pb and k8s-openapi Cargo.lock pins.
    scripts/gen-protobuf-messages --check
    # End-to-end tests start the real binary: build it first, as a chaos build (with
    # failpoints: the chaos runner's planted bugs and disk faults), as the tests are.
    cargo build --locked -p rudder-cli --features chaos
    cargo nextest run --locked --workspace --features rudder-cli/chaos --no-fail-fast
    ;;
  *)
    echo "usage: scripts/dev.sh up|test|build-release" >&2
    exit 2
    ;;
esac
