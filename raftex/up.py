"""`raftex up`: a local cluster in the foreground (what `make run` starts), seeded with the demo
market and its accounts' keys, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from cluster.admin_client import ADMIN_TOKEN_FILE_NAME, AdminError
from cluster.demo_keys import DEMO_KEYS_FILE_NAME, issue_demo_keys
from cluster.launcher import (
    DEMO_ACCOUNTS,
    LEADER_WAIT_S,
    POLL_PERIOD_S,
    LocalCluster,
    register_replicas,
    seed_demo,
    wait_for_leader,
)


def run_up(count: int, data_dir: Path, tls: bool = False, replicas: int = 0) -> int:
    """`count` voters and `replicas` read replicas. `tls` applies to a new cluster; a
    restarted one keeps what it was created with."""
    cluster = LocalCluster(data_dir.resolve(), count, tls=tls, replicas=replicas)
    ca = cluster.ca_file
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cluster.start()
    try:
        token = cluster.admin_token
        leader = asyncio.run(wait_for_leader(cluster.nodes, token, LEADER_WAIT_S, ca))
        leader_http = cluster.node(leader).http
        asyncio.run(register_replicas(cluster.replicas, token, leader_http, ca))
        asyncio.run(seed_demo(leader_http, token, ca))
        keys = asyncio.run(issue_demo_keys(leader_http, token, cluster.data_dir, DEMO_ACCOUNTS, ca))
    except AdminError as exc:
        print(f"raftex up: {exc}; logs in {data_dir}", file=sys.stderr)
        cluster.stop()
        return 1
    with_replicas = f" and {replicas} read replica(s)" if replicas else ""
    print(f"raftex: {count}-node cluster{with_replicas} up, leader {leader}")
    for node in cluster.nodes:
        scheme = "https" if ca else "http"
        role = "replica" if node.replica else f"raft {node.raft}"
        print(f"  {node.node_id}  {scheme}://{node.http}  {role}  log {node.log_path}")
    print(f"  cluster file  {cluster.cluster_file}")
    print(f"  admin token   {data_dir / ADMIN_TOKEN_FILE_NAME}")
    if ca:
        print(f"  certificate   {ca} (self-signed: give it to clients as their CA)")
    print(f"  demo API keys {data_dir / DEMO_KEYS_FILE_NAME} (TOTP secrets next to it)")
    for key in keys:
        print(f"    {key['account']:<6} {key['kind']:<8} {key['api_key']}  {key['scopes']}")
    print("Ctrl-C stops the cluster; the data stays in", data_dir)
    sys.stdout.flush()
    while not stopping:
        dead = [k for k, p in cluster.processes.items() if p.poll() is not None]
        if dead:
            print(f"raftex up: node(s) {', '.join(dead)} exited; see their logs", file=sys.stderr)
            break
        time.sleep(POLL_PERIOD_S)
    cluster.stop()
    print("raftex: cluster stopped")
    return 0
