"""`raftex warehouse` against a real, encrypted cluster: built through a node's API or from a
node's data directory, the same warehouse; checked; queried."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.cli_process import raftex
from tests.cluster.harness import ClusterHarness
from tests.warehouse.test_build import parquet_files


def test_a_warehouse_from_the_api_or_the_data_dir_is_the_same_and_reconciles(
    tmp_path: Path,
) -> None:
    harness = ClusterHarness(tmp_path / "cluster")
    with harness.running():
        for n in range(20):
            price = 18_900 + n % 3
            harness.submit("n1", [8, "alice", "AAPL", 1, 5, price, 0, 0, f"ask-{n}"])
            harness.submit("n2", [8, "bob", "AAPL", 0, 3, price, 0, 0, f"bid-{n}"])
        harness.wait_all_applied()
        cluster_file = str(harness.cluster.cluster_file)
        via_api = tmp_path / "via-api"
        url = f"http://{harness.http('n1')}/"  # as a browser shows it
        done = raftex(
            "warehouse", "build", "--node", url, "--cluster", cluster_file,
            "--out", str(via_api), "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        built = json.loads(done.stdout)
        assert built["events"] > 0 and built["dates"]
        via_dir = tmp_path / "via-dir"
        data_dir = harness.cluster.data_dir / "n2"  # encrypted: the launch plan's key opens it
        done = raftex("warehouse", "build", "--data-dir", str(data_dir), "--out", str(via_dir))
        assert done.returncode == 0, done.stderr
        assert parquet_files(via_api) == parquet_files(via_dir)
        done = raftex(
            "warehouse", "check", "--data-dir", str(data_dir), "--warehouse", str(via_dir)
        )
        assert done.returncode == 0 and "reconciles" in done.stdout, done.stdout + done.stderr

    done = raftex(
        "warehouse", "sql", "SELECT member, fills, notional FROM member_daily ORDER BY member",
        "--warehouse", str(via_dir), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    members = {row["member"]: row for row in json.loads(done.stdout)}
    # alice (member MMKR) sold all that bob (BRKA) bought: one execution each per trade.
    assert members["MMKR"]["fills"] == members["BRKA"]["fills"] >= 20
    assert members["MMKR"]["notional"] == members["BRKA"]["notional"]
    done = raftex(
        "warehouse", "sql", "SELECT symbol, volume FROM ohlcv_daily WHERE symbol = 'AAPL'",
        "--warehouse", str(via_dir), "--csv",
    )  # fmt: skip
    assert list(csv.DictReader(io.StringIO(done.stdout))) == [{"symbol": "AAPL", "volume": "60"}]


def test_bad_input_gets_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    for args, message in (
        (("build", "--data-dir", str(tmp_path), "--out", str(tmp_path / "w")), "no event log"),
        (("sql", "SELECT 1", "--warehouse", str(tmp_path / "none")), "no warehouse"),
        (("build", "--node", "127.0.0.1:1", "--out", str(tmp_path / "w")), "admin token"),
    ):
        done = raftex("warehouse", *args)
        assert done.returncode == 1, done
        assert message in done.stderr and "Traceback" not in done.stderr
