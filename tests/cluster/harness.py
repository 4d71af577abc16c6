"""A real local cluster for tests: node processes on 127.0.0.1, real RocksDB, real journals."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.admin_client import AdminClient, AdminError, NodeAddress
from cluster.keyring import ensure_kek_file
from cluster.launcher import (
    LAUNCH_FILE_NAME,
    LocalCluster,
    register_replicas,
    seed_demo,
    wait_for_leader,
)
from engine.codes import Side
from engine.commands import PlaceOrder, command_to_wire

LEADER_WAIT_S = 30.0
CATCH_UP_WAIT_S = 30.0


@dataclass
class LoadResult:
    acked: list[tuple[str, str]] = field(default_factory=list)  # (account, client order id)
    not_committed: int = 0
    attempts: int = 0


class ClusterHarness:
    def __init__(
        self,
        data_dir: Path,
        nodes: int = 3,
        *,
        attached: bool = False,
        settings: dict[str, float | bool] | None = None,
        replicas: int = 0,
        encrypted: bool = True,
    ) -> None:
        """`nodes` voters and `replicas` read replicas. `attached`: the nodes run under
        someone else (e.g. `raftex up`); address them all and never start or stop them.
        `settings`: extra node settings (rate limits). `encrypted`: the data at rest sealed
        under a key-encryption key kept beside the cluster's directory (`kek_file`), as an
        operator would keep it apart from the data."""
        self.kek_file: Path | None = None
        if encrypted and not attached and not (data_dir / LAUNCH_FILE_NAME).exists():
            self.kek_file = data_dir.with_name(data_dir.name + ".kek")
            ensure_kek_file(self.kek_file)
        self.cluster = LocalCluster(
            data_dir, nodes, settings=settings, replicas=replicas, kek_file=self.kek_file
        )
        self.token = self.cluster.admin_token
        self.attached = attached

    def start(self) -> None:
        self.cluster.start()
        leader = self.wait_leader()
        asyncio.run(register_replicas(self.cluster.replicas, self.token, self.http(leader)))

    @contextlib.contextmanager
    def running(self, seed: bool = True) -> Iterator[ClusterHarness]:
        """Started (and seeded with the demo market) for the block, stopped after it."""
        try:
            self.start()
            if seed:
                self.seed()
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        self.cluster.stop()

    def wait_leader(self, nodes: list[str] | None = None) -> str:
        chosen = [n for n in self.cluster.nodes if nodes is None or n.node_id in nodes]
        return asyncio.run(wait_for_leader(chosen, self.token, LEADER_WAIT_S))

    def http(self, node_id: str) -> str:
        return self.cluster.node(node_id).http

    def addresses(self, running_only: bool = True) -> list[NodeAddress]:
        if self.attached:
            return self.cluster.addresses()
        return [
            a
            for a in self.cluster.addresses()
            if not running_only or a.node_id in self.cluster.processes
        ]

    def seed(self) -> None:
        leader = self.wait_leader()
        asyncio.run(seed_demo(self.http(leader), self.token))

    def call(
        self, node_id: str, method: str, path: str, body: Any = None, params: dict | None = None
    ) -> Any:
        async def go() -> Any:
            async with AdminClient(self.token) as client:
                return await client.call(self.http(node_id), method, path, body, params)

        return asyncio.run(go())

    def submit(self, node_id: str, wire: list[Any]) -> dict[str, Any]:
        return self.call(node_id, "POST", "/v1/admin/commands", {"command": wire})

    def submit_batch(self, node_id: str, wires: list[list[Any]]) -> dict[str, Any]:
        """Up to 200 commands in one request; each outcome summarised."""
        body = {"commands": wires, "detail": "summary"}
        return self.call(node_id, "POST", "/v1/admin/commands/batch", body)

    def status(self) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            async with AdminClient(self.token) as client:
                return await client.status_all(self.addresses())

        return asyncio.run(go())

    def hashes(self) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            async with AdminClient(self.token) as client:
                return await client.hashes(self.addresses())

        return asyncio.run(go())

    def wait_all_applied(self, seq: int | None = None, timeout_s: float = CATCH_UP_WAIT_S) -> None:
        """Until every running node has applied `seq` (by default, what the leader has applied
        now): what a test waits for before it relies on a follower knowing a write."""
        if seq is None:
            leader = self.wait_leader()
            seq = self.call(leader, "GET", "/v1/health")["last_seq"]
        deadline = time.monotonic() + timeout_s
        while min((row.get("last_seq", -1) for row in self.status()), default=-1) < seq:
            if time.monotonic() > deadline:
                raise AssertionError(f"not every node applied seq {seq} within {timeout_s} s")
            time.sleep(0.05)

    def wait_hashes_agree(self, timeout_s: float = CATCH_UP_WAIT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        result: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                result = self.hashes()
            except AdminError:
                time.sleep(0.5)
                continue
            if result["agree"]:
                return result
            time.sleep(0.5)
        raise AssertionError(f"hashes did not agree within {timeout_s} s: {result}")

    def events(self, node_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        since = 0
        while True:
            page = self.call(node_id, "GET", "/v1/admin/events", params={"since": str(since)})
            out.extend(page["events"])
            if not page["events"]:
                return out
            since = page["events"][-1]["seq"]

    def accepted_counts(self, node_id: str) -> Counter:
        return Counter(
            (e["account"], e["client_order_id"])
            for e in self.events(node_id)
            if e["type"] == "accepted"
        )

    def run_load(
        self, orders: int, concurrency: int, prefix: str, during: Any = None
    ) -> LoadResult:
        """Places orders from `concurrency` clients, retrying the same client order id on any
        node until it is acknowledged; `during` runs once, in a thread, mid-way."""
        return asyncio.run(self._load(orders, concurrency, prefix, during))

    async def _load(self, orders: int, concurrency: int, prefix: str, during: Any) -> LoadResult:
        result = LoadResult()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(orders):
            queue.put_nowait(n)
        fired = asyncio.Event()

        async def client(worker: int) -> None:
            async with AdminClient(self.token, timeout_s=5.0) as admin:
                while True:
                    try:
                        n = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    if during is not None and n == orders // 3 and not fired.is_set():
                        fired.set()
                        await asyncio.to_thread(during)
                    account = ("alice", "bob", "carol", "dave")[n % 4]
                    side = Side.BUY if n % 2 else Side.SELL
                    price = 19_000 + (-(n % 7) - 1 if side == Side.BUY else n % 7 + 1)
                    cid = f"{prefix}-{n}"
                    wire = command_to_wire(
                        PlaceOrder(account, "AAPL", side, 1 + n % 5, price, client_order_id=cid)
                    )
                    await self._until_acked(admin, wire, worker, result)
                    result.acked.append((account, cid))

        await asyncio.gather(*(client(w) for w in range(concurrency)))
        return result

    async def _until_acked(
        self, admin: AdminClient, wire: list[Any], worker: int, result: LoadResult
    ) -> None:
        deadline = time.monotonic() + 60
        turn = worker
        while time.monotonic() < deadline:
            running = self.addresses()
            node = running[turn % len(running)]
            turn += 1
            result.attempts += 1
            try:
                await admin.submit(node.http, wire)
                return
            except AdminError as exc:
                if exc.status and exc.status < 500:
                    raise
                result.not_committed += 1
                await asyncio.sleep(0.05)
        raise AssertionError(f"order {wire} never acknowledged")
