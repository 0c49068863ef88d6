#!/usr/bin/env bash
# Regenerate the Python gRPC code (and typing stubs) from protos/ into OUT (default: the repo root).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
out=${1:-$here}
mkdir -p "$out/vault_service/api/v1"
PATH="$(dirname "$py"):$PATH" "$py" -m grpc_tools.protoc -I "$here/protos" \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  vault_service/api/v1/vault.proto
touch "$out/vault_service/api/__init__.py" "$out/vault_service/api/v1/__init__.py"
