"""The channel followers forward clients' writes on: only cluster members can use it, and
what goes through it are the commands' bytes, answered with their events."""

from __future__ import annotations

import json
import uuid

import aiohttp
import msgpack
import pytest

from api.node_channel import (
    COMMANDS_PATH,
    node_headers,
    node_key,
    pack_commands,
    unpack_outcomes,
)
from cluster.launcher import LAUNCH_FILE_NAME
from engine.commands import CreateAccount, Tick, command_to_bytes, command_to_wire
from tests.api.conftest import ApiCluster

pytestmark = pytest.mark.asyncio


def _cluster_secret(api: ApiCluster) -> str:
    plan = json.loads((api.harness.cluster.data_dir / LAUNCH_FILE_NAME).read_text())
    return plan["secret"]


async def _post(node: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://{node}{COMMANDS_PATH}", data=body, headers=headers) as answer,
    ):
        return answer.status, await answer.read()


async def test_a_member_forwards_commands_as_bytes_and_gets_their_events(api: ApiCluster) -> None:
    body = pack_commands(5_000, [command_to_bytes(Tick())])
    headers = node_headers(node_key(_cluster_secret(api)), "n-test", body)
    status, raw = await _post(api.leader_http, body, headers)
    assert status == 200, raw
    led_by, rows = unpack_outcomes(raw)
    assert led_by == api.leader
    [(seq, events)] = rows
    assert seq > 0 and isinstance(events, list)


@pytest.mark.parametrize("how", ["unsigned", "wrong key", "other body", "stale"])
async def test_anyone_else_is_refused_and_nothing_is_applied(api: ApiCluster, how: str) -> None:
    account = f"ghost-{uuid.uuid4().hex[:8]}"
    body = pack_commands(5_000, [command_to_bytes(CreateAccount(account))])
    key = node_key(_cluster_secret(api))
    headers = node_headers(key if how != "wrong key" else node_key("x" * 32), "n-test", body)
    if how == "unsigned":
        headers = {"Content-Type": "application/msgpack"}
    elif how == "other body":
        body = pack_commands(5_000, [command_to_bytes(CreateAccount(account + "-2"))])
    elif how == "stale":
        headers["X-Raftex-Node-Timestamp"] = "1000"
    status, raw = await _post(api.leader_http, body, headers)
    assert status == 401, raw
    assert json.loads(raw)["code"] in ("unauthorized", "stale_request")
    # The account was never created: the admin can create it now.
    created = await api.admin(
        "POST", "/v1/admin/commands", {"command": command_to_wire(CreateAccount(account))}
    )
    assert [e["type"] for e in created["events"]] == ["accountchanged"]


async def test_garbage_from_a_member_is_a_400(api: ApiCluster) -> None:
    body = msgpack.packb({"not": "commands"})
    headers = node_headers(node_key(_cluster_secret(api)), "n-test", body)
    status, raw = await _post(api.leader_http, body, headers)
    assert status == 400 and json.loads(raw)["code"] == "bad_request"
