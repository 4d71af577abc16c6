"""Order entry and order reads through real HTTP against a 3-node cluster."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from api.client import ClientError
from tests.api.conftest import ApiCluster

pytestmark = pytest.mark.asyncio


def cid() -> str:
    return uuid.uuid4().hex


async def test_order_placed_on_a_follower_is_led_by_the_leader_and_readable_everywhere(
    api: ApiCluster,
) -> None:
    async with api.client("alice", node=api.followers[0]) as alice:
        placed = await alice.place_order("AAPL", "buy", "7", price="180.25", client_order_id=cid())
        assert placed["status"] == "open" and placed["led_by"] == api.leader
        for node in api.all_http:
            got = await alice.order(placed["order_id"], node=node, min_seq=placed["seq"])
            assert got["price"] == "180.25" and got["leaves"] == "7" and got["status"] == "open"
            assert got["side"] == "buy" and got["type"] == "limit" and got["tif"] == "gtc"
        by_cid = await alice.order(client_order_id=placed["client_order_id"])
        assert by_cid["order_id"] == placed["order_id"]
        open_ids = [o["order_id"] for o in (await alice.orders("open"))["orders"]]
        assert placed["order_id"] in open_ids
        cancelled = await alice.cancel_order(placed["order_id"])
        assert cancelled["status"] == "cancelled"
        after = await alice.order(placed["order_id"], min_seq=cancelled["seq"])
        assert after["status"] == "cancelled" and after["cancelled_qty"] == "7"
        with pytest.raises(ClientError) as caught:
            await alice.cancel_order(placed["order_id"])
        assert (caught.value.status, caught.value.code) == (404, "unknown_order")


async def test_fills_amend_and_mass_cancel(api: ApiCluster) -> None:
    async with api.client("carol") as carol, api.client("dave", "hmac") as dave:
        maker = await carol.place_order("NVDA", "sell", "10", price="141.00", client_order_id=cid())
        taker = await dave.place_order("NVDA", "buy", "4", price="141.00", client_order_id=cid())
        assert taker["status"] == "filled" and taker["filled_qty"] == "4"
        fills = (await carol.fills(limit=1000, min_seq=taker["seq"]))["fills"]
        mine = [f for f in fills if f["order_id"] == maker["order_id"]]
        assert mine and mine[-1]["role"] == "maker" and mine[-1]["qty"] == "4"
        amended = await carol.amend_order("NVDA", maker["order_id"], qty="5", price="142.00")
        assert amended["status"] == "amended"
        order = await carol.order(maker["order_id"], min_seq=amended["seq"])
        assert order["price"] == "142.00" and order["leaves"] == "1"
        second = await carol.place_order("NVDA", "sell", "3", price="150.00", client_order_id=cid())
        swept = await carol.mass_cancel("NVDA")
        assert {maker["order_id"], second["order_id"]} <= set(swept["order_ids"])
        still_open = (await carol.orders("open", min_seq=swept["seq"]))["orders"]
        assert not [o for o in still_open if o["symbol"] == "NVDA"]


async def test_a_retried_placement_is_applied_once(api: ApiCluster) -> None:
    async with api.client("alice") as alice:
        order_cid = cid()
        first = await alice.place_order(
            "TSLA", "buy", "1", price="240.00", client_order_id=order_cid
        )
        again = await alice.place_order(
            "TSLA", "buy", "1", price="240.00", client_order_id=order_cid
        )
        assert first["retried"] is False and again["retried"] is True
        assert again["order"]["order_id"] == first["order_id"] and again["status"] == "open"
        assert (await alice.orders("open", min_seq=again["seq"]))["orders"].count(
            again["order"]
        ) <= 1
        await alice.cancel_order(first["order_id"])
        assert not [
            o
            for o in (await alice.orders("all", limit=1000))["orders"]
            if o["client_order_id"] == order_cid and o["order_id"] != first["order_id"]
        ]


async def test_engine_rejections_are_4xx_with_the_engine_code(api: ApiCluster) -> None:
    async with api.client("bob") as bob:
        before = await bob.balances()
        with pytest.raises(ClientError) as caught:
            await bob.place_order("AAPL", "buy", "1", price="500.00", client_order_id=cid())
        assert (caught.value.status, caught.value.code) == (400, "price_out_of_band")
        assert caught.value.body["status"] == "rejected" and caught.value.body["seq"] > 0
        # Amounts in the asset's decimals (USD cents: 2 places), never minor units.
        assert re.fullmatch(r"price outside \[\d+\.\d\d, \d+\.\d\d\]", caught.value.message)
        with pytest.raises(ClientError) as caught:
            await bob.place_order("AAPL", "buy", "100001", price="190.00", client_order_id=cid())
        assert caught.value.message == "quantity above maximum 100000"
        with pytest.raises(ClientError) as caught:
            await bob.place_order("AAPL", "buy", "99999", price="190.00", client_order_id=cid())
        assert caught.value.code == "insufficient_funds"
        after = await bob.balances(min_seq=caught.value.body["seq"])
        assert after["balances"] == before["balances"]


BAD_ORDERS: list[tuple[dict[str, Any], str]] = [
    (
        {"symbol": "AAPL", "side": "buy", "qty": "18446744073709551616", "price": "190.00"},
        "bad_qty",
    ),
    ({"symbol": "AAPL", "side": "buy", "qty": "1E+999999", "price": "190.00"}, "bad_qty"),
    ({"side": "buy", "qty": "1", "price": "190.00"}, "bad_symbol"),
    ({"symbol": "NOPE", "side": "buy", "qty": "1", "price": "1.00"}, "unknown_symbol"),
    ({"symbol": "AAPL", "side": "up", "qty": "1", "price": "190.00"}, "bad_side"),
    ({"symbol": "AAPL", "qty": "1", "price": "190.00"}, "bad_side"),
    ({"symbol": "AAPL", "side": "buy", "qty": 1, "price": "190.00"}, "bad_qty"),
    ({"symbol": "AAPL", "side": "buy", "qty": "1.5", "price": "190.00"}, "bad_qty"),
    ({"symbol": "AAPL", "side": "buy", "qty": "1", "price": "190.001"}, "bad_price"),
    ({"symbol": "AAPL", "side": "buy", "qty": "1", "price": "NaN"}, "bad_price"),
    ({"symbol": "AAPL", "side": "buy", "qty": "1"}, "bad_price"),
    ({"symbol": "AAPL", "side": "buy", "type": "market", "qty": "1", "price": "1.00"}, "bad_price"),
    ({"symbol": "AAPL", "side": "buy", "type": "stop", "qty": "1"}, "bad_stop_price"),
    ({"symbol": "AAPL", "side": "buy", "type": "twap", "qty": "1"}, "bad_type"),
    ({"symbol": "AAPL", "side": "buy", "qty": "1", "price": "190.00", "tif": "gtx"}, "bad_tif"),
    ({"symbol": "AAPL", "side": "buy", "qty": "1", "price": "190.00", "stp": "x"}, "bad_stp"),
    (
        {"symbol": "AAPL", "side": "buy", "qty": "1", "price": "190.00", "post_only": 1},
        "bad_post_only",
    ),
    (
        {"symbol": "AAPL", "side": "buy", "qty": "1", "price": "190.00", "colour": "red"},
        "unknown_field",
    ),
    (
        {
            "symbol": "AAPL",
            "side": "buy",
            "qty": "1",
            "price": "190.00",
            "client_order_id": "x" * 65,
        },
        "bad_client_order_id",
    ),
    (
        {
            "symbol": "AAPL",
            "side": "buy",
            "qty": "1",
            "price": "190.00",
            "client_order_id": "sig-1",
        },
        "bad_client_order_id",
    ),
    (
        {"symbol": "AAPL", "side": "buy", "qty": "1", "price": "190.00", "expire_time_ms": -1},
        "bad_expire_time_ms",
    ),
]


async def _refused_at_the_edge(api: ApiCluster, path: str, body: dict[str, Any]) -> ClientError:
    """The error a POST of `body` gets; asserts it was refused before the log: nothing
    entered it, so no sequence number was used."""
    async with api.client("alice", node=api.leader_http) as alice:
        seq_before = (await alice.cluster())["last_seq"]
        with pytest.raises(ClientError) as caught:
            await alice.request("POST", path, body=body)
        assert (await alice.cluster())["last_seq"] == seq_before
    return caught.value


@pytest.mark.parametrize(("body", "code"), BAD_ORDERS)
async def test_each_bad_order_field_is_refused_before_the_log(
    api: ApiCluster, body: dict[str, Any], code: str
) -> None:
    refused = await _refused_at_the_edge(api, "/v1/orders", body)
    assert refused.status in (400, 404) and refused.code == code


async def test_bad_json_and_unknown_orders(api: ApiCluster) -> None:
    async with api.client("alice") as alice:
        with pytest.raises(ClientError) as caught:
            await alice.request("GET", "/v1/orders/999999999")
        assert (caught.value.status, caught.value.code) == (404, "unknown_order")
        with pytest.raises(ClientError) as caught:
            await alice.request("GET", "/v1/orders", params={"status": "maybe"})
        assert caught.value.code == "bad_status"
        with pytest.raises(ClientError) as caught:
            await alice.amend_order("AAPL", 999999999, qty="1")
        assert (caught.value.status, caught.value.code) == (404, "unknown_order")


async def test_an_order_of_another_account_is_invisible(api: ApiCluster) -> None:
    async with api.client("alice") as alice, api.client("bob") as bob:
        placed = await alice.place_order("AAPL", "buy", "1", price="185.00", client_order_id=cid())
        with pytest.raises(ClientError) as caught:
            await bob.order(placed["order_id"], min_seq=placed["seq"])
        assert caught.value.code == "unknown_order"
        with pytest.raises(ClientError) as caught:
            await bob.cancel_order(placed["order_id"])
        assert caught.value.code == "unknown_order"
        await alice.cancel_order(placed["order_id"])


async def test_a_batch_of_orders_gets_one_outcome_each_and_retries_safely(api: ApiCluster) -> None:
    async with api.client("carol") as carol:
        orders = [
            {"symbol": "MSFT", "side": "buy", "qty": "1", "price": "400.00"},
            {"symbol": "MSFT", "side": "buy", "qty": "99999", "price": "400.00"},
            {"symbol": "NVDA", "side": "sell", "qty": "2", "price": "150.00"},
        ]
        first = await carol.place_orders(orders)
        outcomes = first["outcomes"]
        assert [o["status"] for o in outcomes] == ["open", "rejected", "open"]
        assert outcomes[1]["code"] == "insufficient_funds"
        body = {
            "orders": [
                {**o, "client_order_id": a["client_order_id"]}
                for o, a in zip(orders, outcomes, strict=True)
            ]
        }
        again = (await carol.write("POST", "/v1/orders/batch", body))["outcomes"]
        assert again[0]["retried"] and again[0]["order"]["order_id"] == outcomes[0]["order_id"]
        assert again[1]["status"] == "rejected"
        for outcome in (outcomes[0], outcomes[2]):
            await carol.cancel_order(outcome["order_id"])


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"orders": []}, "bad_orders"),
        (
            {"orders": [{"symbol": "AAPL", "side": "buy", "qty": "1", "price": "1"}] * 21},
            "bad_orders",
        ),
        (
            {"orders": [{"symbol": "AAPL", "side": "buy", "qty": "1", "price": "190.00"}, 5]},
            "bad_orders",
        ),
        (
            {
                "orders": [
                    {"symbol": "AAPL", "side": "buy", "qty": "1", "price": "190.00"},
                    {"symbol": "AAPL", "side": "up", "qty": "1", "price": "190.00"},
                ]
            },
            "bad_side",
        ),
    ],
)
async def test_one_bad_order_refuses_the_whole_batch(
    api: ApiCluster, body: dict[str, Any], code: str
) -> None:
    refused = await _refused_at_the_edge(api, "/v1/orders/batch", body)
    assert refused.status == 400 and refused.code == code


async def test_the_client_follows_the_leader_hint(api: ApiCluster) -> None:
    async with api.client("bob", node=api.followers[0]) as bob:
        placed = await bob.place_order("AAPL", "buy", "1", price="181.00", client_order_id=cid())
        assert placed["led_by"] == api.leader and bob.preferred == api.leader_http
        await bob.cancel_order(placed["order_id"])
