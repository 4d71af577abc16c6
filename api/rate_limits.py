"""Token buckets per API key and per client IP: 429 with Retry-After when empty."""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from api.errors import ApiError
from api.metrics import RATE_LIMITED

BUCKETS_MAX = 100_000


class RateLimiter:
    """`rate_per_s` tokens a second up to `burst`; one request takes one token.

    Buckets are kept for the most recently seen BUCKETS_MAX clients, so a flood
    of new addresses costs bounded memory (a forgotten client starts full).
    """

    def __init__(self, name: str, rate_per_s: float, burst: int) -> None:
        self.name = name
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, now_s: float | None = None) -> None:
        if self.rate_per_s <= 0:
            return
        now_s = time.monotonic() if now_s is None else now_s
        tokens, at = self._buckets.pop(client, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + (now_s - at) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now_s)
            RATE_LIMITED.labels(self.name).inc()
            retry_after_s = math.ceil((1.0 - tokens) / self.rate_per_s)
            raise ApiError(
                429,
                "rate_limited",
                f"{self.name} rate limit of {self.rate_per_s:g}/s exceeded; retry after"
                f" {retry_after_s} s",
                headers={"Retry-After": str(retry_after_s)},
            )
        self._buckets[client] = (tokens - 1.0, now_s)
        if len(self._buckets) > BUCKETS_MAX:
            self._buckets.popitem(last=False)
