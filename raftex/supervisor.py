"""Keeps a local cluster's nodes running: what `raftex up` does until Ctrl-C.

A node that exits is reported (its exit code, or the signal that ended it) and
started again after a back-off: 0.5 s, doubling up to 10 s, and back to 0.5 s
once a run has lasted a minute. A node that exits before it answered its health
check five times in a row is failing to start (a bad config, a damaged or full
disk, a port someone else took): it is left down and reported rather than
restarted for ever, as is a node that stopped itself because its state or its
journal cannot be trusted (a restart would only repeat that). cluster.json
holds the pid of every running node, and no pid for a node that is down.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cluster.config import EXIT_KEY
from cluster.launcher import LocalCluster, LocalNode
from cluster.node import EXIT_DIVERGED, EXIT_JOURNAL_FAILED
from cluster.tls import client_context
from raftex.restart_backoff import RestartBackoff

FAILED_STARTS_MAX = 5
HEALTH_TIMEOUT_S = 0.5
# Exits that a restart cannot mend: restarting would only repeat them (cluster/node.py).
FATAL_EXIT_CODES = {
    EXIT_DIVERGED: "it stopped rather than run a state that is not the log's",
    EXIT_JOURNAL_FAILED: "its journal could not be written",
    EXIT_KEY: "its key-encryption key does not open its data (wrong key or keyring)",
}


@dataclass(slots=True)
class _Watch:
    """What the supervisor knows of one node between two checks."""

    started_at: float
    served: bool = False
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    failed_starts: int = 0
    restart_at: float | None = None


class Supervisor:
    """Call `check()` periodically; `restart=False` leaves a node that exits down."""

    def __init__(self, cluster: LocalCluster, restart: bool, report: Callable[[str], None]) -> None:
        self.cluster = cluster
        self.restart = restart
        self.report = report
        # Made once every node answers (raftex up has waited for a leader all of them know).
        self._watches = {
            node.node_id: _Watch(cluster.started_at(node.node_id), _serving(node, cluster.ca_file))
            for node in cluster.nodes
        }

    def check(self) -> None:
        now = time.monotonic()
        for node in self.cluster.nodes:
            watch = self._watches[node.node_id]
            process = self.cluster.processes.get(node.node_id)
            if process is None:
                if watch.restart_at is not None and now >= watch.restart_at:
                    self._start(node, watch)
                continue
            code = process.poll()
            if code is None:
                watch.served = watch.served or _serving(node, self.cluster.ca_file)
            else:
                self._exited(node, watch, code, now)

    @property
    def all_down(self) -> bool:
        """No node runs and none is due to start again."""
        return not self.cluster.processes and all(
            watch.restart_at is None for watch in self._watches.values()
        )

    def _start(self, node: LocalNode, watch: _Watch) -> None:
        watch.restart_at = None
        watch.served = False
        self.cluster.start_one(node.node_id)
        watch.started_at = self.cluster.started_at(node.node_id)
        self.report(f"{node.node_id} restarted, pid {self.cluster.processes[node.node_id].pid}")

    def _exited(self, node: LocalNode, watch: _Watch, code: int, now: float) -> None:
        self.cluster.reap(node.node_id)
        ran_s = now - watch.started_at
        exited = f"{node.node_id} exited ({_how(code)}) after {ran_s:.1f} s"
        watch.failed_starts = 0 if watch.served else watch.failed_starts + 1
        if not self.restart:
            self.report(f"{exited}; left down (--no-restart)")
        elif code in FATAL_EXIT_CODES:
            self.report(f"{exited}: {FATAL_EXIT_CODES[code]}; left down, see {node.log_path}")
        elif watch.failed_starts >= FAILED_STARTS_MAX:
            self.report(
                f"{exited}; it failed to start {watch.failed_starts} times in a row and is "
                f"left down: see {node.log_path}"
            )
        else:
            delay_s = watch.backoff.after_exit(ran_s)
            watch.restart_at = now + delay_s
            self.report(f"{exited}; restarting in {delay_s:g} s")


def _how(code: int) -> str:
    if code >= 0:
        return f"code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def _serving(node: LocalNode, ca_file: Path | None) -> bool:
    """Whether the node answers its health check as itself: a port that merely accepts
    connections could be another program's (the node then fails at bind, and must count as a
    failed start)."""
    scheme = "https" if ca_file is not None else "http"
    context = client_context(ca_file) if ca_file is not None else None
    try:
        with urllib.request.urlopen(
            f"{scheme}://{node.http}/v1/health", timeout=HEALTH_TIMEOUT_S, context=context
        ) as answer:
            health = json.loads(answer.read())
    except (OSError, ValueError):
        return False
    return isinstance(health, dict) and health.get("id") == node.node_id
