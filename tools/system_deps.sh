#!/usr/bin/env bash
# Debian packages the test suite runs for real: PostgreSQL (a private cluster started by the tests),
# Chromium (renders the compliance report headless), Node.js with npm (the independent gRPC
# client) and nghttp2-client (h2load, the C load generator of benchmarks/bench_rpc.py, and its
# test). Installs what is missing, as root or through sudo; `make test` and .ci/run call it.
# `system_deps.sh bench` (make bench): only what the benchmarks run, PostgreSQL and h2load.
set -euo pipefail
scope=${1:-test}

need=()
command -v make >/dev/null 2>&1 || need+=(make)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || need+=(postgresql)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
if [ "$scope" != bench ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${need[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "missing Debian packages: ${need[*]} (run as root or install them)" >&2
    exit 1
  fi
  sudo="sudo -E"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${need[@]}"
