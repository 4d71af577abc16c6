"""The checkers catch what they exist for: each flaw planted in an otherwise good history."""

from __future__ import annotations

import copy
from typing import Any

from bench.workload import standard_workload
from chaos.checkers import (
    COMMIT_PROBE_MAX_MS,
    DEPOSIT_TAG,
    PLACE_TAG,
    STARTED_ON_CORRUPT_FILE,
    NodeFinal,
    check_commits_unhurt,
    check_conservation,
    check_faults,
    check_leaders,
    check_live_states,
    check_replicas,
    check_trades,
    check_unrecovered,
    check_writes,
)
from chaos.history import INFO, OK, FaultRecord, History, StateSample, StatusSample
from engine import Exchange
from engine.events import event_to_dict


def balance(seq: int, account: str, asset: str, available: int, held: int = 0) -> dict[str, Any]:
    return {
        "type": "balancechanged",
        "seq": seq,
        "ts_ms": 1,
        "account": account,
        "asset": asset,
        "available": available,
        "held": held,
    }


def record(no: int, command: list, seqs: list[int], result: str, retry: bool = False) -> dict:
    return {
        "audit_no": no,
        "command": command,
        "outcome": {"seqs": seqs, "retry": retry, "result": result, "code": "", "order_id": 0},
    }


def place_command(account: str, cid: str) -> list:
    return [PLACE_TAG, account, "ACME", 0, 1, 100, 0, 0, cid]


def good_run() -> tuple[History, NodeFinal]:
    """alice deposits 100 USD (request d1) and places order c1, which is accepted."""
    events = [
        balance(1, "alice", "USD", 100),
        {
            "type": "accepted",
            "seq": 2,
            "ts_ms": 1,
            "order_id": 1,
            "account": "alice",
            "client_order_id": "c1",
            "symbol": "ACME",
            "side": 0,
            "order_type": 0,
            "tif": 0,
            "price": 100,
            "qty": 1,
            "stop_price": 0,
            "display_qty": 0,
            "post_only": False,
            "expire_at_ms": 0,
            "hold": 100,
        },
        balance(3, "alice", "USD", 0, 100),
    ]
    audit = [
        record(1, [DEPOSIT_TAG, "alice", "USD", 100, "d1"], [1], "applied"),
        record(2, place_command("alice", "c1"), [2, 3], "accepted"),
    ]
    history = History()
    deposit = history.invoke(0, "deposit", {"account": "alice", "request_id": "d1"}, 0.1)
    history.complete(deposit, OK, {}, 0.2, "n1")
    place = history.invoke(0, "place", {"account": "alice", "client_order_id": "c1"}, 0.3)
    history.complete(place, OK, {"order_id": 1}, 0.4, "n1")
    final = NodeFinal("n1", events, audit, "h", audit_ok=True, invariants_ok=True)
    return history, final


def test_a_good_run_passes_every_checker() -> None:
    history, final = good_run()
    other = copy.deepcopy(final)
    other.node = "n2"
    for verdict in (
        check_writes(history, final),
        check_conservation(final),
        check_trades(final),
        check_replicas([final, other]),
        check_leaders(history),
    ):
        assert verdict.ok, verdict


def test_a_cluster_that_did_not_come_back_fails_the_run_with_what_each_node_said() -> None:
    history, _ = good_run()
    details = ["after healing: no leader elected within 60 s", "n2: exited with status 74"]
    verdicts = check_unrecovered(history, details)
    assert verdicts[0].name == "recovered" and not verdicts[0].ok
    assert verdicts[0].details == details
    # What needs no final state is still judged.
    assert [v.name for v in verdicts[1:]] == [
        "leaders_and_reads",
        "corruption_refused",
        "replica_faults_cost_no_commit",
        "resources_bounded",
    ]


def test_a_lost_write_is_caught() -> None:
    history, final = good_run()
    final.audit = final.audit[:1]
    verdict = check_writes(history, final)
    assert not verdict.ok and "c1 is lost" in verdict.details[0]


def test_a_double_apply_is_caught_even_for_an_unknown_outcome() -> None:
    history, final = good_run()
    history.ops[-1].kind = INFO
    final.audit.append(record(3, place_command("alice", "c1"), [4], "accepted"))
    verdict = check_writes(history, final)
    assert not verdict.ok and "applied 2 times" in verdict.details[0]
    # The same command answered again from the idempotency table is fine.
    final.audit[-1] = record(3, place_command("alice", "c1"), [2], "accepted", retry=True)
    assert check_writes(history, final).ok


def test_a_conservation_break_is_caught() -> None:
    _, final = good_run()
    final.events[0]["available"] = 90
    verdict = check_conservation(final)
    assert not verdict.ok and "USD totals" in verdict.details[0]
    _, final = good_run()
    final.events[2]["available"] = -1
    assert any("negative" in d for d in check_conservation(final).details)


def test_a_gap_diverging_replicas_and_a_bad_audit_are_caught() -> None:
    _, final = good_run()
    gapped = copy.deepcopy(final)
    gapped.node = "n2"
    del gapped.events[1]
    verdict = check_replicas([final, gapped])
    assert not verdict.ok
    assert any("gap or repeat at seq 2" in d for d in verdict.details)
    assert any("histories differ" in d for d in verdict.details)
    other = copy.deepcopy(final)
    other.node, other.state_hash, other.audit_ok = "n2", "x", False
    details = check_replicas([final, other]).details
    assert any("state hashes differ" in d for d in details)
    assert any("audit chain" in d for d in details)


