"""The history of a chaos run, as Jepsen keeps one: every invocation and its completion.

A completion is `ok` (it happened, and this is what the exchange answered),
`fail` (it certainly did not happen) or `info` (unknown: it may have happened,
and may still). Alongside: the faults as they were applied, and samples of
every node's role and term.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK = "ok"
FAIL = "fail"
INFO = "info"
INVOKE = "invoke"


@dataclass(slots=True)
class Op:
    index: int
    process: int
    kind: str  # invoke | ok | fail | info
    f: str  # place | cancel | amend | deposit | withdraw | read
    value: dict[str, Any]
    time_s: float
    node: str = ""


@dataclass(slots=True)
class FaultRecord:
    family: str
    description: str
    targets: list[str]
    start_s: float
    end_s: float = 0.0
    # Nodes cut off from a majority while the fault lasted (partitions and pauses).
    minority: list[str] = field(default_factory=list)
    # Restarted or wiped nodes: seconds from their start until they applied what the
    # leader had committed when they started.
    catch_up_s: dict[str, float] = field(default_factory=dict)
    # The same moment as seconds into the run: where a node's steady state begins.
    caught_up_at_s: dict[str, float] = field(default_factory=dict)
    # Faults that must cost the voters nothing (read replicas): milliseconds each probe write
    # took to commit through the leader while the fault lasted, None for one not committed.
    commit_ms: list[float | None] = field(default_factory=list)
    # Why each probe that was not committed failed (the leader's answer, or none in time).
    probe_errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class StatusSample:
    time_s: float
    node: str
    role: str
    term: int
    leader: str | None


@dataclass(slots=True)
class StateSample:
    """A node's live state read during the run: invariants and per-asset totals at `seq`."""

    time_s: float
    node: str
    seq: int
    ok: bool
    problems: list[str]
    totals: dict[str, int]


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """What one node used at one moment (chaos/resources.py)."""

    time_s: float
    node: str
    pid: int
    rss_bytes: int
    fds: int
    journal_bytes: int
    store_bytes: int
    # Mean time to apply an entry since the previous sample; None when nothing was applied.
    apply_ms: float | None
    # Writes acknowledged in the whole run so far.
    acknowledged: int


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    status: list[StatusSample] = field(default_factory=list)
    states: list[StateSample] = field(default_factory=list)
    resources: list[ResourceSample] = field(default_factory=list)
    acknowledged_writes: int = 0

    def invoke(self, process: int, f: str, value: dict[str, Any], time_s: float) -> Op:
        op = Op(len(self.ops), process, INVOKE, f, value, time_s)
        self.ops.append(op)
        return op

    def complete(
        self, invocation: Op, kind: str, value: dict[str, Any], time_s: float, node: str = ""
    ) -> Op:
        op = Op(len(self.ops), invocation.process, kind, invocation.f, value, time_s, node)
        self.ops.append(op)
        if kind == OK and invocation.f != "read":
            self.acknowledged_writes += 1
        return op

    def pairs(self) -> list[tuple[Op, Op | None]]:
        """Each invocation with its completion (None if the run ended first)."""
        open_by_process: dict[int, Op] = {}
        out: list[tuple[Op, Op | None]] = []
        slots: dict[int, int] = {}
        for op in self.ops:
            if op.kind == INVOKE:
                open_by_process[op.process] = op
                slots[op.process] = len(out)
                out.append((op, None))
            else:
                invocation = open_by_process.pop(op.process)
                out[slots.pop(op.process)] = (invocation, op)
        return out

    def write(self, path: Path) -> None:
        with path.open("w") as out:
            for op in self.ops:
                out.write(json.dumps({"type": "op", **asdict(op)}) + "\n")
            for fault in self.faults:
                out.write(json.dumps({"type": "fault", **asdict(fault)}) + "\n")
            for sample in self.status:
                out.write(json.dumps({"type": "status", **asdict(sample)}) + "\n")
            for state in self.states:
                out.write(json.dumps({"type": "state", **asdict(state)}) + "\n")
            for sample in self.resources:
                out.write(json.dumps({"type": "resource", **asdict(sample)}) + "\n")

    @classmethod
    def read(cls, path: Path) -> History:
        history = cls()
        for line in path.read_text().splitlines():
            row = json.loads(line)
            kind = row.pop("type")
            if kind == "op":
                history.ops.append(Op(**row))
            elif kind == "fault":
                history.faults.append(FaultRecord(**row))
            elif kind == "state":
                history.states.append(StateSample(**row))
            elif kind == "resource":
                history.resources.append(ResourceSample(**row))
            else:
                history.status.append(StatusSample(**row))
        return history
