"""One real 3-node cluster for the API tests: demo instruments, accounts, keys and TOTP secrets."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.client import RaftexClient
from cluster.admin_client import AdminClient
from cluster.demo_keys import DEMO_TOTP_FILE_NAME, ed25519_pair, issue_demo_keys
from cluster.launcher import DEMO_ACCOUNTS, DEMO_CASH_CENTS, DEMO_QUOTE, DEMO_SHARES
from engine.commands import CreateAccount, Deposit, command_to_wire
from tests.cluster.harness import ClusterHarness

# Low enough that a test can reach it with a burst, high enough for every other test.
KEY_RATE_PER_S = 40.0


@dataclass
class ApiCluster:
    harness: ClusterHarness
    leader: str
    keys: list[dict[str, Any]]
    totp: dict[str, str]

    @property
    def followers(self) -> list[str]:
        return [
            self.harness.http(n.node_id)
            for n in self.harness.cluster.nodes
            if n.node_id != self.leader
        ]

    @property
    def leader_http(self) -> str:
        return self.harness.http(self.leader)

    @property
    def all_http(self) -> list[str]:
        return [self.harness.http(n.node_id) for n in self.harness.cluster.nodes]

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with AdminClient(self.harness.token) as client:
            return await client.call(self.leader_http, method, path, body)

    async def applied_everywhere(self, seq: int) -> None:
        """Waits until every node has applied `seq` (a new key is then known everywhere)."""
        await asyncio.to_thread(self.harness.wait_all_applied, seq)

    def key(self, account: str, kind: str, scope: str = "trade") -> dict[str, Any]:
        """The account's first key of this kind that holds `scope` (the trading keys come
        first; "security" finds the owner's key)."""
        return next(
            k
            for k in self.keys
            if k["account"] == account and k["kind"] == kind and scope in k["scopes"]
        )

    def client(
        self,
        account: str = "alice",
        kind: str = "ed25519",
        node: str | None = None,
        scope: str = "trade",
    ) -> RaftexClient:
        key = self.key(account, kind, scope)
        nodes = [node] if node else self.followers
        return RaftexClient(nodes, key["api_key"], key["secret"], kind, self.totp[account])


@dataclass
class FreshAccount:
    """An account of one test's own, funded like the demo ones, with a TOTP second factor
    (whose codes no other test spends) and keys made by the admin."""

    api: ApiCluster
    name: str
    totp_secret: str

    async def key(self, kind: str, scopes: list[str]) -> dict[str, Any]:
        """A new key of these scopes, known on every node."""
        body: dict[str, Any] = {"kind": kind, "scopes": scopes}
        private_hex = ""
        if kind == "ed25519":
            private_hex, body["public_key"] = ed25519_pair()
        made = await self.api.admin("POST", f"/v1/admin/accounts/{self.name}/keys", body)
        await self.api.applied_everywhere(made["seq"])
        return {**made, "secret": made.get("secret", private_hex)}

    async def client(self, scopes: list[str], kind: str = "hmac") -> RaftexClient:
        """A client (not yet entered) with a new key of these scopes."""
        made = await self.key(kind, scopes)
        return RaftexClient(
            self.api.followers, made["key_id"], made["secret"], kind, self.totp_secret
        )


async def fresh_account(api: ApiCluster, prefix: str) -> FreshAccount:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    for command in (
        CreateAccount(name),
        Deposit(name, DEMO_QUOTE, DEMO_CASH_CENTS, request_id="cash"),
        Deposit(name, "AAPL", DEMO_SHARES, request_id="shares"),
    ):
        await api.admin("POST", "/v1/admin/commands", {"command": command_to_wire(command)})
    factor = await api.admin("POST", f"/v1/admin/accounts/{name}/second-factor", {})
    return FreshAccount(api, name, factor["totp_secret"])


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiCluster]:
    data_dir: Path = tmp_path_factory.mktemp("api") / "cluster"
    harness = ClusterHarness(
        data_dir,
        nodes=3,
        settings={"rate_limit_key_per_s": KEY_RATE_PER_S, "rate_limit_ip_per_s": 0},
    )
    with harness.running():
        leader = harness.wait_leader()
        keys = asyncio.run(
            issue_demo_keys(harness.http(leader), harness.token, data_dir, DEMO_ACCOUNTS)
        )
        totp = json.loads((data_dir / DEMO_TOTP_FILE_NAME).read_text())
        yield ApiCluster(harness, leader, keys, totp)
