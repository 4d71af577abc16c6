"""Local clusters of node processes on 127.0.0.1: for `raftex up`, tests, chaos runs, benchmarks.

First start: picks free ports, generates the cluster secret and admin token,
writes one config per node (and, encrypted at rest, the keyring holding the data
key wrapped by the operator's key-encryption key file), starts the nodes, waits
for a leader and seeds demo instruments and funded accounts. Later starts reuse the same directory,
ports and secrets, so the data survives. Seeding is idempotent (existing
instruments and accounts are refused, deposits carry request ids), so it runs
on every start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.admin_client import (
    ADMIN_TOKEN_FILE_NAME,
    CLUSTER_FILE_NAME,
    AdminClient,
    AdminError,
    NodeAddress,
)
from cluster.keyring import KEYRING_FILE_NAME, KeyringError, create_keyring, read_kek_file
from cluster.market import Market, seed_market
from cluster.private_file import replace_private
from cluster.tls import CERT_FILE_NAME, self_signed
from engine.codes import TradingCapacity
from engine.commands import AddInstrument, SetAccountProfile, SetCalendar

LAUNCH_FILE_NAME = "launch.json"
LEADER_WAIT_S = 30.0
# Longer than a node's own wait for its projector to stop (raftex/projector_child.py).
STOP_WAIT_S = 15.0
POLL_PERIOD_S = 0.2
HOST = "127.0.0.1"
OWN_HOST_RAFT_PORT = 7000
OWN_HOST_HTTP_PORT = 8080
HTTP_PORT_BASE = 8080
RAFT_PORT_BASE = 7080
# `raftex up --fix`: n1's FIX port (9876-9880 are FIX's customary ports), n2 the next.
FIX_PORT_BASE = 9880
REPLICA_PORT_OFFSET = 10
VOTERS_MAX = 5
REPLICAS_MAX = 8
LISTEN_PORTS = (20_000, 32_000)  # below Linux's default ephemeral range 32768-60999
PORT_PICK_TRIES = 200

DEMO_QUOTE = "USD"
DEMO_QUOTE_DECIMALS = 2
DEMO_STOCKS = (("AAPL", 19_000), ("MSFT", 42_000), ("NVDA", 14_000), ("TSLA", 25_000))
DEMO_ACCOUNTS = ("alice", "bob", "carol", "dave")
DEMO_CASH_CENTS = 10_000_000_00
DEMO_SHARES = 10_000


HostOf = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class LocalNode:
    node_id: str
    raft: str  # empty for a read replica
    http: str
    config_path: Path
    log_path: Path

    @property
    def replica(self) -> bool:
        return not self.raft


def free_port() -> int:
    """A port that is free now, chosen below the kernel's ephemeral range.

    The port is only bound later, by the node; a port from the ephemeral range
    (what bind(0) hands out) can be taken in between by any outgoing connection
    on the machine, and then the node cannot start.
    """
    low, high = LISTEN_PORTS
    for _ in range(PORT_PICK_TRIES):
        port = random.randrange(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {low}..{high}")


def _port(preferred: int | None) -> int:
    """`preferred` if nothing listens there now, else a free port."""
    if preferred is not None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the node binds it: a port with connections in TIME_WAIT is free to listen on.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, preferred))
            except OSError:
                pass
            else:
                return preferred
    return free_port()


@dataclass(frozen=True, slots=True)
class PortBases:
    """Where `raftex up` puts a new cluster's nodes: voter n<i> at base + i - 1, replica
    r<i> at the HTTP base + REPLICA_PORT_OFFSET + i - 1 (replicas have no Raft port)."""

    http: int
    raft: int

    def overlap(self) -> bool:
        """Whether the HTTP ports (voters and replicas) and the Raft ports could collide."""
        http_last = self.http + REPLICA_PORT_OFFSET + REPLICAS_MAX - 1
        raft_last = self.raft + VOTERS_MAX - 1
        return self.raft <= http_last and self.http <= raft_last

    def of(self, node_id: str) -> tuple[int, int]:
        number = int(node_id[1:]) - 1
        if node_id.startswith("r"):
            return self.http + REPLICA_PORT_OFFSET + number, 0
        return self.http + number, self.raft + number


def fix_node_settings(count: int, replicas: int, base: int) -> dict[str, dict[str, float | bool]]:
    """A FIX port for every node of a new plan: voter n<i> at base + i - 1, replica r<i> at
    base + REPLICA_PORT_OFFSET + i - 1, or a free port where that one is taken."""
    ports = {f"n{i}": base + i - 1 for i in range(1, count + 1)}
    ports.update({f"r{i}": base + REPLICA_PORT_OFFSET + i - 1 for i in range(1, replicas + 1)})
    return {node_id: {"fix_port": _port(port)} for node_id, port in ports.items()}


def _addresses(
    node_id: str, host_of: HostOf | None, voter: bool = True, bases: PortBases | None = None
) -> dict[str, str]:
    """A node's Raft and HTTP addresses on 127.0.0.1 (at the port bases if those ports are
    free, else free ports), or the fixed ports on an address of the node's own (a network
    namespace, in the chaos suite). A read replica has no Raft address."""
    if host_of is None:
        http_port, raft_port = bases.of(node_id) if bases is not None else (None, None)
        raft = f"{HOST}:{_port(raft_port)}" if voter else ""
        http = f"{HOST}:{_port(http_port)}"
    else:
        host = host_of(node_id)
        raft = f"{host}:{OWN_HOST_RAFT_PORT}" if voter else ""
        http = f"{host}:{OWN_HOST_HTTP_PORT}"
    return {"id": node_id, "raft": raft, "http": http}


def prepare(
    data_dir: Path,
    count: int,
    fsync: str = "always",
    settings: dict[str, float | bool] | None = None,
    tls: bool = False,
    host_of: HostOf | None = None,
    node_settings: dict[str, dict[str, float | bool]] | None = None,
    replicas: int = 0,
    bases: PortBases | None = None,
    secret: str | None = None,
    kek_file: Path | None = None,
) -> tuple[list[LocalNode], str]:
    """Writes (or reuses) the launch plan and node configs; returns nodes (the `count`
    voters n1.., then the `replicas` read replicas r1..) and the admin token.

    `settings`: extra node settings (rate limits) for every node of a new plan;
    `node_settings`: more for some nodes, by id (which of them run a projection).
    `host_of`: each node's own address, for nodes that do not share 127.0.0.1;
    `bases`: the ports a new plan prefers (without: free ports anywhere);
    `secret`: a new plan's cluster secret (a restore keeps its backup's), else a new one;
    `kek_file`: encrypt a new plan's data at rest under a data key wrapped by this key file
    (a keyring already in `data_dir`, a restore's, is kept); for an existing plan, where its
    key file is now. KeyringError if the key does not do.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    launch_file = data_dir / LAUNCH_FILE_NAME
    if launch_file.exists():
        plan = json.loads(launch_file.read_text())
    else:
        plan = {
            "secret": secret or secrets.token_urlsafe(32),
            "admin_token": secrets.token_urlsafe(24),
            "nodes": [_addresses(f"n{i}", host_of, bases=bases) for i in range(1, count + 1)],
            "settings": dict(settings or {}),
            "node_settings": dict(node_settings or {}),
            "tls": tls,
        }
    new_plan = not launch_file.exists()
    if kek_file is not None and (plan.get("kek_file") or new_plan):
        plan["kek_file"] = str(kek_file.resolve())
    keyring = data_dir / KEYRING_FILE_NAME
    if plan.get("kek_file") and not keyring.exists():
        if not new_plan:
            raise KeyringError(
                f"{keyring} is missing: it holds the data key this cluster's data is sealed"
                " under; put it back (a backup holds a copy) rather than make a new one"
            )
        create_keyring(keyring, read_kek_file(Path(plan["kek_file"])))
    planned = plan.setdefault("replicas", [])
    if len(planned) < replicas:
        planned.extend(
            _addresses(f"r{n}", host_of, voter=False, bases=bases)
            for n in range(len(planned) + 1, replicas + 1)
        )
    replace_private(launch_file, json.dumps(plan, indent=2))
    replace_private(data_dir / ADMIN_TOKEN_FILE_NAME, plan["admin_token"])
    voters = plan["nodes"][:count]
    nodes = [
        _write_node_config(data_dir, plan, entry, voters, fsync)
        for entry in (*voters, *planned[:replicas])
    ]
    return nodes, plan["admin_token"]


def plan_joiner(
    data_dir: Path,
    members: list[LocalNode],
    fsync: str = "always",
    host_of: HostOf | None = None,
) -> LocalNode:
    """Adds a voter to the launch plan whose peers are the current voters plus itself:
    start it, then `raftex admin add` it on the cluster. The members' own configs name it
    only once the add has committed (`write_member_configs`)."""
    launch_file = data_dir / LAUNCH_FILE_NAME
    plan = json.loads(launch_file.read_text())
    taken = {entry["id"] for entry in plan["nodes"]}
    number = len(taken) + 1
    while f"n{number}" in taken:
        number += 1
    entry = _addresses(f"n{number}", host_of)
    plan["nodes"].append(entry)
    replace_private(launch_file, json.dumps(plan, indent=2))
    peers = _peer_entries(n for n in members if not n.replica)
    return _write_node_config(data_dir, plan, entry, [*peers, entry], fsync)


def write_member_configs(
    data_dir: Path, nodes: list[LocalNode], fsync: str, joining: set[str]
) -> None:
    """Gives every node's config the voters as they are now as its peers; a joiner whose
    add has not committed yet (`joining`) is in no config but its own.

    pysyncobj drops connections from nodes it does not know, so a member that starts
    again on an empty disk with the peers it was first given never hears a leader added
    after it, and stands for election alone for good: a half-hour soak saw a wiped voter
    do that while a joiner led. As with etcd's --initial-cluster for a replaced member,
    what a node starts from must be the membership now. Not the membership to be: a
    member still starting when the next joiner was planned read that joiner as a member,
    led, and refused to add it ("already a member"). (A node that starts on its own data
    takes the membership from its snapshot and log instead.)
    """
    plan = json.loads((data_dir / LAUNCH_FILE_NAME).read_text())
    entries = {entry["id"]: entry for entry in (*plan["nodes"], *plan.get("replicas", []))}
    voters = [n for n in nodes if not n.replica and n.node_id not in joining]
    for node in nodes:
        own = [node] if node.node_id in joining else []
        peers = _peer_entries([*voters, *own])
        _write_node_config(data_dir, plan, entries[node.node_id], peers, fsync)


def _peer_entries(nodes: Iterable[LocalNode]) -> list[dict[str, str]]:
    """The nodes as a config's [[peers]] tables name them."""
    return [{"id": n.node_id, "raft": n.raft, "http": n.http} for n in nodes]


def _local_node(data_dir: Path, entry: dict[str, str]) -> LocalNode:
    node_id = entry["id"]
    return LocalNode(
        node_id,
        entry["raft"],
        entry["http"],
        data_dir / f"{node_id}.toml",
        data_dir / f"{node_id}.log",
    )


def _write_node_config(
    data_dir: Path,
    plan: dict[str, Any],
    entry: dict[str, str],
    peers: list[dict[str, str]],
    fsync: str,
) -> LocalNode:
    config_path = data_dir / f"{entry['id']}.toml"
    # JSON numbers and booleans are TOML numbers and booleans.
    settings = {**plan.get("settings", {}), **plan.get("node_settings", {}).get(entry["id"], {})}
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in sorted(settings.items()))
    if plan.get("tls"):
        cert, key = self_signed(data_dir, HOST)
        extra += f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
    if plan.get("kek_file"):
        extra += f'keyring_file = "{data_dir / KEYRING_FILE_NAME}"\n'
        extra += f'kek_file = "{plan["kek_file"]}"\n'
    peer_tables = "\n".join(
        f'[[peers]]\nid = "{p["id"]}"\nraft = "{p["raft"]}"\nhttp = "{p["http"]}"\n' for p in peers
    )
    # A replica follows the voters (its peers) and has no Raft address of its own.
    role = f'raft = "{entry["raft"]}"\n' if entry["raft"] else "replica = true\n"
    # Replaced whole: a member still starting may be reading it while a membership change
    # rewrites it.
    replace_private(
        config_path,
        f'node_id = "{entry["id"]}"\n{role}http = "{entry["http"]}"\n'
        f'data_dir = "{data_dir / entry["id"]}"\nsecret = "{plan["secret"]}"\n'
        f'admin_token = "{plan["admin_token"]}"\nfsync = "{fsync}"\n{extra}\n{peer_tables}',
    )
    return _local_node(data_dir, entry)


