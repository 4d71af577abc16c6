"""Binance's WebSocket streams against a real cluster, read with plain aiohttp clients: raw and
combined streams in Binance's payloads, the SUBSCRIBE methods and their errors, the local
order book procedure on a follower and again on another node, and the user data stream on a
listen key, which stops when its API key is revoked."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from engine.codes import Side
from engine.commands import Deposit, RevokeApiKey
from tests.api.binance_ws_market import (
    LocalBook,
    book_levels,
    command,
    drain,
    new_instrument,
    place,
    receive,
    receive_until,
    rest_depth,
)
from tests.api.conftest import ApiCluster, fresh_account


@pytest.fixture
def symbol(api: ApiCluster) -> str:
    return asyncio.run(new_instrument(api.leader_http, api.harness.token))


def _place(api: ApiCluster, *args: Any, **kwargs: Any) -> Any:
    return place(api.leader_http, api.harness.token, *args, **kwargs)


def test_raw_and_combined_streams_carry_binance_payloads(api: ApiCluster, symbol: str) -> None:
    lower = symbol.lower()

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            raw = await session.ws_connect(f"http://{api.followers[0]}/ws/{lower}@trade")
            names = [f"{lower}@aggTrade", f"{lower}@kline_1m", f"{lower}@depth", f"{lower}@ticker"]
            combined = await session.ws_connect(
                f"http://{api.followers[1]}/stream?streams={'/'.join(names)}"
            )
            first = await receive(combined)  # the 24h ticker's current state comes at once
            assert first["stream"] == f"{lower}@ticker" and first["data"]["e"] == "24hrTicker"
            await _place(api, "alice", symbol, Side.SELL, 3, 10_001)
            taken = await _place(api, "bob", symbol, Side.BUY, 2)
            trade = await receive(raw)
            assert set(trade) == {"e", "E", "s", "t", "p", "q", "T", "m", "M"}
            assert (trade["e"], trade["s"], trade["p"], trade["q"]) == (
                "trade",
                symbol,
                "100.01",
                "2",
            )
            assert trade["m"] is False  # the buyer took: the seller made
            seen = await receive_until(
                combined,
                lambda m: m["stream"].endswith("@depth") and m["data"]["u"] == taken["seq"],
            )
            by_stream = {m["stream"]: m["data"] for m in seen}
            agg = by_stream[f"{lower}@aggTrade"]
            assert (agg["e"], agg["a"], agg["f"], agg["l"]) == (
                "aggTrade",
                trade["t"],
                trade["t"],
                trade["t"],
            )
            kline = by_stream[f"{lower}@kline_1m"]
            assert kline["e"] == "kline" and set(kline["k"]) == set("tTsifLochlvnxqVQB")
            k = kline["k"]
            assert (k["i"], k["o"], k["c"], k["v"], k["n"], k["x"]) == (
                "1m",
                "100.01",
                "100.01",
                "2",
                1,
                False,
            )
            assert k["T"] - k["t"] == 59_999
            diffs = [m["data"] for m in seen if m["stream"] == f"{lower}@depth"]
            assert diffs[-1]["e"] == "depthUpdate" and diffs[-1]["s"] == symbol
            assert diffs[-1]["a"] == [["100.01", "1"]] and diffs[-1]["u"] == taken["seq"]
            ticker = by_stream[f"{lower}@ticker"]
            assert (ticker["c"], ticker["a"], ticker["A"], ticker["n"]) == (
                "100.01",
                "100.01",
                "1",
                1,
            )
            await raw.close()
            await combined.close()

    asyncio.run(go())


def test_subscribe_unsubscribe_list_and_errors(api: ApiCluster, symbol: str) -> None:
    lower = symbol.lower()

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://{api.followers[0]}/ws")
            names = [f"{lower}@depth5@100ms", f"{lower}@bookTicker", "!miniTicker@arr"]
            await ws.send_json({"method": "SUBSCRIBE", "params": names, "id": 1})
            seen = await receive_until(ws, lambda m: m.get("id") == 1)
            assert seen[-1] == {"result": None, "id": 1}
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
            listed = await receive_until(ws, lambda m: m.get("id") == 2)
            assert listed[-1] == {"result": names, "id": 2}
            await ws.send_json({"method": "UNSUBSCRIBE", "params": [names[0]], "id": "three"})
            assert (await receive_until(ws, lambda m: m.get("id") == "three"))[-1]["result"] is None
            await _place(api, "alice", symbol, Side.BUY, 4, 9_990)
            ticker = (await receive_until(ws, lambda m: "u" in m and "B" in m))[-1]
            assert ticker == {
                "u": ticker["u"],
                "s": symbol,
                "b": "99.90",
                "B": "4",
                "a": "0.00",
                "A": "0",
            }
            await _place(api, "bob", symbol, Side.SELL, 1)
            minis = (await receive_until(ws, lambda m: isinstance(m, list)))[-1]
            assert [(m["e"], m["s"], m["c"]) for m in minis] == [
                ("24hrMiniTicker", symbol, "99.90")
            ]
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 4})
            assert (await receive_until(ws, lambda m: m.get("id") == 4))[-1]["result"] == names[1:]

            refusals = [
                ({"method": "SUBSCRIBE", "params": ["nosuch@trade"], "id": 5}, 2, "unknown stream"),
                (
                    {"method": "SUBSCRIBE", "params": [f"{symbol}@trade"], "id": 6},
                    2,
                    "unknown stream",
                ),
                ({"method": "SUBSCRIB", "params": [], "id": 7}, 2, "unknown variant"),
                ({"method": "SUBSCRIBE", "params": "x", "id": 8}, 1, "Invalid value type"),
                ({"method": "SUBSCRIBE", "params": [], "id": 9, "extra": 1}, 0, "Unknown property"),
            ]
            for request, code, words in refusals:
                await ws.send_json(request)
                answer = await receive(ws)
                assert answer["id"] == request["id"] and answer["error"]["code"] == code, answer
                assert words in answer["error"]["msg"]
                await asyncio.sleep(0.25)  # Binance's 5 messages a second
            await ws.send_str("{not json")
            answer = (await receive_until(ws, lambda m: "error" in m))[-1]
            assert answer == {"error": {"code": 3, "msg": answer["error"]["msg"]}, "id": None}
            await ws.close()

    asyncio.run(go())


async def _churn(api: ApiCluster, symbol: str, orders: int, offset: int) -> None:
    """Resting bids and asks at a few prices, and market orders that take some of them."""
    for n in range(orders):
        if n % 5 == 4:
            await _place(api, "carol", symbol, Side.BUY if n % 2 else Side.SELL, 1 + n % 3)
        elif n % 2:
            await _place(api, "alice", symbol, Side.BUY, 1 + n % 4, 9_990 - (n + offset) % 6)
        else:
            await _place(api, "bob", symbol, Side.SELL, 1 + n % 3, 10_010 + (n + offset) % 6)


async def _follow_book(
    api: ApiCluster, session: aiohttp.ClientSession, node: str, symbol: str, offset: int
) -> None:
    """The procedure on one node while orders arrive: every diff buffered from the stream's
    start, the REST snapshot taken while orders are still coming, then the buffer applied;
    the local book equals the node's REST book at the end."""
    ws = await session.ws_connect(f"http://{node}/ws/{symbol.lower()}@depth@100ms")
    await _churn(api, symbol, 10, offset)
    churn = asyncio.create_task(_churn(api, symbol, 10, offset + 1))
    await asyncio.sleep(0.05)
    snapshot = await rest_depth(session, node, symbol)
    await churn
    await _churn(api, symbol, 10, offset + 2)
    book = LocalBook()
    book.load(snapshot)
    for diff in await drain(ws, 0.5):
        book.apply(diff)
    assert book.synced, "no diff came after the snapshot"
    final = await rest_depth(session, node, symbol)
    assert book.last_update_id <= final["lastUpdateId"]
    assert book.levels() == book_levels(final)
    await ws.close()


