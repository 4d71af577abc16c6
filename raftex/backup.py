"""Backups of a running cluster, and new clusters restored from them.

`raftex admin backup --out DIR` asks the leader for a backup (a snapshot dump
forced now: the engine and the event log at one committed index, written by a
forked child while the cluster keeps committing), copies it into DIR as
`snapshot.tar` and writes `manifest.json` beside it: the index, term and log
time it holds, the state hash there, the file's SHA-256 and size, and a check
of the cluster secret it needs (never the secret itself). A cluster encrypted at
rest gives a sealed dump and its keyring, copied as `keyring.json`: the data key
wrapped by the key-encryption key, which stays with the operator.

`raftex restore --from DIR --data-dir NEW --secret-file FILE [--kek-file KEK]
[--nodes 3]` checks all of that (the manifest's digest, every digest inside the
dump, the secret, the key), then writes a new local cluster into NEW whose every
node starts from the backup: `raftex up --data-dir NEW` runs it. The secret must
be the one of the cluster the backup came from, because the API secrets in the
state are sealed with it. An encrypted backup needs the key-encryption key that
opens its keyring and restores encrypted under the same data key; a backup in
clear restored with a key-encryption key is encrypted on the way (a new data
key, the event log's values sealed): how an existing cluster in clear becomes
encrypted. Nothing is written into NEW until everything checked out.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cluster.admin_client import AdminClient, AdminError, NodeAddress
from cluster.event_log import COLUMN_FAMILIES as EVENT_LOG_COLUMN_FAMILIES
from cluster.fingerprints import secret_check
from cluster.journal import DurableJournal, FsyncPolicy
from cluster.keyring import (
    KEYRING_FILE_NAME,
    KeyringError,
    backup_data_key_id,
    open_keyring,
    read_kek_file,
)
from cluster.launcher import LocalCluster, PortBases
from cluster.node import DUMP_FILE_NAME, JOURNAL_FILE_NAME
from cluster.rocks import reseal
from cluster.sealed import DataKey
from cluster.snapshot_file import (
    SnapshotFileError,
    extract_event_log,
    file_sha256,
    read_snapshot_meta,
    write_snapshot_file,
)

MANIFEST_NAME = "manifest.json"
SNAPSHOT_NAME = "snapshot.tar"
MANIFEST_VERSION = 1
BACKUP_TIMEOUT_S = 600.0


class BackupError(Exception):
    """A backup that cannot be taken, or one that cannot be trusted or restored."""


def _empty_or_new(directory: Path, what: str) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupError(f"{what} {directory} is not an empty directory: choose a new one")


async def take_backup(client: AdminClient, nodes: list[NodeAddress], out: Path) -> dict[str, Any]:
    """Backs up the cluster through its leader into `out` (new or empty); the manifest."""
    _empty_or_new(out, "--out")
    rows = await client.status_all(nodes)
    leaders = [r for r in rows if r.get("role") == "leader"]
    if not leaders:
        raise BackupError("no leader: a backup needs a cluster that commits (see admin status)")
    leader = next(n for n in nodes if n.node_id == leaders[0]["id"])
    taken = await client.call(
        leader.http, "POST", "/v1/admin/backups", {}, timeout_s=BACKUP_TIMEOUT_S
    )
    path = f"/v1/admin/backups/{taken['name']}"
    created = not out.exists()
    partial = out / (SNAPSHOT_NAME + ".part")
    try:
        out.mkdir(parents=True, exist_ok=True)
        digest = await client.download(leader.http, path, partial, BACKUP_TIMEOUT_S)
        if digest != taken["sha256"]:
            raise BackupError(f"the copy of {taken['name']} does not match its digest; try again")
        os.replace(partial, out / SNAPSHOT_NAME)
    except BaseException:
        partial.unlink(missing_ok=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        # The node's copy, whatever happened to ours: it would pin a whole state on its disk.
        with contextlib.suppress(AdminError):
            await client.call(leader.http, "DELETE", path)
    if taken.get("keyring"):
        _write_synced(out / KEYRING_FILE_NAME, taken["keyring"])
    manifest = {
        "version": MANIFEST_VERSION,
        "created_ms": int(time.time() * 1000),
        "from_node": taken["node"],
        "cluster": [{"id": n.node_id, "http": n.http} for n in nodes],
        **{k: taken[k] for k in ("index", "term", "log_time_ms", "state_hash", "secret_check")},
        "snapshot": {"name": SNAPSHOT_NAME, "sha256": taken["sha256"], "bytes": taken["bytes"]},
        "encrypted_at_rest": bool(taken.get("keyring")),
    }
    _write_synced(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(backup: Path) -> dict[str, Any]:
    """The manifest, once the snapshot file matches its SHA-256."""
    try:
        manifest = json.loads((backup / MANIFEST_NAME).read_text())
        expected = manifest["snapshot"]
        index = manifest["index"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{backup}: no readable {MANIFEST_NAME} ({exc})") from None
    if manifest.get("version") != MANIFEST_VERSION or type(index) is not int:
        raise BackupError(f"{backup}: {MANIFEST_NAME} is not a manifest this version reads")
    snapshot = backup / SNAPSHOT_NAME
    try:
        digest = file_sha256(snapshot)
    except OSError as exc:
        raise BackupError(f"{backup}: cannot read {SNAPSHOT_NAME}: {exc.strerror}") from None
    if digest != expected.get("sha256"):
        raise BackupError(f"{snapshot} does not match the manifest's SHA-256: damaged")
    return manifest


def _backup_data_key(
    backup: Path, kek: bytes | None, current_keyring: Path | None
) -> tuple[DataKey | None, Path | None]:
    """The data key an encrypted backup is sealed under, and the keyring that opened it
    (None, None: a backup in clear). A backup keeps the keyring of its day, wrapped by the
    KEK of its day; after a rotation, `current_keyring` (the cluster's keyring now, opened
    by the current KEK) opens it too, as long as it holds the same data key."""
    keyring = backup / KEYRING_FILE_NAME
    if not keyring.exists():
        return None, None
    if kek is None:
        raise BackupError(
            "this backup is encrypted at rest: give --kek-file, the key-encryption key of the "
            "cluster it came from (after a key rotation: the current key, with --keyring, the "
            "cluster's keyring now)"
        )
    try:
        if current_keyring is None:
            return open_keyring(keyring, kek), keyring
        data_key = open_keyring(current_keyring, kek)
        if data_key.key_id != backup_data_key_id(keyring):
            raise BackupError(
                f"{current_keyring} holds data key {data_key.key_id}, the backup was sealed "
                f"under {backup_data_key_id(keyring)}: the keyring of another cluster"
            )
        return data_key, current_keyring
    except KeyringError as exc:
        raise BackupError(str(exc)) from None


def restore(
    backup: Path,
    data_dir: Path,
    secret: str,
    nodes: int = 3,
    bases: PortBases | None = None,
    kek_file: Path | None = None,
    keyring: Path | None = None,
) -> dict[str, Any]:
    """Writes a new local cluster into `data_dir` (new or empty) whose nodes all start from
    the backup; start it with `raftex up --data-dir DATA_DIR`. `kek_file`: the key that
    opens an encrypted backup's keyring, or one to encrypt a backup in clear under;
    `keyring`: the cluster's current keyring, for a backup taken before a key rotation."""
    _empty_or_new(data_dir, "--data-dir")
    manifest = read_manifest(backup)
    try:
        kek = read_kek_file(kek_file) if kek_file is not None else None
    except KeyringError as exc:
        raise BackupError(str(exc)) from None
    source_key, source_keyring = _backup_data_key(backup, kek, keyring)
    if not hmac.compare_digest(secret_check(secret), str(manifest.get("secret_check", ""))):
        raise BackupError(
            "the secret is not the one of the cluster this backup came from (the sealed API "
            "secrets in its state open only with that one)"
        )
    snapshot = backup / SNAPSHOT_NAME
    try:
        meta = read_snapshot_meta(snapshot, source_key)
    except SnapshotFileError as exc:
        raise BackupError(f"damaged backup: {exc}") from None
    if meta.applied_index != manifest["index"]:
        raise BackupError(
            f"{snapshot} holds index {meta.applied_index}, the manifest says {manifest['index']}"
        )
    with tempfile.TemporaryDirectory(prefix="raftex-restore-") as scratch:
        checkpoint = Path(scratch) / "events"
        try:
            extract_event_log(snapshot, checkpoint, meta.event_log_digests or {}, source_key)
        except SnapshotFileError as exc:
            raise BackupError(f"damaged backup: {exc}") from None
        created = not data_dir.exists()
        try:
            if source_keyring is not None:
                data_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source_keyring, data_dir / KEYRING_FILE_NAME)
                os.chmod(data_dir / KEYRING_FILE_NAME, 0o600)
            cluster = LocalCluster(
                data_dir.resolve(), nodes, bases=bases, secret=secret, kek_file=kek_file
            )
            data_key = source_key
            if kek is not None and source_key is None:
                data_key = open_keyring(data_dir / KEYRING_FILE_NAME, kek)
                sealed = Path(scratch) / "sealed-events"
                reseal(checkpoint, sealed, EVENT_LOG_COLUMN_FAMILIES, data_key)
                checkpoint = sealed
            # The new members, in the dump every node starts from: Raft addresses and the
            # membership the API lists.
            voters = cluster.voters
            ours = replace(
                meta,
                cluster=sorted(n.raft for n in voters),
                members=[[n.node_id, n.raft, n.http] for n in voters],
            )
            for node in voters:
                node_dir = data_dir / node.node_id
                node_dir.mkdir(parents=True)
                write_snapshot_file(node_dir / DUMP_FILE_NAME, ours, checkpoint, data_key)
                _start_at_term(node_dir / JOURNAL_FILE_NAME, meta.last_entry[2], data_key)
        except BaseException:
            if created:
                shutil.rmtree(data_dir, ignore_errors=True)
            else:
                for child in data_dir.iterdir():
                    if child.is_dir():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            raise
    return {
        "data_dir": str(data_dir),
        "nodes": [{"id": n.node_id, "http": n.http, "raft": n.raft} for n in voters],
        "index": manifest["index"],
        "state_hash": manifest["state_hash"],
    }


def _start_at_term(journal_path: Path, term: int, data_key: DataKey | None) -> None:
    """A journal that starts at the backup's term. Empty, it would start at term 0: the new
    cluster would elect at term 1 and append entries of term 1 after the backup's entry of a
    higher term, and Raft's up-to-date check (last entry's term first) would then prefer a
    node holding only the backup over one holding those committed entries."""
    journal = DurableJournal(str(journal_path), FsyncPolicy.ALWAYS, data_key)
    try:
        journal.setCurrentTerm(term, None)
    finally:
        journal.close()


def _write_synced(path: Path, text: str) -> None:
    """Readable by its owner only, like the backup beside it."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
