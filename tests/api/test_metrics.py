"""`GET /metrics`: what an operator's Prometheus scrapes from every node."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.client import ClientError, RaftexClient
from tests.api.conftest import ApiCluster, fresh_account

pytestmark = pytest.mark.asyncio

DASHBOARD = Path(__file__).parents[2] / "ops" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\braftex_[a-z_]+")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _exposition(http: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://{http}/metrics") as got:
        assert got.status == 200
        assert got.headers["Content-Type"].startswith("text/plain")
        return await got.text()


async def _scrape(http: str) -> Samples:
    text = await _exposition(http)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _sum(samples: Samples, name: str, **labels: str) -> float:
    """Every series of `name` whose labels include these."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


async def test_the_leader_counts_orders_refusals_requests_and_latencies(api: ApiCluster) -> None:
    account = await fresh_account(api, "metrics")
    before = await _scrape(api.leader_http)
    key = await account.key("hmac", ["read", "trade"])
    async with RaftexClient([api.leader_http], key["key_id"], key["secret"], "hmac") as client:
        await client.place_order("AAPL", "buy", "1", "185.00")
        with pytest.raises(ClientError) as refused:
            await client.place_order("AAPL", "sell", "90000", "195.00")
    after = await _scrape(api.leader_http)

    assert _value(after, "raftex_role", role="leader") == 1
    assert _value(after, "raftex_role", role="follower") == 0
    assert _value(after, "raftex_raft_term") >= 1
    assert 0 < _value(after, "raftex_applied_index") <= _value(after, "raftex_commit_index")
    assert _value(after, "raftex_commands_applied_total") >= (
        _value(before, "raftex_commands_applied_total") + 2
    )
    code = refused.value.code
    assert _value(after, "raftex_commands_refused_total", code=code) == (
        _value(before, "raftex_commands_refused_total", code=code) + 1
    )
    posted = {"route": "/v1/orders", "method": "POST"}
    assert _sum(after, "raftex_http_requests_total", **posted) == (
        _sum(before, "raftex_http_requests_total", **posted) + 2
    )
    for histogram in (
        "raftex_apply_seconds",
        "raftex_commit_seconds",
        "raftex_ack_seconds",
        "raftex_journal_fsync_seconds",
        "raftex_entry_commands",
    ):
        assert _value(after, f"{histogram}_count") > _value(before, f"{histogram}_count"), histogram
    assert _value(after, "raftex_projection_lag_entries") >= 0
    assert ("raftex_uptime_seconds", ()) in after


async def test_a_follower_reports_its_role_and_its_feeds(api: ApiCluster) -> None:
    follower = api.followers[0]
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://{follower}/v1/ws") as ws,
    ):
        await ws.send_json({"op": "subscribe", "channel": "book", "symbol": "AAPL"})
        await ws.receive(timeout=10)
        samples = await _scrape(follower)
    assert _value(samples, "raftex_role", role="follower") == 1
    assert _value(samples, "raftex_role", role="leader") == 0
    assert _value(samples, "raftex_feed_connections") >= 1
    assert _value(samples, "raftex_feed_subscriptions") >= 1


async def test_unknown_paths_and_methods_cannot_grow_the_series(api: ApiCluster) -> None:
    node = api.followers[1]
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(f"http://{node}/no-such-{uuid.uuid4().hex}") as got:
                assert got.status == 404
        async with session.request("PROPFIND", f"http://{node}/v1/time") as got:
            assert 400 <= got.status < 500
    samples = await _scrape(node)
    routes = {dict(ls).get("route") for (n, ls) in samples if n == "raftex_http_requests_total"}
    assert not any(r and r.startswith("/no-such-") for r in routes)
    assert _sum(samples, "raftex_http_requests_total", route="unmatched", status="404") >= 3
    assert _sum(samples, "raftex_http_requests_total", method="other") >= 1


async def test_the_grafana_dashboard_reads_only_metrics_a_node_exports(api: ApiCluster) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    referenced = {
        re.sub(r"_(bucket|total)$", "", name) for e in exprs for name in METRIC_NAME.findall(e)
    }
    text = await _exposition(api.leader_http)
    exported = {family.name for family in text_string_to_metric_families(text)}
    assert len(referenced) >= 15
    assert referenced - exported == set(), "dashboard queries that no node answers"
