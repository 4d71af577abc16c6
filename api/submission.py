"""Submitting commands through the log from the event loop, with few wake-ups of the loop."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from concurrent.futures import Future
from typing import Any

from api.errors import ApiError
from api.metrics import ACK_SECONDS
from cluster.batcher import NotCommitted, Overloaded
from cluster.port import NodePort

NOT_COMMITTED_MESSAGE = "not committed: retry with the same client order id"


def set_once(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


class _Wakeups:
    """Completes the loop's futures from the apply thread, one wake-up per burst.

    The apply thread settles the commands of an entry one after another; waking the
    loop for each request cost a self-pipe write on the apply thread and a loop
    iteration each (a tenth of the leader's time with one order per request). The
    first completion after a drain schedules the next drain; the others join the
    list that drain will find.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ready: list[asyncio.Future] = []
        self._scheduled = False

    def complete(self, future: asyncio.Future) -> None:
        """Any thread: `future` gets its result on the loop, soon."""
        with self._lock:
            self._ready.append(future)
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for future in ready:
            set_once(future, None)


_wakeups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wakeups] = (
    weakref.WeakKeyDictionary()
)


def _wakeups_of(loop: asyncio.AbstractEventLoop) -> _Wakeups:
    wakeups = _wakeups.get(loop)
    if wakeups is None:
        wakeups = _wakeups[loop] = _Wakeups(loop)
    return wakeups


async def submit_one(node: NodePort, command: bytes, timeout_ms: int) -> Any:
    return (await submit_all(node, [command], timeout_ms))[0]


async def submit_all(node: NodePort, commands: list[bytes], timeout_ms: int) -> list[Any]:
    """Submits commands and waits for all their outcomes.

    Waking the loop once per command (asyncio.wrap_future) cost more than the
    rest of the request under load; the futures settle on the apply thread, the
    last one to settle completes the request, and requests completed by one entry
    share a wake-up of the loop.
    """
    started = time.perf_counter()
    futures = []
    try:
        for command in commands:
            futures.append(node.submit(command, timeout_ms / 1000))
    except Overloaded as exc:
        raise ApiError(503, "overloaded", str(exc)) from None
    loop = asyncio.get_running_loop()
    wakeups = _wakeups_of(loop)
    all_done = loop.create_future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def on_done(_: Future) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            wakeups.complete(all_done)

    for future in futures:
        future.add_done_callback(on_done)
    # The batcher settles every future by its own timeout; this bound only guards
    # against an apply thread that stopped answering.
    await asyncio.wait({all_done}, timeout=timeout_ms / 1000 + 1)
    ACK_SECONDS.observe(time.perf_counter() - started)
    return [
        f.result() if f.done() else NotCommitted("no answer from the apply thread") for f in futures
    ]
