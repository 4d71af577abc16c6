"""Binance's request weight: what each caller (by IP) has spent in the current minute.

Binance limits REST callers by weight per IP per minute (heavier reads cost more)
and reports the running total on every answer in `X-MBX-USED-WEIGHT-1M`, which
client libraries read to pace themselves. A caller over the limit gets 429,
-1003 and `Retry-After` (the seconds to the next minute), and spends nothing.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from aiohttp import web

from api.binance_params import BinanceError
from api.metrics import RATE_LIMITED

USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
WINDOW_S = 60.0
CALLERS_MAX = 100_000


class RequestWeights:
    """Fixed one-minute windows per caller; `limit_per_min` 0 counts without limiting.

    Only the most recently seen CALLERS_MAX callers are kept, so a flood of new
    addresses costs bounded memory (a forgotten caller starts the minute at 0).
    """

    def __init__(self, limit_per_min: int) -> None:
        self.limit_per_min = limit_per_min
        self._used: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def spend(self, caller: str, weight: int, now_s: float | None = None) -> int:
        """Adds `weight` to the caller's minute and returns the minute's total."""
        now_s = time.time() if now_s is None else now_s
        minute = int(now_s // WINDOW_S)
        at, used = self._used.pop(caller, (minute, 0))
        if at != minute:
            used = 0
        if self.limit_per_min and used + weight > self.limit_per_min:
            self._used[caller] = (minute, used)
            RATE_LIMITED.labels("binance-weight").inc()
            retry_after_s = max(1, math.ceil((minute + 1) * WINDOW_S - now_s))
            raise BinanceError(
                429,
                -1003,
                f"Too much request weight used; current limit is {self.limit_per_min} request"
                f" weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid"
                f" polling the API.",
                headers={"Retry-After": str(retry_after_s), USED_WEIGHT_HEADER: str(used)},
            )
        used += weight
        self._used[caller] = (minute, used)
        if len(self._used) > CALLERS_MAX:
            self._used.popitem(last=False)
        return used


WEIGHTS_KEY = web.AppKey("binance_weights", RequestWeights)


def weight_of(request: web.Request) -> RequestWeights:
    return request.app[WEIGHTS_KEY]
