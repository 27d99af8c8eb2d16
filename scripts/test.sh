#!/usr/bin/env bash
# Runs Tocsin's whole test suite. First installs the system packages the tests need when they
# are missing (Debian: Redis, Prometheus + promtool, Alertmanager's amtool, nftables,
# iproute2, openssl for the datasource TLS test's certificates), so a fresh machine needs
# nothing else. The chaos scenario S4 also needs root (it makes its own network namespaces). Tests never skip: a test whose real component is missing
# fails and says how to install it.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing+=(prometheus)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> installing test dependencies: ${missing[*]}"
  $sudo apt-get update -qq
  # Package scripts may try to start services; tests start their own on free loopback ports.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

echo "==> running the test suite"
exec cargo nextest run --workspace --locked --no-fail-fast "$@"
