"""Properties of the matching engine over random command streams.

Streams (see strategies.py) mix every kind of command: resting, crossing,
market, post-only, iceberg and stop orders with every time in force and
self-trade mode, cancels and amends by order id and client order id, mass
cancels, the kill switch, deposits and withdrawals, halts, ticks across UTC
midnight, retried and reused ids and invalid commands. After every command the
books, balances and holds must be consistent and money conserved; whole
streams must replay to the same events and state hash, through a snapshot and
in fresh Python processes with other hash seeds.

RAFTEX_SOAK=1 selects the long profile (many more examples).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from strategies import Stream, format_command, stream_to_wire, streams

from engine import Exchange, RejectCode, Side, TimeInForce
from engine.access import SIGNATURE_RETENTION_MS
from engine.codes import CALL_PHASES, OrderType
from engine.commands import Command, Deposit, PlaceOrder, Signed, Tick, Withdraw
from engine.events import (
    Accepted,
    BalanceChanged,
    Event,
    Expired,
    LevelChanged,
    Rejected,
    StatusChanged,
    Trade,
    event_to_wire,
)
from engine.retries import CLIENT_ID_RETENTION_MS
from engine.state import LULD_FIELDS, buy_cost

REPO_ROOT = Path(__file__).resolve().parents[2]

settings.register_profile(
    "engine-properties",
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "engine-properties-soak", parent=settings.get_profile("engine-properties"), max_examples=3_000
)
PROFILE = settings.get_profile(
    "engine-properties-soak" if os.environ.get("RAFTEX_SOAK") == "1" else "engine-properties"
)
# The cross-stream properties replay each stream two or three times: fewer examples.
REPLAY_EXAMPLES_MAX = max(PROFILE.max_examples // 3, 1)
FRESH_PROCESS_EXAMPLES_MAX = 4 if PROFILE.max_examples < 1_000 else 25
FRESH_PROCESS_TIMEOUT_S = 60

BUY = Side.BUY.value
SELL = Side.SELL.value
# Events the passing of log time can cause before any command runs, and the
# balance and level views flushed after them.
_TIMER_EVENTS = (Expired, StatusChanged, BalanceChanged, LevelChanged)


# ---------------------------------------------------------------- what the stream did


def idempotency_key(command: Command) -> tuple[str, str] | None:
    """(account, id) for commands the engine applies at most once."""
    if isinstance(command, PlaceOrder) and command.client_order_id:
        return command.account, command.client_order_id
    if isinstance(command, Deposit | Withdraw) and command.request_id:
        return command.account, command.request_id
    return None


@dataclass
class StreamLedger:
    """What the stream did, told by the commands and their events alone.

    `net_by_asset` is deposits minus withdrawals the engine accepted;
    `outcome_by_key` is the first command under each (account, id) with the
    wire form of its outcome event.
    """

    net_by_asset: dict[str, int] = field(default_factory=dict)
    outcome_by_key: dict[tuple[str, str], tuple[Command, list[Any]]] = field(default_factory=dict)
    # Signed writes: signature digest -> remembered until (log time); account -> last step.
    signatures: dict[str, int] = field(default_factory=dict)
    totp_steps: dict[str, int] = field(default_factory=dict)


def _outcome(command: Command, events: list[Event]) -> Event | None:
    """The event that says how an order or a transfer came out (timer events come first)."""
    if isinstance(command, PlaceOrder):
        kinds: tuple[type, ...] = (Accepted, Rejected)
    elif isinstance(command, Deposit | Withdraw):
        kinds = (BalanceChanged, Rejected)
    else:
        return None
    return next((event for event in events if isinstance(event, kinds)), None)


def check_events(
    ex: Exchange, ledger: StreamLedger, command: Command, events: list[Event], seq_before: int
) -> None:
    """Property 5: seqs gap-free and increasing; a retry returns its old outcome, nothing new.

    Also keeps the ledger: accepted transfers and the outcome of each new id.
    """
    if isinstance(command, Signed):
        if not check_signed(ex, ledger, command, events, seq_before):
            return
        command = command.command
    key = idempotency_key(command)
    prior = ledger.outcome_by_key.get(key) if key else None
    if prior is not None and prior[1][2] < ex.now_ms - CLIENT_ID_RETENTION_MS:
        # Forgotten by the engine: the id is free again.
        del ledger.outcome_by_key[key]
        prior = None
    is_retry = prior is not None and prior[0] == command
    fresh = [event for event in events if event.seq > seq_before]
    replayed = [event for event in events if event.seq <= seq_before]
    assert [event.seq for event in fresh] == list(range(seq_before + 1, ex.seq + 1)), (
        f"event seqs not gap-free after {seq_before}: {[event.seq for event in events]}"
    )
    assert all(event.ts_ms == ex.now_ms for event in fresh), "a new event is not at log time"
    if is_retry:
        assert prior is not None
        assert len(replayed) == 1, f"a retry must return exactly its original outcome: {events}"
        assert event_to_wire(replayed[0]) == prior[1], "a retry returned another outcome"
        unexpected = [event for event in fresh if not isinstance(event, _TIMER_EVENTS)]
        assert not unexpected, f"a retry emitted new events: {unexpected}"
        return
    assert not replayed, f"events with old seqs from a command that is no retry: {replayed}"
    outcome = _outcome(command, fresh)
    if key is not None:
        assert outcome is not None, "an order or a transfer came out without an outcome event"
        if prior is None:
            ledger.outcome_by_key[key] = (command, event_to_wire(outcome))
        else:
            assert isinstance(outcome, Rejected), "a reused id with another command was applied"
            assert outcome.code == RejectCode.DUPLICATE_CLIENT_ORDER_ID, outcome
    if isinstance(command, Deposit | Withdraw) and isinstance(outcome, BalanceChanged):
        sign = 1 if isinstance(command, Deposit) else -1
        net = ledger.net_by_asset
        net[command.asset] = net.get(command.asset, 0) + sign * command.amount


def _remembered_retry(ex: Exchange, ledger: StreamLedger, command: Command) -> bool:
    key = idempotency_key(command)
    prior = ledger.outcome_by_key.get(key) if key else None
    fresh = prior is not None and prior[1][2] >= ex.now_ms - CLIENT_ID_RETENTION_MS
    return fresh and prior is not None and prior[0] == command


def check_signed(
    ex: Exchange, ledger: StreamLedger, command: Signed, events: list[Event], seq_before: int
) -> bool:
    """Property 6: no signature and no TOTP step has a second effect. Whether the engine
    should have refused the write, from a model of what it remembers; True when the write
    went through to the command it carries (checked on by check_events)."""
    inner = command.command
    account = getattr(inner, "account", "")
    retry = _remembered_retry(ex, ledger, inner)
    refusal = ""
    if abs(ex.now_ms - command.timestamp_ms) > SIGNATURE_RETENTION_MS:
        refusal = RejectCode.STALE_REQUEST
    elif not retry and ledger.signatures.get(command.signature, -1) >= ex.now_ms:
        refusal = RejectCode.REPLAYED_REQUEST
    elif not retry and 0 < command.totp_step <= ledger.totp_steps.get(account, 0):
        refusal = RejectCode.SECOND_FACTOR_USED
    fresh = [event for event in events if event.seq > seq_before]
    own = [event for event in fresh if not isinstance(event, _TIMER_EVENTS)]
    if refusal:
        assert len(own) == 1 and isinstance(own[0], Rejected), f"{refusal} expected: {events}"
        assert own[0].code == refusal, own[0]
        return False
    refused_by_envelope = [
        e
        for e in own
        if isinstance(e, Rejected)
        and e.code
        in (RejectCode.STALE_REQUEST, RejectCode.REPLAYED_REQUEST, RejectCode.SECOND_FACTOR_USED)
    ]
    assert not refused_by_envelope, f"a signed write refused for no reason: {refused_by_envelope}"
    if not retry:
        until = max(command.timestamp_ms, ex.now_ms) + SIGNATURE_RETENTION_MS
        ledger.signatures[command.signature] = until
        if command.totp_step and not any(isinstance(e, Rejected) for e in fresh):
            ledger.totp_steps[account] = command.totp_step
    return True


def check_invariants(ex: Exchange, ledger: StreamLedger) -> None:
    """Properties 1-4, read straight from the engine's state."""
    on_book: set[int] = set()
    for symbol, inst in ex.instruments.items():
        # 1. The book: uncrossed, level totals right, no empty level, every order where it says.
        for book, side, sign in ((inst.bids, BUY, -1), (inst.asks, SELL, 1)):
            for key, level in book.items():
                where = f"{symbol} {'bid' if side == BUY else 'ask'} {level.price}"
                assert level.orders, f"{where}: empty level kept"
                assert key == sign * level.price and level.side == side, f"{where}: wrong key"
                assert level.qty == sum(order.visible for order in level.orders.values()), (
                    f"{where}: level qty {level.qty} is not the sum of visible quantities"
                )
                for order_id, order in level.orders.items():
                    assert ex.orders.get(order_id) is order, f"{where}: order {order_id} not open"
                    assert order.symbol == symbol and order.side == side, f"{where}: {order_id}"
                    assert order.price == level.price, f"{where}: order {order_id} elsewhere"
                    assert not order.armed, f"{where}: untriggered stop {order_id} on the book"
                    assert 0 < order.visible <= order.leaves, f"{where}: {order_id} visible"
                    if order.display_qty:
                        assert order.visible <= order.display_qty, f"{where}: {order_id} shows"
                    else:
                        assert order.visible == order.leaves, f"{where}: {order_id} hides"
                    on_book.add(order_id)
        if inst.bids and inst.asks and inst.phase not in CALL_PHASES:
            bid = inst.bids.peekitem(0)[1].price
            ask = inst.asks.peekitem(0)[1].price
            assert bid < ask, f"{symbol}: crossed book, bid {bid} >= ask {ask}"
        for stops, side, sign in ((inst.buy_stops, BUY, 1), (inst.sell_stops, SELL, -1)):
            for signed_stop, order_id in stops:
                order = ex.orders.get(order_id)
                assert order is not None and order.armed, f"{symbol}: stale stop {order_id}"
                assert order.side == side and sign * order.stop_price == signed_stop
    # 3 and 4. Every open order holds exactly what it can still cost; balances add up.
    held_by_balance: dict[tuple[str, str], int] = {}
    for order_id, order in ex.orders.items():
        assert order.order_id == order_id
        assert ex.accounts[order.account].orders.get(order_id) is order, f"{order_id} unindexed"
        assert 0 < order.leaves <= order.qty, f"order {order_id}: leaves {order.leaves} qty"
        if order.armed:
            stops = ex.instruments[order.symbol]
            stop_list = stops.buy_stops if order.side == BUY else stops.sell_stops
            assert (order.stop_price * (1 if order.side == BUY else -1), order_id) in stop_list
        else:
            assert order_id in on_book, f"open order {order_id} is neither on the book nor armed"
            if order.tif in (TimeInForce.IOC, TimeInForce.FOK):
                # Only a market order, waiting in a call phase for the uncross.
                waiting = ex.instruments[order.symbol].phase in CALL_PHASES
                assert order.order_type == OrderType.MARKET and waiting, f"{order_id} IOC rests"
        inst = ex.instruments[order.symbol]
        if order.side == BUY:
            asset = inst.quote
            fee_bps = max(order.maker_fee_bps, order.taker_fee_bps)
            expected = buy_cost(order.leaves, order.price, fee_bps)
        else:
            asset = inst.base
            expected = order.leaves
        assert order.held == expected, f"order {order_id} holds {order.held}, not {expected}"
        held_key = (order.account, asset)
        held_by_balance[held_key] = held_by_balance.get(held_key, 0) + order.held
    totals: dict[str, int] = {}
    for account_id, account in ex.accounts.items():
        for order_id, order in account.orders.items():
            assert ex.orders.get(order_id) is order, f"{account_id}: closed order {order_id}"
        for asset, bal in account.balances.items():
            where = f"{account_id} {asset}"
            assert bal.available >= 0, f"{where}: available {bal.available} < 0"
            assert bal.held >= 0, f"{where}: held {bal.held} < 0"
            expected_held = held_by_balance.pop((account_id, asset), 0)
            assert bal.held == expected_held, (
                f"{where}: held {bal.held}, its open orders hold {expected_held}"
            )
            totals[asset] = totals.get(asset, 0) + bal.available + bal.held
    assert not held_by_balance, (
        f"orders hold assets their accounts have no balance of: {held_by_balance}"
    )
    # 2. Conservation: all the money there is came in through accepted deposits.
    for asset in sorted(set(totals) | set(ledger.net_by_asset)):
        assert totals.get(asset, 0) == ledger.net_by_asset.get(asset, 0), (
            f"{asset}: accounts hold {totals.get(asset, 0)}, "
            f"deposits - withdrawals = {ledger.net_by_asset.get(asset, 0)}"
        )


