"""A soak: steady load and faults, and the resource checker judging every node.

`make test` runs 60 s with the faults that leave the processes running (pause,
partition, loss, skew), so every node has a steady last half to be judged on;
RAFTEX_SOAK=1 runs the issue's half hour with every family this machine can run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from chaos.nemesis import parse_families
from chaos.report import RESOURCES_FILE, SUMMARY_FILE
from chaos.run import run_chaos

SOAK = os.environ.get("RAFTEX_SOAK") == "1"


@pytest.mark.soak
def test_a_soak_run_keeps_every_nodes_resources_bounded(tmp_path: Path) -> None:
    if SOAK:
        families, seconds = parse_families("all"), 1800
    else:
        families, seconds = ("pause", "partition", "loss", "skew"), 60
    result = run_chaos(3, families, seconds, seed=5, out_dir=tmp_path, clients=4)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert result.ok, [v for v in result.verdicts if not v.ok]
    resources = next(v for v in result.verdicts if v.name == "resources_bounded")
    if not SOAK:
        assert resources.counts["nodes_judged"] == 3, summary["resource_slopes"]
    assert (tmp_path / RESOURCES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["files"]["resources"] == RESOURCES_FILE
