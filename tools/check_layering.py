"""Layering check (part of `make lint`): dependencies point inward, pure layers do no I/O.

    rpc, cli, client  ->  service, lifecycle  ->  policy, crypto, key_providers, storage, audit
    (service is the facade for requests; lifecycle holds the jobs that operators and the server's
    background loops run: rotation, purge, and later retention and verification)
    crypto, policy    :   pure (no I/O modules, no vendor SDKs)
    errors, clock, ids:   leaves (import nothing of the project but each other)

Exit 1 with one line per violation.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "vault_service"

LEAVES = {
    "errors",
    "clock",
    "ids",
    "config",
    "api",
    "faults",
    "logs",
    "metrics",
    "security_events",
}
# what each layer may import from the project (besides the leaves)
ALLOWED: dict[str, set[str]] = {
    "crypto": {"crypto"},
    "policy": {"policy"},
    "key_providers": {"key_providers", "crypto"},
    "storage": {"storage", "key_providers", "audit", "policy"},
    "audit": {"audit", "crypto"},
    "lifecycle": {"lifecycle", "storage", "crypto", "key_providers", "policy", "audit"},
    "service": {"crypto", "key_providers", "storage", "policy", "audit", "lifecycle", "shares"},
    "shares": {"crypto", "key_providers", "storage", "policy", "audit", "service"},
    # rpc/server.py is the composition root: it wires every component into the running server
    "rpc": {
        "rpc",
        "service",
        "shares",
        "lifecycle",
        "policy",
        "storage",
        "key_providers",
        "crypto",
        "audit",
    },
    "cli": {
        "cli",
        "service",
        "shares",
        "lifecycle",
        "rpc",
        "client",
        "key_providers",
        "storage",
        "policy",
    },
    "client": {"client"},
}
# modules a pure layer must not import (I/O, processes, networks, vendor SDKs)
IMPURE = {
    "os",
    "io",
    "socket",
    "sqlite3",
    "subprocess",
    "pathlib",
    "shutil",
    "tempfile",
    "grpc",
    "boto3",
    "botocore",
    "hvac",
    "psycopg",
    "requests",
    "urllib",
    "http",
    "logging",
    "time",
    "threading",
}
PURE = {"crypto", "policy"}
# the one module allowed to touch cryptography.hazmat
HAZMAT_OK = {"vault_service/crypto/_primitives.py"}


def layer_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def main() -> int:
    problems: list[str] = []
    for path in sorted(PKG.rglob("*.py")):
        layer = layer_of(path)
        if layer in LEAVES or layer == "__init__":
            continue
        rel = str(path.relative_to(ROOT))
        for line, module in imports(path):
            where = f"{rel}:{line}"
            if module.startswith("cryptography.hazmat") and rel not in HAZMAT_OK:
                problems.append(f"{where}: only crypto/_primitives.py may import {module}")
            if layer in PURE and module.split(".")[0] in IMPURE:
                problems.append(f"{where}: {layer}/ is pure and must not import {module}")
            if module.startswith("vault_service."):
                target = module.split(".")[1]
                if target in LEAVES:
                    continue
                if target not in ALLOWED.get(layer, set()) and target != layer:
                    problems.append(f"{where}: {layer} must not depend on {target}")
    for p in problems:
        print(p)
    if not problems:
        print("layering ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
