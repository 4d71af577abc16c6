"""HTTP calls to the nodes' admin endpoints, shared by `raftex admin`, `raftex up` and tests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from cluster.tls import client_context

REQUEST_TIMEOUT_S = 10.0
HASH_ANSWER_SLACK_S = 5.0
HASH_WAIT_MS = 120_000
DOWNLOAD_CHUNK_BYTES = 1 << 20
CLUSTER_FILE_NAME = "cluster.json"
ADMIN_TOKEN_FILE_NAME = "admin.token"


class AdminError(Exception):
    """A failed admin call, with the node's error code when it gave one."""

    def __init__(self, message: str, code: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class NodeAddress:
    node_id: str
    http: str


def read_cluster_file(path: Path) -> list[NodeAddress]:
    try:
        data = json.loads(path.read_text())
        return [NodeAddress(str(n["id"]), str(n["http"])) for n in data["nodes"]]
    except OSError as exc:
        raise AdminError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise AdminError(f"{path} is not a cluster file (need nodes with id and http)") from None


def read_cluster_ca(path: Path) -> Path | None:
    """The certificate a TLS cluster's clients trust (`tls_ca` in the cluster file)."""
    try:
        ca = json.loads(path.read_text()).get("tls_ca")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(ca) if isinstance(ca, str) else None


def read_admin_token(cluster_file: Path) -> str:
    token_file = cluster_file.with_name(ADMIN_TOKEN_FILE_NAME)
    try:
        return token_file.read_text().strip()
    except OSError:
        return ""


class AdminClient:
    """One aiohttp session; use as `async with AdminClient(token) as client:`."""

    def __init__(
        self, token: str, timeout_s: float = REQUEST_TIMEOUT_S, ca_file: Path | None = None
    ) -> None:
        """`ca_file`: the cluster serves HTTPS with this certificate (or one it signed)."""
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._ca_file = ca_file
        self._scheme = "https" if ca_file is not None else "http"

    async def __aenter__(self) -> AdminClient:
        connector = aiohttp.TCPConnector(
            ssl=client_context(self._ca_file) if self._ca_file is not None else False
        )
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            headers={"Authorization": f"Bearer {self._token}"},
            connector=connector,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self,
        http: str,
        method: str,
        path: str,
        body: Any = None,
        params: dict | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """`timeout_s`: this call's own timeout, for one that waits on the node by design."""
        assert self._session is not None, "use AdminClient as an async context manager"
        url = f"{self._scheme}://{http}{path}"
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s is not None else None
        try:
            async with self._session.request(
                method, url, json=body, params=params, timeout=timeout or self._timeout
            ) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AdminError(f"{http} unreachable: {exc.__class__.__name__}") from None
        try:
            payload = json.loads(text) if text else {}
        except ValueError:
            raise AdminError(f"{http} answered {response.status} with non-JSON body") from None
        if response.status >= 400:
            code = payload.get("code", "") if isinstance(payload, dict) else ""
            message = payload.get("message", text) if isinstance(payload, dict) else text
            raise AdminError(f"{http}: {message}", code=code, status=response.status)
        return payload

    async def text(self, http: str, path: str, timeout_s: float | None = None) -> str:
        """A plain-text answer, such as the Prometheus exposition at /metrics."""
        assert self._session is not None, "use AdminClient as an async context manager"
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s is not None else None
        url = f"{self._scheme}://{http}{path}"
        try:
            async with self._session.get(url, timeout=timeout or self._timeout) as response:
                if response.status >= 400:
                    raise AdminError(f"{http}{path}: {response.status}", status=response.status)
                return await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AdminError(f"{http} unreachable: {exc.__class__.__name__}") from None

    async def download(self, http: str, path: str, dest: Path, timeout_s: float) -> str:
        """Streams GET `path` into `dest`, fsynced; returns the bytes' SHA-256."""
        assert self._session is not None, "use AdminClient as an async context manager"
        url = f"{self._scheme}://{http}{path}"
        digest = hashlib.sha256()
        try:
            async with self._session.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                if response.status >= 400:
                    status = response.status
                    raise AdminError(f"{http}: {status} for {path}", status=status)
                # Owner-only: a copy of a whole exchange's state.
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AdminError(f"{http} unreachable: {exc.__class__.__name__}") from None
        except OSError as exc:
            raise AdminError(f"cannot write {dest}: {exc.strerror}") from None
        return digest.hexdigest()

    async def submit(self, http: str, wire: list[Any], timeout_ms: int = 5_000) -> dict[str, Any]:
        return await self.call(
            http, "POST", "/v1/admin/commands", {"command": wire, "timeout_ms": timeout_ms}
        )

    async def status_all(self, nodes: list[NodeAddress]) -> list[dict[str, Any]]:
        """Status of every node; an unreachable node is reported as `down`."""

        async def one(node: NodeAddress) -> dict[str, Any]:
            try:
                return await self.call(node.http, "GET", "/v1/admin/status")
            except AdminError as exc:
                return {"id": node.node_id, "role": "down", "http": node.http, "error": str(exc)}

        return list(await asyncio.gather(*(one(n) for n in nodes)))

    async def hashes(
        self, nodes: list[NodeAddress], timeout_ms: int = HASH_WAIT_MS
    ) -> dict[str, Any]:
        """State hashes of every node at one log index, recorded as each node applied it (a
        forked child hashes each: seconds on a large state, so the wait is generous)."""
        mark: dict[str, Any] | None = None
        errors: list[str] = []
        for node in nodes:
            try:
                mark = await self.call(node.http, "POST", "/v1/admin/hash-mark", {})
                break
            except AdminError as exc:
                errors.append(str(exc))
        if mark is None:
            raise AdminError("no node could append a hash mark: " + "; ".join(errors))
        index = mark["index"]

        async def one(node: NodeAddress) -> dict[str, Any]:
            params = {"index": str(index), "timeout_ms": str(timeout_ms)}
            try:
                got = await self.call(
                    node.http,
                    "GET",
                    "/v1/admin/hash",
                    params=params,
                    timeout_s=timeout_ms / 1000 + HASH_ANSWER_SLACK_S,
                )
                return {"id": node.node_id, "state_hash": got["state_hash"]}
            except AdminError as exc:
                return {"id": node.node_id, "state_hash": None, "error": str(exc)}

        rows = list(await asyncio.gather(*(one(n) for n in nodes)))
        digests = {r["state_hash"] for r in rows}
        agree = len(digests) == 1 and None not in digests
        return {"index": index, "agree": agree, "nodes": rows}