# ---------------------------------------------------------------- replay


def replay(
    steps: tuple[tuple[int, Command], ...], ex: Exchange
) -> tuple[Exchange, list[list[Any]]]:
    """Applies the steps to the engine; returns it and the wire form of every event."""
    wires: list[list[Any]] = []
    for ts_ms, command in steps:
        wires.extend(event_to_wire(event) for event in ex.apply(command, ts_ms))
    return ex, wires


def events_digest(wires: list[list[Any]]) -> str:
    return hashlib.sha256(msgpack.packb(wires, use_bin_type=True)).hexdigest()


# ---------------------------------------------------------------- properties


@settings(PROFILE)
@given(stream=streams())
def test_books_balances_and_holds_stay_consistent_after_every_command(stream: Stream) -> None:
    ex = stream.new_exchange()
    ledger = StreamLedger()
    check_invariants(ex, ledger)
    for index, (ts_ms, command) in enumerate(stream.steps):
        if _timers_due(ex, ts_ms):
            # What the passing of time does (expiries, a pause that reopens by auction and
            # the stops its price fires) comes first, in a Tick of its own, so each
            # command's events below are its own.
            ex.apply(Tick(), ts_ms)
            check_invariants(ex, ledger)
        seq_before = ex.seq
        events = ex.apply(command, ts_ms)
        note(f"step {index}: {format_command(command)} at {ts_ms} -> {len(events)} events")
        check_events(ex, ledger, command, events, seq_before)
        check_invariants(ex, ledger)


