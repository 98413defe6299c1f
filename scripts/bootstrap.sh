#!/usr/bin/env bash
# Installs everything `make test` and `make demo` need on a fresh Debian machine (run as root),
# and nothing twice: each step checks first. Usage: scripts/bootstrap.sh [python|system|node|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"

python_env() {
  if ! command -v uv >/dev/null 2>&1; then
    echo "==> installing uv from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check uv
  fi
  echo "==> syncing .venv (uv sync --frozen)"
  uv sync --all-packages --frozen --quiet
}

system_packages() {
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
      echo "error: need root to apt-get install ${missing[*]} (or install them yourself)" >&2
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

node_packages() {
  if [ ! -d tests/node/node_modules ] || [ tests/node/package-lock.json -nt tests/node/node_modules ]; then
    echo "==> installing npm packages for the interop checks (tests/node)"
    npm ci --prefix tests/node --no-audit --no-fund --silent
    touch tests/node/node_modules
  fi
}

case "$what" in
  python) python_env ;;
  system) system_packages ;;
  node) node_packages ;;
  all) python_env; system_packages; node_packages ;;
  *) echo "usage: $0 [python|system|node|all]" >&2; exit 2 ;;
esac
