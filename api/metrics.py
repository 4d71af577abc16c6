"""What the gateway measures: HTTP requests, refusals by the rate limits, acknowledgement
latency, slow feed consumers cut. Instruments only (prometheus-client's process-wide
registry), so any module of api/ can count without importing the one that exports them
(api/exposition.py)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from cluster.metrics import LATENCY_BUCKETS_S

HTTP_REQUESTS = Counter(
    "raftex_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "raftex_http_request_seconds",
    "Time to answer an HTTP request (WebSocket connections are not timed), by route template",
    ["route"],
    buckets=LATENCY_BUCKETS_S,
)
ACK_SECONDS = Histogram(
    "raftex_ack_seconds",
    "From a request's commands handed to this node to their outcomes known (commit and apply)",
    buckets=LATENCY_BUCKETS_S,
)
RATE_LIMITED = Counter(
    "raftex_rate_limited", "Requests refused with 429 by a rate limit, by limit", ["limit"]
)
SLOW_CONSUMERS_CUT = Counter(
    "raftex_feed_slow_consumers_cut", "WebSocket feeds closed with 4008 for not reading"
)
