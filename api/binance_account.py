"""Binance's account reads: balances and rates (`account`), per-symbol commission rates
(`account/commission`) and the account's own trades (`myTrades`)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from api.amounts import from_units
from api.binance_orders import rate_text
from api.binance_params import BinanceError
from api.binance_request import ID_MAX, int_param, signed_request, symbol_of, time_window
from api.gateway import Gateway
from cluster.rocks import READ_LIMIT_MAX
from engine.codes import Scope, Side

TRADES_LIMIT_DEFAULT = 500
MY_TRADES_SPAN_MS_MAX = 86_400_000
ACCOUNT_PARAMS = frozenset({"omitZeroBalances"})
COMMISSION_PARAMS = frozenset({"symbol"})
MY_TRADES_PARAMS = frozenset({"symbol", "orderId", "fromId", "startTime", "endTime", "limit"})


async def account(request: web.Request) -> web.Response:
    gw, principal, params = await signed_request(request, Scope.READ, ACCOUNT_PARAMS)
    omit_zero = params.get("omitZeroBalances", "false")
    if omit_zero not in ("true", "false"):
        raise BinanceError(400, -1102, "Parameter 'omitZeroBalances' must be true or false.")
    view = gw.node.view
    assets = view.balances.get(principal.account, {})
    fee_bps = [
        (inst.maker_fee_bps, inst.taker_fee_bps) for _, inst in sorted(view.instruments.items())
    ]
    maker, taker = max(fee_bps, default=(0, 0))
    return web.json_response(
        {
            "makerCommission": maker,
            "takerCommission": taker,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": rate_text(maker),
                "taker": rate_text(taker),
                "buyer": rate_text(0),
                "seller": rate_text(0),
            },
            "canTrade": bool(principal.scopes & Scope.TRADE),
            "canWithdraw": bool(principal.scopes & Scope.WITHDRAW),
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": view.log_time_ms,
            "accountType": "SPOT",
            "balances": [
                {
                    "asset": asset,
                    "free": _amount(gw, asset, assets[asset][0]),
                    "locked": _amount(gw, asset, assets[asset][1]),
                }
                for asset in sorted(assets)
                if omit_zero == "false" or assets[asset][0] or assets[asset][1]
            ],
            "permissions": ["SPOT"],
            "uid": 0,
        }
    )


def _amount(gw: Gateway, asset: str, units: int) -> str:
    return from_units(units, gw.decimals(asset))


async def commission(request: web.Request) -> web.Response:
    """The symbol's rates for this account: raftex has no tax or discount, so the standard
    rates are the maker and taker fees of the instrument."""
    gw, _, params = await signed_request(request, Scope.READ, COMMISSION_PARAMS)
    inst = symbol_of(gw, params)
    zero = rate_text(0)
    return web.json_response(
        {
            "symbol": inst.symbol,
            "standardCommission": {
                "maker": rate_text(inst.maker_fee_bps),
                "taker": rate_text(inst.taker_fee_bps),
                "buyer": zero,
                "seller": zero,
            },
            "specialCommission": {"maker": zero, "taker": zero, "buyer": zero, "seller": zero},
            "taxCommission": {"maker": zero, "taker": zero, "buyer": zero, "seller": zero},
            "discount": {
                "enabledForAccount": False,
                "enabledForSymbol": False,
                "discountAsset": None,
                "discount": zero,
            },
        }
    )


async def trade_fee(request: web.Request) -> web.Response:
    """Binance's wallet view of the fees (`/sapi/v1/asset/tradeFee`), per symbol: what
    ccxt's fetch_trading_fee(s) reads for spot."""
    gw, _, params = await signed_request(request, Scope.READ, COMMISSION_PARAMS)
    chosen = (
        [symbol_of(gw, params)]
        if "symbol" in params
        else [inst for _, inst in sorted(gw.node.view.instruments.items())]
    )
    return web.json_response(
        [
            {
                "symbol": inst.symbol,
                "makerCommission": rate_text(inst.maker_fee_bps),
                "takerCommission": rate_text(inst.taker_fee_bps),
            }
            for inst in chosen
        ]
    )


async def my_trades(request: web.Request) -> web.Response:
    """The account's fills in the symbol from `fromId` on, or within [startTime, endTime]
    (at most a day apart), or of one `orderId`, oldest first, up to `limit`."""
    gw, principal, params = await signed_request(request, Scope.READ, MY_TRADES_PARAMS)
    inst = symbol_of(gw, params)
    limit = int_param(params, "limit", TRADES_LIMIT_DEFAULT, 1, READ_LIMIT_MAX) or 1
    from_id = int_param(params, "fromId", 1, 1, ID_MAX) or 1
    order_id = int_param(params, "orderId", 0, 1, ID_MAX) or 0
    start, end = time_window(params, MY_TRADES_SPAN_MS_MAX)
    if "fromId" in params and ("startTime" in params or "endTime" in params):
        raise BinanceError(
            400, -1128, "Combination of optional parameters invalid: fromId with a time window."
        )
    history = await gw.history_store()
    if "startTime" in params:
        # Trade ids rise with time across symbols, so the symbol's first trade at the start
        # bounds the account's fills there.
        from_id = await asyncio.to_thread(history.first_trade_at, inst.symbol, start)
        if not from_id:
            return web.json_response([])
    rows = await asyncio.to_thread(history.fills_of, principal.account, from_id - 1, READ_LIMIT_MAX)
    rows = [
        r
        for r in rows
        if r["symbol"] == inst.symbol
        and r["ts_ms"] <= end
        and (not order_id or r["order_id"] == order_id)
    ][:limit]
    return web.json_response(
        [
            {
                "symbol": inst.symbol,
                "id": r["trade_id"],
                "orderId": r["order_id"],
                "orderListId": -1,
                "price": gw.price_text(inst, r["price"]),
                "qty": gw.qty_text(inst, r["qty"]),
                "quoteQty": gw.quote_text(inst, r["price"] * r["qty"]),
                "commission": gw.quote_text(inst, r["fee"]),
                "commissionAsset": inst.quote,
                "time": r["ts_ms"],
                "isBuyer": r["side"] == Side.BUY,
                "isMaker": r["role"] == "maker",
                "isBestMatch": True,
            }
            for r in rows
        ]
    )
