"""Admin endpoints that checkers use: audit records, live invariants, and fault hooks.

`/v1/admin/faults` exists only on nodes started with `fault_hooks = true`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from api.admin import NODE_KEY, STORE_WAIT_S, json_body, require_admin
from api.errors import ApiError
from api.query import int_param
from cluster.rocks import READ_LIMIT_MAX
from engine.invariants import asset_totals, invariant_problems

ENGINE_READ_TIMEOUT_S = 10.0
CLOCK_OFFSET_MS_MAX = 24 * 3_600_000


def add_admin_check_routes(app: web.Application) -> None:
    app.router.add_get("/v1/admin/audit", audit_records)
    app.router.add_get("/v1/admin/invariants", invariants)
    app.router.add_get("/v1/admin/faults", faults)
    app.router.add_post("/v1/admin/faults", set_faults)


async def audit_records(request: web.Request) -> web.Response:
    """Audit records numbered above `after`, ascending: the commands this node applied."""
    require_admin(request)
    node = request.app[NODE_KEY]
    after = int_param(request, "after", 0, 0, 2**63)
    limit = int_param(request, "limit", READ_LIMIT_MAX, 1, READ_LIMIT_MAX)
    await asyncio.to_thread(node.wait_for_event_log, STORE_WAIT_S)
    rows = await asyncio.to_thread(node.event_log.audit_records, after, limit)
    return web.json_response({"id": node.node_id, "records": rows})


async def invariants(request: web.Request) -> web.Response:
    """The engine's invariants, checked on a copy of the engine taken between two entries
    (a forked child: the whole state is walked, which must not hold up the apply thread)."""
    require_admin(request)
    node = request.app[NODE_KEY]

    def check(ex: Any) -> tuple[int, list[str], dict[str, int]]:
        return ex.seq, invariant_problems(ex), asset_totals(ex)

    try:
        seq, problems, totals = await asyncio.wait_for(
            asyncio.wrap_future(node.read_engine_copy(check)), ENGINE_READ_TIMEOUT_S
        )
    except TimeoutError:
        raise ApiError(503, "busy", "the check of the engine did not finish in time") from None
    return web.json_response(
        {"id": node.node_id, "seq": seq, "ok": not problems, "problems": problems, "totals": totals}
    )


def _hooks(request: web.Request) -> Any:
    require_admin(request)
    node = request.app[NODE_KEY]
    if not node.config.fault_hooks:
        raise ApiError(404, "not_found", "fault hooks are off on this node")
    return node


def _fault_state(node: Any) -> dict[str, Any]:
    raft_to_id = {p.raft: p.node_id for p in node.members.values()}
    blocked = sorted(raft_to_id.get(raft, raft) for raft in node.faults.blocked_raft)
    return {
        "id": node.node_id,
        "blocked": blocked,
        "clock_offset_ms": node.faults.clock_offset_ms,
        "loss": node.faults.loss,
    }


async def faults(request: web.Request) -> web.Response:
    return web.json_response(_fault_state(_hooks(request)))


async def set_faults(request: web.Request) -> web.Response:
    """`blocked`: node ids whose Raft traffic this node loses; `clock_offset_ms`: skew;
    `loss`: the share of its Raft messages lost at random. What is not given is reset."""
    node = _hooks(request)
    body = await json_body(request)
    blocked = body.get("blocked", [])
    if not isinstance(blocked, list) or not all(isinstance(b, str) for b in blocked):
        raise ApiError(400, "bad_blocked", "blocked is a list of node ids")
    unknown = sorted(set(blocked) - set(node.members))
    if unknown:
        raise ApiError(400, "bad_blocked", f"not members: {', '.join(unknown)}")
    offset = body.get("clock_offset_ms", 0)
    if type(offset) is not int or abs(offset) > CLOCK_OFFSET_MS_MAX:
        raise ApiError(400, "bad_clock_offset_ms", f"clock_offset_ms within ±{CLOCK_OFFSET_MS_MAX}")
    loss = body.get("loss", 0.0)
    if isinstance(loss, bool) or not isinstance(loss, int | float) or not 0 <= loss <= 1:
        raise ApiError(400, "bad_loss", "loss is a probability, 0..1")
    node.faults.blocked_raft = frozenset(node.members[b].raft for b in blocked)
    node.faults.clock_offset_ms = offset
    node.faults.loss = float(loss)
    return web.json_response(_fault_state(node))
