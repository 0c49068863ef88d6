"""The queries of ``tlog_nodes``: a transparency log's subtree hashes (storage/tree_nodes.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from vault_service.storage.sql.base import SqlStoreBase, as_bytes
from vault_service.storage.tree_nodes import TreeMoved
from vault_service.tlog.merkle import Node

#: rows per statement of a node read (each row two parameters: well under every engine's limit)
_CHUNK = 400


class SqlTree(SqlStoreBase):
    """Reads and appends of ``tlog_nodes``."""

    def tree_size(self, log: str) -> int:
        with self._read() as conn:
            row = conn.execute(
                "SELECT MAX(idx) FROM tlog_nodes WHERE log = ? AND level = 0", (log,)
            ).fetchone()
        return int(row[0]) + 1 if row and row[0] is not None else 0

    def tree_nodes(self, log: str, nodes: Iterable[Node]) -> dict[Node, bytes]:
        wanted = sorted(set(nodes))
        out: dict[Node, bytes] = {}
        if not wanted:
            return out
        with self._read() as conn:
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                pairs = ", ".join("(?, ?)" for _ in chunk)
                args: list[object] = []
                for level, idx in chunk:
                    args += [level, idx]
                # a join on the wanted nodes, one primary-key lookup each: SQLite plans
                # "(level, idx) IN (VALUES ...)" as a scan of every node of the log, which
                # made each checkpoint slower the longer the log (docs/profile.md)
                rows = conn.execute(
                    f"WITH wanted (level, idx) AS (VALUES {pairs})"
                    " SELECT n.level, n.idx, n.hash FROM wanted JOIN tlog_nodes n"
                    " ON n.log = ? AND n.level = wanted.level AND n.idx = wanted.idx",
                    [*args, log],
                ).fetchall()
                for level, idx, digest in rows:
                    out[(int(level), int(idx))] = as_bytes(digest)
        return out

    def add_tree_nodes(self, log: str, size: int, nodes: Mapping[Node, bytes]) -> None:
        with self._write() as conn:
            # only sequencers take this lock (never a call on the request path)
            self._serialize(conn, f"tlog:{log}")
            row = conn.execute(
                "SELECT MAX(idx) FROM tlog_nodes WHERE log = ? AND level = 0", (log,)
            ).fetchone()
            current = int(row[0]) + 1 if row and row[0] is not None else 0
            if current != size:
                raise TreeMoved()
            conn.executemany(
                "INSERT INTO tlog_nodes (log, level, idx, hash) VALUES (?, ?, ?, ?)",
                [(log, level, idx, digest) for (level, idx), digest in sorted(nodes.items())],
            )