def test_local_order_book_procedure_on_a_follower_and_after_reconnecting_elsewhere(
    api: ApiCluster, symbol: str
) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            await _churn(api, symbol, 10, 0)
            await _follow_book(api, session, api.followers[0], symbol, 1)
            await _follow_book(api, session, api.followers[1], symbol, 2)
            await _follow_book(api, session, api.leader_http, symbol, 3)

    asyncio.run(go())


async def _listen_key(session: aiohttp.ClientSession, node: str, key_id: str) -> str:
    async with session.post(
        f"http://{node}/api/v3/userDataStream", headers={"X-MBX-APIKEY": key_id}
    ) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["listenKey"]


def test_user_data_stream_reports_orders_fills_and_balances(api: ApiCluster, symbol: str) -> None:
    alice = api.key("alice", "hmac")["api_key"]

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            listen_key = await _listen_key(session, api.followers[0], alice)
            assert listen_key == await _listen_key(session, api.followers[1], alice)
            for method in ("PUT", "DELETE"):
                async with session.request(
                    method,
                    f"http://{api.followers[1]}/api/v3/userDataStream",
                    params={"listenKey": listen_key},
                    headers={"X-MBX-APIKEY": alice},
                ) as r:
                    assert (r.status, await r.json()) == (200, {})
            async with session.put(
                f"http://{api.followers[1]}/api/v3/userDataStream",
                params={"listenKey": listen_key[:-2] + "00"},
                headers={"X-MBX-APIKEY": alice},
            ) as r:
                assert (r.status, (await r.json())["code"]) == (400, -1125)
            # Closed on the second follower only: the first still serves it (per node).
            raw = await session.ws_connect(f"http://{api.followers[0]}/ws/{listen_key}")
            combined = await session.ws_connect(
                f"http://{api.followers[0]}/stream?streams={listen_key}/{symbol.lower()}@trade"
            )
            made = await _place(api, "alice", symbol, Side.SELL, 5, 10_002, "alice-ws-1")
            order_id = made["events"][0]["order_id"]
            await _place(api, "dave", symbol, Side.BUY, 3)
            reports = await receive_until(
                raw, lambda m: m["e"] == "executionReport" and m["x"] == "TRADE"
            )
            new = next(m for m in reports if m["e"] == "executionReport")
            assert set(new) >= set("eEscSofqpPFgCxXrilzLnNTtIwmMOZYQWV")
            assert (
                new["c"],
                new["S"],
                new["o"],
                new["f"],
                new["q"],
                new["p"],
                new["x"],
                new["X"],
            ) == ("alice-ws-1", "SELL", "LIMIT", "GTC", "5", "100.02", "NEW", "NEW")
            assert new["i"] == order_id and new["w"] is True
            position = next(m for m in reports if m["e"] == "outboundAccountPosition")
            assert {b["a"] for b in position["B"]} >= {symbol} and set(position["B"][0]) == {
                "a",
                "f",
                "l",
            }
            fill = reports[-1]
            assert (fill["X"], fill["l"], fill["z"], fill["L"], fill["m"], fill["t"] > 0) == (
                "PARTIALLY_FILLED",
                "3",
                "3",
                "100.02",
                True,
                True,
            )
            assert (fill["Z"], fill["Y"], fill["N"]) == ("300.06", "300.06", "USD")
            after = await receive_until(raw, lambda m: m["e"] == "outboundAccountPosition")
            balances = {b["a"]: b for b in after[-1]["B"]}
            assert set(balances) == {"USD", symbol}
            wrapped = await receive_until(combined, lambda m: m["stream"] == listen_key)
            assert wrapped[-1]["data"]["e"] == "executionReport"
            await command(
                api.leader_http,
                api.harness.token,
                Deposit("alice", "USD", 1_234, request_id=f"{symbol}-ws"),
            )
            update = (await receive_until(raw, lambda m: m["e"] == "balanceUpdate"))[-1]
            assert (update["a"], update["d"]) == ("USD", "12.34")
            await raw.close()
            await combined.close()

    asyncio.run(go())


