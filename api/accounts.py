"""Account endpoints: profile, balances and their history, API keys, second factor, withdrawals.

Creating a key needs a signed request, the account's current TOTP code, and
only grants scopes the signing key already has; the first keys of an account
and admin-scoped keys are made with the admin token (`raftex up` does this).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from typing import Any

import pyotp
from aiohttp import web

from api.admin import require_admin
from api.amounts import from_units, to_units
from api.errors import ApiError
from api.gateway import Gateway, gateway, require_scope, totp_code
from api.orders import derived_client_id, json_object, refusal
from api.query import choice, int_param, known_fields, text_field
from cluster.rocks import READ_LIMIT_MAX
from engine.codes import SCOPES_ALL, KeyKind, Scope
from engine.commands import (
    CLIENT_ID_LEN_MAX,
    NAME_LEN_MAX,
    AddApiKey,
    Command,
    RevokeApiKey,
    SetSecondFactor,
    Withdraw,
)
from engine.events import BalanceChanged

KEY_KINDS = {"ed25519": KeyKind.ED25519, "hmac": KeyKind.HMAC}
SCOPE_NAMES = {s.name.lower(): s for s in Scope}
HMAC_SECRET_BYTES = 32
KEY_ID_BYTES = 12
TOTP_ISSUER = "raftex"


def add_account_routes(app: web.Application) -> None:
    app.router.add_get("/v1/account", profile)
    app.router.add_get("/v1/account/balances", balances)
    app.router.add_get("/v1/account/balance-history", balance_history)
    app.router.add_get("/v1/account/keys", list_keys)
    app.router.add_post("/v1/account/keys", create_key)
    app.router.add_delete("/v1/account/keys/{key_id}", revoke_key)
    app.router.add_post("/v1/account/second-factor", enrol_second_factor)
    app.router.add_post("/v1/account/withdrawals", withdraw)
    app.router.add_post("/v1/admin/accounts/{account}/keys", admin_create_key)
    app.router.add_post("/v1/admin/accounts/{account}/second-factor", admin_second_factor)


def scope_names(mask: int) -> list[str]:
    return [name for name, scope in SCOPE_NAMES.items() if mask & scope]


def parse_scopes(value: object) -> int:
    if not isinstance(value, list) or not value:
        raise ApiError(400, "bad_scopes", f"scopes is a non-empty list of {'|'.join(SCOPE_NAMES)}")
    mask = 0
    for name in value:
        if type(name) is not str or name not in SCOPE_NAMES:
            raise ApiError(400, "bad_scopes", f"unknown scope {name!r}")
        mask |= SCOPE_NAMES[name]
    return mask


def balance_json(gw: Gateway, asset: str, available: int, held: int) -> dict[str, str]:
    places = gw.decimals(asset)
    return {
        "asset": asset,
        "available": from_units(available, places),
        "held": from_units(held, places),
        "total": from_units(available + held, places),
    }


async def profile(request: web.Request) -> web.Response:
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.READ)
    access = gw.node.view.access
    return web.json_response(
        {
            "account": principal.account,
            "key_id": principal.key_id,
            "scopes": scope_names(principal.scopes),
            "second_factor": principal.account in access.second_factors,
            "seq": gw.node.view.last_seq,
        }
    )


async def balances(request: web.Request) -> web.Response:
    """From the published view: current as of `seq`, on any node."""
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.READ)
    await gw.wait_for_seq(request)
    view = gw.node.view
    assets = view.balances.get(principal.account, {})
    rows = [balance_json(gw, asset, *assets[asset]) for asset in sorted(assets)]
    return web.json_response({"account": principal.account, "seq": view.last_seq, "balances": rows})


async def balance_history(request: web.Request) -> web.Response:
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.READ)
    await gw.wait_for_seq(request)
    after = int_param(request, "after_seq", 0, 0, 2**63)
    limit = int_param(request, "limit", 100, 1, READ_LIMIT_MAX)
    history = await gw.history_store()
    rows = await asyncio.to_thread(history.balance_history, principal.account, after, limit)
    out = [
        {
            "seq": r["seq"],
            "ts_ms": r["ts_ms"],
            **balance_json(gw, r["asset"], r["available"], r["held"]),
        }
        for r in rows
    ]
    return web.json_response(
        {"changes": out, "next": rows[-1]["seq"] if len(rows) == limit else None}
    )


async def list_keys(request: web.Request) -> web.Response:
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.READ)
    rows = [
        {"key_id": k.key_id, "kind": KeyKind(k.kind).name.lower(), "scopes": scope_names(k.scopes)}
        for k in gw.node.view.access.api_keys.values()
        if k.account == principal.account
    ]
    return web.json_response({"keys": rows})


async def create_key(request: web.Request) -> web.Response:
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.SECURITY)
    body = await json_object(request)
    grantable = principal.scopes & ~Scope.ADMIN
    # Named after the request: a replay of it, to any node, finds the id taken and gets
    # no secret back.
    key_id = hashlib.sha256(bytes.fromhex(principal.signature)).hexdigest()[: KEY_ID_BYTES * 2]

    def as_write(command: Command) -> Command:
        step = gw.second_factor_step(principal.account, totp_code(request))
        return principal.signed(command, totp_step=step)

    return await _create_key(gw, principal.account, body, grantable, key_id, as_write)


async def admin_create_key(request: web.Request) -> web.Response:
    require_admin(request)
    body = await json_object(request)
    account = request.match_info["account"]
    key_id = secrets.token_hex(KEY_ID_BYTES)
    return await _create_key(gateway(request), account, body, SCOPES_ALL, key_id, _as_admin_write)


async def _create_key(
    gw: Gateway,
    account: str,
    body: dict[str, Any],
    grantable: int,
    key_id: str,
    as_write: Callable[[Command], Command],
) -> web.Response:
    """Ed25519: the client sends its public key. HMAC: the secret is made here, sealed into
    the log, and shown once in this answer. `as_write` turns the command into the write
    that goes through the log (a client's checks its second factor, once everything else
    about the request is valid)."""
    known_fields(body, {"kind", "public_key", "scopes"})
    kind = choice(body, "kind", KEY_KINDS, None)
    scopes = parse_scopes(body.get("scopes"))
    if scopes & ~grantable:
        raise ApiError(
            403, "scope_escalation", "a key can only grant scopes its creator holds (not admin)"
        )
    secret = ""
    if kind == KeyKind.ED25519:
        material = text_field(body, "public_key", 64)
        if len(material) != 64:
            raise ApiError(400, "bad_public_key", "public_key is the 32-byte Ed25519 key in hex")
        material = material.lower()
    else:
        if "public_key" in body:
            raise ApiError(400, "bad_public_key", "HMAC keys take no public_key")
        secret = secrets.token_hex(HMAC_SECRET_BYTES)
        material = gw.sealer.seal(secret.encode())
    outcome = await gw.submit(as_write(AddApiKey(account, key_id, kind, material, scopes)))
    if (refused := refusal(outcome, outcome.where)) is not None:
        return refused
    answer: dict[str, Any] = {
        "account": account,
        "key_id": key_id,
        "kind": kind.name.lower(),
        "scopes": scope_names(scopes),
        **outcome.where,
    }
    if secret:
        answer["secret"] = secret
    return web.json_response(answer, status=201)


async def revoke_key(request: web.Request) -> web.Response:
    """A key may revoke itself; revoking another key is a security action: a key with the
    security scope and the account's current TOTP code, so a leaked read or trading key
    cannot cut the account off."""
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.READ)
    key_id = request.match_info["key_id"]
    if len(key_id) > CLIENT_ID_LEN_MAX:
        raise ApiError(400, "bad_key_id", "key id too long")
    step = 0
    if key_id != principal.key_id:
        require_scope(principal, Scope.SECURITY, "revoking another key")
        step = gw.second_factor_step(principal.account, totp_code(request))
    command = RevokeApiKey(principal.account, key_id)
    outcome = await gw.submit(principal.signed(command, totp_step=step))
    if (refused := refusal(outcome, outcome.where)) is not None:
        return refused
    return web.json_response({**outcome.where, "key_id": key_id, "status": "revoked"})


async def enrol_second_factor(request: web.Request) -> web.Response:
    """A security action: a key with the security scope; replacing a factor also needs its
    current code (which the replacement spends)."""
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.SECURITY)
    step = 0
    if principal.account in gw.node.view.access.second_factors:
        step = gw.second_factor_step(principal.account, totp_code(request))
    secret = pyotp.random_base32()
    # A replay of this request, to any node, carries the same signature and request id and
    # is refused by the state machine, so it can never swap in (and reveal) a secret of its own.
    command = SetSecondFactor(
        principal.account, gw.sealer.seal(secret.encode()), derived_client_id(principal)
    )
    return await _enrolled(gw, principal.account, principal.signed(command, totp_step=step), secret)


async def admin_second_factor(request: web.Request) -> web.Response:
    require_admin(request)
    gw = gateway(request)
    account = request.match_info["account"]
    secret = pyotp.random_base32()
    command = SetSecondFactor(account, gw.sealer.seal(secret.encode()))
    return await _enrolled(gw, account, command, secret)


def _as_admin_write(command: Command) -> Command:
    """An admin's write is the command itself: the admin token vouched for it."""
    return command


