"""The attack run of issue 11, replayed against a real 3-node cluster: each finding is one
story here, and each failed on e550c8a (the attack worked) before its fix.

Slow consumers, header timeouts and idle feeds are in test_limits.py (they need nodes with
small limits); the state hash on a large state in tests/cluster/test_admin_reads.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid

import aiohttp
import pyotp
import pytest

from api.client import ClientError
from tests.api.conftest import ApiCluster, fresh_account
from tests.api.raw import binance_raw, binance_signature, raw_call

pytestmark = pytest.mark.asyncio


def _now_ms() -> int:
    return int(time.time() * 1000)


# ------------------------------------------------------------ 1. replays across nodes


async def test_a_signed_write_has_one_effect_in_the_whole_cluster(api: ApiCluster) -> None:
    """A captured mass cancel replayed to another node must not cancel the orders placed
    since (each node's own replay guard let it through: it had not seen the signature)."""
    account = await fresh_account(api, "replay")
    first_node, second_node = api.followers
    async with await account.client(["read", "trade"]) as trader:
        early = await trader.place_order("MSFT", "buy", "1", price="400.00")
        headers = trader.sign("DELETE", "/v1/orders", "symbol=MSFT", b"")
        status, done = await raw_call(first_node, "DELETE", "/v1/orders?symbol=MSFT", headers)
        assert status == 200 and done["order_ids"] == [early["order_id"]]
        later = await trader.place_order("MSFT", "buy", "1", price="401.00")
        status, replayed = await raw_call(second_node, "DELETE", "/v1/orders?symbol=MSFT", headers)
        assert (status, replayed["code"]) == (401, "replayed_request"), replayed
        order = await trader.order(later["order_id"], min_seq=replayed["seq"])
        assert order["status"] == "open"


async def test_a_binance_write_replayed_on_another_node_is_refused(api: ApiCluster) -> None:
    account = await fresh_account(api, "bn-replay")
    key = await account.key("hmac", ["read", "trade"])
    first_node, second_node = api.followers
    placed_query = (
        "symbol=MSFT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=400.00"
        f"&newClientOrderId=bn-{uuid.uuid4().hex[:8]}&timestamp={_now_ms()}"
    )
    signed = f"{placed_query}&signature={binance_signature(key['secret'], placed_query)}"
    status, placed = await binance_raw(first_node, "POST", "/api/v3/order", key["key_id"], signed)
    assert status == 200, placed
    cancel_query = f"symbol=MSFT&orderId={placed['orderId']}&timestamp={_now_ms()}"
    cancel = f"{cancel_query}&signature={binance_signature(key['secret'], cancel_query)}"
    status, _ = await binance_raw(first_node, "DELETE", "/api/v3/order", key["key_id"], cancel)
    assert status == 200
    # The same signed cancel on another node, and as a read on the first: both refused.
    status, again = await binance_raw(second_node, "DELETE", "/api/v3/order", key["key_id"], cancel)
    assert (status, again["code"]) == (400, -1022), again
    status, read = await binance_raw(first_node, "GET", "/api/v3/order", key["key_id"], cancel)
    assert (status, read["code"]) == (400, -1022), read


# ------------------------------------------------------------ 2. the query/body boundary


async def test_moving_the_query_body_boundary_cannot_change_a_signed_order(
    api: ApiCluster,
) -> None:
    account = await fresh_account(api, "resplit")
    key = await account.key("hmac", ["read", "trade"])
    first_node, second_node = api.followers
    client_id = f"bn-{uuid.uuid4().hex[:6]}77"
    text = (
        "symbol=MSFT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=400.00"
        f"&newClientOrderId={client_id}&timestamp={_now_ms()}"
    )
    signature = binance_signature(key["secret"], text)
    status, placed = await binance_raw(
        first_node, "POST", "/api/v3/order", key["key_id"], f"{text}&signature={signature}"
    )
    assert status == 200 and placed["clientOrderId"] == client_id
    cut = text.index(client_id) + len(client_id) - 1
    status, resplit = await binance_raw(
        second_node,
        "POST",
        "/api/v3/order",
        key["key_id"],
        text[:cut],
        f"{text[cut:]}&signature={signature}",
    )
    assert (status, resplit["code"]) == (400, -1104), resplit
    assert "read '8' parameter(s) but was sent '9'" in resplit["msg"]
    async with await account.client(["read"]) as reader:
        listed = (await reader.orders(status="all"))["orders"]
    assert [o["client_order_id"] for o in listed] == [client_id]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("symbol=MSFT&symbol=AAPL", -1101),
        ("symbol=MSFT&limit=5&depth=9", -1104),
        ("symbol=", -1105),
        ("symbol=MSFT&limit=5=6", -1100),
        ("symbol=MSFT&limit=1_0", -1100),
        ("symbol=MSFT&limit=%C3%A9", -1100),
    ],
)
async def test_binance_parameters_are_read_as_binance_reads_them(
    api: ApiCluster, query: str, code: int
) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"http://{api.followers[0]}/api/v3/depth?{query}"
        async with session.get(aiohttp.client.URL(url, encoded=True)) as answer:
            body = await answer.json()
    assert (answer.status, body["code"]) == (400, code), body


