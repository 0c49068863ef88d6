"""A vault for the regression tests of issue 17, driven only through its public surface.

:class:`Vault` runs a real gRPC server in this process (``start_server`` with a
:class:`~vault_service.clock.FixedClock`), hands out SDK clients per principal, restarts the server,
and takes and restores backups the way an operator does: stop the server, copy the data directory
(database and blobs; on PostgreSQL the database is copied with ``CREATE DATABASE ... TEMPLATE``),
start again; restoring puts the copy back and starts again, so that start-up replays the ledger.
The ledger, keyring and checkpoints live outside the data directory (``var/``, ``keys/``) and are
never part of a backup.

Principals: those of tests/conftest.py (app, clinic, operator) plus legal (legal_officer), sro
(subject_rights_officer) and auditor, added to the policy text the way tests/conftest.py does.
Three more have tokens but are in no policy unless a module puts them there with
:func:`principals_text`: clinic-b (a second clinic), counselor and supervisor.
Modules override the ``policy_text`` fixture for a policy of their own, and parametrize ``vault``
with ``indirect=True`` to run on PostgreSQL too.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TOKENS, test_policy_text, write_config
from tests.support.serve import vaultctl
from vault_service.client import VaultClient
from vault_service.clock import FixedClock
from vault_service.config import load_config
from vault_service.rpc.server import RunningServer, start_server
from vault_service.service import VaultService

#: bearer tokens of the principals this directory adds to the policy (legal, sro, auditor: see
#: EXTRA_ROLES), and of those only modules asking for them with principals_text get (clinic-b,
#: counselor, supervisor: the seed scenarios of tests/access)
EXTRA_TOKENS = {
    "legal": "legal-token-0123456789",
    "sro": "sro-token-0123456789",
    "auditor": "auditor-token-0123456789",
    "clinic-b": "clinic-b-token-0123456789",
    "counselor": "counselor-token-0123456789",
    "supervisor": "supervisor-token-0123456789",
}
EXTRA_ROLES = {"legal": "legal_officer", "sro": "subject_rights_officer", "auditor": "auditor"}
ALL_TOKENS = {**TOKENS, **EXTRA_TOKENS}
BASE_ROLES = {"app": "application", "clinic": "clinic", "operator": "operator"}

DAY = 86400.0


def principals_text(roles: Mapping[str, str]) -> str:
    """``[principals.NAME]`` tables for ``roles`` (name -> role), with their tokens' SHA-256."""
    return "".join(
        f'\n[principals.{name}]\nrole = "{role}"\n'
        f'token_sha256 = "{hashlib.sha256(ALL_TOKENS[name].encode()).hexdigest()}"\n'
        for name, role in roles.items()
    )


def shipped_policy_text() -> str:
    """policies/clinic-matching.toml with every principal of these tests."""
    return test_policy_text() + principals_text(EXTRA_ROLES)


def policy_with_all_principals(base: str) -> str:
    """A policy of a test's own (without principals) plus every principal of these tests."""
    return base + principals_text({**BASE_ROLES, **EXTRA_ROLES})


@dataclass(frozen=True)
class Backup:
    """A copy of the data directory (and, on PostgreSQL, of the database)."""

    data: Path
    pg_database: str = ""