async def _enrolled(gw: Gateway, account: str, write: Command, secret: str) -> web.Response:
    """Submits an enrolment; the new secret is shown once, in this answer."""
    outcome = await gw.submit(write)
    if (refused := refusal(outcome, outcome.where)) is not None:
        return refused
    uri = pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=TOTP_ISSUER)
    return web.json_response(
        {"account": account, "totp_secret": secret, "provisioning_uri": uri, **outcome.where},
        status=201,
    )


async def withdraw(request: web.Request) -> web.Response:
    gw = gateway(request)
    principal = await gw.authenticate(request, Scope.WITHDRAW)
    body = await json_object(request)
    known_fields(body, {"asset", "amount", "request_id"})
    asset = text_field(body, "asset", NAME_LEN_MAX, required=True)
    request_id = text_field(body, "request_id", CLIENT_ID_LEN_MAX, required=True)
    amount = to_units(body.get("amount"), gw.decimals(asset), "amount")
    step = gw.second_factor_step(principal.account, totp_code(request))
    command = Withdraw(principal.account, asset, amount, request_id)
    outcome = await gw.submit(principal.signed(command, totp_step=step))
    base = {**outcome.where, "request_id": request_id}
    if (refused := refusal(outcome, base)) is not None:
        return refused
    change = outcome.first(BalanceChanged)
    if change is None:
        raise ApiError(500, "no_outcome", "the state machine gave this withdrawal no outcome")
    return web.json_response(
        {**base, "status": "done", **balance_json(gw, asset, change.available, change.held)}
    )
