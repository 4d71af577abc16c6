"""Writes a follower sends on to the leader: once, and never longer than the lead lasts.

Both kinds of forward (a client's write arriving at a follower, on the node
channel; an admin write arriving at a follower, with the operator's token) go
through one path, so they share the rules:
one hop only (a forwarded request that reaches a non-leader is not sent on
again), the leader this node knows, and a 503 `not_committed` when the leader
cannot be reached or loses the lead while the forward waits (the LeaderWatch),
so the client retries with the same ids instead of waiting out a silent node.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from api.errors import ApiError
from api.leader_watch import LeaderWatch
from api.node_channel import COMMANDS_PATH, node_headers, pack_commands
from api.submission import NOT_COMMITTED_MESSAGE
from cluster.port import NodePort

FORWARD_HEADER = "X-Raftex-Forwarded"
STATUS_TIMEOUT_S = 2.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Forwarder:
    node: NodePort
    session: aiohttp.ClientSession
    watch: LeaderWatch
    node_key: bytes

    async def post(
        self, path_qs: str, body: dict[str, Any], authorization: str, forwarded: bool = False
    ) -> tuple[int, bytes]:
        """The leader's status and body for an admin write (JSON `body`, the operator's own
        `authorization`) POSTed to `path_qs`; `forwarded` says it already made its one hop."""
        headers = {"Authorization": authorization, "Content-Type": "application/json"}
        return await self._to_leader(path_qs, json.dumps(body).encode(), headers, forwarded)

    async def post_commands(self, commands: list[bytes], timeout_ms: int) -> tuple[int, bytes]:
        """The leader's status and body for clients' commands (their bytes), on the node
        channel (api/node_channel.py)."""
        body = pack_commands(timeout_ms, commands)
        headers = node_headers(self.node_key, self.node.node_id, body)
        return await self._to_leader(COMMANDS_PATH, body, headers, forwarded=False)

    async def _to_leader(
        self, path_qs: str, body: bytes, headers: dict[str, str], forwarded: bool
    ) -> tuple[int, bytes]:
        node = self.node
        leader_http = node.leader_http()
        if leader_http is None or forwarded:
            raise ApiError(503, "not_committed", f"no leader reachable; {NOT_COMMITTED_MESSAGE}")
        url = f"{node.config.scheme}://{leader_http}{path_qs}"
        headers = {**headers, FORWARD_HEADER: node.node_id}
        try:
            return await self._unless_lead_moves(leader_http, self._send(url, body, headers))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(
                503,
                "not_committed",
                f"leader {leader_http} unreachable ({exc!r}); {NOT_COMMITTED_MESSAGE}",
            ) from None

    async def status_of(self, http: str, authorization: str) -> dict[str, Any]:
        """Another member's admin status, asked with the operator's own token; a member
        that does not answer is `down`, with the reason."""
        url = f"{self.node.config.scheme}://{http}/v1/admin/status"
        timeout = aiohttp.ClientTimeout(total=STATUS_TIMEOUT_S)
        try:
            async with self.session.get(
                url, headers={"Authorization": authorization}, timeout=timeout
            ) as response:
                payload = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return {"http": http, "role": "down", "error": exc.__class__.__name__}
        if response.status != 200 or not isinstance(payload, dict):
            return {"http": http, "role": "down", "error": f"status {response.status}"}
        return payload

    async def _send(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        async with self.session.post(url, data=body, headers=headers) as response:
            return response.status, await response.read()

    async def _unless_lead_moves(self, leader_http: str, forward: Awaitable[T]) -> T:
        """`forward`'s result, unless the node sees the leader move first: then 503."""
        sent = asyncio.ensure_future(forward)
        moved = asyncio.ensure_future(self.watch.until_moved_from(leader_http))
        try:
            done, _ = await asyncio.wait({sent, moved}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            sent.cancel()
            raise
        finally:
            moved.cancel()
        if sent not in done:
            sent.cancel()
            raise ApiError(
                503,
                "not_committed",
                f"leader {leader_http} lost the lead while the write was forwarded to it; "
                + NOT_COMMITTED_MESSAGE,
            )
        return sent.result()


FORWARDER_KEY = web.AppKey("forwarder", Forwarder)