def _timers_due(ex: Exchange, ts_ms: int) -> bool:
    state = ex.state
    return bool(
        (state.expiries and state.expiries[0][0] <= ts_ms)
        or any(at <= ts_ms for at in state.paused.values())
        or (state.next_phase_ms and state.next_phase_ms <= ts_ms)
        or state.bands  # limit states end and windows move with time
    )


@settings(PROFILE, max_examples=REPLAY_EXAMPLES_MAX)
@given(stream=streams())
def test_two_engines_fed_the_same_stream_agree(stream: Stream) -> None:
    first, first_events = replay(stream.steps, stream.new_exchange())
    second, second_events = replay(stream.steps, stream.new_exchange())
    assert first_events == second_events
    assert first.state_hash() == second.state_hash()


@settings(PROFILE, max_examples=REPLAY_EXAMPLES_MAX)
@given(stream=streams(), data=st.data())
def test_snapshot_restore_and_replay_matches_a_straight_replay(
    stream: Stream, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(stream.steps)), label="snapshot after step")
    straight, straight_events = replay(stream.steps, stream.new_exchange())
    before, before_events = replay(stream.steps[:cut], stream.new_exchange())
    snapshot = before.snapshot()
    restored = Exchange.restore(snapshot)
    assert restored.state_hash() == before.state_hash()
    assert restored.snapshot() == snapshot
    restored, after_events = replay(stream.steps[cut:], restored)
    assert before_events + after_events == straight_events
    assert restored.state_hash() == straight.state_hash()


