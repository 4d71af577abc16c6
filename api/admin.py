"""Admin endpoints of a node (used by `raftex admin`, `raftex up`, tests and chaos).

Authenticated with the cluster's admin token (`Authorization: Bearer ...`).
Writes that only the leader can perform are forwarded to it; the response
says which node led.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from aiohttp import web

from api.errors import ApiError
from api.feeds import HUB_KEY
from api.forwarding import FORWARD_HEADER, FORWARDER_KEY
from api.gateway import GATEWAY_KEY, last_seq
from api.json_input import JsonRefused, parse_json
from api.query import int_param, read_body
from api.submission import NOT_COMMITTED_MESSAGE, set_once, submit_all, submit_one
from cluster.batcher import NotCommitted
from cluster.config import ConfigError, Peer, split_address
from cluster.entry import member_record
from cluster.port import NodePort
from cluster.rocks import READ_LIMIT_MAX
from engine.commands import CommandDecodeError, command_from_wire, wire_to_bytes
from engine.events import EVENT_NAMES, Accepted, Rejected, event_to_dict

NODE_KEY = web.AppKey("node", NodePort)
SUBMIT_TIMEOUT_MS_DEFAULT = 5_000
SUBMIT_TIMEOUT_MS_MAX = 30_000
# A node records its hash in a forked child behind every other process of the machine:
# a million remembered client order ids take seconds of CPU each, and longer on a busy machine.
HASH_WAIT_MS_MAX = 120_000
COMMANDS_PER_REQUEST_MAX = 200
STORE_WAIT_S = 5.0


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/admin/status", status)
    app.router.add_get("/v1/admin/cluster-status", cluster_status)
    app.router.add_get("/v1/admin/members", members)
    app.router.add_post("/v1/admin/members", change_members)
    app.router.add_post("/v1/admin/snapshot", snapshot)
    app.router.add_get("/v1/admin/audit/verify", audit_verify)
    app.router.add_post("/v1/admin/hash-mark", hash_mark)
    app.router.add_get("/v1/admin/hash", hash_at)
    app.router.add_post("/v1/admin/commands", submit_command)
    app.router.add_post("/v1/admin/commands/batch", submit_batch)
    app.router.add_get("/v1/admin/events", events)


def node_of(request: web.Request) -> NodePort:
    return request.app[NODE_KEY]


def require_admin(request: web.Request) -> None:
    token = node_of(request).config.admin_token
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    # Header bytes that are not UTF-8 arrive as surrogates, which encode() refuses.
    if (
        scheme != "Bearer"
        or not given.isascii()
        or not hmac.compare_digest(given.encode(), token.encode())
    ):
        raise ApiError(401, "unauthorized", "admin endpoints need the admin token")


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = parse_json(await read_body(request, node_of(request).config.http_body_timeout_s))
    except JsonRefused as exc:
        raise ApiError(400, "bad_json", f"request body refused: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "request body must be a JSON object")
    return body


async def health(request: web.Request) -> web.Response:
    node = node_of(request)
    status = node.status()
    keys = ("id", "role", "leader", "term", "applied_index", "commit_index", "lag", "last_seq")
    projection = await request.app[GATEWAY_KEY].projection_status()
    return web.json_response({**{k: status[k] for k in keys}, "projection": projection})


async def status(request: web.Request) -> web.Response:
    require_admin(request)
    return web.json_response(await _status_of_this_node(request))


async def _status_of_this_node(request: web.Request) -> dict[str, Any]:
    projection = await request.app[GATEWAY_KEY].projection_status()
    hub = request.app.get(HUB_KEY)
    feeds = len(hub.connections) if hub is not None else 0
    return {**node_of(request).status(), "projection": projection, "feed_connections": feeds}


async def cluster_status(request: web.Request) -> web.Response:
    """Every member's admin status in one answer, asked by this node with the operator's own
    token: what the UI's cluster page shows (a page cannot call other origins)."""
    require_admin(request)
    node = node_of(request)
    authorization = request.headers.get("Authorization", "")
    forwarder = request.app[FORWARDER_KEY]

    async def one(peer: Peer) -> dict[str, Any]:
        if peer.node_id == node.node_id:
            return await _status_of_this_node(request)
        return {"id": peer.node_id, **await forwarder.status_of(peer.http, authorization)}

    peers = sorted(node.members.values(), key=lambda p: p.node_id)
    rows = await asyncio.gather(*(one(p) for p in peers))
    return web.json_response({"asked": node.node_id, "nodes": rows})


async def members(request: web.Request) -> web.Response:
    require_admin(request)
    node = node_of(request)
    rows = [
        {"id": p.node_id, "role": _role(p), "raft": p.raft, "http": p.http}
        for p in sorted(node.members.values(), key=lambda p: p.node_id)
    ]
    return web.json_response({"leader": node.leader_id(), "members": rows})


