"""The OpenAPI 3.1 document of the native API, served at /v1/openapi.json.

Written by hand from one table, next to the handlers it describes; a test
checks that every registered /v1 route appears here, so the two cannot drift.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

SIGNED = "signed"
ADMIN = "admin"
PUBLIC = "public"
NODE = "node"

# method, path, summary, auth, query parameters, JSON body fields (name: description)
Operation = tuple[str, str, str, str, tuple[str, ...], dict[str, str]]

ORDER_BODY = {
    "symbol": "instrument, e.g. AAPL",
    "side": "buy | sell",
    "type": "limit (default) | market | stop | stop_limit",
    "qty": "decimal string in the base asset's units",
    "price": "decimal string; limit and stop_limit only",
    "tif": "gtc (default) | ioc | fok | day | gtd | at_open | at_close",
    "client_order_id": "up to 64 characters; unique per account, makes retries safe",
    "stop_price": "decimal string; stop and stop_limit only",
    "display_qty": "iceberg: the part shown in the book",
    "post_only": "true: never take liquidity",
    "stp": "cancel_newest (default) | cancel_oldest | cancel_both | decrement",
    "expire_time_ms": "gtd orders: Unix time in ms",
}

OPERATIONS: tuple[Operation, ...] = (
    ("GET", "/v1/openapi.json", "This document", PUBLIC, (), {}),
    ("GET", "/v1/health", "This node's role, leader, term and lag", PUBLIC, (), {}),
    ("GET", "/v1/time", "Server time and log time", PUBLIC, (), {}),
    ("GET", "/v1/cluster", "Members, leader (and its address), lag", PUBLIC, (), {}),
    (
        "GET",
        "/v1/instruments",
        "All instruments: tick, lot, limits, fees, status, trading phase, auction indicative",
        PUBLIC,
        ("min_seq",),
        {},
    ),
    ("GET", "/v1/instruments/{symbol}", "One instrument", PUBLIC, ("min_seq",), {}),
    (
        "GET",
        "/v1/book/{symbol}",
        "L2 book snapshot with its sequence",
        PUBLIC,
        ("depth", "min_seq"),
        {},
    ),
    (
        "GET",
        "/v1/book/{symbol}/l3",
        "L3 book: every visible order, no owners",
        PUBLIC,
        ("depth", "min_seq"),
        {},
    ),
    (
        "GET",
        "/v1/trades/{symbol}",
        "Recent trades, newest first",
        PUBLIC,
        ("limit", "before_trade_id", "min_seq"),
        {},
    ),
    (
        "GET",
        "/v1/candles/{symbol}",
        "OHLCV candles (1m, 5m, 1h, 1d)",
        PUBLIC,
        ("interval", "limit", "min_seq"),
        {},
    ),
    ("GET", "/v1/ticker/{symbol}", "L1 and 24h figures", PUBLIC, ("min_seq",), {}),
    ("GET", "/v1/ws", "WebSocket: book, book.l3, trades, ticker, candles, user", PUBLIC, (), {}),
    ("POST", "/v1/orders", "Place an order", SIGNED, (), ORDER_BODY),
    (
        "POST",
        "/v1/orders/batch",
        "Place up to 20 orders, each with its own outcome",
        SIGNED,
        (),
        {"orders": "list of order objects as for POST /v1/orders"},
    ),
    (
        "GET",
        "/v1/orders",
        "Open (default) or all orders, ascending id",
        SIGNED,
        ("status", "after", "limit", "min_seq"),
        {},
    ),
    ("DELETE", "/v1/orders", "Mass cancel (one symbol or all)", SIGNED, ("symbol",), {}),
    ("GET", "/v1/orders/{order_id}", "One order with its history", SIGNED, ("min_seq",), {}),
    ("DELETE", "/v1/orders/{order_id}", "Cancel an order", SIGNED, (), {}),
    (
        "PATCH",
        "/v1/orders/{order_id}",
        "Amend quantity and/or price",
        SIGNED,
        (),
        {"symbol": "the order's instrument", "qty": "new total quantity", "price": "new price"},
    ),
    (
        "GET",
        "/v1/orders/by-client-id/{client_order_id}",
        "One order by client order id",
        SIGNED,
        ("min_seq",),
        {},
    ),
    (
        "DELETE",
        "/v1/orders/by-client-id/{client_order_id}",
        "Cancel by client order id",
        SIGNED,
        (),
        {},
    ),
    (
        "PATCH",
        "/v1/orders/by-client-id/{client_order_id}",
        "Amend by client order id",
        SIGNED,
        (),
        {"symbol": "the order's instrument", "qty": "new total quantity", "price": "new price"},
    ),
    (
        "GET",
        "/v1/fills",
        "Own fills, ascending trade id",
        SIGNED,
        ("after", "limit", "min_seq"),
        {},
    ),
    ("GET", "/v1/account", "Profile: account, key, scopes, second factor", SIGNED, (), {}),
    ("GET", "/v1/account/balances", "Available and held per asset", SIGNED, ("min_seq",), {}),
    (
        "GET",
        "/v1/account/balance-history",
        "Balance changes, ascending seq",
        SIGNED,
        ("after_seq", "limit", "min_seq"),
        {},
    ),
    ("GET", "/v1/account/keys", "The account's API keys", SIGNED, (), {}),
    (
        "POST",
        "/v1/account/keys",
        "Create a key (security scope, X-Raftex-TOTP)",
        SIGNED,
        (),
        {
            "kind": "ed25519 | hmac",
            "public_key": "Ed25519 public key, hex",
            "scopes": "list of read, trade, withdraw, security",
        },
    ),
    (
        "DELETE",
        "/v1/account/keys/{key_id}",
        "Revoke this key, or another (security scope, X-Raftex-TOTP)",
        SIGNED,
        (),
        {},
    ),
    (
        "POST",
        "/v1/account/second-factor",
        "Enrol or replace the TOTP second factor (security scope; X-Raftex-TOTP to replace)",
        SIGNED,
        (),
        {},
    ),
    (
        "POST",
        "/v1/account/withdrawals",
        "Withdraw (withdraw scope, X-Raftex-TOTP)",
        SIGNED,
        (),
        {"asset": "asset", "amount": "decimal string", "request_id": "unique; makes retries safe"},
    ),
    (
        "POST",
        "/v1/internal/commands",
        "Cluster members only: clients' writes a follower forwards (msgpack)",
        NODE,
        (),
        {},
    ),
    ("GET", "/v1/admin/status", "This node's full status", ADMIN, (), {}),
    ("GET", "/v1/admin/members", "Cluster members", ADMIN, (), {}),
    (
        "POST",
        "/v1/admin/members",
        "Add or remove one node: a voter (Raft membership) or a read replica (recorded only)",
        ADMIN,
        (),
        {
            "action": "add | remove",
            "id": "node id",
            "role": "voter | replica (default voter)",
            "raft": "host:port (voters only)",
            "http": "host:port",
        },
    ),
    (
        "GET",
        "/v1/admin/cluster-status",
        "Every member's admin status, asked by this node",
        ADMIN,
        (),
        {},
    ),
    ("POST", "/v1/admin/snapshot", "Force log compaction", ADMIN, (), {}),
    ("POST", "/v1/admin/backups", "Take a backup on this node (a snapshot dump)", ADMIN, (), {}),
    ("GET", "/v1/admin/backups/{name}", "Download a backup this node took", ADMIN, (), {}),
    ("DELETE", "/v1/admin/backups/{name}", "Remove a backup from this node", ADMIN, (), {}),
    ("GET", "/v1/admin/audit/verify", "Recompute the audit chain", ADMIN, (), {}),
    ("POST", "/v1/admin/hash-mark", "Ask every node to record its state hash", ADMIN, (), {}),
    ("GET", "/v1/admin/hash", "State hash at a marked index", ADMIN, ("index", "timeout_ms"), {}),
    (
        "POST",
        "/v1/admin/commands",
        "Submit one engine command (wire form)",
        ADMIN,
        (),
        {"command": "[tag, field, ...]", "timeout_ms": "1..30000"},
    ),
    (
        "POST",
        "/v1/admin/commands/batch",
        "Submit up to 200 engine commands",
        ADMIN,
        (),
        {
            "commands": "list of wire commands",
            "detail": "events | summary",
            "timeout_ms": "1..30000",
        },
    ),
    ("GET", "/v1/admin/events", "Event history after a sequence", ADMIN, ("since", "limit"), {}),
    ("GET", "/v1/admin/audit", "Audit records after a number", ADMIN, ("after", "limit"), {}),
    ("GET", "/v1/admin/invariants", "Check the engine's invariants live", ADMIN, (), {}),
    ("GET", "/v1/admin/faults", "Fault hooks (chaos testing nodes only)", ADMIN, (), {}),
    (
        "POST",
        "/v1/admin/faults",
        "Partition this node, skew its clock or lose some of its Raft messages",
        ADMIN,
        (),
        {
            "blocked": "node ids whose Raft traffic is lost",
            "clock_offset_ms": "clock skew",
            "loss": "share of its Raft messages lost at random, 0..1",
        },
    ),
    (
        "POST",
        "/v1/admin/accounts/{account}/keys",
        "Create a key for an account (any scope)",
        ADMIN,
        (),
        {"kind": "ed25519 | hmac", "public_key": "hex", "scopes": "list"},
    ),
    (
        "POST",
        "/v1/admin/accounts/{account}/second-factor",
        "Enrol an account's TOTP secret",
        ADMIN,
        (),
        {},
    ),
)

# Admin bodies that ignore the fields they do not read; every other body refuses them
# (400 unknown_field), and the document says so.
OPEN_BODIES = frozenset(
    {
        ("POST", "/v1/admin/members"),
        ("POST", "/v1/admin/commands"),
        ("POST", "/v1/admin/commands/batch"),
        ("POST", "/v1/admin/faults"),
    }
)

# Writes that answer 201 on success: each makes a key or a TOTP secret, shown once.
CREATED = frozenset(
    {
        ("POST", "/v1/account/keys"),
        ("POST", "/v1/account/second-factor"),
        ("POST", "/v1/admin/accounts/{account}/keys"),
        ("POST", "/v1/admin/accounts/{account}/second-factor"),
    }
)

_SECURITY = {
    SIGNED: [{"key": [], "timestamp": [], "signature": []}],
    ADMIN: [{"admin": []}],
    NODE: [{"node": [], "node_timestamp": [], "node_signature": []}],
    PUBLIC: [],
}
_ERROR = {
    "description": "Error: a stable code and a message",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        }
    },
}


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, auth, query, body in OPERATIONS:
        parameters = [
            {"name": name.strip("{}"), "in": "path", "required": True, "schema": {"type": "string"}}
            for name in path.split("/")
            if name.startswith("{")
        ] + [{"name": name, "in": "query", "schema": {"type": "string"}} for name in query]
        operation: dict[str, Any] = {
            "summary": summary,
            "security": _SECURITY[auth],
            "parameters": parameters,
            "responses": {
                "201" if (method, path) in CREATED else "200": {"description": "Success"},
                "4XX": _ERROR,
                "503": _ERROR,
            },
        }
        if body:
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {name: {"description": text} for name, text in body.items()},
            }
            if (method, path) not in OPEN_BODIES:
                schema["additionalProperties"] = False
            operation["requestBody"] = {"content": {"application/json": {"schema": schema}}}
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "raftex native API",
            "version": "1",
            "description": (
                "Amounts are decimal strings. Signed requests carry X-Raftex-Key, "
                "X-Raftex-Timestamp (ms) and X-Raftex-Signature over "
                "'{timestamp}\\n{METHOD}\\n{path}\\n{query}\\n' + body (Ed25519 hex, or "
                "HMAC-SHA256 hex). Writes answer with the seq they were applied at; pass it "
                "as min_seq to any node to read your own writes."
            ),
        },
        "components": {
            "securitySchemes": {
                "key": {"type": "apiKey", "in": "header", "name": "X-Raftex-Key"},
                "timestamp": {"type": "apiKey", "in": "header", "name": "X-Raftex-Timestamp"},
                "signature": {"type": "apiKey", "in": "header", "name": "X-Raftex-Signature"},
                "admin": {"type": "http", "scheme": "bearer"},
                "node": {"type": "apiKey", "in": "header", "name": "X-Raftex-Node"},
                "node_timestamp": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Raftex-Node-Timestamp",
                },
                "node_signature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Raftex-Node-Signature",
                },
            }
        },
        "paths": paths,
    }


def add_openapi_route(app: web.Application) -> None:
    body = document()

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(body)

    app.router.add_get("/v1/openapi.json", openapi)
