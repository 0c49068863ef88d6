#!/usr/bin/env bash
# Profile the server under the Put/Get benchmark load (docs/profile.md): starts `vaultctl serve`
# (SQLite, 1 process), loads it with benchmarks/load_client.py for each mode while py-spy samples
# the threads holding the GIL, and prints the hottest frames. Needs py-spy (pip install -e '.[bench]').
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
home=$(mktemp -d)
trap 'kill $srv 2>/dev/null || true; rm -rf "$home"' EXIT
$PY -c "from pathlib import Path; from tests.conftest import write_config; write_config(Path('$home'), logging__level='\"WARNING\"')"
$PY -m vault_service.cli.main --config "$home/vault.toml" serve > "$home/out.txt" &
srv=$!
until grep -q "listening on" "$home/out.txt" 2>/dev/null; do sleep 0.2; done
addr=$(grep -o "127.0.0.1:[0-9]*" "$home/out.txt" | head -1)
$PY - "$addr" "$home/ids.txt" <<'PY'
import sys
from tests.conftest import TOKENS
from vault_service.client import VaultClient
with VaultClient(sys.argv[1], TOKENS["app"]) as c:
    ids = [c.put_record(f"r-{i % 64}", "concern_text", {"text": "g" * 1024}).record_id for i in range(256)]
open(sys.argv[2], "w").write("\n".join(ids))
PY
export VAULT_SERVICE_TOKEN=app-token-0123456789
for mode in put get; do
  .venv/bin/py-spy record -p "$srv" -d 8 -r 200 --gil -f raw -o "$home/$mode.txt" >/dev/null 2>&1 &
  spy=$!
  $PY -m benchmarks.load_client "$addr" "$mode" 7 "$home/ids.txt"
  wait $spy || true
  echo "== $mode"
  $PY tools/profile_summary.py "$home/$mode.txt"
done
