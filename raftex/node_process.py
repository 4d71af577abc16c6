"""The node process: Raft node, event log, HTTP gateway and, beside it, its projector.

Started by `raftex node`. Stops cleanly on SIGTERM or SIGINT: HTTP first (no
new requests), then the projector, then the batcher and Raft, then the event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import aiohttp
from aiohttp import web

from api.accounts import add_account_routes
from api.admin import NODE_KEY, add_admin_routes
from api.admin_checks import add_admin_check_routes
from api.backups import add_backup_routes
from api.binance import add_binance_routes
from api.binance_request import BINANCE_PATH_PREFIXES, error_response
from api.binance_streams import add_binance_stream_routes, attach_binance_streams
from api.candles import CandleBook
from api.errors import ApiError, error_middleware
from api.exposition import add_metrics_route, count_requests
from api.feeds import add_feed_routes, feed_hub
from api.forwarding import FORWARDER_KEY, Forwarder
from api.gateway import GATEWAY_KEY, Gateway
from api.internal import add_internal_routes
from api.leader_watch import LeaderWatch
from api.node_channel import INTERNAL_PATH_PREFIX, node_key
from api.openapi import add_openapi_route
from api.orders import add_order_routes
from api.public import add_public_routes
from api.rate_limits import RateLimiter
from api.sealing import Sealer
from api.ui import add_ui_routes
from cluster.config import EXIT_KEY, NodeConfig, split_address
from cluster.dump_transfer import install_durable_dump_transfer
from cluster.event_log import EventLog
from cluster.gc_policy import tune_gc_for_apply
from cluster.identity import IdentityError, claim_data_dir
from cluster.journal import FsyncPolicy, JournalError, JournalKeyError, install_durable_journal
from cluster.node import ExchangeNode, event_log_dir
from cluster.snapshot_file import verify_snapshot_file
from cluster.store_errors import StoreError, StoreKeyError
from cluster.tls import client_context, server_context
from projection.projector import projection_dir
from projection.reader import HistoryReader, ProjectionUnavailable
from raftex.projector_child import projector_child

log = logging.getLogger("raftex.server")

REQUEST_BODY_BYTES_MAX = 64 * 1024
FORWARD_TIMEOUT_S = 10.0
RATE_BURST_SECONDS = 2
CANDLE_SEED_TRADES_MAX = 100_000
CANDLE_SEED_PAGE = 1_000
CANDLE_SEED_WAIT_S = 5.0
ADMIN_PATH_PREFIX = "/v1/admin/"


def build_app(node: ExchangeNode, history: HistoryReader | None) -> web.Application:
    """`history`: the projection this node reads histories from (None: it has none)."""
    config = node.config
    gw = Gateway(
        node=node,
        history=history,
        node_key=node_key(config.secret),
        sealer=Sealer(config.secret),
        ip_limits=RateLimiter(
            "per-IP", config.rate_limit_ip_per_s, _burst(config.rate_limit_ip_per_s)
        ),
        key_limits=RateLimiter(
            "per-key", config.rate_limit_key_per_s, _burst(config.rate_limit_key_per_s)
        ),
        candles=CandleBook(),
    )

    in_flight = [0]

    @web.middleware
    async def client_limits(
        request: web.Request, handler: web.RequestHandler
    ) -> web.StreamResponse:
        # Nodes call each other on the admin and internal paths; only clients are limited.
        if request.path.startswith((ADMIN_PATH_PREFIX, INTERNAL_PATH_PREFIX)):
            return await handler(request)
        # Binance's paths are limited by request weight (api/binance_weight.py) and refused
        # in Binance's error shape.
        binance = request.path.startswith(BINANCE_PATH_PREFIXES)
        if not binance:
            gw.ip_limits.take(request.remote or "?")
        if in_flight[0] >= config.requests_in_flight_max:
            busy = ApiError(
                503,
                "busy",
                f"this node is handling {config.requests_in_flight_max} requests; retry",
                headers={"Retry-After": "1"},
            )
            if binance:
                return error_response(busy)
            raise busy
        in_flight[0] += 1
        try:
            return await handler(request)
        finally:
            in_flight[0] -= 1

    app = web.Application(
        middlewares=[count_requests, error_middleware, client_limits],
        client_max_size=REQUEST_BODY_BYTES_MAX,
    )
    app[NODE_KEY] = node
    app[GATEWAY_KEY] = gw
    add_routes(app, weight_per_min=int(config.rate_limit_ip_per_s * 60))

    async def session_context(app: web.Application):  # type: ignore[no-untyped-def]
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
        # Nodes call each other over HTTPS when TLS is on, trusting the cluster's certificate.
        connector = aiohttp.TCPConnector(
            ssl=client_context(config.tls_cert) if config.tls_cert is not None else False
        )
        async with (
            aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
            LeaderWatch(node.leader_http).running() as watch,
        ):
            app[FORWARDER_KEY] = gw.forwarder = Forwarder(node, session, watch, gw.node_key)
            yield
            gw.forwarder = None

    async def candles_context(app: web.Application):  # type: ignore[no-untyped-def]
        unsubscribe = node.subscribe(gw.candles.on_entry)
        await asyncio.to_thread(_seed_candles, node, history, gw.candles)
        yield
        unsubscribe()

    async def feeds_context(app: web.Application):  # type: ignore[no-untyped-def]
        async with feed_hub(app, gw) as hub:
            attach_binance_streams(app, hub)
            yield

    app.cleanup_ctx.append(session_context)
    app.cleanup_ctx.append(candles_context)
    app.cleanup_ctx.append(feeds_context)
    if config.fix_port:
        # Imported only here: a node without the `fix` extra (quickfix) runs without FIX.
        from api.fix_acceptor import fix_acceptor  # noqa: PLC0415 - optional: quickfix

        async def fix_context(app: web.Application):  # type: ignore[no-untyped-def]
            async with fix_acceptor(gw, config):
                yield

        # After the forwarder's context: FIX writes on a follower go through it, and
        # cleanup runs in reverse, so FIX stops first.
        app.cleanup_ctx.append(fix_context)
    return app


def add_routes(app: web.Application, weight_per_min: int) -> None:
    """Every route a node serves; `weight_per_min` is a Binance caller's request weight a
    minute (the per-IP rate's minute)."""
    add_admin_routes(app)
    add_metrics_route(app)
    add_admin_check_routes(app)
    add_backup_routes(app)
    add_public_routes(app)
    add_order_routes(app)
    add_account_routes(app)
    add_feed_routes(app)
    add_binance_stream_routes(app)
    add_binance_routes(app, weight_per_min)
    add_internal_routes(app)
    add_openapi_route(app)
    add_ui_routes(app)


def _burst(rate_per_s: float) -> int:
    return max(1, int(rate_per_s * RATE_BURST_SECONDS))


def _seed_candles(node: ExchangeNode, history: HistoryReader | None, candles: CandleBook) -> None:
    """The last day of projected trades (bounded), so candles survive a restart; none when
    this node has no projection (yet). The candle book holds live trades until then."""
    candles.seed(_recent_trades(node, history) if history is not None else [])


def _recent_trades(node: ExchangeNode, history: HistoryReader) -> list[dict]:
    try:
        store = history.at_least(node.applied_index, CANDLE_SEED_WAIT_S)
    except ProjectionUnavailable:
        return []
    if store is None:
        log.warning("event=candles_seed_partial reason=projection_behind")
        store = history.at_least(0, 0)
    if store is None:
        return []
    horizon_ms = node.view.log_time_ms - 86_400_000
    trades: list[dict] = []
    for symbol in sorted(node.view.instruments):
        before = 0
        while len(trades) < CANDLE_SEED_TRADES_MAX:
            page = store.trades(symbol, CANDLE_SEED_PAGE, before)
            trades.extend(row for row in page if row["ts_ms"] > horizon_ms)
            if len(page) < CANDLE_SEED_PAGE or page[-1]["ts_ms"] <= horizon_ms:
                break
            before = page[-1]["trade_id"]
    return trades


async def serve(config: NodeConfig) -> None:
    try:
        claim_data_dir(config.data_dir, config.secret)
    except (IdentityError, OSError) as exc:
        print(f"raftex node: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_KEY) from None
    install_durable_journal(FsyncPolicy(config.fsync), config.data_key)
    install_durable_dump_transfer(lambda dump: verify_snapshot_file(dump, config.data_key))
    try:
        # The Raft journal is the durability source; the event log is replayed above its
        # applied index after a crash, so its own writes need not wait for fsync.
        event_log = EventLog.open(event_log_dir(config.data_dir), data_key=config.data_key)
    except StoreError as exc:
        print(f"raftex node: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_KEY if isinstance(exc, StoreKeyError) else 1) from None
    try:
        node = ExchangeNode(config, event_log)
    except JournalError as exc:
        event_log.close()
        print(f"raftex node: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_KEY if isinstance(exc, JournalKeyError) else 1) from None
    tune_gc_for_apply()
    history = (
        HistoryReader(
            projection_dir(config.data_dir),
            config.data_dir / "projection-reader",
            config.data_key,
        )
        if config.projection
        else None
    )
    async with contextlib.AsyncExitStack() as stack:
        if config.projection:
            await stack.enter_async_context(projector_child(config))
        await _serve_http(config, node, history)
    if history is not None:
        history.close()
    await asyncio.to_thread(node.close)
    log.info("event=node_stopped node=%s", config.node_id)


async def _serve_http(
    config: NodeConfig, node: ExchangeNode, history: HistoryReader | None
) -> None:
    runner = web.AppRunner(
        build_app(node, history), access_log=None, keepalive_timeout=config.http_idle_timeout_s
    )
    await runner.setup()
    host, port = split_address(config.http)
    ssl_context = (
        server_context(config.tls_cert, config.tls_key)
        if config.tls_cert is not None and config.tls_key is not None
        else None
    )
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
        log.info(
            "event=node_started node=%s raft=%s http=%s", config.node_id, config.raft, config.http
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def run_node(config: NodeConfig) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s level=%(levelname)s node={config.node_id} logger=%(name)s %(message)s",
    )
    asyncio.run(serve(config))
    return 0