# ------------------------------------------------------------ 3. one TOTP code, one use


async def test_a_totp_code_authorises_one_withdrawal_in_the_whole_cluster(
    api: ApiCluster,
) -> None:
    account = await fresh_account(api, "totp")
    code = pyotp.TOTP(account.totp_secret).now()
    async with await account.client(["read", "withdraw"]) as client:
        before = await client.balances()

        async def withdraw(node: str) -> tuple[int, dict]:
            body = json.dumps(
                {"asset": "USD", "amount": "1.00", "request_id": uuid.uuid4().hex}
            ).encode()
            headers = {
                **client.sign("POST", "/v1/account/withdrawals", "", body),
                "X-Raftex-TOTP": code,
                "Content-Type": "application/json",
            }
            return await raw_call(node, "POST", "/v1/account/withdrawals", headers, body)

        answers = await asyncio.gather(*(withdraw(node) for node in api.all_http))
        done = [a for status, a in answers if status == 200]
        refused = [(status, a["code"]) for status, a in answers if status != 200]
        assert len(done) == 1, answers
        assert refused == [(401, "second_factor_used")] * 2
        after = await client.balances(min_seq=max(a["seq"] for _, a in answers))
    usd = {b["asset"]: b["available"] for b in after["balances"]}["USD"]
    assert usd == f"{float(_usd(before)) - 1:.2f}"


def _usd(balances: dict) -> str:
    return next(b["available"] for b in balances["balances"] if b["asset"] == "USD")


async def test_a_refused_withdrawal_does_not_spend_its_code(api: ApiCluster) -> None:
    account = await fresh_account(api, "spend")
    async with await account.client(["read", "withdraw"]) as client:
        code = pyotp.TOTP(account.totp_secret).now()
        for amount, expected in (("99999999.00", 400), ("1.00", 200)):
            body = json.dumps(
                {"asset": "USD", "amount": amount, "request_id": uuid.uuid4().hex}
            ).encode()
            headers = {
                **client.sign("POST", "/v1/account/withdrawals", "", body),
                "X-Raftex-TOTP": code,
                "Content-Type": "application/json",
            }
            status, answer = await raw_call(
                api.leader_http, "POST", "/v1/account/withdrawals", headers, body
            )
            assert status == expected, answer
        assert answer["status"] == "done"


# ------------------------------------------------------------ 4. security actions


async def test_a_read_only_key_cannot_replace_the_second_factor(api: ApiCluster) -> None:
    account = await fresh_account(api, "factor")
    async with await account.client(["read"]) as reader:
        with pytest.raises(ClientError) as caught:
            await reader.request("POST", "/v1/account/second-factor", second_factor=True)
        assert (caught.value.status, caught.value.code) == (403, "missing_scope")
        with pytest.raises(ClientError) as caught:
            await reader.create_key("hmac", ["read"])
        assert (caught.value.status, caught.value.code) == (403, "missing_scope")
    # The factor is unchanged: its own codes still authorise a security action.
    async with await account.client(["read", "security"]) as owner:
        made = await owner.create_key("hmac", ["read"])
        assert made["key_id"]
        replaced = await owner.request("POST", "/v1/account/second-factor", second_factor=True)
        assert replaced["totp_secret"] != account.totp_secret