def test_a_fill_through_the_limit_is_caught() -> None:
    _, final = good_run()
    final.events.append(
        {
            "type": "trade",
            "seq": 4,
            "ts_ms": 1,
            "trade_id": 1,
            "symbol": "ACME",
            "price": 101,
            "qty": 1,
            "aggressor_side": 0,
            "maker_order_id": 9,
            "maker_account": "bob",
            "maker_fee": 0,
            "maker_leaves": 0,
            "taker_order_id": 1,
            "taker_account": "alice",
            "taker_fee": 0,
            "taker_leaves": -1,
        }
    )
    details = check_trades(final).details
    assert any("beyond its quantity" in d for d in details)
    assert any("through the taker's limit" in d for d in details)


def test_two_leaders_in_a_term_and_a_minority_ack_are_caught() -> None:
    history, _ = good_run()
    history.status += [
        StatusSample(0.1, "n1", "leader", 3, "n1"),
        StatusSample(0.1, "n2", "leader", 3, "n2"),
    ]
    history.faults.append(FaultRecord("partition", "isolate n1", ["n1"], 0.0, 1.0, ["n1"]))
    details = check_leaders(history).details
    assert any("term 3" in d for d in details)
    assert any("while in a minority" in d for d in details)


def test_a_node_that_ran_on_a_corrupt_journal_is_caught() -> None:
    history, _ = good_run()
    history.faults.append(
        FaultRecord("corrupt", "corrupt follower-journal refused to start", ["n2"], 1.0, 2.0)
    )
    assert check_faults(history).ok
    history.faults.append(
        FaultRecord(
            "corrupt", "corrupt follower-journal" + STARTED_ON_CORRUPT_FILE, ["n3"], 3.0, 4.0
        )
    )
    verdict = check_faults(history)
    assert not verdict.ok and "n3" in verdict.details[0]


def test_a_replica_fault_that_slowed_or_lost_a_commit_is_caught() -> None:
    history, _ = good_run()
    quick = FaultRecord("replica", "replica pause", ["r1"], 1.0, 4.0)
    quick.commit_ms = [12.0, 30.5, COMMIT_PROBE_MAX_MS - 1]
    history.faults.append(quick)
    assert check_commits_unhurt(history).ok
    slow = FaultRecord("replica", "replica partition", ["r1"], 5.0, 8.0)
    slow.commit_ms = [15.0, COMMIT_PROBE_MAX_MS + 400]
    lost = FaultRecord("replica", "replica kill", ["r1"], 9.0, 12.0)
    lost.commit_ms = [14.0, None]
    lost.probe_errors = ["10.2 s n1: n1 unreachable: TimeoutError"]
    unprobed = FaultRecord("replica", "replica wipe", ["r1"], 13.0, 16.0)
    history.faults += [slow, lost, unprobed]
    verdict = check_commits_unhurt(history)
    assert not verdict.ok
    assert verdict.details == [
        f"replica partition: a commit took {COMMIT_PROBE_MAX_MS + 400} ms"
        f" (over {COMMIT_PROBE_MAX_MS} ms)",
        "replica kill: 1 probe write(s) not committed (10.2 s n1: n1 unreachable: TimeoutError)",
        "replica wipe: no commit was probed",
    ]


def test_live_states_are_checked_against_the_log() -> None:
    history, final = good_run()
    history.states.append(StateSample(0.5, "n1", 3, True, [], {"USD": 100}))
    history.states.append(StateSample(0.1, "n2", 0, True, [], {}))
    assert check_live_states(history, final).ok
    history.states.append(StateSample(0.6, "n2", 3, True, [], {"USD": 99}))
    history.states.append(StateSample(0.7, "n3", 3, False, ["order 1 holds 5"], {"USD": 100}))
    details = check_live_states(history, final).details
    assert any("n2 at seq 3: USD totals 99" in d for d in details)
    assert any("n3 at seq 3" in d and "holds" in d for d in details)


def test_a_later_order_filled_first_at_one_price_is_caught() -> None:
    _, final = good_run()

    def accepted(seq: int, order_id: int, account: str, side: int) -> dict[str, Any]:
        return {
            **final.events[1],
            "seq": seq,
            "order_id": order_id,
            "account": account,
            "client_order_id": f"o{order_id}",
            "side": side,
        }

    def trade(seq: int, trade_id: int, maker: int, leaves: int) -> dict[str, Any]:
        return {
            "type": "trade",
            "seq": seq,
            "ts_ms": 1,
            "trade_id": trade_id,
            "symbol": "ACME",
            "price": 100,
            "qty": 1,
            "aggressor_side": 0,
            "maker_order_id": maker,
            "maker_account": "bob",
            "maker_fee": 0,
            "maker_leaves": 0,
            "taker_order_id": 9,
            "taker_account": "carol",
            "taker_fee": 0,
            "taker_leaves": leaves,
        }

    final.events += [
        accepted(4, 7, "bob", 1),
        accepted(5, 8, "bob", 1),
        accepted(6, 9, "carol", 0),
        trade(7, 1, maker=7, leaves=1),
        trade(8, 2, maker=8, leaves=0),
    ]
    assert check_trades(final).ok
    final.events[-2]["maker_order_id"], final.events[-1]["maker_order_id"] = 8, 7
    details = check_trades(final).details
    assert any("joined 100 later was filled first" in d for d in details)


def test_the_engine_keeps_price_time_priority_on_the_standard_workload() -> None:
    workload = standard_workload(8_000, seed=5, account_count=20, symbol_count=2)
    ex = Exchange()
    events = []
    for n, command in enumerate(workload.setup + workload.commands):
        events += [event_to_dict(e) for e in ex.apply(command, 1_000 + n)]
    final = NodeFinal("n1", events, [], "h", audit_ok=True, invariants_ok=True)
    verdict = check_trades(final)
    assert verdict.ok, verdict.details
    assert verdict.counts["trades"] > 1_000
