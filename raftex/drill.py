"""`raftex drill`: a disaster-recovery drill, end to end, on local clusters.

It starts a cluster, puts it under load (crossing orders between two demo
accounts), takes a backup in the middle of the load the way an operator does
(`raftex admin backup`), loads on, then destroys the cluster (kill -9 of every
node, its data directory deleted), restores a new cluster from the backup
(`raftex restore`), starts it and places an order. It checks that every
restored node's state hash at the backup's index is the one the backup
recorded and that the audit chain verifies, and reports:

- RPO: what the backup does not hold of what the cluster had acknowledged when
  it was destroyed, in log entries and in log time (ms);
- RTO: seconds from the destruction to the first order acknowledged by the
  restored cluster (restore and start included).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cluster.admin_client import AdminClient, AdminError
from cluster.keyring import ensure_kek_file
from cluster.launcher import (
    LAUNCH_FILE_NAME,
    LEADER_WAIT_S,
    LocalCluster,
    seed_demo,
    wait_for_leader,
)
from engine.codes import Side, TimeInForce
from engine.commands import PlaceOrder, command_to_wire
from raftex.backup import restore, take_backup

LOAD_SECONDS_DEFAULT = 6.0
COMMANDS_PER_REQUEST = 20
FIRST_ORDER_WAIT_S = 60.0
HASH_WAIT_MS = 60_000


def _crossing_orders() -> Iterator[list[Any]]:
    """A resting sell (bob's) and the buy that takes it (alice's): a trade each pair, and
    nothing left resting."""
    while True:
        yield command_to_wire(PlaceOrder("bob", "AAPL", Side.SELL, 1, 19_000))
        yield command_to_wire(PlaceOrder("alice", "AAPL", Side.BUY, 1, 19_000, TimeInForce.IOC))


async def _load(client: AdminClient, http: str, stop: asyncio.Event, acked: list[int]) -> None:
    orders = _crossing_orders()
    while not stop.is_set():
        body = {
            "commands": [next(orders) for _ in range(COMMANDS_PER_REQUEST)],
            "detail": "summary",
        }
        try:
            answer = await client.call(http, "POST", "/v1/admin/commands/batch", body)
        except AdminError:
            await asyncio.sleep(0.1)
            continue
        acked.extend(row["seq"] for row in answer["outcomes"] if row.get("seq"))


async def _first_order(cluster: LocalCluster, token: str) -> float:
    """Places one order on the cluster until it is acknowledged; when that happened."""
    deadline = time.monotonic() + FIRST_ORDER_WAIT_S
    wire = command_to_wire(PlaceOrder("carol", "AAPL", Side.BUY, 1, 18_000))
    async with AdminClient(token, timeout_s=2.0) as client:
        while time.monotonic() < deadline:
            for node in cluster.nodes:
                try:
                    answer = await client.submit(node.http, wire)
                except AdminError:
                    continue
                if answer["events"][0]["type"] == "accepted":
                    return time.monotonic()
            await asyncio.sleep(0.05)
    raise AdminError(f"the restored cluster acknowledged no order within {FIRST_ORDER_WAIT_S} s")


async def _drill(root: Path, nodes: int, seconds: float) -> dict[str, Any]:
    # Encrypted at rest, as `raftex up` makes a cluster: the backup is sealed and the restore
    # needs the key-encryption key, kept apart from both clusters' directories.
    kek_file = root / "kek"
    ensure_kek_file(kek_file)
    source = LocalCluster(root / "source", nodes, kek_file=kek_file)
    source.start()
    try:
        token = source.admin_token
        leader = await wait_for_leader(source.nodes, token, LEADER_WAIT_S)
        leader_http = source.node(leader).http
        await seed_demo(leader_http, token)
        secret = json.loads((source.data_dir / LAUNCH_FILE_NAME).read_text())["secret"]
        acked: list[int] = []
        stop = asyncio.Event()
        async with AdminClient(token, timeout_s=10.0) as client:
            load = asyncio.create_task(_load(client, leader_http, stop, acked))
            await asyncio.sleep(seconds / 2)
            started = time.monotonic()
            manifest = await take_backup(client, source.addresses(), root / "backup")
            backup_s = time.monotonic() - started
            await asyncio.sleep(seconds / 2)
            stop.set()
            await load
            last = await client.call(leader_http, "GET", "/v1/admin/status")
            log_time = await client.call(leader_http, "GET", "/v1/time")
    finally:
        destroyed_at = time.monotonic()
        for node_id in list(source.processes):
            source.kill(node_id, signal.SIGKILL)
        shutil.rmtree(source.data_dir, ignore_errors=True)

    restore(root / "backup", root / "restored", secret, nodes, kek_file=kek_file)
    restored = LocalCluster(root / "restored", nodes)
    restored.start()
    try:
        acknowledged_at = await _first_order(restored, restored.admin_token)
        # Every restored node, not only the one that answered first, before checking them.
        await wait_for_leader(restored.nodes, restored.admin_token, LEADER_WAIT_S)
        async with AdminClient(restored.admin_token, timeout_s=HASH_WAIT_MS / 1000 + 5) as client:
            params = {"index": str(manifest["index"]), "timeout_ms": str(HASH_WAIT_MS)}
            hashes = [
                (await client.call(n.http, "GET", "/v1/admin/hash", params=params))["state_hash"]
                for n in restored.nodes
            ]
            audits = [
                await client.call(n.http, "GET", "/v1/admin/audit/verify") for n in restored.nodes
            ]
    finally:
        restored.stop()
    hashes_ok = all(h == manifest["state_hash"] for h in hashes)
    audit_ok = all(a["ok"] for a in audits)
    return {
        "ok": hashes_ok and audit_ok,
        "nodes": nodes,
        "backup_index": manifest["index"],
        "backup_bytes": manifest["snapshot"]["bytes"],
        "backup_s": round(backup_s, 3),
        "orders_acknowledged": len(acked),
        "last_acknowledged_index": last["applied_index"],
        "rpo_entries": max(0, last["applied_index"] - manifest["index"]),
        "rpo_ms": max(0, log_time["log_time_ms"] - manifest["log_time_ms"]),
        "rto_s": round(acknowledged_at - destroyed_at, 3),
        "state_hash_at_backup_index_ok": hashes_ok,
        "audit_ok": audit_ok,
    }


def run_drill(nodes: int = 3, seconds: float = LOAD_SECONDS_DEFAULT) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="raftex-drill-") as root:
        return asyncio.run(_drill(Path(root), nodes, seconds))


def format_drill(result: dict[str, Any]) -> str:
    verdict = "PASS" if result["ok"] else "FAIL"
    hashes = "ok" if result["state_hash_at_backup_index_ok"] else "DIFFERS"
    return "\n".join(
        [
            f"disaster-recovery drill, {result['nodes']} nodes: {verdict}",
            f"  backup under load        index {result['backup_index']}, "
            f"{result['backup_bytes']:,} bytes, {result['backup_s']} s",
            f"  orders acknowledged      {result['orders_acknowledged']:,} "
            f"(last at index {result['last_acknowledged_index']})",
            f"  RPO                      {result['rpo_entries']} entries, {result['rpo_ms']} ms",
            f"  RTO                      {result['rto_s']} s (destroy to first order)",
            f"  state hash at the backup {hashes}",
            f"  audit chain              {'ok' if result['audit_ok'] else 'BROKEN'}",
        ]
    )
