"""The node process: Raft node, store and HTTP gateway, with an explicit lifetime.

Started by `raftex node`. Stops cleanly on SIGTERM or SIGINT: HTTP first (no
new requests), then the batcher and Raft, then the store.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import aiohttp
from aiohttp import web

from api.admin import NODE_KEY, SESSION_KEY, add_admin_routes
from api.errors import error_middleware
from cluster.config import NodeConfig, split_address
from cluster.gc_policy import tune_gc_for_apply
from cluster.journal import FsyncPolicy, JournalError, install_durable_journal
from cluster.node import ExchangeNode
from cluster.store import Store, StoreError

log = logging.getLogger("raftex.server")

REQUEST_BODY_BYTES_MAX = 64 * 1024
FORWARD_TIMEOUT_S = 10.0


def build_app(node: ExchangeNode) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=REQUEST_BODY_BYTES_MAX)
    app[NODE_KEY] = node
    add_admin_routes(app)

    async def session_context(app: web.Application):  # type: ignore[no-untyped-def]
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            app[SESSION_KEY] = session
            yield

    app.cleanup_ctx.append(session_context)
    return app


async def serve(config: NodeConfig) -> None:
    install_durable_journal(FsyncPolicy(config.fsync))
    try:
        # The Raft journal is the durability source; the store is replayed above its
        # applied index after a crash, so its own writes need not wait for fsync.
        store = Store.open(config.data_dir / "store", fsync=False)
    except StoreError as exc:
        raise SystemExit(f"raftex node: {exc}") from None
    try:
        node = ExchangeNode(config, store)
    except JournalError as exc:
        store.close()
        raise SystemExit(f"raftex node: refusing to start: {exc}") from None
    tune_gc_for_apply()
    runner = web.AppRunner(build_app(node), access_log=None)
    await runner.setup()
    host, port = split_address(config.http)
    site = web.TCPSite(runner, host, port)
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
        await asyncio.to_thread(node.close)
        log.info("event=node_stopped node=%s", config.node_id)


def run_node(config: NodeConfig) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s level=%(levelname)s node={config.node_id} logger=%(name)s %(message)s",
    )
    asyncio.run(serve(config))
    return 0
