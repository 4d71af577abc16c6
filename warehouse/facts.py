"""Events in, warehouse rows out: the fact tables, built in log order.

`FactBuilder` keeps what the rows need that one event does not say: asset decimals,
instruments, accounts' members and owners at that moment, each open order's terms and
progress, each book's levels (for the best bid and offer after every change). That state
is saved with the warehouse, so a build resumes at the next sequence exactly as a build
from scratch would have gone on.
"""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import msgpack

from engine.codes import (
    OrderType,
    RejectCode,
    Side,
    TimeInForce,
    TradingCapacity,
    TradingPhase,
)
from engine.events import (
    Accepted,
    AccountChanged,
    AccountProfileChanged,
    Amended,
    AssetAdded,
    BalanceChanged,
    BandsChanged,
    CalendarSet,
    Cancelled,
    Event,
    Expired,
    InstrumentChanged,
    LevelChanged,
    LimitUpLimitDownSet,
    MemberRateLimitChanged,
    PhaseChanged,
    RateLimitChanged,
    Rejected,
    Replenished,
    SessionClosed,
    StatusChanged,
    Trade,
    Transferred,
    Triggered,
)
from warehouse.tables import FACT_TABLES

DAY_MS = 86_400_000
STATE_FORMAT = 1
SIDES = {int(s): s.name.lower() for s in Side}
ORDER_TYPES = {int(t): t.name.lower() for t in OrderType}
TIFS = {int(t): t.name.lower() for t in TimeInForce}
CAPACITIES = {int(c): c.name for c in TradingCapacity}
STATUSES = {0: "open", 1: "halted", 2: "closed"}
PHASES = {phase.value: phase.name.lower() for phase in TradingPhase}
LIMIT_STATES = {int(Side.BUY): "limit_up", int(Side.SELL): "limit_down"}
# Refusals by a pre-trade control (the control_breaches table); other refusals (an unknown
# order, a duplicate id) are a client's mistakes, not breaches.
CONTROL_CODES = frozenset(
    {
        RejectCode.PRICE_OUT_OF_BAND,
        RejectCode.QTY_TOO_SMALL,
        RejectCode.QTY_TOO_LARGE,
        RejectCode.NOTIONAL_TOO_LARGE,
        RejectCode.INSUFFICIENT_FUNDS,
        RejectCode.INSUFFICIENT_SHARES,
        RejectCode.TOO_MANY_OPEN_ORDERS,
        RejectCode.HALTED,
        RejectCode.MARKET_CLOSED,
        RejectCode.ACCOUNT_DISABLED,
        RejectCode.POST_ONLY_WOULD_TAKE,
        RejectCode.RATE_LIMITED,
    }
)
ORDER_COMMANDS = frozenset({"PlaceOrder", "AmendOrder"})

# Positions in an open order's record.
(
    _ACCOUNT,
    _CID,
    _SYMBOL,
    _SIDE,
    _TYPE,
    _TIF,
    _PRICE,
    _STOP,
    _QTY,
    _LEAVES,
    _DISPLAY,
    _CUM,
    _CAPACITY,
    _ACCEPTED_MS,
    _PRIORITY_MS,
    _EXPIRE_MS,
) = range(16)


def _ts_us(ms: int) -> int:
    return ms * 1000