class Vault:
    """A vault home with a server started and stopped in this process (see the module docstring)."""

    def __init__(self, home: Path, clock: FixedClock, pg_cluster: Any = None, dsn: str = "") -> None:
        self.home = home
        self.clock = clock
        self._pg = pg_cluster
        self._dsn = dsn
        self._server: RunningServer | None = None
        self._clients: dict[str, VaultClient] = {}
        self._backups = 0
        self._pg_copies: list[str] = []

    # the server ------------------------------------------------------------------------------------
    def start(self) -> None:
        assert self._server is None, "already running"
        self._server = start_server(load_config(self.home / "vault.toml", {}), {}, self.clock)

    def stop(self, grace: float = 0) -> None:
        """Stop the server, its in-flight calls given ``grace`` seconds."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self._server is not None:
            self._server.stop(grace)
            self._server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> RunningServer:
        assert self._server is not None, "the server is stopped"
        return self._server

    @property
    def service(self) -> VaultService:
        """The running service, for its public job methods (sweeps, purges, verification)."""
        return self.running.service

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def client(self, who: str) -> VaultClient:
        """An SDK client of principal ``who`` on the running server (one per server run)."""
        if who not in self._clients:
            self._clients[who] = VaultClient(self.address, ALL_TOKENS[who], timeout=10)
        return self._clients[who]

    def share_with_clinic(
        self, record_id: str, category: str, fields: list[str], days: float = 30
    ) -> tuple[Any, Any]:
        """The member's consent to the clinic_proposal purpose for ``category``, and a share of
        ``record_id``'s ``fields`` with the clinic for ``days``: (grant, share)."""
        app = self.client("app")
        grant = app.grant_consent(
            "member-1",
            "clinic_proposal",
            {category: None},
            evidence_reference="match-request-8812",
            grantee_principal="clinic",
        )
        share = app.create_share(
            "member-1",
            "clinic",
            "clinic_proposal",
            [record_id],
            fields,
            expires_at=self.clock.now() + days * 86400,
        )
        return grant, share

    # backups ---------------------------------------------------------------------------------------
    def backup(self) -> Backup:
        """Stop, copy the data directory (and database), start again."""
        self.stop()
        self._backups += 1
        target = self.home / f"backup-{self._backups}"
        shutil.copytree(self.home / "data", target)
        copy = ""
        if self._pg is not None:
            copy = f"b_{uuid.uuid4().hex[:16]}"
            self._pg_admin(f'CREATE DATABASE "{copy}" TEMPLATE "{self._pg_name}"')
            self._pg_copies.append(copy)
        self.start()
        return Backup(target, copy)

    def restore(self, backup: Backup, *, acknowledge: bool = True) -> None:
        """Stop, put the copy back, start again (start-up replays the ledger). The operator
        acknowledges the restore first, as docs/audit.md says (the audit entries written since
        the backup are lost: without the acknowledgment the server withholds plaintext);
        ``acknowledge=False`` starts on the restored copy as it is."""
        self.stop()
        shutil.rmtree(self.home / "data")
        shutil.copytree(backup.data, self.home / "data")
        if self._pg is not None:
            self._pg_admin(f'DROP DATABASE "{self._pg_name}" WITH (FORCE)')
            self._pg_admin(f'CREATE DATABASE "{self._pg_name}" TEMPLATE "{backup.pg_database}"')
        if acknowledge:
            self.acknowledge_restore()
        self.start()

    def acknowledge_restore(self, reason: str = "restored the backup on purpose") -> None:
        """What ``vaultctl witness acknowledge-restore`` does, on the vault's clock."""
        from tests.support.restore import acknowledge_restore

        acknowledge_restore(self.home, self.clock, reason)

    @property
    def _pg_name(self) -> str:
        return self._dsn.rsplit("dbname=", 1)[1]

    def _pg_admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self._pg.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    # files and the CLI -----------------------------------------------------------------------------
    def blob_files(self) -> list[Path]:
        """Every file of the blob store."""
        return sorted(p for p in (self.home / "data" / "blobs").rglob("*") if p.is_file())

    def data_files(self) -> list[Path]:
        """Every file of the data directory (database, its WAL, blobs)."""
        return sorted(p for p in (self.home / "data").rglob("*") if p.is_file())

    def vaultctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``vaultctl --config HOME/vault.toml ARGS`` as a subprocess."""
        return vaultctl(self.home, *args)

    def pseudonym(self, subject_id: str) -> str:
        """How audit entries and deletion verification name a subject (``vaultctl audit hash``)."""
        result = self.vaultctl("audit", "hash", subject_id)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def close(self) -> None:
        self.stop()
        for copy in self._pg_copies:
            self._pg_admin(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')


@pytest.fixture
def policy_text() -> str:
    """The policy the vault runs with (modules override it)."""
    return shipped_policy_text()


@pytest.fixture
def clock() -> FixedClock:
    """The server's clock."""
    return FixedClock()


def configure(
    home: Path, policy_text: str, clock: FixedClock, pg_cluster: Any = None, dsn: str = ""
) -> Vault:
    """A vault home (SQLite, or PostgreSQL with a cluster and a database) running ``policy_text``;
    not started."""
    if pg_cluster is not None:
        write_config(home, storage__backend='"postgres"', storage__postgres_dsn=f'"{dsn}"')
    else:
        write_config(home)
    (home / "policy.toml").write_text(policy_text)
    return Vault(home, clock, pg_cluster, dsn)


@pytest.fixture
def vault(
    request: pytest.FixtureRequest, tmp_path: Path, policy_text: str, clock: FixedClock
) -> Iterator[Vault]:
    """A started vault on SQLite, or on PostgreSQL with ``parametrize("vault", BACKENDS,
    indirect=True)``."""
    if getattr(request, "param", "sqlite") == "postgres":
        v = configure(
            tmp_path,
            policy_text,
            clock,
            request.getfixturevalue("pg_cluster"),
            request.getfixturevalue("pg_dsn"),
        )
    else:
        v = configure(tmp_path, policy_text, clock)
    v.start()
    yield v
    v.close()


READ_ONCE_CATEGORIES = """
[categories.face_photo]
description = "A face photo for one simulation: content only, destroyed by the read that releases it."
content = true
retention = { read_once = true }

[categories.face_scan]
description = "A face scan with a note: read once."
fields = ["note"]
content = true
retention = { read_once = true }

[purposes.simulation]
description = "A one-off simulation of a procedure's result."
categories = ["face_photo", "face_scan"]
"""


def read_once_policy_text() -> str:
    """policies/clinic-matching.toml plus two read-once categories (seed 002's face photos):
    readable by the application under ``simulation``, exported under ``subject_access``, and
    shareable to clinics under ``clinic_proposal`` (face_photo)."""
    base = (ROOT / "policies" / "clinic-matching.toml").read_text()
    edits = {
        'purposes = ["matching", "customer_support"': (
            'purposes = ["simulation", "matching", "customer_support"'
        ),
        '"concern_photo", "payment_record"]': (
            '"concern_photo", "payment_record", "face_photo", "face_scan"]'
        ),
        'categories = ["concern_text", "concern_photo"]\nfields =': (
            'categories = ["concern_text", "concern_photo", "face_photo"]\nfields ='
        ),
    }
    for old, new in edits.items():
        assert base.count(old) == 1, old
        base = base.replace(old, new)
    return policy_with_all_principals(base + READ_ONCE_CATEGORIES)
