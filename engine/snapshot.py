"""The canonical form of the engine's state: snapshot bytes and the state hash.

Canonical means: every collection is written in an order that depends only on
the state (sorted keys, book order, queue order), never on dict history or
hashing, so equal states give equal bytes in every process. Indexes that can be
derived (open orders per account, stop lists, the expiry heap) are rebuilt on
restore rather than stored.
"""

from __future__ import annotations

import heapq
from typing import Any

import msgpack

from engine.calendar import Calendar
from engine.commands import command_from_wire, command_to_wire
from engine.events import event_from_wire, event_to_wire
from engine.exchange_state import FEE_ACCOUNT, ExchangeState
from engine.state import (
    ACCOUNT_PROFILE_FIELDS,
    INSTRUMENT_SPEC,
    LULD_FIELDS,
    LULD_PARAMETERS,
    SESSION_CLOCK_FIELDS,
    Account,
    ApiKey,
    Balance,
    Instrument,
    LimitUpLimitDown,
    Order,
    PriceLevel,
    SessionClock,
)

SNAPSHOT_VERSION = 5
# Version 3 had no account profiles (member, owner, LEI, capacity), versions 3 and 4 no
# phases or calendars: read with defaults (continuous trading).
SNAPSHOT_VERSIONS_READ = (3, 4, SNAPSHOT_VERSION)
# An instrument's row: its spec, then status, resume time, last price, bids and asks, and
# (from version 5) its phase.
INSTRUMENT_ROW_LEN = len(INSTRUMENT_SPEC) + 6


CLOCK = SESSION_CLOCK_FIELDS


class SnapshotError(ValueError):
    """Snapshot bytes that are not a state this engine wrote: never run on them."""


# What building a state (and the exchange around it) from values of the wrong shape or type
# raises: a zero tick size divides by zero, a number where a list goes has no attribute.
# Exchange.restore turns every one of them into SnapshotError.
MALFORMED_STATE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    ArithmeticError,
    msgpack.UnpackException,
)


def encode_state(ex: ExchangeState) -> bytes:
    instruments = []
    for symbol in sorted(ex.instruments):
        inst = ex.instruments[symbol]
        instruments.append(
            [
                *inst.spec(),
                inst.status,
                inst.resume_at_ms,
                inst.last_price,
                [[lvl.price, list(lvl.orders)] for lvl in inst.bids.values()],
                [[lvl.price, list(lvl.orders)] for lvl in inst.asks.values()],
                inst.phase,
            ]
        )
    accounts = []
    for account_id in sorted(ex.accounts):
        acct = ex.accounts[account_id]
        balances = [
            [asset, acct.balances[asset].available, acct.balances[asset].held]
            for asset in sorted(acct.balances)
        ]
        profile = [getattr(acct, name) for name in ACCOUNT_PROFILE_FIELDS]
        accounts.append([account_id, acct.enabled, balances, profile])
    orders = [
        [
            o.order_id,
            o.account,
            o.symbol,
            o.side,
            o.order_type,
            o.tif,
            o.price,
            o.qty,
            o.leaves,
            o.visible,
            o.display_qty,
            o.stop_price,
            o.armed,
            o.post_only,
            o.stp,
            o.expire_at_ms,
            o.held,
            o.maker_fee_bps,
            o.taker_fee_bps,
            o.client_order_id,
        ]
        for o in sorted(ex.orders.values(), key=_order_id)
    ]
    client_ids = [
        [account, cid, command_to_wire(command), event_to_wire(event)]
        for (account, cid), (command, event) in sorted(ex.client_ids.items(), key=_first)
    ]
    state = [
        SNAPSHOT_VERSION,
        ex.open_orders_per_account_max,
        ex.seq,
        ex.now_ms,
        ex.next_order_id,
        ex.next_trade_id,
        instruments,
        accounts,
        orders,
        client_ids,
        sorted([symbol, at] for symbol, at in ex.paused.items()),
        sorted([asset, decimals] for asset, decimals in ex.assets.items()),
        [
            [k.key_id, k.account, k.kind, k.material, k.scopes]
            for _, k in sorted(ex.api_keys.items(), key=_first)
        ],
        sorted([account, material] for account, material in ex.second_factors.items()),
        # In the order they are forgotten in (until, then digest).
        [[digest, until] for until, digest in sorted(ex.signature_expiries)],
        sorted([account, step] for account, step in ex.totp_steps.items()),
        sorted([member, *rate] for member, rate in ex.member_rates.items()),
        [
            [
                symbol,
                list(clock.calendar.fields()),
                *(getattr(clock, f) for f in SESSION_CLOCK_FIELDS),
            ]
            for symbol, clock in sorted(ex.sessions.items(), key=_first)
        ],
        [
            [symbol, [getattr(luld, f) for f in LULD_FIELDS], [list(t) for t in luld.trades]]
            for symbol, luld in sorted(ex.bands.items(), key=_first)
        ],
    ]
    return msgpack.packb(state, use_bin_type=True)


