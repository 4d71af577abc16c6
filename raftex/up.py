"""`raftex up`: a local cluster in the foreground (what `make run` starts), seeded with the demo
market and its accounts' keys, its nodes kept running (raftex/supervisor.py) until Ctrl-C or
SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cluster.admin_client import ADMIN_TOKEN_FILE_NAME, AdminError
from cluster.demo_keys import DEMO_KEYS_FILE_NAME, issue_demo_keys
from cluster.keyring import KeyringError
from cluster.launcher import (
    DEMO_ACCOUNTS,
    LAUNCH_FILE_NAME,
    LEADER_WAIT_S,
    POLL_PERIOD_S,
    LocalCluster,
    PortBases,
    fix_node_settings,
    register_replicas,
    seed_demo,
    stop_processes,
    wait_for_leader,
)
from engine.commands import SetCalendar
from raftex.supervisor import Supervisor

DEMO_MARKET_LOG_NAME = "demo-market.log"


def _report(message: str) -> None:
    print(f"raftex up: {message}", file=sys.stderr, flush=True)


def _demo_log(data_dir: Path) -> Path:
    return data_dir / DEMO_MARKET_LOG_NAME


def _start_demo_market(data_dir: Path, rate: float) -> subprocess.Popen:
    """The demo market as a process of its own: an ordinary client of the cluster."""
    with open(_demo_log(data_dir), "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "raftex.cli",
                "demo-market",
                "--data-dir",
                str(data_dir),
                "--rate",
                str(rate),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _fix_ports(data_dir: Path) -> dict[str, int]:
    """The nodes' FIX ports, as the cluster's plan has them (none: no FIX)."""
    plan = json.loads((data_dir / LAUNCH_FILE_NAME).read_text())
    return {
        node_id: settings["fix_port"]
        for node_id, settings in plan.get("node_settings", {}).items()
        if settings.get("fix_port")
    }


def run_up(
    count: int,
    data_dir: Path,
    tls: bool = False,
    replicas: int = 0,
    bases: PortBases | None = None,
    restart: bool = True,
    demo_rate: float = 0.0,
    kek_file: Path | None = None,
    calendars: tuple[SetCalendar, ...] = (),
    fix_port_base: int = 0,
) -> int:
    """`count` voters and `replicas` read replicas. `tls`, `bases` and `kek_file` (encrypt
    at rest) apply to a new cluster; a restarted one keeps the ports, the scheme and the
    encryption it was created with (`kek_file`: where its key file is now).
    `demo_rate`: above 0, a demo market trades at that many actions per second;
    `calendars`: the demo instruments' trading calendars (none: continuous trading);
    `fix_port_base`: above 0, every node of a new cluster serves FIX 4.4 from that port on."""
    node_settings = fix_node_settings(count, replicas, fix_port_base) if fix_port_base else None
    try:
        cluster = LocalCluster(
            data_dir.resolve(),
            count,
            tls=tls,
            replicas=replicas,
            bases=bases,
            kek_file=kek_file,
            node_settings=node_settings,
        )
    except KeyringError as exc:
        print(f"raftex up: {exc}", file=sys.stderr)
        return 2
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cluster.start()
    demo: subprocess.Popen | None = None
    try:
        try:
            leader, keys = _bring_up(cluster, calendars)
        except AdminError as exc:
            print(f"raftex up: {exc}; logs in {data_dir}", file=sys.stderr)
            return 1
        _print_where(cluster, data_dir, leader, replicas, keys)
        demo = _start_demo_market(cluster.data_dir, demo_rate) if demo_rate else None
        if demo is not None:
            log = _demo_log(data_dir)
            print(f"  demo market   {demo_rate:g} actions/s, pid {demo.pid}, log {log}")
        restarts = "restarted when they exit" if restart else "left down when they exit"
        print(f"Nodes are {restarts}. Ctrl-C stops the cluster; the data stays in", data_dir)
        sys.stdout.flush()
        supervisor = Supervisor(cluster, restart, _report)
        code = 0
        while not stopping:
            supervisor.check()
            if supervisor.all_down:
                _report("every node is down; see their logs")
                code = 1
                break
            if demo is not None and demo.poll() is not None:
                _report(
                    f"the demo market exited (code {demo.returncode}); see {_demo_log(data_dir)}"
                )
                demo = None
            time.sleep(POLL_PERIOD_S)
    finally:
        # Whatever ends this (a signal, a failed start, or an error such as no file
        # descriptor left to start a node with), the nodes, in sessions of their own, are
        # not left behind: a `raftex up` that died of an error once left three running.
        if demo is not None:
            stop_processes([demo])
        cluster.stop()
    print("raftex: cluster stopped")
    return code


def _bring_up(
    cluster: LocalCluster, calendars: tuple[SetCalendar, ...]
) -> tuple[str, list[dict[str, Any]]]:
    """Waits for a leader, registers the replicas, seeds the demo instruments and accounts;
    (the leader, the demo keys)."""
    token, ca = cluster.admin_token, cluster.ca_file
    leader = asyncio.run(wait_for_leader(cluster.nodes, token, LEADER_WAIT_S, ca))
    leader_http = cluster.node(leader).http
    asyncio.run(register_replicas(cluster.replicas, token, leader_http, ca))
    asyncio.run(seed_demo(leader_http, token, ca, calendars))
    keys = asyncio.run(issue_demo_keys(leader_http, token, cluster.data_dir, DEMO_ACCOUNTS, ca))
    return leader, keys


def _print_where(
    cluster: LocalCluster, data_dir: Path, leader: str, replicas: int, keys: list[dict[str, Any]]
) -> None:
    """What `make run` shows: every node's addresses, FIX ports, UI, files and demo keys."""
    ca = cluster.ca_file
    with_replicas = f" and {replicas} read replica(s)" if replicas else ""
    print(f"raftex: {len(cluster.voters)}-node cluster{with_replicas} up, leader {leader}")
    for node in cluster.nodes:
        scheme = "https" if ca else "http"
        role = "replica" if node.replica else f"raft {node.raft}"
        print(f"  {node.node_id}  {scheme}://{node.http}  {role}  log {node.log_path}")
    fix_ports = _fix_ports(cluster.data_dir)
    for node_id, port in sorted(fix_ports.items()):
        print(f"  {node_id}  FIX 4.4 127.0.0.1:{port}  (TargetCompID RAFTEX; see README)")
    first = f"{'https' if ca else 'http'}://{cluster.nodes[0].http}"
    print(f"  browser UI    {first}/ui/ (cluster page: {first}/ui/cluster)")
    print(f"  metrics       {first}/metrics (every node)")
    print(f"  cluster file  {cluster.cluster_file}")
    print(f"  admin token   {data_dir / ADMIN_TOKEN_FILE_NAME}")
    if ca:
        print(f"  certificate   {ca} (self-signed: give it to clients as their CA)")
    if cluster.kek_file is not None:
        print(f"  at rest       encrypted; key-encryption key {cluster.kek_file} (keep it apart)")
    else:
        print("  at rest       in clear (a new cluster without --no-encryption is encrypted)")
    print(f"  demo API keys {data_dir / DEMO_KEYS_FILE_NAME} (TOTP secrets next to it)")
    for key in keys:
        print(f"    {key['account']:<6} {key['kind']:<8} {key['api_key']}  {key['scopes']}")
