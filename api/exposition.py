"""`GET /metrics`: the node's metrics in Prometheus' text format, and the middleware that
counts every HTTP request.

Counters and histograms are kept as the work happens (cluster/metrics.py,
api/metrics.py); the node's state (term, role, indexes, lags, feeds) is read
when the scrape comes, so a gauge is never stale and costs nothing between
scrapes. Like `/v1/health`, it needs no credentials: it tells the state of the
node, nothing of any account. Serve it to the monitoring network only.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from api.admin import NODE_KEY
from api.feeds import HUB_KEY
from api.gateway import gateway
from api.metrics import HTTP_REQUESTS, HTTP_SECONDS

ROLES = ("leader", "follower", "candidate", "replica")
# A request no route matched is counted under one label, so a scan of random paths cannot
# grow the number of series.
UNMATCHED_ROUTE = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
CLIENT_CLOSED = 499

TERM = Gauge("raftex_raft_term", "The Raft term this node is in")
ROLE = Gauge("raftex_role", "1 for the role this node has now, 0 for the others", ["role"])
COMMIT_INDEX = Gauge("raftex_commit_index", "The highest log index known committed")
APPLIED_INDEX = Gauge("raftex_applied_index", "The highest log index applied to the engine")
APPLY_LAG = Gauge("raftex_apply_lag_entries", "Committed entries this node has not applied yet")
EVENT_LOG_INDEX = Gauge("raftex_event_log_index", "The highest log index in the event log")
SNAPSHOT_INDEX = Gauge("raftex_snapshot_index", "The log index of the last snapshot written")
PROJECTION_LAG_ENTRIES = Gauge(
    "raftex_projection_lag_entries", "Applied entries the history projection does not hold yet"
)
PROJECTION_LAG_MS = Gauge(
    "raftex_projection_lag_ms", "Log time between the node's last entry and the projection's"
)
FEED_CONNECTIONS = Gauge("raftex_feed_connections", "Open WebSocket feed connections")
FEED_SUBSCRIPTIONS = Gauge("raftex_feed_subscriptions", "Channel subscriptions of those feeds")
FEED_MESSAGES = Counter("raftex_feed_messages_delivered", "Feed messages sent")
# What FEED_MESSAGES has been given of the hub's count so far (one event loop runs scrapes).
_delivered_counted = [0]
UPTIME = Gauge("raftex_uptime_seconds", "Seconds since the node started")


def add_metrics_route(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)


async def metrics(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    status = node.status()
    TERM.set(status["term"])
    for role in ROLES:
        ROLE.labels(role).set(1 if status["role"] == role else 0)
    COMMIT_INDEX.set(status["commit_index"])
    APPLIED_INDEX.set(status["applied_index"])
    APPLY_LAG.set(status["lag"])
    EVENT_LOG_INDEX.set(status["event_log_index"])
    SNAPSHOT_INDEX.set(status["last_snapshot_index"])
    UPTIME.set(status["uptime_s"])
    projection = await gateway(request).projection_status()
    PROJECTION_LAG_ENTRIES.set(projection.get("lag_entries") or 0)
    PROJECTION_LAG_MS.set(projection.get("lag_ms") or 0)
    hub = request.app.get(HUB_KEY)
    if hub is not None:
        FEED_CONNECTIONS.set(len(hub.connections))
        FEED_SUBSCRIPTIONS.set(sum(len(s) for s in hub.subscribers.values()))
        # The hub counts; the counter follows it at each scrape (it only ever grows).
        FEED_MESSAGES.inc(max(0, hub.delivered - _delivered_counted[0]))
        _delivered_counted[0] = max(_delivered_counted[0], hub.delivered)
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def count_requests(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    """Outermost: it sees the status the client gets, errors turned into answers included."""
    started = time.perf_counter()
    status = 500
    timed = True
    try:
        response = await handler(request)
        status = response.status
        timed = not isinstance(response, web.WebSocketResponse)
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        # The client went away before the answer (nginx's 499), not a server error.
        status = CLIENT_CLOSED
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED_ROUTE
        method = request.method if request.method in METHODS else OTHER_METHOD
        HTTP_REQUESTS.labels(route, method, str(status)).inc()
        if timed:
            HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
