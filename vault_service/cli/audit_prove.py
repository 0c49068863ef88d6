"""``--prove`` of vaultctl audit query and audit tail: each entry printed is verified offline first
(:mod:`vault_service.audit.prove`: the checkpoint note's signature, the entry's hash recomputed
from its fields, its inclusion proof against the note's root).

Contract: the audit public key is ``--public-key HEX`` (an auditor's pinned copy), else the one
the config's key provider unwraps; the origin is ``--origin``, else the config's ``[audit]
origin``, else the default origin of that key. ``--witness-key HEX`` also requires the witness's
cosignature on the note. The first entry that fails ends the command with exit 1, naming it (it
is not printed); entries newer than the checkpoint are printed and counted as not yet provable.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vault_service.audit.prove import EventCheck, Prover
from vault_service.cli.common import assembly_of, config_of
from vault_service.config import Config
from vault_service.errors import ConfigError
from vault_service.tlog.note import NoteError


class ProofFailed(Exception):
    """An entry did not verify: ``seq`` (None: the checkpoint note itself) and why."""

    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(f"entry {seq}: {reason}" if seq is not None else reason)
        self.seq = seq
        self.reason = reason


def add_prove_args(p: argparse.ArgumentParser) -> None:
    """The flags of ``--prove`` (see the module docstring)."""
    p.add_argument(
        "--prove",
        action="store_true",
        help="verify each entry's hash and inclusion proof against the signed checkpoint "
        "(offline) before printing it; exit 1 naming the first that fails",
    )
    p.add_argument(
        "--public-key",
        help="with --prove: the vault's audit public key (hex; default: the key provider's)",
    )
    p.add_argument("--origin", default="", help="with --prove: the audit log's origin")
    p.add_argument(
        "--witness-key", help="with --prove: also require this witness's cosignature (hex key)"
    )
    p.add_argument("--witness-name", default="vault-service-witness", help="the witness's name")


def _hex(value: str, flag: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{flag}: an Ed25519 public key is 64 hex digits")
    return raw


def _config(args: argparse.Namespace, env: Mapping[str, str]) -> Config | None:
    return config_of(args, env) if Path(args.config).is_file() else None


def prover_of(args: argparse.Namespace, env: Mapping[str, str]) -> Prover:
    """The :class:`Prover` of the command's flags and config."""
    from vault_service.lifecycle.audit_log import AUDIT_TREE, default_origin

    config = _config(args, env)
    if args.public_key:
        key = _hex(args.public_key, "--public-key")
    elif config is None:
        raise ConfigError("--prove: pass --public-key HEX (no config file to take the audit key from)")
    else:
        assembly: Any = assembly_of(config, env)
        try:
            key = assembly.service.signing_key.public_key()
        finally:
            assembly.store.close()
    origin = args.origin or (config.audit.origin if config else "") or default_origin(key, AUDIT_TREE)
    witness = (args.witness_name, _hex(args.witness_key, "--witness-key")) if args.witness_key else None
    return Prover(origin, key, witness)


def checked(prover: Prover, event: Any, signed_note: str) -> EventCheck:
    """The check of one event; ProofFailed when it fails."""
    result = prover.check(event, signed_note)
    if not result.ok:
        raise ProofFailed(event.seq, result.reason)
    return result


def prove_page(prover: Prover, events: Sequence[Any], signed_note: str) -> tuple[list[EventCheck], int]:
    """The checks of a page's events and the size of the checkpoint they are against (0: no
    checkpoint and no events); ProofFailed at the first failure (the note first)."""
    size = 0
    if signed_note:
        try:
            size = prover.checkpoint(signed_note).size
        except NoteError as e:
            raise ProofFailed(None, f"the checkpoint note does not verify: {e}") from None
    return [checked(prover, e, signed_note) for e in events], size