# ------------------------------------------------------------ 5. WebSocket login replay


async def test_a_websocket_login_replayed_with_other_hex_case_is_refused(
    api: ApiCluster,
) -> None:
    node = api.followers[0]
    async with api.client("bob", "hmac") as bob:
        login = bob._login_message()
    replayed = {**login, "signature": login["signature"].upper()}
    async with aiohttp.ClientSession() as session:
        for message, expected in ((login, "login"), (replayed, "error")):
            async with session.ws_connect(f"ws://{node}/v1/ws") as ws:
                await ws.send_json({"op": "login", **message})
                answer = await asyncio.wait_for(ws.receive_json(), 5)
                assert answer["type"] == expected, answer
                if expected == "error":
                    assert answer["code"] == "replayed_request"
                    await ws.send_json({"op": "subscribe", "channel": "user"})
                    refused = await asyncio.wait_for(ws.receive_json(), 5)
                    assert refused["code"] == "unauthenticated"


# ------------------------------------------------------------ 6. no input reaches a 500


def _raw_http(node: str, request: bytes) -> bytes:
    host, port = node.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_a_header_that_is_not_utf8_gets_a_401_not_a_500(api: ApiCluster) -> None:
    answer = await asyncio.to_thread(
        _raw_http,
        api.followers[0],
        b"GET /v1/admin/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xe9\xe9\r\n"
        b"Connection: close\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401"), head
    assert json.loads(body)["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/orders", b'{"symbol": ' + b"[" * 2_000 + b"]" * 2_000 + b"}"),
        ("/v1/orders/batch", b'{"orders": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"),
        ("/v1/orders", b'{"symbol": "AAPL", "qty": ' + b"9" * 60_000 + b"}"),
        ("/v1/orders", b'{"symbol": "AAPL", "qty": NaN}'),
    ],
)
async def test_json_beyond_the_limits_is_a_400(api: ApiCluster, path: str, body: bytes) -> None:
    async with api.client("alice") as alice:
        headers = {
            **alice.sign("POST", path, "", body),
            "Content-Type": "application/json",
        }
    status, answer = await raw_call(api.followers[0], "POST", path, headers, body)
    assert (status, answer["code"]) == (400, "bad_json"), answer


async def test_a_websocket_message_nested_too_deep_gets_an_error_and_a_1008_close(
    api: ApiCluster,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://{api.followers[0]}/v1/ws", max_msg_size=0) as ws,
    ):
        await ws.send_str("[" * 2_000 + "]" * 2_000)
        error = await asyncio.wait_for(ws.receive(), 5)
        assert json.loads(error.data)["code"] == "bad_message"
        closed = await asyncio.wait_for(ws.receive(), 5)
        assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1008


# ------------------------------------------------------------ 9. numbers


@pytest.mark.parametrize("qty", ["1_0", " 2 ", "+4", "0005", "\u0663", "1e1", "-1"])
async def test_quantities_are_plain_ascii_decimals(api: ApiCluster, qty: str) -> None:
    async with api.client("alice") as alice:
        with pytest.raises(ClientError) as caught:
            await alice.place_order("AAPL", "buy", qty, price="180.00")
    assert (caught.value.status, caught.value.code) == (400, "bad_qty")
    key = api.key("alice", "hmac")
    text = f"symbol=AAPL&side=BUY&type=MARKET&quantity={qty}&timestamp={_now_ms()}"
    signature = binance_signature(key["secret"], text)
    status, answer = await binance_raw(
        api.followers[0],
        "POST",
        "/api/v3/order",
        key["api_key"],
        "",
        f"{text}&signature={signature}",
    )
    assert (status, answer["code"]) == (400, -1100), answer