def test_a_revoked_keys_listen_key_is_refused_everywhere(api: ApiCluster) -> None:
    async def go() -> None:
        account = await fresh_account(api, "ws-revoke")
        key = await account.key("hmac", ["read", "trade"])
        async with aiohttp.ClientSession() as session:
            listen_key = await _listen_key(session, api.followers[0], key["key_id"])
            ws = await session.ws_connect(f"http://{api.followers[1]}/ws")
            await ws.send_json({"method": "SUBSCRIBE", "params": [listen_key], "id": 1})
            assert (await receive(ws)) == {"result": None, "id": 1}
            revoked = await command(
                api.leader_http, api.harness.token, RevokeApiKey(account.name, key["key_id"])
            )
            await api.applied_everywhere(revoked["seq"])
            expired = await receive(ws, timeout_s=15)
            assert expired["e"] == "listenKeyExpired" and expired["listenKey"] == listen_key
            closing = await ws.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            for node in api.all_http:
                retry = await session.ws_connect(f"http://{node}/ws")
                await retry.send_json({"method": "SUBSCRIBE", "params": [listen_key], "id": 2})
                answer = await receive(retry)
                assert answer["error"]["code"] == 2 and answer["id"] == 2
                await retry.close()
                async with session.post(
                    f"http://{node}/api/v3/userDataStream", headers={"X-MBX-APIKEY": key["key_id"]}
                ) as r:
                    assert (r.status, (await r.json())["code"]) == (401, -2015)

    asyncio.run(go())
