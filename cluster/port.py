"""The one narrow port the gateway (api/) talks to a node through.

Submit commands and get their typed events back; read the view the apply thread
last published; know the leader and the members; hear of every applied entry;
read the engine between two entries; read the event log. Nothing else: no Raft
internals, no engine object, no store. `ExchangeNode` is the implementation; the
gateway only ever sees this shape, so the core can change behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cluster.config import NodeConfig, Peer
from cluster.event_log import EventLog
from cluster.fault_hooks import FaultState
from cluster.views import NodeView
from engine import Exchange
from engine.events import Event


@dataclass(frozen=True, slots=True)
class EntryApplied:
    """What a subscriber hears after each applied entry, on the apply thread: the entry's
    new events, the view as it stands right after them (so what it shows belongs to these
    events' sequence, never a later one), and a reader of one price level's queue, valid
    only during the call."""

    events: list[Event]
    view: NodeView
    level_queue: Callable[[str, int, int], list[tuple[int, int]]]


EntryListener = Callable[[EntryApplied], None]


class BackupFailed(Exception):
    """A backup this node cannot take now (no quorum, the dump failed or took too long)."""


class NodePort(Protocol):
    node_id: str
    config: NodeConfig
    faults: FaultState
    members: dict[str, Peer]
    last_snapshot_index: int

    @property
    def view(self) -> NodeView: ...

    @property
    def applied_index(self) -> int: ...

    @property
    def event_log(self) -> EventLog: ...

    def submit(self, command: bytes, timeout_s: float) -> Future: ...

    def subscribe(self, listener: EntryListener) -> Callable[[], None]: ...

    def read_engine(self, read: Callable[[Exchange], Any]) -> Future: ...

    def read_engine_copy(self, read: Callable[[Exchange], Any]) -> Future: ...

    def wait_for_event_log(self, timeout_s: float) -> bool: ...

    def is_leader(self) -> bool: ...

    def leader_id(self) -> str | None: ...

    def leader_http(self) -> str | None: ...

    def led_by(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    def peer_connected(self, raft: str) -> bool: ...

    def change_membership(
        self, action: str, raft: str, callback: Callable[[Any, Any], None]
    ) -> None: ...

    def compact_log(self) -> None: ...

    def request_hash_mark(self, timeout_s: float) -> Any: ...

    def hash_at(self, index: int, timeout_s: float) -> str | None: ...

    def take_backup(self, timeout_s: float) -> Path: ...

    def backup_file(self, name: str) -> Path | None: ...

    def secret_check(self) -> str: ...