async def change_members(request: web.Request) -> web.Response:
    """Adds or removes one node: records its addresses in the log, then, for a voter, changes
    Raft membership. A read replica is only recorded: it follows the voters by itself and
    never counts for a quorum, so adding or removing one changes no majority."""
    require_admin(request)
    node = node_of(request)
    body = await json_body(request)
    if not node.is_leader():
        return await forward_to_leader(request, body)
    action = body.get("action")
    node_id = body.get("id")
    if action not in ("add", "remove") or not isinstance(node_id, str) or not node_id:
        raise ApiError(400, "bad_request", "need action add|remove and a node id")
    if action == "add":
        raft, http = _addresses_to_add(body)
        if node_id in node.members:
            raise ApiError(409, "already_member", f"{node_id} is already a member")
    else:
        peer = node.members.get(node_id)
        if peer is None:
            raise ApiError(404, "not_member", f"{node_id} is not a member")
        if node_id == node.node_id:
            raise ApiError(409, "is_leader", "transfer leadership before removing the leader")
        raft, http = peer.raft, peer.http
        if peer.voter:
            _refuse_quorum_loss(node, node_id)
    outcome = await submit_one(
        node, member_record(action, node_id, raft, http), SUBMIT_TIMEOUT_MS_DEFAULT
    )
    if isinstance(outcome, NotCommitted):
        raise ApiError(503, "not_committed", outcome.reason)
    answer = {"action": action, "id": node_id, "role": "voter" if raft else "replica"}
    if raft:
        await _change_raft_membership(node, action, raft)
    return web.json_response({**answer, "led_by": node.led_by()})


def _addresses_to_add(body: dict[str, Any]) -> tuple[str, str]:
    """(raft, http) of a node to add; a replica's raft address is empty."""
    role = body.get("role", "voter")
    raft, http = body.get("raft", ""), body.get("http")
    if role not in ("voter", "replica"):
        raise ApiError(400, "bad_request", "role is voter or replica")
    if not isinstance(http, str) or not isinstance(raft, str):
        raise ApiError(400, "bad_request", "raft and http are host:port strings")
    if role == "replica" and raft:
        raise ApiError(400, "bad_request", "a replica has no raft address")
    if role == "voter" and not raft:
        raise ApiError(400, "bad_request", "adding a voter needs its raft and http addresses")
    for address in (raft, http) if raft else (http,):
        try:
            split_address(address)
        except ConfigError as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
    return raft, http


async def _change_raft_membership(node: NodePort, action: str, raft: str) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def on_change(result: Any, error: Any) -> None:
        loop.call_soon_threadsafe(set_once, done, error)

    node.change_membership(action, raft, on_change)
    try:
        error = await asyncio.wait_for(done, SUBMIT_TIMEOUT_MS_DEFAULT / 1000)
    except TimeoutError:
        raise ApiError(503, "not_committed", "membership change not confirmed in time") from None
    if error:
        raise ApiError(409, "membership_refused", f"raft refused the change (reason {error})")


def _role(peer: Peer) -> str:
    return "voter" if peer.voter else "replica"


def _refuse_quorum_loss(node: NodePort, removing: str) -> None:
    """Removing a node must leave a majority of the new membership reachable."""
    remaining = [p for p in node.members.values() if p.node_id != removing and p.voter]
    alive = sum(1 for p in remaining if p.node_id == node.node_id or node.peer_connected(p.raft))
    if alive <= len(remaining) // 2:
        raise ApiError(
            409,
            "would_lose_quorum",
            f"only {alive} of the {len(remaining)} remaining nodes are reachable",
        )


async def snapshot(request: web.Request) -> web.Response:
    require_admin(request)
    node = node_of(request)
    node.compact_log()
    return web.json_response({"requested": True, "last_snapshot_index": node.last_snapshot_index})


async def audit_verify(request: web.Request) -> web.Response:
    require_admin(request)
    node = node_of(request)
    await asyncio.to_thread(node.wait_for_event_log, STORE_WAIT_S)
    report = await asyncio.to_thread(node.event_log.verify_audit)
    return web.json_response(
        {
            "id": node.node_id,
            "ok": report.ok,
            "records": report.records,
            "first_bad": report.first_bad,
            "reason": report.reason,
        }
    )


async def events(request: web.Request) -> web.Response:
    """This node's event history after `since`, ascending: feeds and checkers page through it."""
    require_admin(request)
    node = node_of(request)
    since = int_param(request, "since", 0, 0, 2**63 - 1)
    limit = int_param(request, "limit", READ_LIMIT_MAX, 1, READ_LIMIT_MAX)
    await asyncio.to_thread(node.wait_for_event_log, STORE_WAIT_S)
    rows = await asyncio.to_thread(node.event_log.events_since, since, limit)
    return web.json_response(
        {
            "id": node.node_id,
            "events": [event_to_dict(e) for e in rows],
            "last_seq": node.view.last_seq,
        }
    )


async def hash_mark(request: web.Request) -> web.Response:
    """Appends an entry after which every node records its state hash; returns its index."""
    require_admin(request)
    node = node_of(request)
    if not node.is_leader():
        return await forward_to_leader(request, {})
    result = await asyncio.to_thread(node.request_hash_mark, SUBMIT_TIMEOUT_MS_DEFAULT / 1000)
    if isinstance(result, NotCommitted):
        raise ApiError(503, "not_committed", result.reason)
    return web.json_response({"index": result, "led_by": node.led_by()})


