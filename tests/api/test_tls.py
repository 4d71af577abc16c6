"""A cluster started with TLS serves HTTPS and WSS only, and its nodes forward over TLS."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from api.client import RaftexClient
from cluster.demo_keys import DEMO_TOTP_FILE_NAME, issue_demo_keys
from cluster.launcher import DEMO_ACCOUNTS, LEADER_WAIT_S, LocalCluster, seed_demo, wait_for_leader

pytestmark = pytest.mark.asyncio


async def test_tls_cluster_serves_https_and_forwards_over_tls(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster", 3, tls=True)
    cluster.start()
    try:
        ca = cluster.ca_file
        assert ca is not None
        cluster_file = json.loads((tmp_path / "cluster" / "cluster.json").read_text())
        assert cluster_file["tls_ca"] == str(ca)
        leader = await wait_for_leader(cluster.nodes, cluster.admin_token, LEADER_WAIT_S, ca)
        leader_http = cluster.node(leader).http
        await seed_demo(leader_http, cluster.admin_token, ca)
        keys = await issue_demo_keys(
            leader_http, cluster.admin_token, tmp_path / "cluster", DEMO_ACCOUNTS, ca
        )
        totp = json.loads((tmp_path / "cluster" / DEMO_TOTP_FILE_NAME).read_text())
        assert set(totp) == set(DEMO_ACCOUNTS)
        key = next(k for k in keys if k["account"] == "alice" and k["kind"] == "hmac")
        follower = next(n.http for n in cluster.nodes if n.node_id != leader)
        async with RaftexClient(
            [follower], key["api_key"], key["secret"], "hmac", ca_file=ca
        ) as alice:
            placed = await alice.place_order("AAPL", "buy", "1", price="185.00")
            assert placed["led_by"] == leader
            stream = alice.stream("book", "AAPL")
            async with asyncio.timeout(10):
                snapshot = await anext(stream)
            await stream.aclose()
            assert snapshot["type"] == "snapshot" and snapshot["seq"] >= placed["seq"] - 10
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(f"http://{follower}/v1/time") as response:
                    await response.read()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with session.get(f"https://{follower}/v1/time") as response:
                    await response.read()
    finally:
        cluster.stop()
