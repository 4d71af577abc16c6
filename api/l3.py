"""Order-by-order (L3) books: read on the apply thread, shown without owners."""

from __future__ import annotations

import asyncio
from typing import Any

from api.errors import ApiError
from api.gateway import Gateway

ENGINE_READ_TIMEOUT_S = 5.0


def l3_json(gw: Gateway, symbol: str, seq: int, bids: list, asks: list) -> dict[str, Any]:
    inst = gw.instrument(symbol)

    def side(rows: list) -> list[list[Any]]:
        return [
            [gw.price_text(inst, price), [[oid, gw.qty_text(inst, q)] for oid, q in queue]]
            for price, queue in rows
        ]

    return {"symbol": symbol, "seq": seq, "bids": side(bids), "asks": side(asks)}


async def read_l3(gw: Gateway, symbol: str, levels: int) -> tuple[int, list, list]:
    """(seq, bids, asks) read on the apply thread, so the book and its seq agree."""

    def read(ex: Any) -> tuple[int, list, list]:
        bids, asks = ex.depth_l3(symbol, levels)
        return ex.seq, bids, asks

    try:
        return await asyncio.wait_for(
            asyncio.wrap_future(gw.node.read_engine(read)), ENGINE_READ_TIMEOUT_S
        )
    except TimeoutError:
        raise ApiError(503, "busy", "the apply thread did not answer in time; retry") from None
