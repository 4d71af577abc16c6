"""`raftex bench cluster`: the standard workload through a local cluster's submission path.

Starts a fresh local cluster (fsync `always`; encrypted at rest as `raftex up`
makes one, or in clear, or both one after the other for the cost of encryption
at rest) in a temporary directory, loads
the workload's instruments, accounts and deposits, then measures:
- throughput: C concurrent clients, each sending batches of orders to the
  leader's batch endpoint as fast as acknowledgements come back;
- the CPU time every process of the run spent per acknowledged order during the
  throughput phase (the nodes with their children, and this process's clients),
  read from /proc (bench/cpu.py);
- latency at an offered rate, by default half the throughput just measured (open
  loop: latency counts from when a batch was due, not when it was sent, so a stall
  is not hidden);
- optionally, leader failover: kill -9 of the leader to the first
  acknowledged write on a survivor;
and the engine alone in the same run, for the ratio.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.cpu import children_running, cpu_seconds, cpu_used, per_order_us
from bench.engine import run_engine_bench
from bench.workload import standard_workload
from cluster.admin_client import AdminClient, AdminError
from cluster.keyring import ensure_kek_file
from cluster.launcher import LocalCluster, wait_for_leader
from cluster.market import Market, seed_market
from engine.commands import Command, PlaceOrder, command_to_wire

LEADER_WAIT_S = 30.0
ENGINE_COMMANDS = 100_000
FAILOVER_PROBE_PERIOD_S = 0.02
CATCH_UP_WAIT_S = 60.0


# The topology measured is the write path of the one the README recommends: voters, one of
# them with the history projection, the others lean (no projector). The read replicas that
# carry reads and feeds in production only receive the log; `raftex bench api --replicas`
# measures them.
TOPOLOGY = "3 voters, fsync always; the history projection beside n1 only"
PROJECTING_NODE = "n1"
PROJECTION_CATCH_UP_WAIT_S = 120.0


def _topology(nodes: int) -> dict[str, dict[str, float | bool]]:
    return {f"n{n}": {"projection": False} for n in range(2, nodes + 1)}


@dataclass(frozen=True, slots=True)
class ClusterBench:
    topology: str
    at_rest: str
    nodes: int
    clients: int
    batch: int
    seconds: float
    orders_acked: int
    orders_per_s: float
    not_committed: int
    latency_ms_p50: float
    latency_ms_p99: float
    latency_ms_p999: float
    cpu_us_per_order: float
    # The same, per process: the leader, the followers together (without their projector),
    # the projector, the benchmark's clients.
    cpu_us_per_order_by_process: dict[str, float]
    rate_offered_per_s: int
    rate_acked_per_s: float
    rate_latency_ms_p50: float
    rate_latency_ms_p99: float
    rate_latency_ms_p999: float
    # The projection's lag behind its node when the load stopped, and how long it took to
    # catch up after: a projection that keeps up ends near zero.
    projection_lag_entries_at_end: int
    projection_catch_up_s: float
    engine_commands_per_s: float
    ratio_to_engine: float
    failover_s: list[float]


@dataclass
class _Drive:
    acked: int = 0
    not_committed: int = 0
    latencies_ms: list[float] | None = None


def run_cluster_bench(
    nodes: int,
    clients: int,
    seconds: float,
    batch: int,
    rate: int,
    failovers: int,
    seed: int,
    encrypted: bool = True,
) -> ClusterBench:
    workload = standard_workload(max(200_000, int(seconds * 60_000)), seed)
    with tempfile.TemporaryDirectory(prefix="raftex-bench-") as tmp:
        kek_file = Path(tmp) / "kek"
        if encrypted:
            ensure_kek_file(kek_file)
        cluster = LocalCluster(
            Path(tmp) / "cluster",
            nodes,
            fsync="always",
            node_settings=_topology(nodes),
            kek_file=kek_file if encrypted else None,
        )
        cluster.start()
        try:
            result = asyncio.run(
                _measure(
                    cluster,
                    workload.market,
                    workload.commands,
                    clients,
                    seconds,
                    batch,
                    rate,
                    failovers,
                )
            )
        finally:
            cluster.stop()
    engine = run_engine_bench(ENGINE_COMMANDS, seed, reference=None, uncross_orders=0)
    return ClusterBench(
        topology=TOPOLOGY,
        at_rest="encrypted" if encrypted else "clear",
        nodes=nodes,
        clients=clients,
        batch=batch,
        seconds=seconds,
        engine_commands_per_s=engine.commands_per_s,
        ratio_to_engine=round(result["orders_per_s"] / engine.commands_per_s, 3),
        **result,
    )


async def _measure(
    cluster: LocalCluster,
    market: Market,
    commands: list[Command],
    clients: int,
    seconds: float,
    batch: int,
    rate: int,
    failovers: int,
) -> dict[str, Any]:
    token = cluster.admin_token
    leader = await wait_for_leader(cluster.nodes, token, LEADER_WAIT_S)
    http = cluster.node(leader).http
    wires = [command_to_wire(c) for c in commands]
    roles = {p.pid: "leader" if n == leader else "followers" for n, p in cluster.processes.items()}
    for node_process in cluster.processes.values():
        roles.update((pid, "projector") for pid in children_running(node_process.pid, "project"))
    roles[os.getpid()] = "clients"
    async with AdminClient(token, timeout_s=30.0) as client:
        await seed_market(client, http, market)
        cursor = iter(range(0, len(wires), batch))
        before = cpu_seconds(roles)
        load = await _closed_loop(client, http, wires, cursor, clients, batch, seconds)
        used = cpu_used(before, cpu_seconds(roles))
        rate = rate or max(1, round(load.acked / seconds / 2))
        paced = await _open_loop(client, http, wires, cursor, batch, rate, seconds)
        lag_at_end, catch_up_s = await _projection_catch_up(
            client, cluster.node(PROJECTING_NODE).http
        )
    failover_s = [await _failover(cluster, token) for _ in range(failovers)]
    return {
        "orders_acked": load.acked,
        "orders_per_s": round(load.acked / seconds),
        "not_committed": load.not_committed + paced.not_committed,
        "latency_ms_p50": _pct(load.latencies_ms, 0.5),
        "latency_ms_p99": _pct(load.latencies_ms, 0.99),
        "latency_ms_p999": _pct(load.latencies_ms, 0.999),
        "cpu_us_per_order": per_order_us(sum(used.values()), load.acked),
        "cpu_us_per_order_by_process": {
            role: per_order_us(sum(s for pid, s in used.items() if roles[pid] == role), load.acked)
            for role in ("leader", "followers", "projector", "clients")
        },
        "rate_offered_per_s": rate,
        "rate_acked_per_s": round(paced.acked / seconds),
        "rate_latency_ms_p50": _pct(paced.latencies_ms, 0.5),
        "rate_latency_ms_p99": _pct(paced.latencies_ms, 0.99),
        "rate_latency_ms_p999": _pct(paced.latencies_ms, 0.999),
        "projection_lag_entries_at_end": lag_at_end,
        "projection_catch_up_s": catch_up_s,
        "failover_s": failover_s,
    }


async def _projection_catch_up(client: AdminClient, http: str) -> tuple[int, float]:
    """(entries the projection is behind its node now, seconds until it is not)."""
    started = time.perf_counter()
    lag_at_end = -1
    while time.perf_counter() - started < PROJECTION_CATCH_UP_WAIT_S:
        projection = (await client.call(http, "GET", "/v1/admin/status"))["projection"]
        lag = projection.get("lag_entries", -1) if projection["state"] == "running" else -1
        if lag_at_end < 0:
            lag_at_end = lag
        if lag == 0:
            break
        await asyncio.sleep(0.05)
    return lag_at_end, round(time.perf_counter() - started, 2)


async def _send(
    client: AdminClient, http: str, chunk: list[list[Any]], due: float, drive: _Drive
) -> None:
    try:
        body = {"commands": chunk, "detail": "summary"}
        reply = await client.call(http, "POST", "/v1/admin/commands/batch", body)
    except AdminError:
        drive.not_committed += len(chunk)
        return
    latency_ms = (time.perf_counter() - due) * 1000
    for outcome in reply["outcomes"]:
        if "result" in outcome:
            drive.acked += 1
            assert drive.latencies_ms is not None
            drive.latencies_ms.append(latency_ms)
        else:
            drive.not_committed += 1


async def _closed_loop(
    client: AdminClient,
    http: str,
    wires: list[list[Any]],
    cursor: Any,
    clients: int,
    batch: int,
    seconds: float,
) -> _Drive:
    drive = _Drive(latencies_ms=[])
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        while time.perf_counter() < deadline:
            start = next(cursor, None)
            if start is None:
                return
            await _send(client, http, wires[start : start + batch], time.perf_counter(), drive)

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return drive


async def _open_loop(
    client: AdminClient,
    http: str,
    wires: list[list[Any]],
    cursor: Any,
    batch: int,
    rate: int,
    seconds: float,
) -> _Drive:
    drive = _Drive(latencies_ms=[])
    period_s = batch / rate
    started = time.perf_counter()
    pending: set[asyncio.Task] = set()
    for n in range(int(seconds / period_s)):
        due = started + n * period_s
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        start = next(cursor, None)
        if start is None:
            break
        task = asyncio.create_task(_send(client, http, wires[start : start + batch], due, drive))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    return drive


async def _failover(cluster: LocalCluster, token: str) -> float:
    """Seconds from kill -9 of the leader to the first acknowledged write on a survivor."""
    leader = await wait_for_leader(cluster.nodes, token, LEADER_WAIT_S)
    survivors = [n.http for n in cluster.nodes if n.node_id != leader]
    killed_at = time.perf_counter()
    cluster.kill(leader, signal.SIGKILL)
    probe = 0
    async with AdminClient(token, timeout_s=1.0) as client:
        while True:
            probe += 1
            wire = command_to_wire(
                PlaceOrder(
                    "acct0000", "S00", 0, 1, 9_000, client_order_id=f"failover-{killed_at}-{probe}"
                )
            )
            try:
                await client.submit(survivors[probe % len(survivors)], wire, timeout_ms=1_000)
                elapsed = time.perf_counter() - killed_at
                break
            except AdminError:
                await asyncio.sleep(FAILOVER_PROBE_PERIOD_S)
    cluster.start_one(leader)
    await wait_for_leader(cluster.nodes, token, CATCH_UP_WAIT_S)
    return round(elapsed, 3)


def _pct(values: list[float] | None, q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def compare_at_rest(
    nodes: int, clients: int, seconds: float, batch: int, rate: int, seed: int
) -> dict[str, Any]:
    """The same run in clear, then encrypted at rest, side by side: what encryption costs."""
    clear = run_cluster_bench(nodes, clients, seconds, batch, rate, 0, seed, encrypted=False)
    sealed = run_cluster_bench(nodes, clients, seconds, batch, rate, 0, seed, encrypted=True)
    return {
        "clear": asdict(clear),
        "encrypted": asdict(sealed),
        "throughput_encrypted_to_clear": round(sealed.orders_per_s / clear.orders_per_s, 3),
        "cpu_per_order_encrypted_to_clear": round(
            sealed.cpu_us_per_order / clear.cpu_us_per_order, 3
        ),
        "latency_p99_ms_clear_encrypted": [clear.latency_ms_p99, sealed.latency_ms_p99],
    }


def format_at_rest_comparison(result: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(result)
    clear, sealed = result["clear"], result["encrypted"]
    rows = [
        ("orders acked/s", "orders_per_s"),
        ("CPU per order (us)", "cpu_us_per_order"),
        ("ack latency p50 (ms)", "latency_ms_p50"),
        ("ack latency p99 (ms)", "latency_ms_p99"),
    ]
    lines = [f"{'':24}{'clear':>12}{'encrypted':>12}"]
    lines += [f"{label:24}{clear[key]:>12}{sealed[key]:>12}" for label, key in rows]
    lines.append(f"throughput encrypted/clear {result['throughput_encrypted_to_clear']}")
    lines.append(f"CPU/order encrypted/clear  {result['cpu_per_order_encrypted_to_clear']}")
    return "\n".join(lines)


def format_cluster_bench(result: ClusterBench, as_json: bool) -> str:
    if as_json:
        return json.dumps(asdict(result))
    return "\n".join(
        [
            f"topology                  {result.topology}",
            f"at rest                   {result.at_rest}",
            f"nodes / clients / batch   {result.nodes} / {result.clients} / {result.batch}",
            f"orders acked/s            {result.orders_per_s:>10,.0f}",
            f"ack latency p50/p99/p99.9 {result.latency_ms_p50} / {result.latency_ms_p99} / "
            f"{result.latency_ms_p999} ms",
            f"CPU per order             {result.cpu_us_per_order} us "
            f"{result.cpu_us_per_order_by_process}",
            f"at {result.rate_offered_per_s:,}/s offered      "
            f"{result.rate_acked_per_s:,.0f}/s acked, "
            f"p50/p99/p99.9 {result.rate_latency_ms_p50} / {result.rate_latency_ms_p99} / "
            f"{result.rate_latency_ms_p999} ms",
            f"not committed             {result.not_committed}",
            f"projection lag at end     {result.projection_lag_entries_at_end} entries, caught up"
            f" in {result.projection_catch_up_s} s",
            f"engine alone              {result.engine_commands_per_s:>10,.0f} commands/s",
            f"ratio to engine           {result.ratio_to_engine:.3f}",
            f"leader failover           {result.failover_s} s",
        ]
    )
