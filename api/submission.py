"""Submitting commands through the log from the event loop: one wake-up per request."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any

from api.errors import ApiError
from cluster.batcher import NotCommitted, Overloaded, UnencodableCommand
from cluster.node import ExchangeNode

NOT_COMMITTED_MESSAGE = "not committed: retry with the same client order id"


def set_once(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


async def submit_one(node: ExchangeNode, wire: list[Any], timeout_ms: int) -> Any:
    return (await submit_all(node, [wire], timeout_ms))[0]


async def submit_all(node: ExchangeNode, wires: list[list[Any]], timeout_ms: int) -> list[Any]:
    """Submits commands and waits for all their outcomes with one wake-up of the event loop.

    Waking the loop once per command (asyncio.wrap_future) cost more than the
    rest of the request under load; the futures settle on the apply thread and
    only the last one to settle calls into the loop.
    """
    futures = []
    try:
        for wire in wires:
            futures.append(node.submit(wire, timeout_ms / 1000))
    except Overloaded as exc:
        raise ApiError(503, "overloaded", str(exc)) from None
    except UnencodableCommand as exc:
        raise ApiError(400, "bad_command", str(exc)) from None
    loop = asyncio.get_running_loop()
    all_done = loop.create_future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def on_done(_: Future) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            loop.call_soon_threadsafe(set_once, all_done, None)

    for future in futures:
        future.add_done_callback(on_done)
    # The batcher settles every future by its own timeout; this bound only guards
    # against an apply thread that stopped answering.
    await asyncio.wait({all_done}, timeout=timeout_ms / 1000 + 1)
    return [
        f.result() if f.done() else NotCommitted("no answer from the apply thread") for f in futures
    ]
