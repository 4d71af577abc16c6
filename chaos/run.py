"""`raftex chaos run`: a cluster, a workload, a nemesis schedule, the checkers and a report.

Phases: start the cluster and seed it; run the clients, the nemesis and a
status poller together for the run's length; heal everything (resume, restart,
reconnect); wait until every node reached the same log position; collect each
node's log, audit trail, state hash and live invariants; check; report.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from chaos.checkers import NodeFinal, Verdict, availability, check_all, check_unrecovered
from chaos.cluster import CHAOS_MARKET, ChaosCluster
from chaos.history import History, StateSample, StatusSample
from chaos.nemesis import DISK_FAMILIES, Nemesis, NemesisError, schedule
from chaos.report import write_report
from chaos.resources import ApplyClock, sample_node
from chaos.workload import Client
from cluster.admin_client import HASH_ANSWER_SLACK_S, AdminError
from cluster.rocks import READ_LIMIT_MAX

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STATUS_PERIOD_S = 0.25
STATE_PERIOD_S = 1.0
RESOURCE_PERIOD_S = 1.0
CONVERGE_WAIT_S = 60.0
LOGS_DIR = "logs"
HASH_WAIT_MS = 30_000


@dataclass
class RunResult:
    ok: bool
    verdicts: list[Verdict]
    availability: list[dict[str, Any]]
    counts: dict[str, int]
    out_dir: Path
    seed: int
    plane: str


def run_chaos(
    nodes: int,
    families: tuple[str, ...],
    seconds: float,
    seed: int,
    out_dir: Path,
    clients: int,
    plane: str = "auto",
    replicas: int | None = None,
    fsync: str = "always",
) -> RunResult:
    """`nodes` voters; `replicas` read replicas (default: one when the replica family runs,
    else none). `plane`: auto, netns (root: nodes in network namespaces) or hooks (no root).
    `fsync`: the nodes' policy; `none` with the power family shows what it loses."""
    if replicas is None:
        replicas = 1 if "replica" in families else 0
    if "replica" in families and replicas < 1:
        raise NemesisError("the replica family needs at least one read replica (--replicas)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="raftex-chaos-") as tmp:
        lazy_disks = any(f in DISK_FAMILIES for f in families)
        cluster = ChaosCluster(Path(tmp) / "cluster", nodes, plane, replicas, fsync, lazy_disks)
        try:
            return asyncio.run(_stoppable(_run(cluster, families, seconds, seed, out_dir, clients)))
        except ExceptionGroup as group:
            # A task of the run failed (a node that never answered, say): the caller gets
            # that error, not the task group around it.
            raise _first_error(group) from None
        finally:
            cluster.stop()


def _first_error(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


async def _stoppable(work: Coroutine[Any, Any, T]) -> T:
    """Runs `work`; SIGTERM or SIGINT cancels it, so every task unwinds in order (nodes
    stopped, namespaces removed by the caller), and the caller sees KeyboardInterrupt.

    Handled by the loop rather than by a Python signal handler: an exception raised from
    such a handler surfaces in whatever frame is running and leaves tasks pending, and a
    process started in the background of a shell has SIGINT ignored, so Ctrl-C's own
    handling cannot be relied on to see a SIGTERM relayed as SIGINT."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        main.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop)
    try:
        return await work
    except asyncio.CancelledError:
        if stopped:
            raise KeyboardInterrupt from None
        raise
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


async def _run(
    cluster: ChaosCluster,
    families: tuple[str, ...],
    seconds: float,
    seed: int,
    out_dir: Path,
    clients: int,
) -> RunResult:
    accounts = [f"trader{n:02d}" for n in range(clients)]
    try:
        keys = await cluster.start(accounts)
        history = History()
        t0 = time.monotonic()
        http = [cluster.http(n) for n in cluster.node_ids]
        symbols = [(inst.symbol, inst.reference_price) for inst in CHAOS_MARKET.instruments]
        workers = [
            Client(
                n,
                account,
                keys[account],
                http,
                cluster.local.admin_token,
                history,
                t0,
                seed,
                symbols,
            )
            for n, account in enumerate(accounts)
        ]
        plan = schedule(families, seconds, seed)
        nemesis = Nemesis(cluster, history, t0)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            poller = tasks.create_task(
                _every(STATUS_PERIOD_S, stop, lambda: _sample_status(cluster, history, t0))
            )
            reader = tasks.create_task(
                _every(STATE_PERIOD_S, stop, lambda: _sample_states(cluster, history, t0))
            )
            apply_clock = ApplyClock()
            meter = tasks.create_task(
                _every(
                    RESOURCE_PERIOD_S,
                    stop,
                    lambda: _sample_resources(cluster, history, t0, apply_clock),
                )
            )
            fault_task = tasks.create_task(nemesis.run(plan))
            await asyncio.gather(*(w.run(seconds) for w in workers))
            await fault_task
            stop.set()
            await poller
            await reader
            await meter
        try:
            await _heal(cluster, nemesis.joined)
            verdicts = check_all(history, await _collect(cluster))
        except AdminError as exc:
            details = [f"after healing: {exc}", *await _node_states(cluster)]
            verdicts = check_unrecovered(history, details)
        gaps = availability(history)
        counts = _counts(history)
        ok = all(v.ok for v in verdicts)
        write_report(out_dir, history, verdicts, gaps, counts, seed, families, ok, cluster.plane)
        return RunResult(ok, verdicts, gaps, counts, out_dir, seed, cluster.plane)
    finally:
        _keep_logs(cluster, out_dir)
        await cluster.close()


async def _node_states(cluster: ChaosCluster) -> list[str]:
    """One line per node: its process's exit status, or what it says of itself."""
    lines = []
    answers = {row["id"]: row for row in await cluster.statuses()}
    for node in cluster.node_ids:
        process = cluster.local.processes.get(node)
        code = process.poll() if process is not None else None
        row = answers.get(node, {})
        if process is None:
            lines.append(f"{node}: not started")
        elif code is not None:
            lines.append(f"{node}: exited with status {code}")
        elif row.get("role") == "down":
            lines.append(f"{node}: running, not answering ({row.get('error')})")
        else:
            lines.append(
                f"{node}: {row.get('role')} in term {row.get('term')}, leader "
                f"{row.get('leader')}, commit {row.get('commit_index')}, "
                f"applied {row.get('applied_index')}, members {row.get('members')}"
            )
    return lines


def _keep_logs(cluster: ChaosCluster, out_dir: Path) -> None:
    """Each node's log into the report: the cluster's own directory goes with the run."""
    logs = out_dir / LOGS_DIR
    logs.mkdir(parents=True, exist_ok=True)
    for node in cluster.local.nodes:
        with contextlib.suppress(OSError):
            shutil.copyfile(node.log_path, logs / node.log_path.name)


async def _every(
    period_s: float, stop: asyncio.Event, sample: Callable[[], Awaitable[None]]
) -> None:
    """Runs `sample` every `period_s` until `stop` is set."""
    while not stop.is_set():
        await sample()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)


async def _sample_status(cluster: ChaosCluster, history: History, t0: float) -> None:
    with contextlib.suppress(AdminError):
        for row in await cluster.statuses():
            if row.get("role") in ("leader", "follower", "candidate"):
                history.status.append(
                    StatusSample(
                        time.monotonic() - t0, row["id"], row["role"], row["term"], row["leader"]
                    )
                )


async def _sample_states(cluster: ChaosCluster, history: History, t0: float) -> None:
    """Every reachable node's live state, whatever the faults."""
    for node in cluster.running():
        # Checked at each step: the nemesis may have paused or removed it meanwhile.
        if node in cluster.paused or node not in cluster.node_ids:
            continue
        with contextlib.suppress(AdminError):
            state = await cluster.admin.call(cluster.http(node), "GET", "/v1/admin/invariants")
            history.states.append(
                StateSample(
                    time.monotonic() - t0,
                    node,
                    state["seq"],
                    state["ok"],
                    state["problems"],
                    state["totals"],
                )
            )


async def _sample_resources(
    cluster: ChaosCluster, history: History, t0: float, apply_clock: ApplyClock
) -> None:
    """Every running node's memory, open files, disk and apply time (chaos/resources.py),
    all nodes at once: a node that does not answer within the period is skipped."""

    async def one(node: str) -> None:
        process = cluster.local.processes.get(node)
        if process is None or node in cluster.paused:
            return
        try:
            metrics = await cluster.admin.text(cluster.http(node), "/metrics", RESOURCE_PERIOD_S)
        except AdminError:
            return
        sample = await asyncio.to_thread(
            sample_node,
            time.monotonic() - t0,
            node,
            process.pid,
            cluster.local.data_dir / node,
            apply_clock.mean_ms(node, process.pid, metrics),
            history.acknowledged_writes,
        )
        history.resources.append(sample)

    await asyncio.gather(*(one(node) for node in cluster.running()))


async def _heal(cluster: ChaosCluster, joined: list[str]) -> None:
    """Every node running and reachable, a leader, and every joiner still in the run a
    member: one whose add was never confirmed may be none, and every running node is
    checked as a member."""
    for node in list(cluster.paused):
        cluster.resume(node)
    for node in cluster.node_ids:
        if node not in cluster.local.processes:
            cluster.local.start_one(node)
    await cluster.heal()
    await cluster.wait_leader(CONVERGE_WAIT_S)
    for node in joined:
        await cluster.confirm_member(node)


async def _collect(cluster: ChaosCluster) -> list[NodeFinal]:
    """Every node's final log and state at one log position that all of them applied."""
    admin = cluster.admin
    deadline = time.monotonic() + CONVERGE_WAIT_S
    while True:
        try:
            leader = await cluster.wait_leader(CONVERGE_WAIT_S)
            mark = await admin.call(cluster.http(leader), "POST", "/v1/admin/hash-mark", {})
            break
        except AdminError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    finals = []
    for node in cluster.node_ids:
        http = cluster.http(node)
        try:
            digest = await admin.call(
                http,
                "GET",
                "/v1/admin/hash",
                params={"index": mark["index"], "timeout_ms": HASH_WAIT_MS},
                timeout_s=HASH_WAIT_MS / 1000 + HASH_ANSWER_SLACK_S,
            )
            state_hash = digest["state_hash"]
        except AdminError:
            state_hash = None
        audit_ok = (await admin.call(http, "GET", "/v1/admin/audit/verify"))["ok"]
        invariants = await admin.call(http, "GET", "/v1/admin/invariants")
        finals.append(
            NodeFinal(
                node,
                await _page(admin, http, "/v1/admin/events", "since", "events", "seq"),
                await _page(admin, http, "/v1/admin/audit", "after", "records", "audit_no"),
                state_hash,
                audit_ok,
                invariants["ok"],
                invariants["problems"],
            )
        )
    return _same_position(finals)


def _same_position(finals: list[NodeFinal]) -> list[NodeFinal]:
    """Logs and audit trails cut at what every node has: read one node after another, a
    later node may hold an entry or two more (idle time ticks) than an earlier one."""
    last_seq = min((f.events[-1]["seq"] if f.events else 0) for f in finals)
    last_audit = min((f.audit[-1]["audit_no"] if f.audit else 0) for f in finals)
    for final in finals:
        final.events = [e for e in final.events if e["seq"] <= last_seq]
        final.audit = [r for r in final.audit if r["audit_no"] <= last_audit]
    return finals


async def _page(admin: Any, http: str, path: str, cursor: str, field: str, key: str) -> list[dict]:
    rows: list[dict] = []
    position = 0
    while True:
        page = await admin.call(
            http, "GET", path, params={cursor: position, "limit": READ_LIMIT_MAX}
        )
        batch = page[field]
        rows.extend(batch)
        if len(batch) < READ_LIMIT_MAX:
            return rows
        position = batch[-1][key]


def _counts(history: History) -> dict[str, int]:
    counts: dict[str, int] = {"faults": len(history.faults), "status_samples": len(history.status)}
    for invocation, completion in history.pairs():
        kind = completion.kind if completion is not None else "open"
        name = f"{invocation.f}_{kind}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def result_json(result: RunResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "seed": result.seed,
        "plane": result.plane,
        "verdicts": [asdict(v) for v in result.verdicts],
        "availability": result.availability,
        "counts": result.counts,
        "out_dir": str(result.out_dir),
    }
