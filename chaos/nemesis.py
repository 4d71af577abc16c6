"""Nemeses: the faults of a run, scheduled from a seed, applied to a `ChaosCluster`.

The schedule (what, when, for how long, aimed at which role) depends only on
the families, the run length and the seed, so a seed replays the same
schedule; which node is "the leader" is resolved when the fault starts.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from chaos.checkers import PROBED_FAMILIES
from chaos.cluster import JOURNAL_FILE, SNAPSHOT_FILE, ChaosCluster
from chaos.disks import unavailable_reason as disks_unavailable
from chaos.history import FaultRecord, History
from cluster.admin_client import AdminError
from cluster.node import EXIT_JOURNAL_FAILED

FAMILIES = (
    "kill",
    "pause",
    "partition",
    "loss",
    "restart",
    "wipe",
    "membership",
    "skew",
    "corrupt",
    "replica",
    "power",
    "disk",
)
# Families that need every voter's data directory on a FUSE disk of the suite's own.
DISK_FAMILIES = ("power", "disk")
KINDS = {
    "kill": ("leader", "follower", "minority", "all"),
    "pause": ("leader", "follower"),
    "partition": ("isolate-leader", "majority-minority", "bridge", "ring"),
    "restart": ("leader", "follower"),
    "wipe": ("follower",),
    "membership": ("add-remove",),
    "skew": ("leader", "follower"),
    "loss": ("leader", "follower"),
    "corrupt": ("follower-journal", "follower-snapshot"),
    # A read replica killed, paused, cut off from the voters, or wiped (after the voters
    # took a snapshot, so it rebuilds from a snapshot plus the log): the voters must not
    # notice (their commits are probed throughout).
    "replica": ("kill", "pause", "partition", "wipe"),
    # Every voter, or a minority, loses power at once: processes killed and what their
    # disks held in memory only (written, not fsynced) thrown away; restarted after the fault.
    "power": ("all", "minority"),
    # A voter's disk fills (ENOSPC) or fails (EIO on writes, or on reads too): it must stop
    # acknowledging (it exits on the first failed journal write) while the others commit;
    # when the disk is back it is started again and rejoins.
    "disk": ("full-follower", "eio-write-leader", "full-leader", "eio-follower"),
}
DISK_EXIT_CODES = {EXIT_JOURNAL_FAILED: f"exited {EXIT_JOURNAL_FAILED} (journal write failed)"}
COMMIT_PROBE_PERIOD_S = 0.1
FAULT_S = 3.0
QUIET_S = 3.0
SKEW_MS_MAX = 120_000
CATCH_UP_WAIT_S = 60.0
CATCH_UP_POLL_S = 0.05


class NemesisError(ValueError):
    """An unknown nemesis family."""


@dataclass(frozen=True, slots=True)
class PlannedFault:
    at_s: float
    family: str
    kind: str
    duration_s: float
    pick: int  # which of the candidate nodes, modulo their number
    skew_ms: int
    loss: float


def parse_families(text: str) -> tuple[str, ...]:
    """`all` is every family this machine can run: the disk families need FUSE."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if names == ("all",):
        if disks_unavailable() is None:
            return FAMILIES
        return tuple(f for f in FAMILIES if f not in DISK_FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise NemesisError(
            f"unknown nemesis {unknown or text!r}; choose from {', '.join(FAMILIES)}"
        )
    return names


def schedule(families: tuple[str, ...], seconds: float, seed: int) -> list[PlannedFault]:
    """Families in turn; each family's kinds in turn from a seeded start, so a run with as
    many faults of a family as it has kinds tries every kind."""
    rng = random.Random(seed)
    first_kind = {family: rng.randrange(len(KINDS[family])) for family in FAMILIES}
    plan: list[PlannedFault] = []
    at = QUIET_S
    while at + FAULT_S < seconds:
        family = families[len(plan) % len(families)]
        kinds = KINDS[family]
        turn = sum(1 for fault in plan if fault.family == family)
        plan.append(
            PlannedFault(
                at_s=at,
                family=family,
                kind=kinds[(first_kind[family] + turn) % len(kinds)],
                duration_s=FAULT_S,
                pick=rng.randrange(1_000),
                skew_ms=rng.choice((-1, 1)) * rng.randrange(1_000, SKEW_MS_MAX),
                loss=rng.choice((0.1, 0.25, 0.5)),
            )
        )
        at += FAULT_S + QUIET_S
    return plan


class Nemesis:
    def __init__(self, cluster: ChaosCluster, history: History, t0: float) -> None:
        self.cluster = cluster
        self.history = history
        self.t0 = t0
        self.joined: list[str] = []
        # Voters whose disk a wipe or corrupt fault took and that have not caught up yet.
        self.empty_disks: set[str] = set()

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self, plan: list[PlannedFault]) -> None:
        applied: set[str] = set()
        async with asyncio.TaskGroup() as watchers:
            for fault in plan:
                await asyncio.sleep(max(0.0, fault.at_s - self.now()))
                late_s = self.now() - fault.at_s
                if late_s > FAULT_S + QUIET_S and fault.family in applied:
                    # Faults run one after another, so a slow one (a disk waiting for a
                    # wiped voter to catch up) delays the rest: a fault more than a period
                    # late is skipped so that the run ends when it said it would, unless
                    # it is its family's first (every family a run names is exercised).
                    self._not_applied(fault, f"schedule overran by {late_s:.0f} s")
                    continue
                applied.add(fault.family)
                try:
                    record = await self.start(fault)
                except AdminError as exc:
                    # A fault the cluster could not take (a membership change with no
                    # quorum, say) is recorded as such; the run and its checks go on.
                    self._not_applied(fault, str(exc))
                    continue
                self.history.faults.append(record)
                joining = fault.family == "membership" and record.targets[0] in self.joined
                if (
                    fault.family in ("wipe", "restart", "corrupt")
                    or joining
                    or _is(fault, "replica", "wipe")
                ):
                    for node in record.targets:
                        watchers.create_task(self._watch_catch_up(record, node))
                # A fault that started late still lasts its whole duration.
                until = max(fault.at_s, record.start_s) + fault.duration_s
                if fault.family in PROBED_FAMILIES:
                    await self._probe_commits(record, until)
                await asyncio.sleep(max(0.0, until - self.now()))
                await self.end(fault, record)
                record.end_s = self.now()
                if fault.family in ("kill", "power", "disk") or _is(fault, "replica", "kill"):
                    for node in record.targets:
                        watchers.create_task(self._watch_catch_up(record, node))

    def _not_applied(self, fault: PlannedFault, why: str) -> None:
        now = self.now()
        description = f"{fault.family} {fault.kind}: not applied ({why})"
        self.history.faults.append(FaultRecord(fault.family, description, [], now, now))

    async def _watch_catch_up(self, record: FaultRecord, node: str) -> None:
        """Seconds until a (re)started node applied what the leader had committed then."""
        started = self.now()
        target = None
        while self.now() - started < CATCH_UP_WAIT_S:
            try:
                rows = {row["id"]: row for row in await self.cluster.statuses()}
            except AdminError:
                rows = {}
            if target is None:
                leader = next((r for r in rows.values() if r.get("role") == "leader"), None)
                target = leader["commit_index"] if leader else None
            mine = rows.get(node)
            if target is not None and mine and mine.get("applied_index", 0) >= target:
                record.catch_up_s[node] = round(self.now() - started, 3)
                record.caught_up_at_s[node] = round(self.now(), 3)
                self.empty_disks.discard(node)
                return
            await asyncio.sleep(CATCH_UP_POLL_S)

    async def _disk_may_go(self, node: str | None) -> None:
        """Raft keeps what a majority holds on disk: a wipe or a corrupt fault takes a
        voter's disk, and a joiner (None) comes with an empty one, only once every voter
        whose disk was taken before has caught up again (a half-hour soak found a second
        wipe while the first node was still empty: two of three disks gone, and the
        cluster's history with them). Marks `node` empty, and gives its config every
        member it will need on an empty disk."""
        deadline = self.now() + CATCH_UP_WAIT_S
        while waiting := sorted(self.empty_disks - {node}):
            if self.now() > deadline:
                what = "adding an empty voter" if node is None else f"taking {node}'s too"
                raise AdminError(
                    f"{', '.join(waiting)} still catching up from an empty disk: "
                    f"{what} would leave a majority without the log"
                )
            await asyncio.sleep(CATCH_UP_POLL_S)
        if node in self.cluster.voter_ids:
            self.empty_disks.add(node)
        if node is not None:
            await self.cluster.learn_joiners()

    async def _probe_commits(self, record: FaultRecord, until_s: float) -> None:
        """Commits an empty command through the leader every COMMIT_PROBE_PERIOD_S until
        `until_s`, recording how long each took (the voters' view of the fault)."""
        cluster = self.cluster
        leader = await cluster.leader()
        while self.now() < until_s:
            started = self.now()
            try:
                if leader is None:
                    raise AdminError("no leader")
                record.commit_ms.append(await cluster.commit_probe(cluster.http(leader)))
            except AdminError as exc:
                record.commit_ms.append(None)
                record.probe_errors.append(f"{self.now():.1f} s {leader or '-'}: {exc}")
                leader = await cluster.leader()
            await asyncio.sleep(max(0.0, COMMIT_PROBE_PERIOD_S - (self.now() - started)))

    async def _target(self, role: str, pick: int) -> tuple[str, list[str]]:
        """(the chosen voter, the other running voters) for a role."""
        cluster = self.cluster
        voters = cluster.running_voters()
        leader = await cluster.leader() or voters[0]
        followers = [n for n in voters if n != leader]
        if role == "leader" or not followers:
            return leader, followers
        chosen = followers[pick % len(followers)]
        return chosen, [n for n in voters if n != chosen]

    async def start(self, fault: PlannedFault) -> FaultRecord:
        cluster = self.cluster
        family, kind = fault.family, fault.kind
        record = FaultRecord(family, f"{family} {kind}", [], self.now())
        nodes = cluster.running_voters()
        if family == "kill":
            if kind == "all":
                targets = list(nodes)
            elif kind == "minority":
                leader, others = await self._target("leader", fault.pick)
                targets = [leader, *others][: (len(nodes) - 1) // 2]
            else:
                targets = [(await self._target(kind, fault.pick))[0]]
            for node in targets:
                cluster.kill(node)
            record.targets = targets
        elif family == "power":
            if kind == "all":
                targets = list(nodes)
            else:
                leader, others = await self._target("leader", fault.pick)
                targets = [leader, *others][: (len(nodes) - 1) // 2]
            lost = cluster.power_cut(targets)
            record.targets = targets
            record.description += f": {lost:,} bytes written but not synced lost"
        elif family == "disk":
            mode, role = kind.rsplit("-", 1)
            node = (await self._target(role, fault.pick))[0]
            cluster.set_disk(node, mode)
            record.targets = [node]
        elif family == "pause":
            node = (await self._target(kind, fault.pick))[0]
            cluster.pause(node)
            record.targets = record.minority = [node]
        elif family == "partition":
            groups, minority = await self._partition_groups(kind, fault.pick)
            await cluster.partition(groups)
            record.targets = sorted({n for g in groups for n in g})
            record.minority = minority
            record.description += " " + " | ".join(",".join(g) for g in groups)
        elif family == "restart":
            node = (await self._target(kind, fault.pick))[0]
            cluster.restart(node, clean=True)
            record.targets = [node]
        elif family == "wipe":
            node = (await self._target("follower", fault.pick))[0]
            await self._disk_may_go(node)
            cluster.wipe(node)
            record.targets = [node]
        elif family == "membership":
            if self.joined:
                # Forgotten only once removed: a failed removal is tried again next time.
                node = self.joined[-1]
                await cluster.remove_node(node)
                self.joined.pop()
                self.empty_disks.discard(node)
                record.description = f"membership remove {node}"
            else:
                # A joiner is a voter with an empty disk until it has caught up: adding one
                # while another voter is empty would leave two of four without the log.
                await self._disk_may_go(None)
                node, unconfirmed = await cluster.add_node()
                self.joined.append(node)
                self.empty_disks.add(node)
                record.description = f"membership add {node}"
                if unconfirmed:
                    record.description += f" (unconfirmed: {unconfirmed})"
            record.targets = [node]
        elif family == "skew":
            node = (await self._target(kind, fault.pick))[0]
            await cluster.skew(node, fault.skew_ms)
            record.targets = [node]
            record.description += f" {fault.skew_ms:+d} ms"
        elif family == "loss":
            node = (await self._target(kind, fault.pick))[0]
            what = await cluster.lose(node, fault.loss)
            record.targets = [node]
            record.description += f" {fault.loss:.0%} of its {what}"
        elif family == "replica":
            record.targets = [await self._replica_fault(kind, fault.pick)]
        elif family == "corrupt":
            node = (await self._target("follower", fault.pick))[0]
            await self._disk_may_go(node)
            file_name = SNAPSHOT_FILE if kind == "follower-snapshot" else JOURNAL_FILE
            record.description += await cluster.corrupt(node, file_name)
            record.targets = [node]
        # The fault counts from when it is in effect, not from when the nemesis began to
        # resolve its target: a write a paused or cut-off leader acknowledged in between
        # was acknowledged before the fault, and is no minority write.
        record.start_s = self.now()
        return record

    async def _replica_fault(self, kind: str, pick: int) -> str:
        cluster = self.cluster
        replicas = [n for n in cluster.replica_ids if n in cluster.running()]
        if not replicas:
            raise NemesisError("the replica family needs a cluster with read replicas")
        replica = replicas[pick % len(replicas)]
        if kind == "kill":
            cluster.kill(replica)
        elif kind == "pause":
            cluster.pause(replica)
        elif kind == "partition":
            await cluster.isolate(replica)
        else:
            await cluster.snapshot_voters()
            cluster.wipe(replica)
        return replica

    async def end(self, fault: PlannedFault, record: FaultRecord) -> None:
        cluster = self.cluster
        if fault.family in ("kill", "power") or _is(fault, "replica", "kill"):
            for node in record.targets:
                cluster.restart(node)
        elif fault.family == "disk":
            node = record.targets[0]
            cluster.set_disk(node, "ok")
            code = cluster.exit_code(node)
            if code is None and not await self._serving(node):
                # Still starting (a fault just before restarted it): it may have opened its
                # store on the bad disk and be on its way out, after this look; a CI run saw
                # such a node refuse the full disk just after, never started again.
                record.description += f": {node} was still starting, started again"
                cluster.restart(node)
            elif code is None:
                record.description += f": {node} kept running"
            elif code in DISK_EXIT_CODES:
                record.description += f": {node} {DISK_EXIT_CODES[code]}"
                cluster.restart(node)
            else:
                record.description += f": {node} exited {code}: {cluster.last_failure(node)}"
                cluster.restart(node)
        elif fault.family == "pause" or _is(fault, "replica", "pause"):
            for node in record.targets:
                cluster.resume(node)
        elif fault.family in ("partition", "skew", "loss") or _is(fault, "replica", "partition"):
            await cluster.heal()

    async def _serving(self, node: str) -> bool:
        rows = {row["id"]: row for row in await self.cluster.statuses()}
        return rows.get(node, {}).get("role", "down") != "down"

    async def _partition_groups(self, kind: str, pick: int) -> tuple[list[list[str]], list[str]]:
        nodes = self.cluster.running()
        leader = await self.cluster.leader() or nodes[0]
        others = [n for n in nodes if n != leader]
        rotated = nodes[pick % len(nodes) :] + nodes[: pick % len(nodes)]
        majority = len(nodes) // 2 + 1
        if kind == "isolate-leader":
            return [[leader], others], [leader]
        if kind == "majority-minority":
            return [rotated[:majority], rotated[majority:]], rotated[majority:]
        if kind == "bridge":
            # Two halves that only the middle node hears both of: it can lead a majority.
            half = len(nodes) // 2
            return [rotated[: half + 1], rotated[half:]], []
        # ring: each node hears its neighbours only.
        count = len(rotated)
        groups = [[rotated[i], rotated[(i + 1) % count]] for i in range(count)]
        return groups, []


def _is(fault: PlannedFault, family: str, kind: str) -> bool:
    return fault.family == family and fault.kind == kind
