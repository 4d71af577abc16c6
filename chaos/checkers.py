"""Checkers: verdicts over a history and every node's final log, state and audit trail.

Each checker is a pure function of what was recorded, so a test can hand one a
history with a known flaw and see it caught.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from chaos.history import FAIL, OK, History, Op
from chaos.resources import growth_problems
from cluster.node import RAFT_MAX_TIMEOUT_S
from engine.codes import RejectCode
from engine.commands import COMMAND_TAGS, Deposit, PlaceOrder, Withdraw, signed_inner

DETAILS_MAX = 10
# The longest a probe write may take to commit during a replica's fault: the voters' longest
# election timeout.
COMMIT_PROBE_MAX_MS = round(RAFT_MAX_TIMEOUT_S * 1000)
PROBED_FAMILIES = ("replica",)
# How a corrupt fault records a node that ran on the file it damaged (the nemesis writes
# it, check_faults looks for it: one string, so the check can fail).
STARTED_ON_CORRUPT_FILE = " STARTED ON A CORRUPT FILE"
PLACE_TAG = COMMAND_TAGS[PlaceOrder]
DEPOSIT_TAG = COMMAND_TAGS[Deposit]
WITHDRAW_TAG = COMMAND_TAGS[Withdraw]
BUY = 0
# A signed write refused for its signature or second factor never reached its command.
_SIGNATURE_REFUSALS = (
    RejectCode.REPLAYED_REQUEST,
    RejectCode.STALE_REQUEST,
    RejectCode.SECOND_FACTOR_USED,
)


@dataclass
class NodeFinal:
    """What a node holds at the end of a run."""

    node: str
    events: list[dict[str, Any]]
    audit: list[dict[str, Any]]
    state_hash: str | None
    audit_ok: bool
    invariants_ok: bool
    invariant_problems: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    name: str
    ok: bool
    details: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)


def _verdict(name: str, problems: list[str], **counts: Any) -> Verdict:
    return Verdict(
        name, not problems, problems[:DETAILS_MAX], {"problems": len(problems), **counts}
    )


def _write_key(op: Op) -> tuple[int, str, str] | None:
    """(command tag, account, client or request id) of a write op."""
    value = op.value
    if op.f == "place":
        return PLACE_TAG, value["account"], value["client_order_id"]
    if op.f == "deposit":
        return DEPOSIT_TAG, value["account"], value["request_id"]
    if op.f == "withdraw":
        return WITHDRAW_TAG, value["account"], value["request_id"]
    return None


def _first_time(audit: list[dict[str, Any]]) -> Iterator[tuple[dict, list, dict]]:
    """(record, command, outcome) of each command's first application: not a retry answered
    from the idempotency table, not a record without a command. A client's signed write is
    read as the command it carries."""
    for record in audit:
        command, outcome = record["command"], record["outcome"]
        if command and not outcome["retry"] and outcome["code"] not in _SIGNATURE_REFUSALS:
            yield record, signed_inner(command), outcome


def _transfer(command: list, outcome: dict[str, Any]) -> tuple[str, int] | None:
    """(asset, signed amount) of an applied deposit or withdrawal."""
    if outcome["result"] != "applied" or command[0] not in (DEPOSIT_TAG, WITHDRAW_TAG):
        return None
    return command[2], (1 if command[0] == DEPOSIT_TAG else -1) * command[3]


def _first_applications(audit: list[dict[str, Any]]) -> Counter:
    """How many times each (tag, account, id) was applied for the first time (not a retry)."""
    applied: Counter = Counter()
    for _, command, _ in _first_time(audit):
        tag = command[0]
        if tag == PLACE_TAG and len(command) > 8 and command[8]:
            applied[(tag, command[1], command[8])] += 1
        elif tag in (DEPOSIT_TAG, WITHDRAW_TAG) and len(command) > 4 and command[4]:
            applied[(tag, command[1], command[4])] += 1
    return applied


def check_writes(history: History, final: NodeFinal) -> Verdict:
    """Every acknowledged write applied exactly once; no write, whatever its retries, twice."""
    applied = _first_applications(final.audit)
    problems = []
    acked = 0
    for invocation, completion in history.pairs():
        key = _write_key(invocation)
        if key is None:
            continue
        count = applied.get(key, 0)
        if count > 1:
            problems.append(f"{invocation.f} {key[1]}/{key[2]} applied {count} times")
        if completion is not None and completion.kind == OK:
            acked += 1
            if count == 0:
                problems.append(f"acknowledged {invocation.f} {key[1]}/{key[2]} is lost")
        if completion is not None and completion.kind == FAIL and count:
            problems.append(f"{invocation.f} {key[1]}/{key[2]} reported failed but was applied")
    accepted = Counter(
        (e["account"], e["client_order_id"])
        for e in final.events
        if e["type"] == "accepted" and e["client_order_id"]
    )
    problems += [f"order {a}/{c} accepted {n} times" for (a, c), n in accepted.items() if n > 1]
    return _verdict("no_lost_or_double_writes", problems, acknowledged=acked)


def check_conservation(final: NodeFinal) -> Verdict:
    """Per asset, all balances add up to deposits minus withdrawals after every command."""
    seq_to_event = {e["seq"]: e for e in final.events}
    balances: dict[tuple[str, str], int] = {}
    totals: dict[str, int] = defaultdict(int)
    expected: dict[str, int] = defaultdict(int)
    problems = []
    commands = 0
    for record, command, outcome in _first_time(final.audit):
        commands += 1
        for seq in outcome["seqs"]:
            event = seq_to_event.get(seq)
            if event is None or event["type"] != "balancechanged":
                continue
            if event["available"] < 0 or event["held"] < 0:
                problems.append(f"seq {seq}: negative balance {event['account']} {event['asset']}")
            key = (event["account"], event["asset"])
            value = event["available"] + event["held"]
            totals[event["asset"]] += value - balances.get(key, 0)
            balances[key] = value
        transfer = _transfer(command, outcome)
        if transfer is not None:
            expected[transfer[0]] += transfer[1]
        for asset in set(totals) | set(expected):
            if totals[asset] != expected[asset]:
                problems.append(
                    f"after audit record {record['audit_no']}: {asset} totals {totals[asset]}, "
                    f"deposits minus withdrawals {expected[asset]}"
                )
                expected[asset] = totals[asset]  # report each break once
    return _verdict("conservation", problems, commands=commands, assets=len(expected))


def check_live_states(history: History, final: NodeFinal) -> Verdict:
    """Every state read from a node during the run kept the invariants (holds equal open
    exposure, no negative balance, levels add up, no crossed book) and held exactly the
    deposits minus withdrawals applied up to its sequence."""
    changes: list[tuple[int, str, int]] = []  # (seq, asset, delta) of applied transfers
    for _, command, outcome in _first_time(final.audit):
        transfer = _transfer(command, outcome)
        if transfer is not None and outcome["seqs"]:
            changes.append((max(outcome["seqs"]), *transfer))
    changes.sort()
    problems = []
    # States in sequence order, so the expected totals accumulate in one pass.
    expected: dict[str, int] = defaultdict(int)
    applied = 0
    for state in sorted(history.states, key=lambda state: state.seq):
        if not state.ok:
            problems.append(f"{state.node} at seq {state.seq}: {state.problems[:2]}")
        while applied < len(changes) and changes[applied][0] <= state.seq:
            _, asset, delta = changes[applied]
            expected[asset] += delta
            applied += 1
        for asset in set(expected) | set(state.totals):
            if state.totals.get(asset, 0) != expected[asset]:
                problems.append(
                    f"{state.node} at seq {state.seq}: {asset} totals "
                    f"{state.totals.get(asset, 0)}, deposits minus withdrawals {expected[asset]}"
                )
    return _verdict("live_states", problems, samples=len(history.states))


def check_trades(final: NodeFinal) -> Verdict:
    """No order fills beyond its quantity; takers sweep best price first within their limit;
    makers trade at their own price, and at one price in the order they joined it (time
    priority: joining is acceptance, a trigger, a replenished iceberg slice, or an amendment
    that lost priority)."""
    orders: dict[int, dict[str, Any]] = {}
    problems = []
    last_sweep: dict[int, int] = {}
    joined: dict[int, int] = {}  # order id -> seq it took its place in the queue
    last_maker: dict[int, tuple[int, int]] = {}  # taker -> (price, joined seq of last maker)
    for e in final.events:
        kind = e["type"]
        if kind == "accepted":
            orders[e["order_id"]] = {
                "side": e["side"],
                "price": e["price"],
                "type": e["order_type"],
            }
            joined[e["order_id"]] = e["seq"]
        elif kind == "replenished":
            joined[e["order_id"]] = e["seq"]
        elif kind in ("amended", "triggered") and e["order_id"] in orders:
            if kind == "amended":
                orders[e["order_id"]]["price"] = e["price"]
            if kind == "triggered" or not e["priority_kept"]:
                joined[e["order_id"]] = e["seq"]
            # A new price or a trigger starts a new sweep.
            last_sweep.pop(e["order_id"], None)
            last_maker.pop(e["order_id"], None)
        elif kind == "trade":
            if e["maker_leaves"] < 0 or e["taker_leaves"] < 0:
                problems.append(f"trade {e['trade_id']}: an order filled beyond its quantity")
            maker = orders.get(e["maker_order_id"])
            if maker is not None and maker["price"] != e["price"]:
                problems.append(f"trade {e['trade_id']}: maker traded off its price")
            taker = orders.get(e["taker_order_id"])
            if taker is None:
                continue
            buying = taker["side"] == BUY
            limit = taker["price"]
            if (
                limit
                and taker["type"] in (0, 3)
                and (e["price"] > limit if buying else e["price"] < limit)
            ):
                problems.append(f"trade {e['trade_id']}: through the taker's limit")
            previous = last_sweep.get(e["taker_order_id"])
            if previous is not None and (
                e["price"] < previous if buying else e["price"] > previous
            ):
                problems.append(f"trade {e['trade_id']}: a worse price filled before a better one")
            last_sweep[e["taker_order_id"]] = e["price"]
            place = joined.get(e["maker_order_id"], 0)
            before = last_maker.get(e["taker_order_id"])
            if before is not None and before[0] == e["price"] and place < before[1]:
                problems.append(
                    f"trade {e['trade_id']}: an order that joined {e['price']} later was "
                    "filled first"
                )
            last_maker[e["taker_order_id"]] = (e["price"], place)
    return _verdict(
        "trades_and_priority", problems, trades=sum(1 for e in final.events if e["type"] == "trade")
    )


def _events_digest(events: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(events, sort_keys=True).encode()).hexdigest()


def check_replicas(finals: list[NodeFinal]) -> Verdict:
    """Same state hash, verified audit chain, live invariants, and the same gap-free feed."""
    problems = []
    hashes = {f.node: f.state_hash for f in finals}
    if None in hashes.values() or len(set(hashes.values())) != 1:
        problems.append(f"state hashes differ or are missing: {hashes}")
    for final in finals:
        if not final.audit_ok:
            problems.append(f"{final.node}: audit chain does not verify")
        if not final.invariants_ok:
            problems.append(f"{final.node}: invariants broken: {final.invariant_problems[:3]}")
        seqs = [e["seq"] for e in final.events]
        if seqs != list(range(1, len(seqs) + 1)):
            gap = next((i + 1 for i, s in enumerate(seqs) if s != i + 1), len(seqs) + 1)
            problems.append(f"{final.node}: event history has a gap or repeat at seq {gap}")
    digests = {f.node: (len(f.events), _events_digest(f.events)) for f in finals}
    if len({d for _, d in digests.values()}) != 1:
        problems.append(f"event histories differ between nodes: {digests}")
    return _verdict("replicas_agree", problems, nodes=len(finals))


def check_leaders(history: History) -> Verdict:
    """At most one leader per term; no write acknowledged by a node cut off in a minority;
    no read that missed an acknowledged order unless it said it was behind."""
    leaders: dict[int, set[str]] = defaultdict(set)
    for sample in history.status:
        if sample.role == "leader":
            leaders[sample.term].add(sample.node)
    problems = [f"term {t}: leaders {sorted(n)}" for t, n in sorted(leaders.items()) if len(n) > 1]
    for invocation, completion in history.pairs():
        if completion is None or completion.kind != OK or not completion.node:
            continue
        for fault in history.faults:
            cut_off = completion.node in fault.minority
            inside = fault.start_s <= invocation.time_s and completion.time_s <= (
                fault.end_s or completion.time_s
            )
            if cut_off and inside and _write_key(invocation) is not None:
                problems.append(
                    f"{completion.node} acknowledged {invocation.f} while in a minority "
                    f"({fault.description})"
                )
        if invocation.f == "read" and not completion.value.get("found", True):
            problems.append(
                f"stale read on {completion.node}: order {invocation.value['order_id']} missing"
            )
    return _verdict("leaders_and_reads", problems, terms=len(leaders))


def check_faults(history: History) -> Verdict:
    """A node never runs on state it cannot trust: a corrupted journal must stop it."""
    problems = [
        f"{','.join(f.targets)}: {f.description}"
        for f in history.faults
        if f.family == "corrupt" and STARTED_ON_CORRUPT_FILE in f.description
    ]
    return _verdict("corruption_refused", problems, faults=len(history.faults))


def check_commits_unhurt(history: History) -> Verdict:
    """A fault of a read replica costs the voters nothing: every probe write through the
    leader while it lasted committed, none slower than an election timeout (a commit that
    waited that long was waiting for the cluster, not for a busy machine)."""
    problems = []
    probes = 0
    for fault in history.faults:
        if not fault.targets and not fault.commit_ms:
            continue  # not applied (the description says why)
        if not fault.commit_ms and fault.family not in PROBED_FAMILIES:
            continue
        probes += len(fault.commit_ms)
        lost = sum(1 for ms in fault.commit_ms if ms is None)
        slowest = max((ms for ms in fault.commit_ms if ms is not None), default=None)
        if not fault.commit_ms:
            problems.append(f"{fault.description}: no commit was probed")
        elif lost:
            problems.append(
                f"{fault.description}: {lost} probe write(s) not committed"
                f" ({'; '.join(fault.probe_errors[:3])})"
            )
        elif slowest is not None and slowest > COMMIT_PROBE_MAX_MS:
            problems.append(
                f"{fault.description}: a commit took {slowest:.0f} ms"
                f" (over {COMMIT_PROBE_MAX_MS} ms)"
            )
    return _verdict("replica_faults_cost_no_commit", problems, probes=probes)


def availability(history: History) -> list[dict[str, Any]]:
    """Per fault: seconds from its start to the first acknowledgement of a write that was
    invoked after it (one in flight before it says nothing about the cluster after)."""
    acked = [
        (invocation.time_s, completion.time_s)
        for invocation, completion in history.pairs()
        if completion is not None and completion.kind == OK and _write_key(invocation)
    ]
    rows = []
    for fault in history.faults:
        after = min((done for invoked, done in acked if invoked >= fault.start_s), default=None)
        rows.append(
            {
                "fault": fault.description,
                "family": fault.family,
                "start_s": round(fault.start_s, 3),
                "first_ack_after_s": None if after is None else round(after - fault.start_s, 3),
                "catch_up_s": fault.catch_up_s,
            }
        )
        if fault.commit_ms:
            committed = [ms for ms in fault.commit_ms if ms is not None]
            rows[-1]["commit_ms_max"] = round(max(committed), 1) if committed else None
    return rows


def check_all(history: History, finals: list[NodeFinal]) -> list[Verdict]:
    reference = finals[0]
    return [
        check_writes(history, reference),
        check_conservation(reference),
        check_live_states(history, reference),
        check_trades(reference),
        check_replicas(finals),
        check_leaders(history),
        check_faults(history),
        check_commits_unhurt(history),
        check_resources(history),
    ]


def check_unrecovered(history: History, details: list[str]) -> list[Verdict]:
    """A run whose cluster did not come back after the faults were healed: that fails it,
    and the checks that need no final state still run."""
    return [
        Verdict("recovered", False, details),
        check_leaders(history),
        check_faults(history),
        check_commits_unhurt(history),
        check_resources(history),
    ]


def check_resources(history: History) -> Verdict:
    """No node's memory, open files, journal, store or apply time grows without bound
    (fitted slopes over the last half of the run; chaos/resources.py states the limits)."""
    problems, slopes = growth_problems(history.resources, history.faults)
    return _verdict(
        "resources_bounded", problems, samples=len(history.resources), nodes_judged=len(slopes)
    )
