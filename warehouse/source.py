"""Where a warehouse build reads the event history: a node's data directory (its event log,
read beside the running node as a RocksDB secondary) or a running node's admin API.

Both give the same events in sequence order, so a warehouse built from either is the same.
A data directory encrypted at rest opens with the cluster's keyring (beside the node's
directory, where `raftex up` keeps it) and its key-encryption key: `--kek-file`, else
RAFTEX_KEK, else the key file the local cluster's launch plan names.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Protocol

from cluster.admin_client import AdminClient
from cluster.event_log import EventLog
from cluster.keyring import KEYRING_FILE_NAME, load_data_key
from cluster.launcher import LAUNCH_FILE_NAME
from cluster.node import event_log_dir
from cluster.rocks import READ_LIMIT_MAX
from engine.events import EVENT_NAMES, Event

_CLASS_BY_NAME = {name: cls for cls, name in EVENT_NAMES.items()}


class SourceError(Exception):
    """A history that cannot be read; the message says what to fix."""


class EventSource(Protocol):
    def events_after(self, seq: int) -> list[Event]:
        """Up to a page of events with a sequence above `seq`, ascending."""
        ...

    def verify_audit(self) -> dict[str, Any]:
        """The audit chain re-hashed from its first command: ok, records, first_bad, reason."""
        ...

    def close(self) -> None: ...


def events_upto(source: EventSource, upto: int) -> Iterator[Event]:
    """Every event of the history up to sequence `upto` (where a warehouse stopped), in
    order: what the checks re-read it with."""
    seq = 0
    while seq < upto and (page := source.events_after(seq)):
        for event in page:
            if event.seq > upto:
                return
            yield event
        seq = page[-1].seq


class DataDirSource:
    """A node's data directory, read beside the node (or with the node stopped)."""

    def __init__(self, data_dir: Path, kek_file: Path | None, kek_env: str | None) -> None:
        log_dir = event_log_dir(data_dir)
        if not (log_dir / "CURRENT").exists():
            raise SourceError(f"{data_dir} holds no event log: give a node's data directory")
        keyring = data_dir.parent / KEYRING_FILE_NAME
        data_key = None
        if keyring.exists():
            kek_file = kek_file or (None if kek_env else _planned_kek_file(data_dir.parent))
            data_key = load_data_key(keyring, kek_file, kek_env)
        self._scratch = Path(tempfile.mkdtemp(prefix="raftex-warehouse-"))
        try:
            self._log = EventLog.follow(log_dir, self._scratch / "follower", data_key)
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise

    def events_after(self, seq: int) -> list[Event]:
        return self._log.events_since(seq, READ_LIMIT_MAX)

    def verify_audit(self) -> dict[str, Any]:
        return asdict(self._log.verify_audit())

    def close(self) -> None:
        self._log.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


def _planned_kek_file(cluster_dir: Path) -> Path | None:
    try:
        plan = json.loads((cluster_dir / LAUNCH_FILE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return Path(plan["kek_file"]) if plan.get("kek_file") else None


class NodeSource:
    """A running node's event history through its admin API (`GET /v1/admin/events`)."""

    def __init__(self, http: str, token: str, ca_file: Path | None = None) -> None:
        self._http = http
        self._token = token
        self._ca_file = ca_file

    def events_after(self, seq: int) -> list[Event]:
        return asyncio.run(self._page(seq))

    def verify_audit(self) -> dict[str, Any]:
        return asyncio.run(self._get("/v1/admin/audit/verify", {}))

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        async with AdminClient(self._token, ca_file=self._ca_file, timeout_s=300.0) as client:
            return await client.call(self._http, "GET", path, params=params)

    async def _page(self, seq: int) -> list[Event]:
        params = {"since": str(seq), "limit": str(READ_LIMIT_MAX)}
        answer = await self._get("/v1/admin/events", params)
        return [_event_from_dict(row) for row in answer["events"]]

    def close(self) -> None:
        return None


def _event_from_dict(row: dict[str, Any]) -> Event:
    cls = _CLASS_BY_NAME[row["type"]]
    return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in row})
