"""vaultctl keys: the root key's lifecycle (init, status, rotate, rewrap, retire, destroy, epoch).

Contract: each command runs in-process against the configured key provider and store (no server
needed), closes the store whatever happens, and exits 1 when the result needs attention (subject
keys under versions the provider lacks, keys that failed to rewrap).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from vault_service.cli.common import (
    Output,
    clock_of,
    config_of,
    fmt_time,
    provider_of,
    store_of,
)


def cmd_keys_init(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    config = config_of(args, env)
    if config.keys.provider != "local":
        primary = provider_of(config, env).initialize()
        out.emit(
            {"provider": config.keys.provider, "primary": primary, "created": True},
            f"{config.keys.provider}: root key ready, primary version {primary}",
        )
        return 0
    from vault_service.key_providers import create_keyring

    path = config.path(config.keys.keyring_path)
    if path.exists() and args.if_missing:
        out.emit({"keyring": str(path), "created": False}, f"keyring exists: {path}")
        return 0
    passphrase = env.get(config.keys.passphrase_env, "")
    create_keyring(path, passphrase.encode() if passphrase else None, clock_of(config).now())
    out.emit(
        {"keyring": str(path), "created": True, "sealed": bool(passphrase), "primary": "1"},
        f"created keyring {path} (mode 0600{', sealed' if passphrase else ''})",
    )
    return 0


def cmd_keys_status(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.lifecycle.rotation import inventory

    config = config_of(args, env)
    provider = provider_of(config, env)
    store = store_of(config, provider)
    try:
        rows = inventory(store, provider)
        counts = store.subject_keys_by_root_version()
    finally:
        store.close()
    known = {r.version for r in rows}
    unknown = sorted(set(counts) - known)
    versions = [
        {
            "version": r.version,
            "provider_state": r.provider_state,
            "lifecycle": r.lifecycle,
            "primary": r.primary,
            "subject_keys": r.subject_keys,
            "service_keys": r.service_keys,
            "destroy_at": r.destroy_at,
        }
        for r in rows
    ]
    lines = [f"provider: {provider.name}  primary: {provider.primary_version()}"]
    lines += [
        f"  version {r.version:>4}  {r.lifecycle:<22} subject keys: {r.subject_keys:>8}"
        f"  service keys: {r.service_keys}"
        + (f"  destroyed at: {fmt_time(r.destroy_at)}" if r.destroy_at else "")
        for r in rows
    ]
    if unknown:
        lines.append(f"  WARNING: subject keys under versions the provider lacks: {unknown}")
    out.emit(
        {
            "provider": provider.name,
            "primary": provider.primary_version(),
            "versions": versions,
            "unknown_versions": unknown,
        },
        "\n".join(lines),
    )
    return 0 if not unknown else 1


def cmd_keys_rotate(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.lifecycle.rotation import rotate

    config = config_of(args, env)
    provider = provider_of(config, env)
    store = store_of(config, provider)
    try:
        old, new = rotate(store, provider, clock_of(config).now())
    finally:
        store.close()
    out.emit(
        {"provider": provider.name, "previous_primary": old, "primary": new},
        f"rotated: primary root version {old} -> {new}; run 'vaultctl keys rewrap' next",
    )
    return 0


def cmd_keys_epoch(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.lifecycle.rotation import run_epochs

    config = config_of(args, env)
    provider = provider_of(config, env)
    store = store_of(config, provider)
    lc = config.lifecycle
    try:
        report = run_epochs(
            store,
            provider,
            clock_of(config).now(),
            lc.rotate_every_days * 86400,
            lc.backup_window_days * 86400,
        )
    finally:
        store.close()
    out.emit(
        {
            "rotated_to": report.rotated_to,
            "rewrapped": report.rewrapped,
            "retired": report.retired,
            "destroyed": report.destroyed,
        },
        f"rotated to {report.rotated_to or '-'}, rewrapped {report.rewrapped}, retired "
        f"{report.retired or '-'}, destroyed {report.destroyed or '-'}",
    )
    return 0


def _progress_bar(done: int, total: int) -> None:
    width = 40
    filled = width * done // total if total else width
    sys.stderr.write(f"\r[{'#' * filled}{' ' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


def cmd_keys_rewrap(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.lifecycle.rotation import rewrap_keys

    config = config_of(args, env)
    provider = provider_of(config, env)
    store = store_of(config, provider)
    show = sys.stderr.isatty() and not out.as_json
    try:
        summary = rewrap_keys(
            store,
            provider,
            batch_size=args.batch_size,
            progress=_progress_bar if show else None,
            max_keys=args.max_keys,
            now=clock_of(config).now(),
        )
    finally:
        store.close()
    if show:
        sys.stderr.write("\n")
    data = {
        "primary": summary.primary,
        "rewrapped": summary.rewrapped,
        "service_keys_rewrapped": summary.service_keys,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "remaining": summary.remaining,
        "seconds": round(summary.seconds, 3),
        "keys_per_second": round(summary.rate, 1),
    }
    out.emit(
        data,
        f"rewrapped {summary.rewrapped} subject keys (and {summary.service_keys} service keys)"
        f" to version {summary.primary} in "
        f"{summary.seconds:.2f}s ({summary.rate:.0f}/s); skipped {summary.skipped}, "
        f"failed {summary.failed}, remaining {summary.remaining}",
    )
    return 0 if summary.failed == 0 else 1


def cmd_keys_retire(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.lifecycle.rotation import retire

    config = config_of(args, env)
    provider = provider_of(config, env)
    store = store_of(config, provider)
    try:
        status = retire(store, provider, args.version, clock_of(config).now())
    finally:
        store.close()
    out.emit(
        {"version": status.version, "lifecycle": status.lifecycle},
        f"root version {status.version} retired",
    )
    return 0


def cmd_keys_destroy(args: argparse.Namespace, env: Mapping[str, str], out: Output) -> int:
    from vault_service.lifecycle.rotation import destroy, mark_for_destruction

    config = config_of(args, env)
    provider = provider_of(config, env)
    store = store_of(config, provider)
    now = clock_of(config).now()
    try:
        if args.mark:
            status = mark_for_destruction(store, provider, args.version, now)
            out.emit(
                {"version": status.version, "lifecycle": status.lifecycle},
                f"root version {status.version} marked; destroy it with: "
                f"vaultctl keys destroy {status.version}",
            )
            return 0
        result = destroy(store, provider, args.version, now)
    finally:
        store.close()
    out.emit(
        {
            "version": result.version,
            "state": result.state.value,
            "destroy_at": result.destroy_at,
            "detail": result.detail,
        },
        f"root version {result.version}: {result.state.value} "
        f"(effective {fmt_time(result.destroy_at)}): {result.detail}",
    )
    return 0


def add_parser(sub: Any) -> None:
    """vaultctl keys ..."""
    keys = sub.add_parser("keys", help="root keys").add_subparsers(dest="keys_cmd", required=True)
    k_init = keys.add_parser("init", help="create the root key (local keyring file: mode 0600)")
    k_init.add_argument(
        "--if-missing", action="store_true", help="succeed without changes if the keyring exists"
    )
    k_init.set_defaults(fn=cmd_keys_init)
    keys.add_parser(
        "status", help="root-key versions, their states, and the keys each protects"
    ).set_defaults(fn=cmd_keys_status)
    keys.add_parser("rotate", help="create a new root version and make it primary").set_defaults(
        fn=cmd_keys_rotate
    )
    keys.add_parser(
        "epoch",
        help="the scheduled epoch job once: rotate if due, rewrap, retire "
        "unused versions, destroy those past the backup window",
    ).set_defaults(fn=cmd_keys_epoch)
    k_rewrap = keys.add_parser(
        "rewrap",
        help="rewrap subject keys onto the primary version (resumable; no data is re-encrypted)",
    )
    k_rewrap.add_argument("--batch-size", type=int, default=200)
    k_rewrap.add_argument(
        "--max-keys", type=int, default=None, help="stop after this many keys (re-run to continue)"
    )
    k_rewrap.set_defaults(fn=cmd_keys_rewrap)
    k_retire = keys.add_parser("retire", help="retire a version nothing depends on any more")
    k_retire.add_argument("version")
    k_retire.set_defaults(fn=cmd_keys_retire)
    k_destroy = keys.add_parser(
        "destroy", help="destroy a retired version: --mark first, then again without --mark"
    )
    k_destroy.add_argument("version")
    k_destroy.add_argument("--mark", action="store_true", help="first step: mark for destruction")
    k_destroy.set_defaults(fn=cmd_keys_destroy)
