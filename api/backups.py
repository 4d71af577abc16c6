"""Backups of a running cluster, taken on one node: `raftex admin backup` drives these.

POST takes one (the node forces a snapshot dump: the engine and the event log at
one applied index, written by a forked child, so the node keeps committing) and
answers what a restore needs to trust it: its log index and term, the log time
of that entry, the state hash there, the file's SHA-256 and size, and a check of
the cluster secret it needs. Encrypted at rest, it also
answers the keyring: the data key wrapped by the key-encryption key, which is
never sent. GET streams the file; DELETE removes it from the node once it is
copied.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from aiohttp import web

from api.admin import node_of, require_admin
from api.errors import ApiError
from cluster.fingerprints import node_state_hash
from cluster.port import BackupFailed, NodePort
from cluster.snapshot_file import SnapshotFileError, file_sha256, read_snapshot_meta

BACKUP_TIMEOUT_S = 600.0


def add_backup_routes(app: web.Application) -> None:
    app.router.add_post("/v1/admin/backups", take_backup)
    app.router.add_get("/v1/admin/backups/{name}", download_backup)
    app.router.add_delete("/v1/admin/backups/{name}", remove_backup)


async def take_backup(request: web.Request) -> web.Response:
    require_admin(request)
    node = node_of(request)
    try:
        path = await asyncio.to_thread(node.take_backup, BACKUP_TIMEOUT_S)
        described = await asyncio.to_thread(_describe, path, node)
    except (BackupFailed, SnapshotFileError, OSError) as exc:
        raise ApiError(503, "no_backup", f"no backup: {exc}") from None
    keyring = node.config.keyring_file
    return web.json_response(
        {
            "node": node.node_id,
            "secret_check": node.secret_check(),
            "keyring": None if keyring is None else await asyncio.to_thread(keyring.read_text),
            **described,
        }
    )


def _describe(path: Path, node: NodePort) -> dict[str, Any]:
    event_log = node.event_log
    meta = read_snapshot_meta(path, node.config.data_key)
    engine_hash = hashlib.sha256(meta.engine).hexdigest()
    index = meta.applied_index
    logged = event_log.entries_after(index - 1, 1)
    return {
        "name": path.name,
        "index": index,
        "term": meta.last_entry[2],
        "log_time_ms": logged[0].log_time_ms if logged and logged[0].log_index == index else 0,
        "state_hash": node_state_hash(engine_hash, event_log.audit_head_at(index)),
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
    }


def _backup_path(request: web.Request) -> Path:
    require_admin(request)
    name = request.match_info["name"]
    path = node_of(request).backup_file(name)
    if path is None:
        raise ApiError(404, "no_backup", f"this node has no backup named {name!r}")
    return path


async def download_backup(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(_backup_path(request))


async def remove_backup(request: web.Request) -> web.Response:
    path = _backup_path(request)
    path.unlink(missing_ok=True)
    return web.json_response({"removed": path.name})
