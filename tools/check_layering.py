"""The module map, checked (part of `make lint`); docs/architecture.md explains it.

    rpc, cli            ->  app, jobs  ->  service  ->  lifecycle  ->  key_hierarchy
                                                                   ->  policy, crypto, key_providers,
                                                                       storage, audit, tlog
    tlog                ->  crypto   (audit and storage may import tlog too)
    client              ->  (the generated api only)
    crypto, policy, tlog:   pure (no I/O modules, no vendor SDKs)
    errors, clock, ids, config, faults, logs, metrics, tracing, security_events, durable, values,
    api: leaves

Also checked: no import cycle between modules (imports under ``if TYPE_CHECKING:`` excepted), no
use of another module's private names (``other._name``, ``from x import _name``), only
crypto/_primitives.py touches ``cryptography.hazmat``, and no hand-written module is longer than
:data:`MAX_LINES` lines.

Exit 1 with one line per violation.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "vault_service"
MAX_LINES = 500

LEAVES = {
    "errors",
    "clock",
    "ids",
    "config",
    "api",
    "faults",
    "logs",
    "metrics",
    "tracing",
    "security_events",
    "durable",
    "values",
}
_CORE = {"crypto", "policy", "key_providers", "storage", "audit", "tlog"}
# what each layer may import from the project (besides the leaves and itself)
ALLOWED: dict[str, set[str]] = {
    "crypto": set(),
    "policy": set(),
    # the transparency-log core: Merkle proofs and signed notes, signatures from crypto
    "tlog": {"crypto"},
    "audit": {"crypto", "tlog"},
    "key_providers": {"crypto"},
    "storage": {"key_providers", "audit", "policy", "tlog"},
    "key_hierarchy": {"crypto", "key_providers", "storage"},
    "lifecycle": {"key_hierarchy"} | _CORE,
    "service": {"lifecycle", "key_hierarchy"} | _CORE,
    "app": {"service", "lifecycle", "key_hierarchy"} | _CORE,
    "jobs": {"app", "service", "lifecycle"} | _CORE,
    "rpc": {"app", "jobs", "service", "lifecycle"} | _CORE,
    "cli": {"app", "jobs", "service", "lifecycle", "rpc", "client"} | _CORE,
    "client": set(),
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
PURE = {"crypto", "policy", "tlog"}
# the one module allowed to touch cryptography.hazmat
HAZMAT_OK = {"vault_service/crypto/_primitives.py"}
GENERATED = "vault_service/api/"


def layer_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


def module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers of imports guarded by ``if TYPE_CHECKING:`` (not real dependencies)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in ast.walk(node):
                lines.add(getattr(inner, "lineno", -1))
    return lines


def imports(tree: ast.Module) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every absolute import."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [a.name for a in node.names]


def private_uses(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """``x._name`` where ``x`` is not ``self`` or ``cls`` (another object's private name)."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            # self, cls, the other operand of a comparison of the same class, super()
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", "other"))
            and not (isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "super")
        ):
            # attributes of the standard library and vendors that are private by convention
            # only (e.g. namedtuple._replace) are not the project's: allow *_replace/_asdict
            if node.attr in ("_replace", "_asdict", "_fields", "_exit"):
                continue
            yield node.lineno, ast.unparse(node)


def main() -> int:
    problems: list[str] = []
    modules = {module_of(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel.startswith(GENERATED):
            continue
        text = path.read_text()
        n_lines = text.count("\n")
        if n_lines > MAX_LINES:
            problems.append(f"{rel}: {n_lines} lines (at most {MAX_LINES}: split it by capability)")
        tree = ast.parse(text, rel)
        guarded = _type_checking_lines(tree)
        layer = layer_of(path)
        me = module_of(path)
        for line, where in private_uses(tree):
            problems.append(f"{rel}:{line}: uses another object's private name: {where}")
        for line, module, names in imports(tree):
            loc = f"{rel}:{line}"
            if module.startswith("cryptography.hazmat") and rel not in HAZMAT_OK:
                problems.append(f"{loc}: only crypto/_primitives.py may import {module}")
            if layer in PURE and module.split(".")[0] in IMPURE:
                problems.append(f"{loc}: {layer}/ is pure and must not import {module}")
            if not module.startswith("vault_service."):
                continue
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    problems.append(f"{loc}: imports the private name {name} of {module}")
            private_module = any(p.startswith("_") for p in module.split(".")[1:])
            if private_module and module.split(".")[1] != layer:
                problems.append(f"{loc}: imports the private module {module} of another layer")
            target = module.split(".")[1]
            outside = layer not in LEAVES and target not in LEAVES and target != layer
            if outside and target not in ALLOWED.get(layer, set()):
                problems.append(f"{loc}: {layer} must not depend on {target}")
            if line in guarded:
                continue
            targets = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules] or [module]
            graph[me].update(t for t in targets if t in modules and t != me)
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    for p in problems:
        print(p)
    if not problems:
        print("layering ok")
    return 1 if problems else 0


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
