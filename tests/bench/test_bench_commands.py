"""The benchmark commands run end to end and report what they promise (never a speed: the
machine is shared, so figures are read from their JSON, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

BENCH_TIMEOUT_S = 300


def _bench(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "raftex.cli", "bench", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_bench_api_spreads_subscribers_over_the_replicas_and_each_gets_every_update() -> None:
    result = _bench(
        "api", "--seconds", "2", "--clients", "2", "--subscribers", "6", "--replicas", "2"
    )
    assert result["replicas"] == 2
    assert result["subscribers_by_node"] == {"r1": 3, "r2": 3}
    assert result["orders_acked"] > 0 and result["book_updates"] > 0
    assert result["every_subscriber_complete"] is True
    assert result["md_messages_delivered"] == 6 * result["book_updates"]
    by_process = result["cpu_us_per_order_by_process"]
    assert set(by_process) == {"leader", "followers", "replicas", "clients"}
    assert by_process["replicas"] > 0 and result["cpu_us_per_order"] > by_process["leader"]


def test_bench_cluster_reports_the_ratio_cpu_lag_and_the_cost_of_encryption_at_rest() -> None:
    compared = _bench(
        "cluster", "--seconds", "2", "--failovers", "0", "--clients", "2", "--at-rest", "both"
    )
    assert compared["clear"]["at_rest"] == "clear"
    assert compared["encrypted"]["at_rest"] == "encrypted"
    assert compared["throughput_encrypted_to_clear"] > 0
    assert compared["cpu_per_order_encrypted_to_clear"] > 0
    for result in (compared["clear"], compared["encrypted"]):
        assert result["topology"].startswith("3 voters")
        assert result["orders_acked"] > 0 and 0 < result["ratio_to_engine"] < 1
        assert set(result["cpu_us_per_order_by_process"]) == {
            "leader",
            "followers",
            "projector",
            "clients",
        }
        assert result["projection_lag_entries_at_end"] >= 0
        assert result["rate_acked_per_s"] > 0


def test_bench_warehouse_times_the_build_every_report_and_surveillance() -> None:
    result = _bench("warehouse", "--commands", "20000")
    assert result["events"] > 20_000 and result["rows"] > 0 and result["rows_per_s"] > 0
    assert set(result["report_s"]) == {"orders", "cat", "otr", "execq", "eod"}
    assert result["eod_clean"] and result["warehouse_mb"] > 0 and result["size_ratio"] > 0


def test_bench_fix_times_one_fix_session_beside_the_http_api() -> None:
    pytest.importorskip("quickfix", reason="the fix extra (quickfix) is not installed")
    result = _bench(
        "fix", "--orders", "50", "--window", "4", "--api-clients", "2", "--api-seconds", "1"
    )
    assert set(result) == {"fix", "api", "fix_to_api_orders_per_s"}
    fix = result["fix"]
    assert (fix["orders_reported"], fix["orders_lost"], fix["orders_rejected"]) == (50, 0, 0)
    assert fix["orders_per_s"] > 0 and 0 < fix["round_trip_ms_p50"] <= fix["round_trip_ms_p99"]
    assert result["api"]["orders_acked"] > 0 and result["fix_to_api_orders_per_s"] > 0
