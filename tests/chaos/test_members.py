"""The chaos cluster's view of the membership against a real 3-node cluster: a joiner whose
add committed though its answer was lost must still reach every member's config before a
node starts again on an empty disk (a wiped voter that does not know a joiner that leads
never hears it)."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

from chaos.cluster import ChaosCluster


def _peers(cluster: ChaosCluster) -> dict[str, set[str]]:
    """Every node's peers as its config names them (read as TOML: load_config also checks
    that the node's own ports are free, and these nodes are running)."""
    return {
        node.node_id: {peer["id"] for peer in tomllib.loads(node.config_path.read_text())["peers"]}
        for node in cluster.local.nodes
    }


def test_a_joiner_whose_add_answer_was_lost_reaches_every_config(tmp_path: Path) -> None:
    cluster = ChaosCluster(tmp_path / "cluster", 3, "hooks", 0, "always", False)

    async def story() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        try:
            await cluster.start([])
            leader = await cluster.wait_leader()
            joiner = cluster.local.plan_joiner()
            cluster.local.start_one(joiner.node_id)
            # The add commits, and the chaos cluster never hears the answer.
            body = {"action": "add", "id": joiner.node_id, "raft": joiner.raft, "http": joiner.http}
            await cluster.admin.call(cluster.http(leader), "POST", "/v1/admin/members", body)
            before = _peers(cluster)
            await cluster.learn_joiners()
            return before, _peers(cluster)
        finally:
            await cluster.close()

    try:
        before, after = asyncio.run(story())
    finally:
        cluster.stop()
    first = {"n1", "n2", "n3"}
    assert before == {"n1": first, "n2": first, "n3": first, "n4": first | {"n4"}}
    assert after == {node_id: first | {"n4"} for node_id in ("n1", "n2", "n3", "n4")}
    assert not cluster.local.joining