_FRESH_PROCESS_SCRIPT = """
import hashlib, sys
import msgpack
from engine import Exchange
from engine.commands import command_from_wire
from engine.events import event_to_wire

def replay(ex, steps):
    wires = []
    for ts_ms, wire in steps:
        wires.extend(event_to_wire(e) for e in ex.apply(command_from_wire(wire), ts_ms))
    return hashlib.sha256(msgpack.packb(wires, use_bin_type=True)).hexdigest()

stream_path, snapshot_path, cut = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(stream_path, "rb") as f:
    open_orders_max, steps = msgpack.unpackb(f.read(), raw=False)
with open(snapshot_path, "rb") as f:
    snapshot = f.read()
straight = Exchange(open_orders_per_account_max=open_orders_max)
straight_events = replay(straight, steps)
restored = Exchange.restore(snapshot)
restored_hash = restored.state_hash()
rest_events = replay(restored, steps[cut:])
print(straight.state_hash(), straight_events, restored_hash, restored.state_hash(), rest_events)
"""


def _other_hash_seeds() -> list[str]:
    """Two PYTHONHASHSEED values that differ from this process's and from each other."""
    own = os.environ.get("PYTHONHASHSEED", "")
    return [seed for seed in ("123", "4567", "89") if seed != own][:2]


