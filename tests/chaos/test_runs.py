"""Short chaos runs against a real 3-node cluster: every nemesis family, every checker.

CI runs three short runs that together cover all families, on the namespace
plane where it runs as root (else on the hooks plane), and one run of the
network faults on the hooks plane, so both planes stay tested; RAFTEX_SOAK=1
runs one long run with all of them mixed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from chaos.cluster import resolve_plane
from chaos.nemesis import KINDS, parse_families
from chaos.netns import NamespaceNet
from chaos.report import HISTORY_FILE, SUMMARY_FILE, TIMELINE_FILE
from chaos.run import run_chaos

SOAK = os.environ.get("RAFTEX_SOAK") == "1"
SHORT_RUNS = [
    ("kill", "pause", "partition"),
    ("restart", "wipe", "skew"),
    ("membership", "corrupt", "loss"),
]


RUNS = [(families, "auto") for families in SHORT_RUNS] + [(("partition", "loss"), "hooks")]


@pytest.mark.soak
@pytest.mark.parametrize(
    ("families", "plane"), RUNS, ids=[f"{'-'.join(f)}-{plane}" for f, plane in RUNS]
)
def test_a_short_run_passes_every_checker(
    tmp_path: Path, families: tuple[str, ...], plane: str
) -> None:
    seconds = 3 + 6 * len(families) + 1
    result = run_chaos(3, families, seconds, seed=7, out_dir=tmp_path, clients=4, plane=plane)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    failed = [v for v in summary["verdicts"] if not v["ok"]]
    assert result.ok and summary["ok"], failed
    assert summary["plane"] == resolve_plane(plane)
    assert {f["family"] for f in summary["availability"]} == set(families)
    assert summary["counts"].get("place_ok", 0) > 50
    assert (tmp_path / HISTORY_FILE).stat().st_size > 0
    assert (tmp_path / TIMELINE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    real_loss = summary["plane"] == "netns" and NamespaceNet().loss_tool is not None
    for fault in summary["availability"]:
        if fault["family"] == "loss":
            assert fault["fault"].endswith("packets" if real_loss else "Raft messages")


@pytest.mark.soak
def test_a_replica_killed_paused_cut_off_or_wiped_costs_the_voters_no_commit(
    tmp_path: Path,
) -> None:
    """One fault of each replica kind (the kinds rotate), probe writes through the leader
    all the while; the replica's final state hash agrees with the voters'."""
    kinds = KINDS["replica"]
    seconds = 3 + 6 * len(kinds) + 1
    result = run_chaos(3, ("replica",), seconds, seed=7, out_dir=tmp_path, clients=4)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    failed = [v for v in summary["verdicts"] if not v["ok"]]
    assert result.ok and summary["ok"], failed
    faults = summary["availability"]
    assert sorted(f["fault"] for f in faults) == sorted(f"replica {k}" for k in kinds)
    assert all(f["commit_ms_max"] is not None for f in faults)
    rebuilt = next(f for f in faults if f["fault"] == "replica wipe")
    assert "r1" in rebuilt["catch_up_s"]
    agree = next(v for v in summary["verdicts"] if v["name"] == "replicas_agree")
    assert agree["counts"]["nodes"] == 4


@pytest.mark.soak
@pytest.mark.skipif(not SOAK, reason="long run: RAFTEX_SOAK=1")
def test_a_long_run_with_every_family(tmp_path: Path) -> None:
    result = run_chaos(5, parse_families("all"), 120, seed=11, out_dir=tmp_path, clients=8)
    assert result.ok, [v for v in result.verdicts if not v.ok]
