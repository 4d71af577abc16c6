"""One real 3-node cluster for the API tests: demo instruments, accounts, keys and TOTP secrets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.client import RaftexClient
from cluster.admin_client import AdminClient
from cluster.demo_keys import DEMO_TOTP_FILE_NAME, issue_demo_keys
from cluster.launcher import DEMO_ACCOUNTS
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

    def key(self, account: str, kind: str) -> dict[str, Any]:
        return next(k for k in self.keys if k["account"] == account and k["kind"] == kind)

    def client(
        self, account: str = "alice", kind: str = "ed25519", node: str | None = None
    ) -> RaftexClient:
        key = self.key(account, kind)
        nodes = [node] if node else self.followers
        return RaftexClient(nodes, key["api_key"], key["secret"], kind, self.totp[account])


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiCluster]:
    data_dir: Path = tmp_path_factory.mktemp("api") / "cluster"
    harness = ClusterHarness(
        data_dir,
        nodes=3,
        settings={"rate_limit_key_per_s": KEY_RATE_PER_S, "rate_limit_ip_per_s": 0},
    )
    try:
        harness.start()
        harness.seed()
        leader = harness.wait_leader()
        keys = asyncio.run(
            issue_demo_keys(harness.http(leader), harness.token, data_dir, DEMO_ACCOUNTS)
        )
        totp = json.loads((data_dir / DEMO_TOTP_FILE_NAME).read_text())
        yield ApiCluster(harness, leader, keys, totp)
    finally:
        harness.stop()