async def hash_at(request: web.Request) -> web.Response:
    require_admin(request)
    node = node_of(request)
    if "index" not in request.query:
        raise ApiError(400, "bad_index", "index is required: the log index of a hash mark")
    index = int_param(request, "index", 0, 0, 2**63 - 1)
    timeout_ms = int_param(request, "timeout_ms", SUBMIT_TIMEOUT_MS_DEFAULT, 0, HASH_WAIT_MS_MAX)
    digest = await asyncio.to_thread(node.hash_at, index, timeout_ms / 1000)
    if digest is None:
        raise ApiError(409, "behind", f"no hash recorded at index {index} on {node.node_id}")
    return web.json_response({"id": node.node_id, "index": index, "state_hash": digest})


def _timeout_ms(body: dict[str, Any]) -> int:
    timeout_ms = body.get("timeout_ms", SUBMIT_TIMEOUT_MS_DEFAULT)
    if type(timeout_ms) is not int or not 0 < timeout_ms <= SUBMIT_TIMEOUT_MS_MAX:
        raise ApiError(400, "bad_timeout", f"timeout_ms must be 1..{SUBMIT_TIMEOUT_MS_MAX}")
    return timeout_ms


def _checked(wire: Any, where: str = "") -> bytes:
    """A command's bytes once it is checked: bad commands never enter the log, they are
    refused here with the field at fault."""
    try:
        command_from_wire(wire)
        return wire_to_bytes(wire)
    except CommandDecodeError as exc:
        raise ApiError(400, "bad_command", f"{where}{exc}") from None


def _outcome(events: list[Any], node: NodePort) -> dict[str, Any]:
    return {"events": [event_to_dict(e) for e in events], "seq": last_seq(events, node)}


def _summary(events: list[Any], node: NodePort) -> dict[str, Any]:
    """The first event says accepted or rejected; the rest are counted, not sent."""
    first = events[0] if events else None
    row: dict[str, Any] = {
        "seq": events[-1].seq if events else node.view.last_seq,
        "result": EVENT_NAMES[type(first)] if first is not None else "none",
        "event_count": len(events),
    }
    if isinstance(first, Accepted):
        row["order_id"] = first.order_id
    elif isinstance(first, Rejected):
        row["code"] = first.code
    return row


async def submit_command(request: web.Request) -> web.Response:
    """Submits one engine command (wire form) through the log and returns its events."""
    require_admin(request)
    node = node_of(request)
    body = await json_body(request)
    timeout_ms = _timeout_ms(body)
    command = _checked(body.get("command"))
    if not node.is_leader():
        return await forward_to_leader(request, body)
    outcome = await submit_one(node, command, timeout_ms)
    if isinstance(outcome, NotCommitted):
        raise ApiError(503, "not_committed", f"{NOT_COMMITTED_MESSAGE} ({outcome.reason})")
    return web.json_response({**_outcome(outcome, node), "led_by": node.led_by()})


async def submit_batch(request: web.Request) -> web.Response:
    """Up to COMMANDS_PER_REQUEST_MAX commands, each with its own outcome (bots and benches).

    The commands join the node's batcher one by one, so they may share log entries
    with other clients' commands; a command that did not commit says so in its slot.
    """
    require_admin(request)
    node = node_of(request)
    body = await json_body(request)
    timeout_ms = _timeout_ms(body)
    wires = body.get("commands")
    if not isinstance(wires, list) or not 0 < len(wires) <= COMMANDS_PER_REQUEST_MAX:
        raise ApiError(
            400, "bad_batch", f"commands must be a list of 1..{COMMANDS_PER_REQUEST_MAX}"
        )
    detail = body.get("detail", "events")
    if detail not in ("events", "summary"):
        raise ApiError(400, "bad_detail", "detail must be events or summary")
    commands = [_checked(wire, f"commands[{position}]: ") for position, wire in enumerate(wires)]
    if not node.is_leader():
        return await forward_to_leader(request, body)
    outcomes = await submit_all(node, commands, timeout_ms)
    describe = _outcome if detail == "events" else _summary
    rows = [
        {"code": "not_committed", "message": f"{NOT_COMMITTED_MESSAGE} ({o.reason})"}
        if isinstance(o, NotCommitted)
        else describe(o, node)
        for o in outcomes
    ]
    return web.json_response({"outcomes": rows, "led_by": node.led_by()})


async def forward_to_leader(request: web.Request, body: dict[str, Any]) -> web.Response:
    """Sends a leader-only write to the leader, once; a loop or no leader is a 503."""
    status, payload = await request.app[FORWARDER_KEY].post(
        request.path_qs,
        body,
        request.headers.get("Authorization", ""),
        forwarded=bool(request.headers.get(FORWARD_HEADER)),
    )
    return web.Response(body=payload, status=status, content_type="application/json")
