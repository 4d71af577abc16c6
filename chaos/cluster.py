"""The cluster under test: real node processes, and the faults the harness can apply to them.

Two fault planes. `netns` (root): each node in a network namespace of its own
(chaos/netns.py), partitions are blackhole routes and packet loss is iptables,
so faults cut real TCP. `hooks` (no root): nodes share 127.0.0.1 and the same
faults are applied by each node's fault hooks (its Raft traffic dropped inside
the node). On both, the harness's HTTP control traffic survives every
partition, and clock skew shifts the clock a node stamps its entries with (the
machine's libfaketime 0.9.10 breaks Python 3.11's `time.sleep` when it leaves
the monotonic clock alone: libfaketime issue #426). Everything started is
stopped by `stop()`, paused processes and namespaces included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from chaos.checkers import STARTED_ON_CORRUPT_FILE
from chaos.disks import LazyDisks
from chaos.netns import NamespaceNet, unavailable_reason
from cluster.admin_client import AdminClient, AdminError, NodeAddress
from cluster.keyring import ensure_kek_file
from cluster.launcher import LocalCluster, LocalNode, register_replicas, wait_for_leader
from cluster.market import Market, seed_market
from cluster.node import DUMP_FILE_NAME, JOURNAL_FILE_NAME
from cluster.snapshot_file import META_NAME
from engine.commands import AddInstrument, Tick, command_to_wire

LEADER_WAIT_S = 30.0
REFUSAL_WAIT_S = 30.0
FAILURE_CHARS_MAX = 160
JOURNAL_FILE = JOURNAL_FILE_NAME
SNAPSHOT_FILE = DUMP_FILE_NAME
CHAOS_MARKET = Market(
    quote="USD",
    quote_decimals=2,
    instruments=tuple(
        AddInstrument(
            symbol,
            symbol,
            "USD",
            max_qty=10_000,
            max_notional=10**12,
            price_band_bps=2_000,
            taker_fee_bps=2,
            maker_fee_bps=1,
            reference_price=price,
        )
        for symbol, price in (("ACME", 10_000), ("BOLT", 5_000))
    ),
    accounts=(),
    cash=10**10,
    shares=10**6,
)
PLANES = ("auto", "netns", "hooks")
TICK_WIRE = command_to_wire(Tick())


def resolve_plane(plane: str) -> str:
    """`auto`: namespaces where this machine can build them, else the nodes' hooks."""
    if plane == "auto":
        return "netns" if unavailable_reason() is None else "hooks"
    return plane


