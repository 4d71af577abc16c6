"""A trading calendar seen through the API: the phase on /v1/instruments and Binance's
exchangeInfo, the auction channel's indicative uncross in pre-open, and the opening
auction's trade on the trades channel, all from a follower."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from engine.commands import AddAsset, AddInstrument, Deposit, SetCalendar, command_to_wire
from tests.api.conftest import ApiCluster
from tests.api.raw import binance_call

pytestmark = pytest.mark.asyncio
FEED_WAIT_S = 40.0
SESSION_S = 3_600
# Pre-open began a second before the calendar is set; the opening auction 15 s later.
OPEN_IN_S = 15


async def _admin(api: ApiCluster, command: Any) -> dict[str, Any]:
    return await api.admin("POST", "/v1/admin/commands", {"command": command_to_wire(command)})


async def _symbol_in_pre_open(api: ApiCluster) -> str:
    """A fresh symbol whose calendar (an hour-long session in UTC) has it in pre-open now."""
    symbol = f"A{uuid.uuid4().hex[:6].upper()}"
    await _admin(api, AddAsset(symbol, 0))
    await _admin(
        api,
        AddInstrument(symbol, symbol, "USD", max_qty=10**6, max_notional=10**12,
                      price_band_bps=1_000, reference_price=10_000),
    )  # fmt: skip
    for account in ("alice", "dave"):
        await _admin(api, Deposit(account, symbol, 1_000, request_id=f"seed-{symbol}"))
    while True:
        now_s = (await api.admin("GET", "/v1/time"))["log_time_ms"] // 1000 % SESSION_S
        if 1 <= now_s < SESSION_S - OPEN_IN_S - 20:
            break
        await asyncio.sleep(1.0)  # too near the end of the hour: wait for the next one
    times = (now_s - 1, now_s + OPEN_IN_S, now_s + OPEN_IN_S + 5, now_s + OPEN_IN_S + 10)
    calendar = SetCalendar(
        symbol, "UTC", *times, times[-1] + 2, day_s=SESSION_S, trading_days=0b1111111
    )
    answer = await _admin(api, calendar)
    assert answer["events"][-1]["phase"] == 2, answer  # pre-open
    await api.applied_everywhere(answer["events"][-1]["seq"])
    return symbol


async def test_pre_open_publishes_the_indicative_and_the_open_uncrosses(api: ApiCluster) -> None:
    symbol = await _symbol_in_pre_open(api)
    follower = api.followers[0]
    async with api.client("alice") as alice, api.client("dave") as dave:
        auction = alice.stream("auction", symbol, nodes=[follower])
        async with asyncio.timeout(FEED_WAIT_S):
            snapshot = await anext(auction)
            assert (snapshot["type"], snapshot["phase"]) == ("snapshot", "pre_open")
            trades = alice.stream("trades", symbol, since=snapshot["seq"], nodes=[follower])
            bought = await alice.place_order(symbol, "buy", "5", price="101.00")
            assert bought["status"] == "open", bought
            sold = await dave.place_order(symbol, "sell", "3", price="99.00")
            assert sold["status"] == "open", "nothing trades in pre-open"
            async for message in auction:
                if message["type"] == "indicative" and message["seq"] >= sold["seq"]:
                    break
            assert message["matched_qty"] == "3", message
            assert (message["imbalance_qty"], message["imbalance_side"]) == ("2", "buy")
            # A buy surplus at every price from 99 to 101: the highest, 101.
            assert message["indicative_price"] == "101.00"
            row = await alice.request("GET", f"/v1/instruments/{symbol}", signed=False)
            assert row["phase"] == "pre_open" and row["auction"]["indicative_price"] == "101.00"
            _, info = await binance_call(follower, "GET", "/api/v3/exchangeInfo")
            status = {s["symbol"]: s["status"] for s in info["symbols"]}
            assert status[symbol] == "PRE_TRADING"
            phases = []
            async for message in auction:
                if message["type"] == "phase":
                    phases.append(message["phase"])
                if phases[-2:] == ["opening_auction", "continuous"]:
                    break
            async for message in trades:
                if message.get("type") == "trade":
                    break
            assert (message["price"], message["qty"], message["auction"]) == (
                "101.00",
                "3",
                "opening_auction",
            )
        await auction.aclose()
        await trades.aclose()