def node_command(node: LocalNode) -> list[str]:
    return [sys.executable, "-m", "raftex.cli", "node", "--config", str(node.config_path)]


def start_node(node: LocalNode, command: list[str]) -> subprocess.Popen:
    """`command`: the node's command line, as LocalCluster.command gives it."""
    log = open(node.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def write_cluster_file(
    data_dir: Path, nodes: list[LocalNode], pids: dict[str, int], ca_file: Path | None = None
) -> Path:
    path = data_dir / CLUSTER_FILE_NAME
    rows = [
        {
            "id": n.node_id,
            "role": "replica" if n.replica else "voter",
            "raft": n.raft,
            "http": n.http,
            "pid": pids.get(n.node_id),
        }
        for n in nodes
    ]
    content: dict[str, Any] = {"nodes": rows}
    if ca_file is not None:
        content["tls_ca"] = str(ca_file)
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path


async def wait_for_leader(
    nodes: list[LocalNode], token: str, timeout_s: float, ca_file: Path | None = None
) -> str:
    """Waits until one node leads and every node has heard of it."""
    addresses = [NodeAddress(n.node_id, n.http) for n in nodes]
    deadline = time.monotonic() + timeout_s
    async with AdminClient(token, timeout_s=2.0, ca_file=ca_file) as client:
        while time.monotonic() < deadline:
            rows = await client.status_all(addresses)
            leaders = {r.get("leader") for r in rows}
            if (
                len(leaders) == 1
                and None not in leaders
                and any(r["role"] == "leader" for r in rows)
            ):
                return leaders.pop()
            await asyncio.sleep(POLL_PERIOD_S)
    raise AdminError(f"no leader elected within {timeout_s:.0f} s")


async def register_replicas(
    replicas: list[LocalNode], token: str, leader_http: str, ca_file: Path | None = None
) -> None:
    """Records each read replica in the cluster's membership (what `raftex admin members`
    lists); one recorded before is left as it is."""
    async with AdminClient(token, ca_file=ca_file) as client:
        for replica in replicas:
            body = {"action": "add", "id": replica.node_id, "role": "replica", "http": replica.http}
            try:
                await client.call(leader_http, "POST", "/v1/admin/members", body)
            except AdminError as exc:
                if exc.code != "already_member":
                    raise


DEMO_MARKET = Market(
    quote=DEMO_QUOTE,
    quote_decimals=DEMO_QUOTE_DECIMALS,
    instruments=tuple(
        AddInstrument(
            symbol,
            symbol,
            DEMO_QUOTE,
            tick_size=1,
            lot_size=1,
            max_qty=100_000,
            max_notional=10**11,
            price_band_bps=1_000,
            maker_fee_bps=1,
            taker_fee_bps=3,
            reference_price=price,
            halt_pause_ms=30_000,
        )
        for symbol, price in DEMO_STOCKS
    ),
    accounts=DEMO_ACCOUNTS,
    cash=DEMO_CASH_CENTS,
    shares=DEMO_SHARES,
    # A market-making firm dealing on its own account, and two brokers' clients.
    profiles=(
        SetAccountProfile("alice", "MMKR", "alice", "", TradingCapacity.DEAL),
        SetAccountProfile("bob", "BRKA", "bob", "", TradingCapacity.AOTC),
        SetAccountProfile("carol", "BRKA", "carol", "", TradingCapacity.AOTC),
        SetAccountProfile("dave", "BRKB", "dave", "", TradingCapacity.AOTC),
    ),
)


# The demo instruments' trading calendars (`raftex up --calendar`): a New York day, a
# short day that repeats every few minutes (the demo market's: an opening auction,
# continuous trading and a closing auction within minutes), or none (continuous).
CALENDARS = ("day", "short", "none")
SHORT_SESSION_S = 600


def demo_calendars(kind: str, session_s: int = SHORT_SESSION_S) -> tuple[SetCalendar, ...]:
    """SetCalendar for every demo instrument; a short session is cut 10% pre-open, 70%
    continuous, 10% closing call, 5% post-close, 5% closed."""
    if kind == "none":
        return ()
    if kind == "day":
        hours = ("04:00", "09:30", "15:50", "16:00", "20:00")
        times = [int(h[:2]) * 3600 + int(h[3:]) * 60 for h in hours]
        zone, day_s, days = "America/New_York", 86_400, 0b0011111
    else:
        times = [0, session_s // 10, session_s * 8 // 10, session_s * 9 // 10, session_s * 19 // 20]
        zone, day_s, days = "UTC", session_s, 0b1111111
    return tuple(
        SetCalendar(symbol, zone, *times, day_s=day_s, trading_days=days, by="raftex up")
        for symbol, _ in DEMO_STOCKS
    )


async def seed_demo(
    http: str,
    token: str,
    ca_file: Path | None = None,
    calendars: tuple[SetCalendar, ...] = (),
) -> None:
    market = dataclasses.replace(DEMO_MARKET, calendars=calendars)
    async with AdminClient(token, ca_file=ca_file) as client:
        await seed_market(client, http, market)


class LocalCluster:
    """Processes of a local cluster; `stop()` ends them all (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        data_dir: Path,
        count: int,
        fsync: str = "always",
        settings: dict[str, float | bool] | None = None,
        tls: bool = False,
        host_of: HostOf | None = None,
        prefix_of: Callable[[str], list[str]] | None = None,
        node_settings: dict[str, dict[str, float | bool]] | None = None,
        replicas: int = 0,
        bases: PortBases | None = None,
        secret: str | None = None,
        kek_file: Path | None = None,
    ) -> None:
        """`count` voters and `replicas` read replicas; `host_of` and `prefix_of`: each
        node's own address and command prefix, for nodes in network namespaces of their own;
        `node_settings`: settings of some nodes; `bases`: the ports a new cluster prefers;
        `secret`: a new cluster's secret; `kek_file`: its data encrypted at rest (see
        `prepare`)."""
        self.data_dir = data_dir
        self.fsync = fsync
        self.host_of = host_of
        self.prefix_of = prefix_of
        self.nodes, self.admin_token = prepare(
            data_dir,
            count,
            fsync,
            settings,
            tls,
            host_of,
            node_settings,
            replicas,
            bases,
            secret,
            kek_file,
        )
        plan = json.loads((data_dir / LAUNCH_FILE_NAME).read_text())
        kek = plan.get("kek_file")
        # The key-encryption key file the nodes read, when the data is encrypted at rest.
        self.kek_file = Path(kek) if kek else None
        # The certificate clients trust, when the cluster serves HTTPS.
        self.ca_file = data_dir / CERT_FILE_NAME if plan.get("tls") else None
        self.processes: dict[str, subprocess.Popen] = {}
        # Joiners planned whose add the cluster has not confirmed yet.
        self.joining: set[str] = set()
        self._started_at: dict[str, float] = {}
        self.cluster_file = data_dir / CLUSTER_FILE_NAME

    def start(self) -> None:
        for node in self.nodes:
            self.start_one(node.node_id)

    def start_one(self, node_id: str) -> None:
        node = self.node(node_id)
        self.processes[node_id] = start_node(node, self.command(node_id))
        self._started_at[node_id] = time.monotonic()
        self._write_pids()

    def started_at(self, node_id: str) -> float:
        """When this launcher last started the node (time.monotonic())."""
        return self._started_at[node_id]

    def reap(self, node_id: str) -> None:
        """Forgets the process of a node that has exited (cluster.json then shows no pid)."""
        self.processes.pop(node_id).wait()
        self._write_pids()

    def _write_pids(self) -> None:
        write_cluster_file(
            self.data_dir, self.nodes, {k: p.pid for k, p in self.processes.items()}, self.ca_file
        )

    def plan_joiner(self) -> LocalNode:
        """A new node's config (peers: the current members and itself); not started yet,
        and in no other member's config until `admitted`."""
        node = plan_joiner(self.data_dir, self.nodes, self.fsync, self.host_of)
        self.nodes.append(node)
        self.joining.add(node.node_id)
        return node

    def admitted(self, node_id: str) -> None:
        """Records that the cluster committed a joiner's add: every config now names it."""
        self.joining.discard(node_id)
        write_member_configs(self.data_dir, self.nodes, self.fsync, self.joining)

    def command(self, node_id: str) -> list[str]:
        """The node's command line, behind its prefix (`ip netns exec NS`, in the chaos suite)."""
        prefix = self.prefix_of(node_id) if self.prefix_of is not None else []
        return [*prefix, *node_command(self.node(node_id))]

    def forget(self, node_id: str) -> None:
        """Drops a removed member from this launcher's view and from the others' configs
        (stop its process first)."""
        self.nodes = [n for n in self.nodes if n.node_id != node_id]
        self.joining.discard(node_id)
        write_member_configs(self.data_dir, self.nodes, self.fsync, self.joining)
        self._write_pids()

    @property
    def voters(self) -> list[LocalNode]:
        return [n for n in self.nodes if not n.replica]

    @property
    def replicas(self) -> list[LocalNode]:
        return [n for n in self.nodes if n.replica]

    def node(self, node_id: str) -> LocalNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def addresses(self) -> list[NodeAddress]:
        return [NodeAddress(n.node_id, n.http) for n in self.nodes]

    def kill(self, node_id: str, signum: int = signal.SIGKILL) -> None:
        """Ends the node with `signum`; a SIGTERM it has not obeyed in STOP_WAIT_S (a hung
        node, or a machine too loaded for its shutdown) is followed by SIGKILL, as any
        supervisor does, and its projector goes with it (a half-hour soak ended on a node
        that took longer)."""
        process = self.processes.pop(node_id)
        if signum == signal.SIGTERM:
            stop_processes([process])
            return
        process.send_signal(signum)
        process.wait(timeout=STOP_WAIT_S)

    def stop(self) -> None:
        stop_processes(list(self.processes.values()))
        self.processes.clear()


def stop_processes(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to every one, then SIGKILL to those still there after STOP_WAIT_S; then
    whatever is left of their process groups (each was started in a session of its own):
    a node killed before it stopped its projector leaves it to die with its parent, which
    takes a moment, and a stopped cluster leaves nothing behind."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for process in processes:
        _end_group(process.pid)


def _end_group(pgid: int) -> None:
    deadline = time.monotonic() + STOP_WAIT_S
    try:
        os.killpg(pgid, signal.SIGKILL)
        while time.monotonic() < deadline:
            os.killpg(pgid, 0)  # raises once no process of the group is left
            time.sleep(POLL_PERIOD_S / 10)
    except (ProcessLookupError, PermissionError):
        return
