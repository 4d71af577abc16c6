"""Notices when this node's idea of the leader changes, for writes forwarded to the leader.

A follower forwards a write to the leader it knows. If that leader is paused or
cut off, the forward would hang until its timeout (seconds) although the node
learns of the new leader within an election. Forwards wait on the watch as
well: when the leader moves, the forward answers `not_committed` at once, and
the client retries with the same client order id (the engine applies it at most
once) on the new leader. One poller per node, whatever the number of forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

LEADER_POLL_S = 0.05


class LeaderWatch:
    def __init__(self, leader_http: Callable[[], str | None]) -> None:
        self._leader_http = leader_http
        self._seen = leader_http()
        self._moved = asyncio.Event()

    async def until_moved_from(self, leader_http: str) -> None:
        """Returns once the node's leader is no longer `leader_http` (none, or another)."""
        while self._leader_http() == leader_http:
            await self._moved.wait()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(LEADER_POLL_S)
            leader = self._leader_http()
            if leader != self._seen:
                self._seen = leader
                # Wake every waiter once; each checks again against its own leader.
                moved, self._moved = self._moved, asyncio.Event()
                moved.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LeaderWatch]:
        task = asyncio.create_task(self._poll())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
