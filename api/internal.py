"""The leader's end of the node channel: clients' writes a follower forwarded, as bytes.

Only cluster members can call it (api/node_channel.py). The commands were checked
and encoded at the edge that took them; the leader submits them as they are and
answers with their events, so nothing is decoded twice on the way.
"""

from __future__ import annotations

from aiohttp import web

from api.errors import ApiError
from api.gateway import gateway, last_seq
from api.node_channel import (
    COMMANDS_PATH,
    CONTENT_TYPE,
    check_node_request,
    pack_outcomes,
    unpack_commands,
)
from api.query import read_body
from api.submission import NOT_COMMITTED_MESSAGE, submit_all
from cluster.batcher import NotCommitted

COMMANDS_PER_REQUEST_MAX = 512
TIMEOUT_MS_MAX = 30_000


def add_internal_routes(app: web.Application) -> None:
    app.router.add_post(COMMANDS_PATH, commands)


async def commands(request: web.Request) -> web.Response:
    gw = gateway(request)
    node = gw.node
    body = await read_body(request, node.config.http_body_timeout_s)
    check_node_request(request, gw.node_key, body)
    timeout_ms, encoded = unpack_commands(body)
    if not 0 < timeout_ms <= TIMEOUT_MS_MAX or not 0 < len(encoded) <= COMMANDS_PER_REQUEST_MAX:
        raise ApiError(400, "bad_request", "internal commands: timeout or count out of range")
    if not node.is_leader():
        raise ApiError(503, "not_committed", f"not the leader; {NOT_COMMITTED_MESSAGE}")
    outcomes = await submit_all(node, encoded, timeout_ms)
    rows = [
        outcome.reason if isinstance(outcome, NotCommitted) else (last_seq(outcome, node), outcome)
        for outcome in outcomes
    ]
    return web.Response(body=pack_outcomes(node.led_by(), rows), content_type=CONTENT_TYPE)