@settings(
    PROFILE,
    max_examples=FRESH_PROCESS_EXAMPLES_MAX,
    # tmp_path is shared by the examples of one test run: each writes files of its own.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(stream=streams(), data=st.data())
def test_fresh_processes_with_other_hash_seeds_agree(
    stream: Stream, data: st.DataObject, tmp_path: Path
) -> None:
    cut = data.draw(st.integers(0, len(stream.steps)), label="snapshot after step")
    straight, straight_events = replay(stream.steps, stream.new_exchange())
    before, _ = replay(stream.steps[:cut], stream.new_exchange())
    _, rest_events = replay(stream.steps[cut:], Exchange.restore(before.snapshot()))
    name = hashlib.sha256(repr(stream).encode()).hexdigest()[:16]
    stream_path = tmp_path / f"{name}-{cut}.stream"
    snapshot_path = tmp_path / f"{name}-{cut}.snapshot"
    stream_path.write_bytes(msgpack.packb(stream_to_wire(stream), use_bin_type=True))
    snapshot_path.write_bytes(before.snapshot())
    expected = [
        straight.state_hash(),
        events_digest(straight_events),
        before.state_hash(),
        straight.state_hash(),
        events_digest(rest_events),
    ]
    seeds = _other_hash_seeds()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _FRESH_PROCESS_SCRIPT, stream_path, snapshot_path, str(cut)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in seeds
    ]
    try:
        outputs = [process.communicate(timeout=FRESH_PROCESS_TIMEOUT_S) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    for seed, process, (out, err) in zip(seeds, processes, outputs, strict=True):
        assert process.returncode == 0, f"PYTHONHASHSEED={seed}: {err}"
        assert out.split() == expected, f"PYTHONHASHSEED={seed}: other hashes or events"


# ---------------------------------------------------------------- beyond the core properties


def _window_at(row: list[Any], now_ms: int) -> list[Any]:
    """A snapshot's limit up-limit down row with the trades `now_ms` leaves in its window."""
    symbol, fields, trades = row
    kept = [t for t in trades if t[0] > now_ms - fields[LULD_FIELDS.index("window_ms")]]
    fields = list(fields)
    fields[LULD_FIELDS.index("price_sum")] = sum(price for _, price in kept)
    return [symbol, fields, kept]


def _state_without_seq_and_time(snapshot: bytes) -> list[Any]:
    state = msgpack.unpackb(snapshot, raw=False, strict_map_key=False)
    state[2] = state[3] = 0  # seq, now_ms
    return state


@settings(PROFILE, max_examples=REPLAY_EXAMPLES_MAX)
@given(stream=streams())
def test_order_outcomes_keep_their_promises(stream: Stream) -> None:
    """FOK fills all or nothing; post-only never takes; a rejection changes only the seq
    (and records its outcome under a fresh client id); a retry changes nothing."""
    ex = stream.new_exchange()
    fok_qty_by_id: dict[int, int] = {}
    fok_traded_by_id: dict[int, int] = {}
    post_only_ids: set[int] = set()
    for index, (ts_ms, command) in enumerate(stream.steps):
        seq_before = ex.seq
        snapshot_before = ex.snapshot()
        events = ex.apply(command, ts_ms)
        note(f"step {index}: {format_command(command)} at {ts_ms}")
        fresh = [event for event in events if event.seq > seq_before]
        for event in fresh:
            if isinstance(event, Accepted):
                if event.tif == TimeInForce.FOK:
                    fok_qty_by_id[event.order_id] = event.qty
                    fok_traded_by_id[event.order_id] = 0
                if event.post_only:
                    post_only_ids.add(event.order_id)
            elif isinstance(event, Trade):
                assert event.taker_order_id not in post_only_ids, f"post-only took: {event}"
                if event.taker_order_id in fok_traded_by_id:
                    fok_traded_by_id[event.taker_order_id] += event.qty
        for order_id, traded in fok_traded_by_id.items():
            order = ex.orders.get(order_id)
            if order is not None:
                assert order.armed and not traded, f"FOK order {order_id} open after trading"
            else:
                assert traded in (0, fok_qty_by_id[order_id]), (
                    f"FOK order {order_id} filled {traded} of {fok_qty_by_id[order_id]}"
                )
        if not fresh or (len(fresh) == 1 and isinstance(fresh[0], Rejected)):
            before = _state_without_seq_and_time(snapshot_before)
            after = _state_without_seq_and_time(ex.snapshot())
            inner = command.command if isinstance(command, Signed) else command
            key = idempotency_key(inner)
            if fresh and key is not None:
                # The rejection is remembered so that a retry gets it again.
                after[9] = [row for row in after[9] if row in before[9] or tuple(row[:2]) != key]
            if isinstance(command, Signed):
                # So is the signature of a refused write, so that no replay applies it later;
                # a write that changed nothing but was not refused (a mass cancel with no
                # open order) spends its TOTP step.
                after[14] = [row for row in after[14] if row[0] != command.signature]
                before[14] = [row for row in before[14] if row[0] != command.signature]
                if not fresh:
                    account = getattr(inner, "account", "")
                    after[15] = [row for row in after[15] if row[0] != account]
                    before[15] = [row for row in before[15] if row[0] != account]
            # Ids and signatures past their retention are forgotten as time moves, whatever
            # the command.
            horizon = ex.now_ms - CLIENT_ID_RETENTION_MS
            before[9] = [row for row in before[9] if row[3][2] >= horizon]
            before[14] = [row for row in before[14] if row in after[14]]
            # So are the trades that leave a limit up-limit down window (with their prices).
            before[18] = [_window_at(row, ex.now_ms) for row in before[18]]
            assert after == before, f"{format_command(command)} changed the state: {fresh}"


@settings(PROFILE, max_examples=REPLAY_EXAMPLES_MAX)
@given(stream=streams())
def test_book_and_balances_rebuilt_from_events_match_the_engine(stream: Stream) -> None:
    """Market data and account views are built from events alone (LevelChanged,
    BalanceChanged): after every command they must equal the engine's state."""
    ex = stream.new_exchange()
    levels: dict[tuple[str, int, int], tuple[int, int]] = {}
    balances: dict[tuple[str, str], tuple[int, int]] = {}
    for index, (ts_ms, command) in enumerate(stream.steps):
        seq_before = ex.seq
        events = ex.apply(command, ts_ms)
        note(f"step {index}: {format_command(command)} at {ts_ms}")
        for event in events:
            if event.seq <= seq_before:
                continue  # a retry's old outcome: a feed reader has seen it already
            if isinstance(event, LevelChanged):
                level_key = (event.symbol, event.side, event.price)
                if event.qty:
                    levels[level_key] = (event.qty, event.orders)
                else:
                    assert not event.orders, f"a level with no quantity has orders: {event}"
                    levels.pop(level_key, None)
            elif isinstance(event, BalanceChanged):
                balances[(event.account, event.asset)] = (event.available, event.held)
        book: dict[tuple[str, int, int], tuple[int, int]] = {}
        for symbol in ex.instruments:
            bids, asks = ex.depth(symbol)
            for side, rows in ((BUY, bids), (SELL, asks)):
                for price, qty, count in rows:
                    book[(symbol, side, price)] = (qty, count)
        assert levels == book, f"L2 from events differs from the book after step {index}"
        engine_balances = {
            (account_id, asset): (bal.available, bal.held)
            for account_id, account in ex.accounts.items()
            for asset, bal in account.balances.items()
        }
        assert balances == engine_balances, f"balances from events differ after step {index}"