def decode_state(data: bytes) -> ExchangeState:
    """Rebuilds the state; raises SnapshotError if the bytes are not a valid snapshot."""
    try:
        state = msgpack.unpackb(data, raw=False, strict_map_key=False)
        return _build(state)
    except MALFORMED_STATE_ERRORS as exc:
        raise SnapshotError(f"snapshot cannot be restored: {exc!r}") from exc


def _build(state: list[Any]) -> ExchangeState:
    if state[0] not in SNAPSHOT_VERSIONS_READ:
        raise SnapshotError(
            f"snapshot version {state[0]}, this engine reads {SNAPSHOT_VERSIONS_READ}"
        )
    (
        _,
        open_max,
        seq,
        now_ms,
        next_order_id,
        next_trade_id,
        instruments,
        accounts,
        orders,
        client_ids,
        paused,
        assets,
        api_keys,
        second_factors,
        signatures,
        totp_steps,
        *later,  # version 4: member rates; version 5: sessions and price bands
    ) = state
    ex = ExchangeState(open_orders_per_account_max=open_max)
    ex.seq = seq
    ex.now_ms = now_ms
    ex.next_order_id = next_order_id
    ex.next_trade_id = next_trade_id
    ex.accounts = {}
    for account_id, enabled, balances, *profile in accounts:
        acct = ex.accounts[account_id] = Account(account_id, enabled)
        if profile:
            for name, value in zip(ACCOUNT_PROFILE_FIELDS, profile[0], strict=True):
                setattr(acct, name, value)
        for asset, available, held in balances:
            acct.balances[asset] = Balance(account_id, asset, available, held)
    if FEE_ACCOUNT not in ex.accounts:
        raise SnapshotError(f"no {FEE_ACCOUNT!r} account: every exchange has one")
    for row in orders:
        (
            order_id,
            account_id,
            symbol,
            side,
            order_type,
            tif,
            price,
            qty,
            leaves,
            visible,
            display_qty,
            stop_price,
            armed,
            post_only,
            stp,
            expire_at_ms,
            held,
            maker_bps,
            taker_bps,
            client_order_id,
        ) = row
        owner = ex.accounts[account_id]
        order = Order(
            order_id,
            owner,
            symbol,
            side,
            order_type,
            tif,
            price,
            qty,
            display_qty,
            stop_price,
            post_only,
            stp,
            expire_at_ms,
            maker_bps,
            taker_bps,
            client_order_id,
        )
        order.leaves = leaves
        order.visible = visible
        order.armed = armed
        order.held = held
        ex.orders[order_id] = order
        owner.orders[order_id] = order
        if expire_at_ms:
            ex.expiries.append((expire_at_ms, order_id))
    heapq.heapify(ex.expiries)
    row_len = INSTRUMENT_ROW_LEN if state[0] == SNAPSHOT_VERSION else INSTRUMENT_ROW_LEN - 1
    for row in instruments:
        if len(row) != row_len:
            raise SnapshotError(f"instrument row of {len(row)} fields, not {row_len}")
        if row_len == INSTRUMENT_ROW_LEN:
            *spec, status, resume_at, last_price, bids, asks, phase = row
        else:
            *spec, status, resume_at, last_price, bids, asks = row
            phase = 0
        inst = Instrument(*spec, status)  # type: ignore[call-arg]
        symbol = inst.symbol
        inst.phase = phase
        inst.resume_at_ms = resume_at
        inst.last_price = last_price
        for side, book, levels, sign in ((0, inst.bids, bids, -1), (1, inst.asks, asks, 1)):
            for price, order_ids in levels:
                level = book[sign * price] = PriceLevel(side, price)
                for order_id in order_ids:
                    order = ex.orders[order_id]
                    if order.symbol != symbol or order.side != side or order.price != price:
                        raise SnapshotError(f"order {order_id} sits on the wrong level")
                    level.orders[order_id] = order
                    level.qty += order.visible
        ex.instruments[symbol] = inst
    for order in ex.orders.values():
        if order.armed:
            stops = ex.instruments[order.symbol]
            if order.side == 0:
                stops.buy_stops.add((order.stop_price, order.order_id))
            else:
                stops.sell_stops.add((-order.stop_price, order.order_id))
    # In the order the outcomes happened (as a live table is), so expiry reads its front.
    remembered = [
        ((account_id, cid), (command_from_wire(command_wire), event_from_wire(event_wire)))
        for account_id, cid, command_wire, event_wire in client_ids
    ]
    remembered.sort(key=_outcome_seq)
    ex.client_ids = dict(remembered)
    ex.paused = {symbol: at for symbol, at in paused}
    ex.assets = {asset: decimals for asset, decimals in assets}
    for key_id, account_id, kind, material, scopes in api_keys:
        if account_id not in ex.accounts:
            raise SnapshotError(f"key {key_id} belongs to unknown account {account_id}")
        ex.api_keys[key_id] = ApiKey(account_id, key_id, kind, material, scopes)
    ex.second_factors = {account: material for account, material in second_factors}
    for digest, until_ms in signatures:
        ex.signatures[digest] = until_ms
        ex.signature_expiries.append((until_ms, digest))
    if len(ex.signatures) != len(ex.signature_expiries):
        raise SnapshotError("a signature digest is listed twice")
    heapq.heapify(ex.signature_expiries)
    ex.totp_steps = {account: step for account, step in totp_steps}
    member_rates = later[0] if later else []
    ex.member_rates = {member: rate for member, *rate in member_rates}
    for symbol, calendar, *clock_values in later[1] if len(later) > 1 else []:
        if symbol not in ex.instruments:
            raise SnapshotError(f"a calendar for unknown symbol {symbol}")
        clock = ex.sessions[symbol] = SessionClock(Calendar(*calendar))
        for name, value in zip(SESSION_CLOCK_FIELDS, clock_values, strict=True):
            setattr(clock, name, value)
    ex.next_phase_ms = min((c.due_ms for c in ex.sessions.values()), default=0)
    for symbol, fields, trades in later[2] if len(later) > 2 else []:
        if symbol not in ex.instruments:
            raise SnapshotError(f"price bands for unknown symbol {symbol}")
        luld = ex.bands[symbol] = LimitUpLimitDown(*fields[: len(LULD_PARAMETERS)])
        for name, value in zip(LULD_FIELDS, fields, strict=True):
            setattr(luld, name, value)
        luld.trades.extend((ts_ms, price) for ts_ms, price in trades)
    return ex


def _order_id(order: Order) -> int:
    return order.order_id


def _outcome_seq(item: tuple[Any, Any]) -> int:
    return item[1][1].seq


def _first(item: tuple[Any, Any]) -> Any:
    return item[0]
