"""Fault injection inside a node, for the chaos suite when it cannot use root.

Enabled only by `fault_hooks = true` in a node's config (never in production
configs): the node then drops Raft traffic to and from chosen peers (a
partition that the harness's HTTP control traffic survives), loses a fraction
of its Raft messages at random (packet loss, as the receiver sees it), and
shifts the clock its log entries are stamped with (clock skew).
"""

from __future__ import annotations

import random
import time
from typing import Any

from cluster.vote_guard import VoteGuardTransport


class FaultState:
    """What the harness has asked for; replaced whole, read without locks."""

    def __init__(self) -> None:
        self.blocked_raft: frozenset[str] = frozenset()
        self.clock_offset_ms = 0
        self.loss = 0.0  # probability that one Raft message in or out is lost

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms


class PartitionableTransport(VoteGuardTransport):
    """The node's transport (cluster/vote_guard.py) that loses every message to or from a
    blocked peer."""

    def send(self, node: Any, message: Any) -> bool:
        faults = self._faults()
        if _address(node) in faults.blocked_raft:
            return False
        if faults.loss and random.random() < faults.loss:
            return True  # lost on the way: the sender cannot tell
        return super().send(node, message)

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        faults = self._faults()
        if _address(node) in faults.blocked_raft or (faults.loss and random.random() < faults.loss):
            return
        super()._onMessageReceived(node, message)

    def _faults(self) -> FaultState:
        return self._syncObj.faults


def _address(node: Any) -> str | None:
    """A voter's Raft address; None for a read replica connected to this node (pysyncobj
    knows it only by a connection number): a replica is cut off on its own side."""
    return getattr(node, "address", None)