class ChaosCluster:
    def __init__(
        self,
        data_dir: Path,
        nodes: int,
        plane: str = "hooks",
        replicas: int = 0,
        fsync: str = "always",
        lazy_disks: bool = False,
    ) -> None:
        """`nodes` voters and `replicas` read replicas, encrypted at rest as `raftex up` makes
        them (the key-encryption key beside `data_dir`: a wiped node keeps only that and the
        keyring, as an operator would). `lazy_disks`: every voter's data directory on a disk
        of chaos/lazyfs.py, for the power and disk nemeses."""
        kek_file = data_dir.with_name(data_dir.name + ".kek")
        ensure_kek_file(kek_file)
        self.plane = resolve_plane(plane)
        self.net = NamespaceNet() if self.plane == "netns" else None
        settings: dict[str, float | bool] = {
            "fault_hooks": True,
            "checked": True,
            "rate_limit_ip_per_s": 0,
            "rate_limit_key_per_s": 0,
        }
        try:
            if self.net is not None:
                self.net.create()
            self.local = LocalCluster(
                data_dir,
                nodes,
                fsync=fsync,
                settings=settings,
                host_of=self.net.add_node if self.net else None,
                prefix_of=self.net.command_prefix if self.net else None,
                replicas=replicas,
                kek_file=kek_file,
            )
            self.disks = LazyDisks(data_dir.with_name(data_dir.name + ".disks"))
            self.lazy_disks = lazy_disks
            if lazy_disks:
                for node in self.local.voters:
                    self.disks.mount(node.node_id, data_dir / node.node_id)
        except BaseException:
            self.disks.unmount_all()
            if self.net is not None:
                self.net.destroy()
            raise
        self.paused: set[str] = set()
        self.admin = AdminClient(self.local.admin_token, timeout_s=5.0)

    # ------------------------------------------------------------ lifetime

    async def start(self, accounts: list[str]) -> dict[str, dict[str, Any]]:
        """Starts the nodes, creates instruments and funded accounts; returns each account's
        HMAC key."""
        await self.admin.__aenter__()
        self.local.start()
        leader = await self.wait_leader()
        http = self.http(leader)
        await register_replicas(self.local.replicas, self.local.admin_token, http)
        await seed_market(self.admin, http, replace(CHAOS_MARKET, accounts=tuple(accounts)))
        keys = {}
        for account in accounts:
            keys[account] = await self.admin.call(
                http,
                "POST",
                f"/v1/admin/accounts/{account}/keys",
                {"kind": "hmac", "scopes": ["read", "trade"]},
            )
        return keys

    def stop(self) -> None:
        for node_id in list(self.paused):
            self._signal(node_id, signal.SIGCONT)
        self.paused.clear()
        self.local.stop()
        self.disks.unmount_all()
        if self.net is not None:
            self.net.destroy()

    async def close(self) -> None:
        await self.admin.__aexit__(None, None, None)

    # ------------------------------------------------------------ reading

    @property
    def node_ids(self) -> list[str]:
        return [n.node_id for n in self.local.nodes]

    def http(self, node_id: str) -> str:
        return self.local.node(node_id).http

    @property
    def voter_ids(self) -> list[str]:
        return [n.node_id for n in self.local.voters]

    @property
    def replica_ids(self) -> list[str]:
        return [n.node_id for n in self.local.replicas]

    def running(self) -> list[str]:
        return [n for n in self.node_ids if n in self.local.processes]

    def running_voters(self) -> list[str]:
        return [n for n in self.voter_ids if n in self.local.processes]

    async def wait_leader(self, timeout_s: float = LEADER_WAIT_S) -> str:
        nodes = [
            n
            for n in self.local.nodes
            if n.node_id in self.local.processes and n.node_id not in self.paused
        ]
        return await wait_for_leader(nodes, self.local.admin_token, timeout_s)

    async def statuses(self) -> list[dict[str, Any]]:
        addresses = [NodeAddress(n, self.http(n)) for n in self.running() if n not in self.paused]
        return await self.admin.status_all(addresses)

    async def leader(self) -> str | None:
        for row in await self.statuses():
            if row.get("role") == "leader":
                return row["id"]
        return None

    # ------------------------------------------------------------ faults

    def kill(self, node_id: str) -> None:
        if node_id in self.local.processes:
            self.resume(node_id)
            self.local.kill(node_id, signal.SIGKILL)

    def restart(self, node_id: str, clean: bool = False) -> None:
        """Stops the node (SIGTERM if `clean`, else kill -9) if it runs, then starts it."""
        if node_id in self.local.processes:
            if clean:
                self.resume(node_id)
                self.local.kill(node_id, signal.SIGTERM)
            else:
                self.kill(node_id)
        self.local.start_one(node_id)

    def power_cut(self, node_ids: list[str]) -> int:
        """The power goes on these nodes: each process group killed at once (the node and
        its projector), then what their disks held only in memory dropped. Returns the
        bytes lost."""
        for node_id in node_ids:
            process = self.local.processes.get(node_id)
            if process is None:
                continue
            self.kill(node_id)
            _kill_group(process.pid)
        return sum(self.disks.cut(node_id) for node_id in node_ids)

    def exit_code(self, node_id: str) -> int | None:
        """The node's exit status if its process has ended on its own, else None."""
        process = self.local.processes.get(node_id)
        return None if process is None else process.poll()

    def last_failure(self, node_id: str) -> str:
        """The last CRITICAL or ERROR line of the node's log, or its last refusal to start
        (why it stopped), or ''."""
        try:
            lines = self.local.node(node_id).log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        failures = [
            ln
            for ln in lines
            if "level=CRITICAL" in ln or "level=ERROR" in ln or ln.startswith("raftex node:")
        ]
        # The part after the timestamp, short enough for a report line.
        return failures[-1].split(" level=", 1)[-1][:FAILURE_CHARS_MAX] if failures else ""

    def set_disk(self, node_id: str, mode: str) -> None:
        """`ok`, `full` (ENOSPC), `eio-write` or `eio` (reads fail too) on the node's disk."""
        self.disks.set_mode(node_id, mode)

    def wipe(self, node_id: str) -> None:
        """kill -9 and an empty disk: the node must rejoin from the others."""
        self.kill(node_id)
        shutil.rmtree(self.local.data_dir / node_id, ignore_errors=True)
        self.local.start_one(node_id)

    def pause(self, node_id: str) -> None:
        if node_id in self.local.processes and node_id not in self.paused:
            self._signal(node_id, signal.SIGSTOP)
            self.paused.add(node_id)

    def resume(self, node_id: str) -> None:
        if node_id in self.paused:
            self._signal(node_id, signal.SIGCONT)
            self.paused.discard(node_id)

    def _signal(self, node_id: str, signum: int) -> None:
        process = self.local.processes.get(node_id)
        if process is not None and process.poll() is None:
            process.send_signal(signum)

    async def partition(self, groups: list[list[str]]) -> None:
        """Each voter hears only the voters of its own groups (a voter may be in several);
        read replicas keep hearing every voter.

        Namespaces cut every voter, down and paused ones too, and the cut outlives a
        restart; hooks reach only the voters that answer now."""
        voters = self.voter_ids
        for node_id in voters:
            mine = {n for group in groups if node_id in group for n in group}
            await self._cut(node_id, sorted(set(voters) - mine - {node_id}))

    async def isolate(self, node_id: str) -> None:
        """Cuts one node off from every other node (a replica: from the log it follows)."""
        await self._cut(node_id, [n for n in self.node_ids if n != node_id])

    async def _cut(self, node_id: str, blocked: list[str]) -> None:
        if self.net is not None:
            self.net.cut(node_id, blocked)
        elif node_id in self.running() and node_id not in self.paused:
            await self._faults(node_id, {"blocked": blocked})

    async def heal(self) -> None:
        if self.net is not None:
            self.net.heal()
        for node_id in self.running():
            if node_id not in self.paused:
                await self._faults(node_id, {"blocked": [], "clock_offset_ms": 0, "loss": 0.0})

    async def skew(self, node_id: str, offset_ms: int) -> None:
        await self._faults(node_id, {"clock_offset_ms": offset_ms})

    async def lose(self, node_id: str, loss: float) -> str:
        """Loses that fraction of the node's traffic with its peers; says how: real
        packets dropped by iptables, or Raft messages dropped by the node's hooks."""
        if self.net is not None and self.net.lose(node_id, loss):
            return "packets"
        await self._faults(node_id, {"loss": loss})
        return "Raft messages"

    async def _faults(self, node_id: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(AdminError):  # a node down now is healed when it restarts
            await self.admin.call(self.http(node_id), "POST", "/v1/admin/faults", body)

    async def corrupt(self, node_id: str, file_name: str) -> str:
        """Stops the node, flips a byte in the middle of one of its files (the Raft journal
        or the snapshot dump) and starts it by hand; then wipes it so it can rejoin. Says
        what the node did: refused to start, as it must; exited for another reason; or
        ran on the damaged file (STARTED_ON_CORRUPT_FILE)."""
        if file_name == SNAPSHOT_FILE:
            await self._snapshot_taken(node_id)
        if node_id in self.local.processes:
            self.local.kill(node_id, signal.SIGTERM)
        target = self.local.data_dir / node_id / file_name
        data = bytearray(target.read_bytes()) if target.exists() else bytearray()
        outcome = ": no such file to damage (wiped)"
        if len(data) > 64:
            data[_damage_offset(target, file_name, len(data))] ^= 0xFF
            target.write_bytes(bytes(data))
            try:
                done = await asyncio.to_thread(
                    subprocess.run,
                    self.local.command(node_id),
                    capture_output=True,
                    text=True,
                    timeout=REFUSAL_WAIT_S,
                    check=False,
                )
                if done.returncode != 0 and "refusing" in done.stderr:
                    outcome = " refused to start"
                else:
                    outcome = f": exited {done.returncode}: {_last_line(done.stderr)}"
            except subprocess.TimeoutExpired as ran:
                # It ran (subprocess.run killed it): its last words say on what.
                said = ran.stderr.decode(errors="replace") if isinstance(ran.stderr, bytes) else ""
                outcome = f"{STARTED_ON_CORRUPT_FILE} ({_last_line(said)})"
        self.wipe(node_id)
        return outcome

    async def commit_probe(self, http: str) -> float:
        """Milliseconds one empty command took to commit through the node at `http` (the
        leader); raises AdminError with the node's answer if it was not acknowledged."""
        started = time.monotonic()
        await self.admin.call(http, "POST", "/v1/admin/commands", {"command": TICK_WIRE})
        return (time.monotonic() - started) * 1000

    async def snapshot_voters(self) -> None:
        """Compacts every running voter's log into a snapshot, so a node that joins or is
        wiped now is sent a snapshot and the log after it, not the whole log."""
        for node_id in self.running_voters():
            if node_id not in self.paused:
                await self._snapshot_taken(node_id)

    async def _snapshot_taken(self, node_id: str) -> None:
        """Compacts the node's log and waits until a new dump file is written."""
        http = self.http(node_id)
        with contextlib.suppress(AdminError):
            before = (await self.admin.call(http, "GET", "/v1/admin/status"))["last_snapshot_index"]
            await self.admin.call(http, "POST", "/v1/admin/snapshot", {})
            deadline = time.monotonic() + REFUSAL_WAIT_S
            while time.monotonic() < deadline:
                status = await self.admin.call(http, "GET", "/v1/admin/status")
                if status["last_snapshot_index"] > before:
                    return
                await asyncio.sleep(0.2)

    async def add_node(self) -> tuple[str, str | None]:
        """Starts a joiner and adds it: (its id, why the add is unconfirmed, or None). An add
        whose answer was lost may still commit, so an unconfirmed joiner keeps running as a
        member-to-be and the next membership fault removes it: stopping it instead left a
        half-hour soak a voter short for good (with one more voter wiped, no majority)."""
        node: LocalNode = self.local.plan_joiner()
        if self.lazy_disks:
            # A joiner is a voter like the others: the power and disk faults may pick it.
            self.disks.mount(node.node_id, self.local.data_dir / node.node_id)
        self.local.start_one(node.node_id)
        try:
            await self.confirm_member(node.node_id)
        except AdminError as exc:
            return node.node_id, str(exc)
        return node.node_id, None

    async def confirm_member(self, node_id: str) -> None:
        """Adds a started joiner, or learns that it is a member already; from then on every
        member's config names it."""
        node = self.local.node(node_id)
        await self._member_change(
            {"action": "add", "id": node_id, "raft": node.raft, "http": node.http}
        )
        self.local.admitted(node_id)

    async def learn_joiners(self) -> None:
        """Admits every joiner whose add the leader's membership shows, though its answer
        was lost: a node about to start on an empty disk has only its config to find the
        members by, and one that did not name a joiner that leads would never hear it."""
        if not self.local.joining:
            return
        # Without an answer, the joiner's fate is learnt at the next membership fault.
        leader = await self.leader()
        if leader is None:
            return
        try:
            members = await self.admin.call(self.http(leader), "GET", "/v1/admin/members")
        except AdminError:
            return
        for row in members["members"]:
            if row["id"] in self.local.joining:
                self.local.admitted(row["id"])

    async def remove_node(self, node_id: str) -> None:
        """Removes a member. A leader cannot remove itself, so a member that leads is paused
        first and removed through the leader the others elect (a restart is not enough: it
        rejoins at once and may win again)."""
        if await self.leader() == node_id:
            self.pause(node_id)
        try:
            if node_id in self.paused:
                await self.wait_leader()
            await self._member_change({"action": "remove", "id": node_id})
        except AdminError:
            # Maybe still a member: it must run (and vote) until a later fault removes it.
            if node_id in self.paused:
                self.resume(node_id)
            raise
        self.kill(node_id)
        if node_id in self.disks.mounts:
            self.disks.unmount(node_id)
        self.local.forget(node_id)
        if self.net is not None:
            self.net.remove_node(node_id)

    async def _member_change(self, body: dict[str, Any]) -> None:
        """Adds or removes a member through whichever node leads, retrying until it is done:
        a retry of a change that was applied before its answer got lost is done too."""
        done_already = "already_member" if body["action"] == "add" else "not_member"
        deadline = time.monotonic() + LEADER_WAIT_S
        while True:
            leader = await self.leader()
            try:
                if leader is None:
                    raise AdminError("no leader")
                await self.admin.call(self.http(leader), "POST", "/v1/admin/members", body)
                return
            except AdminError as exc:
                if exc.code == done_already:
                    return
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)


def _kill_group(pgid: int) -> None:
    """SIGKILL to a process group, and wait until it is gone (a node runs in a session of
    its own, its projector with it)."""
    deadline = time.monotonic() + REFUSAL_WAIT_S
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
        while time.monotonic() < deadline:
            os.killpg(pgid, 0)
            time.sleep(0.01)


def _last_line(output: str) -> str:
    """The end of what a process said last, short enough for a fault's description."""
    return (output.strip().splitlines() or [""])[-1][-200:]


def _damage_offset(path: Path, file_name: str, size: int) -> int:
    """Where to flip a byte: in the engine snapshot of a dump (the state a node would run
    on), in the middle of a journal."""
    if file_name == SNAPSHOT_FILE:
        with (
            contextlib.suppress(OSError, tarfile.TarError, StopIteration),
            tarfile.open(path) as tar,
        ):
            member = next(m for m in tar.getmembers() if m.name == META_NAME)
            return member.offset_data + member.size // 2
    return size // 2
