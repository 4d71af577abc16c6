"""Power loss and failing disks against a real 3-node cluster on the suite's own FUSE disks:
with fsync `always` nothing acknowledged is lost; with fsync `none` the checkers must say
what was; a full or failing disk stops its node, never the cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.disks import unavailable_reason
from chaos.nemesis import KINDS, schedule
from chaos.report import SUMMARY_FILE
from chaos.run import run_chaos

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]
SEED = 7


def _power_faults(summary: dict) -> list[dict]:
    return [f for f in summary["availability"] if f["family"] == "power"]


def test_power_cuts_with_fsync_always_lose_nothing_acknowledged(tmp_path: Path) -> None:
    seconds = 3 + 6 * len(KINDS["power"]) + 1
    result = run_chaos(3, ("power",), seconds, seed=SEED, out_dir=tmp_path, clients=4)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert result.ok, [v for v in result.verdicts if not v.ok]
    faults = _power_faults(summary)
    assert {f["fault"].split(":")[0] for f in faults} == {"power all", "power minority"}
    # The cuts did throw away data the nodes had written and not synced.
    assert any(not f["fault"].endswith(" 0 bytes written but not synced lost") for f in faults)
    acknowledged = next(v for v in result.verdicts if v.name == "no_lost_or_double_writes")
    assert acknowledged.counts["acknowledged"] > 50


def test_a_power_cut_of_every_node_with_fsync_none_is_reported_as_lost_writes(
    tmp_path: Path,
) -> None:
    plan = schedule(("power",), 10, SEED)
    assert [f.kind for f in plan] == ["all"]
    result = run_chaos(3, ("power",), 10, seed=SEED, out_dir=tmp_path, clients=4, fsync="none")
    assert not result.ok
    lost = next(v for v in result.verdicts if v.name == "no_lost_or_double_writes")
    assert not lost.ok
    assert any(detail.endswith(" is lost") for detail in lost.details)


def test_full_and_failing_disks_stop_their_node_and_it_rejoins(tmp_path: Path) -> None:
    seconds = 3 + 6 * len(KINDS["disk"]) + 1
    result = run_chaos(3, ("disk",), seconds, seed=SEED, out_dir=tmp_path, clients=4)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert result.ok, [v for v in result.verdicts if not v.ok]
    faults = [f for f in summary["availability"] if f["family"] == "disk"]
    assert len(faults) == len(KINDS["disk"])
    # A node whose disk failed under it said why and was started again once it was back.
    stopped = [f for f in faults if " exited " in f["fault"]]
    assert stopped
    for fault in stopped:
        assert (
            "journal write failed" in fault["fault"]
            or "CRITICAL node=" in fault["fault"]
            or ("refusing to start" in fault["fault"])
        ), fault["fault"]
        assert fault["catch_up_s"], fault
