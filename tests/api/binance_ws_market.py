"""What the Binance stream tests share: an instrument of a test's own (so other tests' trades
never show in its streams), orders placed through the admin channel, a WebSocket reader,
and Binance's documented local order book procedure, written as a client would write it."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp

from cluster.admin_client import AdminClient
from cluster.launcher import DEMO_ACCOUNTS, DEMO_QUOTE
from engine.codes import OrderType, Side, TimeInForce
from engine.commands import AddAsset, AddInstrument, Command, Deposit, PlaceOrder, command_to_wire

REFERENCE_PRICE = 10_000
SHARES = 10_000
RECEIVE_TIMEOUT_S = 10.0


async def command(http: str, token: str, cmd: Command) -> dict[str, Any]:
    async with AdminClient(token) as client:
        return await client.call(
            http, "POST", "/v1/admin/commands", {"command": command_to_wire(cmd)}
        )


async def new_instrument(http: str, token: str) -> str:
    """A fresh symbol (base asset of the same name, quoted in the demo quote), with shares for
    every demo account."""
    symbol = "WS" + "".join(chr(ord("A") + int(c, 16) % 26) for c in uuid.uuid4().hex[:6])
    await command(http, token, AddAsset(symbol, 0))
    await command(
        http,
        token,
        AddInstrument(
            symbol,
            symbol,
            DEMO_QUOTE,
            max_qty=100_000,
            max_notional=10**11,
            price_band_bps=1_000,
            maker_fee_bps=1,
            taker_fee_bps=3,
            reference_price=REFERENCE_PRICE,
        ),
    )
    for account in DEMO_ACCOUNTS:
        await command(http, token, Deposit(account, symbol, SHARES, request_id=f"{symbol}-shares"))
    return symbol


async def place(
    http: str,
    token: str,
    account: str,
    symbol: str,
    side: Side,
    qty: int,
    price: int = 0,
    client_order_id: str = "",
) -> dict[str, Any]:
    """A limit order (a market order without a price); its outcome (events, seq)."""
    market = price == 0
    order = PlaceOrder(
        account,
        symbol,
        side,
        qty,
        price,
        OrderType.MARKET if market else OrderType.LIMIT,
        TimeInForce.IOC if market else TimeInForce.GTC,
        client_order_id or uuid.uuid4().hex[:16],
    )
    return await command(http, token, order)


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = RECEIVE_TIMEOUT_S) -> Any:
    message = await ws.receive(timeout=timeout_s)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def receive_until(
    ws: aiohttp.ClientWebSocketResponse, match: Any, timeout_s: float = RECEIVE_TIMEOUT_S
) -> list[Any]:
    """Every message up to and including the first that `match(message)` accepts."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no matching message within {timeout_s} s; saw {seen[-5:]}"
        seen.append(await receive(ws, left))
        if match(seen[-1]):
            return seen


@dataclass
class LocalBook:
    """Binance's "how to manage a local order book correctly", step by step: buffer the diff
    stream, take a REST snapshot, drop diffs with u <= lastUpdateId, the first applied one must
    have U-1 <= lastUpdateId <= u-1, and each next U must be the previous u + 1."""

    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    last_update_id: int = -1
    synced: bool = False

    def load(self, snapshot: dict[str, Any]) -> None:
        self.bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
        self.last_update_id = snapshot["lastUpdateId"]
        self.synced = False

    def apply(self, diff: dict[str, Any]) -> None:
        if diff["u"] <= self.last_update_id:
            return
        if not self.synced:
            assert diff["U"] - 1 <= self.last_update_id <= diff["u"] - 1, (
                diff,
                self.last_update_id,
            )
            self.synced = True
        else:
            assert diff["U"] == self.last_update_id + 1, (diff, self.last_update_id)
        for side, rows in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for price, qty in rows:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(qty)
        self.last_update_id = diff["u"]

    def levels(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


def book_levels(snapshot: dict[str, Any]) -> tuple[list, list]:
    return (
        [(Decimal(p), Decimal(q)) for p, q in snapshot["bids"]],
        [(Decimal(p), Decimal(q)) for p, q in snapshot["asks"]],
    )


async def rest_depth(session: aiohttp.ClientSession, http: str, symbol: str) -> dict[str, Any]:
    async with session.get(
        f"http://{http}/api/v3/depth", params={"symbol": symbol, "limit": "1000"}
    ) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def sync_book(
    session: aiohttp.ClientSession,
    ws: aiohttp.ClientWebSocketResponse,
    http: str,
    symbol: str,
    buffered: list[dict[str, Any]],
) -> LocalBook:
    """Steps 3 to 5: the snapshot, then the buffered diffs."""
    book = LocalBook()
    book.load(await rest_depth(session, http, symbol))
    for diff in buffered:
        book.apply(diff)
    return book


async def drain(ws: aiohttp.ClientWebSocketResponse, quiet_s: float = 0.3) -> list[Any]:
    """Messages until none comes for `quiet_s`."""
    out = []
    while True:
        try:
            message = await ws.receive(timeout=quiet_s)
        except TimeoutError:
            return out
        if message.type != aiohttp.WSMsgType.TEXT:
            return out
        out.append(json.loads(message.data))