class FactBuilder:
    """Turns events (in sequence order) into rows of the fact tables, per UTC day."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.last_seq: int = state.get("last_seq", 0)
        self.assets: dict[str, int] = state.get("assets", {})
        self.instruments: dict[str, list[str]] = state.get("instruments", {})
        # account -> [member, owner, lei, capacity]
        self.profiles: dict[str, list[Any]] = state.get("profiles", {})
        self.orders: dict[int, list[Any]] = {int(k): v for k, v in state.get("orders", {}).items()}
        # symbol -> [bids {price: qty}, asks {price: qty}]
        self.books: dict[str, list[dict[int, int]]] = {
            symbol: [{int(p): q for p, q in side.items()} for side in sides]
            for symbol, sides in state.get("books", {}).items()
        }
        self.tops: dict[str, list[int]] = state.get("tops", {})
        # (table, day) -> column -> values
        self.rows: dict[tuple[str, int], dict[str, list[Any]]] = {}

    def state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "last_seq": self.last_seq,
            "assets": self.assets,
            "instruments": self.instruments,
            "profiles": self.profiles,
            "orders": self.orders,
            "books": self.books,
            "tops": self.tops,
        }

    def state_bytes(self) -> bytes:
        return msgpack.packb(self.state(), use_bin_type=True, strict_types=False)

    @staticmethod
    def state_from_bytes(data: bytes) -> dict[str, Any]:
        state = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"warehouse state format {state.get('format')} not understood")
        return state

    # ------------------------------------------------------------------ rows

    def _row(self, table: str, seq: int, ts_ms: int, **values: Any) -> None:
        """A row of `table` for the event at `seq`, in its UTC day's partition."""
        day = ts_ms // DAY_MS
        columns = self.rows.get((table, day))
        if columns is None:
            columns = self.rows[(table, day)] = defaultdict(list)
        values["seq"], values["ts"] = seq, _ts_us(ts_ms)
        for name in FACT_TABLES[table].names:
            columns[name].append(values.get(name))

    def take_rows(self) -> dict[tuple[str, int], dict[str, list[Any]]]:
        rows, self.rows = self.rows, {}
        return rows

    def _amount(self, units: int, asset: str) -> Decimal:
        return Decimal(units).scaleb(-self.assets.get(asset, 0))

    def _price(self, units: int, symbol: str) -> Decimal:
        """A price is quote minor units per base minor unit, as the engine shows it."""
        base, quote = self.instruments.get(symbol, ["", ""])
        return Decimal(units).scaleb(self.assets.get(base, 0) - self.assets.get(quote, 0))

    def _qty(self, units: int, symbol: str) -> Decimal:
        return self._amount(units, self.instruments.get(symbol, ["", ""])[0])

    def _member_owner(self, account: str) -> tuple[str, str]:
        profile = self.profiles.get(account)
        return (profile[0], profile[1]) if profile else ("", account)

    # ------------------------------------------------------------------ events

    def add(self, event: Event) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)
        self.last_seq = event.seq

    def _asset(self, e: AssetAdded) -> None:
        self.assets[e.asset] = e.decimals
        self._reference(e.seq, e.ts_ms, "asset", e.asset, {"decimals": e.decimals}, "")

    def _instrument(self, e: InstrumentChanged) -> None:
        self.instruments[e.symbol] = [e.base, e.quote]
        detail = {
            name: getattr(e, name)
            for name in e.__match_args__
            if name not in ("seq", "ts_ms", "by")
        }
        self._reference(e.seq, e.ts_ms, "instrument", e.symbol, detail, e.by)

    def _account(self, e: AccountChanged) -> None:
        self._reference(e.seq, e.ts_ms, "account", e.account, {"enabled": e.enabled}, e.by)

    def _profile(self, e: AccountProfileChanged) -> None:
        self.profiles[e.account] = [e.member, e.owner, e.lei, e.capacity]
        detail = {
            "member": e.member,
            "owner": e.owner,
            "lei": e.lei,
            "capacity": CAPACITIES.get(e.capacity, ""),
        }
        self._reference(e.seq, e.ts_ms, "account_profile", e.account, detail, e.by)

    def _rate_limit(self, e: RateLimitChanged) -> None:
        detail = {"messages_per_s": e.messages_per_s}
        self._reference(e.seq, e.ts_ms, "rate_limit", e.account, detail, e.by)

    def _member_rate_limit(self, e: MemberRateLimitChanged) -> None:
        detail = {"messages_per_s": e.messages_per_s}
        self._reference(e.seq, e.ts_ms, "member_rate_limit", e.member, detail, e.by)

    def _reference(self, seq: int, ts_ms: int, kind: str, key: str, detail: Any, by: str) -> None:
        self._row(
            "reference_changes",
            seq,
            ts_ms,
            kind=kind,
            key=key,
            detail=json.dumps(detail, sort_keys=True),
            changed_by=by,
        )

    def _order_event(
        self, event: str, seq: int, ts_ms: int, order_id: int, order: list[Any], **more: Any
    ) -> None:
        symbol = order[_SYMBOL]
        member, owner = self._member_owner(order[_ACCOUNT])
        self._row(
            "order_events",
            seq,
            ts_ms,
            event=event,
            order_id=order_id,
            account=order[_ACCOUNT],
            member=member,
            owner=owner,
            capacity=CAPACITIES.get(order[_CAPACITY], ""),
            client_order_id=order[_CID],
            symbol=symbol,
            side=SIDES[order[_SIDE]],
            order_type=ORDER_TYPES.get(order[_TYPE], ""),
            tif=TIFS.get(order[_TIF], ""),
            price=self._price(order[_PRICE], symbol),
            stop_price=self._price(order[_STOP], symbol),
            qty=self._qty(order[_QTY], symbol),
            leaves=self._qty(order[_LEAVES], symbol),
            display_qty=self._qty(order[_DISPLAY], symbol),
            traded_qty=more.get("traded_qty", Decimal(0)),
            cancelled_qty=more.get("cancelled_qty", Decimal(0)),
            cum_qty=self._qty(order[_CUM], symbol),
            trade_id=more.get("trade_id"),
            role=more.get("role", ""),
            reason=more.get("reason", ""),
            accepted_ts=_ts_us(order[_ACCEPTED_MS]),
            priority_ts=_ts_us(order[_PRIORITY_MS]),
            expire_at=_ts_us(order[_EXPIRE_MS]) if order[_EXPIRE_MS] else None,
        )

    def _accepted(self, e: Accepted) -> None:
        order = [
            e.account,
            e.client_order_id,
            e.symbol,
            int(e.side),
            int(e.order_type),
            int(e.tif),
            e.price,
            e.stop_price,
            e.qty,
            e.qty,
            e.display_qty,
            0,
            e.capacity or (self.profiles.get(e.account) or [0, 0, 0, 1])[3],
            e.ts_ms,
            e.ts_ms,
            e.expire_at_ms,
        ]
        self.orders[e.order_id] = order
        self._order_event("accepted", e.seq, e.ts_ms, e.order_id, order)

    def _amended(self, e: Amended) -> None:
        order = self.orders.get(e.order_id)
        if order is None:
            return
        order[_PRICE], order[_QTY], order[_LEAVES] = e.price, e.qty, e.leaves
        if not e.priority_kept:
            order[_PRIORITY_MS] = e.ts_ms
        self._order_event("amended", e.seq, e.ts_ms, e.order_id, order)

    def _triggered(self, e: Triggered) -> None:
        order = self.orders.get(e.order_id)
        if order is not None:
            # Live from now: it takes its place in the queue now, and a stop (market) order
            # becomes immediate-or-cancel, as the engine makes it.
            order[_PRIORITY_MS] = e.ts_ms
            if order[_TYPE] == OrderType.STOP:
                order[_TIF] = int(TimeInForce.IOC)
            self._order_event("triggered", e.seq, e.ts_ms, e.order_id, order)

    def _replenished(self, e: Replenished) -> None:
        order = self.orders.get(e.order_id)
        if order is not None:
            order[_PRIORITY_MS] = e.ts_ms  # a refreshed peak joins the back of its level
            self._order_event("replenished", e.seq, e.ts_ms, e.order_id, order)

    def _cancelled(self, e: Cancelled) -> None:
        order = self.orders.get(e.order_id)
        if order is None:
            return
        order[_LEAVES] = e.leaves
        self._order_event(
            "cancelled",
            e.seq,
            e.ts_ms,
            e.order_id,
            order,
            reason=e.reason,
            cancelled_qty=self._qty(e.qty, e.symbol),
        )
        if e.leaves == 0:
            del self.orders[e.order_id]

    def _expired(self, e: Expired) -> None:
        order = self.orders.pop(e.order_id, None)
        if order is not None:
            order[_LEAVES] = 0
            expired = self._qty(e.qty, e.symbol)
            self._order_event("expired", e.seq, e.ts_ms, e.order_id, order, cancelled_qty=expired)

    def _trade(self, e: Trade) -> None:
        symbol = e.symbol
        price, qty = self._price(e.price, symbol), self._qty(e.qty, symbol)
        quote = self.instruments.get(symbol, ["", ""])[1]
        notional = self._amount(e.price * e.qty, quote)
        maker_side = 1 - int(e.aggressor_side)
        sides = (
            (e.maker_order_id, e.maker_account, maker_side, "passive", e.maker_fee, e.maker_leaves),
            (
                e.taker_order_id,
                e.taker_account,
                int(e.aggressor_side),
                "aggressive",
                e.taker_fee,
                e.taker_leaves,
            ),
        )
        for order_id, account, side, role, fee, leaves in sides:
            member, owner = self._member_owner(account)
            self._row(
                "executions",
                e.seq,
                e.ts_ms,
                trade_id=e.trade_id,
                symbol=symbol,
                order_id=order_id,
                account=account,
                member=member,
                owner=owner,
                side=SIDES[side],
                role=role,
                price=price,
                qty=qty,
                notional=notional,
                fee=self._amount(fee, quote),
                leaves=self._qty(leaves, symbol),
            )
            order = self.orders.get(order_id)
            if order is None:
                continue
            order[_LEAVES] = leaves
            order[_CUM] += e.qty
            event = "filled" if leaves == 0 else "partially_filled"
            self._order_event(
                event,
                e.seq,
                e.ts_ms,
                order_id,
                order,
                traded_qty=qty,
                trade_id=e.trade_id,
                role=role,
            )
            if leaves == 0:
                del self.orders[order_id]
        buy, sell = (sides[0], sides[1]) if maker_side == 0 else (sides[1], sides[0])
        self._row(
            "trades",
            e.seq,
            e.ts_ms,
            trade_id=e.trade_id,
            symbol=symbol,
            price=price,
            qty=qty,
            notional=notional,
            aggressor_side=SIDES[int(e.aggressor_side)],
            buy_order_id=buy[0],
            buy_account=buy[1],
            sell_order_id=sell[0],
            sell_account=sell[1],
            auction=PHASES.get(e.auction) if e.auction else None,
        )

    def _rejected(self, e: Rejected) -> None:
        if e.command not in ORDER_COMMANDS or e.code not in CONTROL_CODES:
            return
        member, _ = self._member_owner(e.account)
        self._row(
            "control_breaches",
            e.seq,
            e.ts_ms,
            account=e.account,
            member=member,
            client_id=e.client_id,
            command=e.command,
            code=str(e.code),
            message=e.message,
        )

    def _balance(self, e: BalanceChanged) -> None:
        self._row(
            "balance_changes",
            e.seq,
            e.ts_ms,
            account=e.account,
            asset=e.asset,
            available=self._amount(e.available, e.asset),
            held=self._amount(e.held, e.asset),
        )

    def _transferred(self, e: Transferred) -> None:
        member, _ = self._member_owner(e.account)
        self._row(
            "transfers",
            e.seq,
            e.ts_ms,
            account=e.account,
            member=member,
            asset=e.asset,
            amount=self._amount(e.amount, e.asset),
            request_id=e.request_id,
        )

    def _level(self, e: LevelChanged) -> None:
        book = self.books.get(e.symbol)
        if book is None:
            book = self.books[e.symbol] = [{}, {}]
        levels = book[int(e.side)]
        if e.qty:
            levels[e.price] = e.qty
        else:
            levels.pop(e.price, None)
        bids, asks = book
        bid = max(bids) if bids else 0
        ask = min(asks) if asks else 0
        top = [bid, bids.get(bid, 0), ask, asks.get(ask, 0)]
        if self.tops.get(e.symbol) == top:
            return
        self.tops[e.symbol] = top
        symbol = e.symbol
        self._row(
            "bbo",
            e.seq,
            e.ts_ms,
            symbol=symbol,
            bid_price=self._price(bid, symbol) if bids else None,
            bid_qty=self._qty(top[1], symbol) if bids else None,
            ask_price=self._price(ask, symbol) if asks else None,
            ask_qty=self._qty(top[3], symbol) if asks else None,
        )

    def _phase(self, e: PhaseChanged) -> None:
        self._row(
            "phases",
            e.seq,
            e.ts_ms,
            symbol=e.symbol,
            phase=PHASES.get(int(e.phase), str(e.phase)),
            reason=str(e.reason),
            until=_ts_us(e.until_ms) if e.until_ms else None,
            changed_by=e.by,
        )

    def _session_closed(self, e: SessionClosed) -> None:
        symbol = e.symbol
        self._row(
            "sessions",
            e.seq,
            e.ts_ms,
            symbol=symbol,
            session_start=_ts_us(e.session_start_ms) if e.session_start_ms else None,
            local_date=e.local_date,
            close_price=self._price(e.close_price, symbol) if e.close_price else None,
            from_auction=e.from_auction,
        )

    def _bands(self, e: BandsChanged) -> None:
        symbol = e.symbol
        self._row(
            "price_bands",
            e.seq,
            e.ts_ms,
            symbol=symbol,
            reference=self._price(e.reference, symbol),
            band_lo=self._price(e.band_lo, symbol),
            band_hi=self._price(e.band_hi, symbol),
            limit_state=LIMIT_STATES.get(e.limit_side),
            limit_until=_ts_us(e.limit_until_ms) if e.limit_until_ms else None,
        )

    def _luld(self, e: LimitUpLimitDownSet) -> None:
        self._symbol_setting(e, "limit_up_limit_down")

    def _calendar(self, e: CalendarSet) -> None:
        self._symbol_setting(e, "calendar")

    def _symbol_setting(self, e: CalendarSet | LimitUpLimitDownSet, kind: str) -> None:
        """A symbol's setting changed: every field of its event as the detail."""
        skipped = ("seq", "ts_ms", "symbol", "by")
        detail = {name: getattr(e, name) for name in e.__match_args__ if name not in skipped}
        self._reference(e.seq, e.ts_ms, kind, e.symbol, detail, e.by)

    def _status(self, e: StatusChanged) -> None:
        self._row(
            "halts",
            e.seq,
            e.ts_ms,
            symbol=e.symbol,
            status=STATUSES.get(int(e.status), str(e.status)),
            reason=str(e.reason),
            resume_at=_ts_us(e.resume_at_ms) if e.resume_at_ms else None,
            changed_by=e.by,
        )


_HANDLERS: dict[type, Any] = {
    AssetAdded: FactBuilder._asset,
    InstrumentChanged: FactBuilder._instrument,
    AccountChanged: FactBuilder._account,
    AccountProfileChanged: FactBuilder._profile,
    RateLimitChanged: FactBuilder._rate_limit,
    MemberRateLimitChanged: FactBuilder._member_rate_limit,
    Accepted: FactBuilder._accepted,
    Amended: FactBuilder._amended,
    Triggered: FactBuilder._triggered,
    Replenished: FactBuilder._replenished,
    Cancelled: FactBuilder._cancelled,
    Expired: FactBuilder._expired,
    Trade: FactBuilder._trade,
    Rejected: FactBuilder._rejected,
    BalanceChanged: FactBuilder._balance,
    Transferred: FactBuilder._transferred,
    LevelChanged: FactBuilder._level,
    StatusChanged: FactBuilder._status,
    PhaseChanged: FactBuilder._phase,
    SessionClosed: FactBuilder._session_closed,
    CalendarSet: FactBuilder._calendar,
    BandsChanged: FactBuilder._bands,
    LimitUpLimitDownSet: FactBuilder._luld,
}
