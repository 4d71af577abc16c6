"""`raftex admin calendar`: an operator sets and clears a symbol's trading day on a running
cluster; bad input is refused with a clear message and changes nothing."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.cli_process import raftex
from tests.cluster.harness import ClusterHarness


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHarness]:
    cluster = ClusterHarness(tmp_path_factory.mktemp("calendar") / "cluster")
    with cluster.running():
        cluster.wait_leader()
        yield cluster


def _admin(harness: ClusterHarness, *args: str) -> tuple[int, str, str]:
    cluster_file = str(harness.cluster.cluster_file)
    done = raftex("admin", "--cluster", cluster_file, "--operator", "ops-jane", *args)
    return done.returncode, done.stdout, done.stderr


def _instrument(harness: ClusterHarness, symbol: str) -> dict:
    return harness.call(harness.wait_leader(), "GET", f"/v1/instruments/{symbol}")


def test_a_calendar_closed_today_closes_the_symbol_and_clear_reopens_it(
    harness: ClusterHarness,
) -> None:
    # Holidays yesterday, today and tomorrow: closed now in Berlin, whatever the time.
    log_ms = harness.call(harness.wait_leader(), "GET", "/v1/time")["log_time_ms"]
    today = datetime.datetime.fromtimestamp(log_ms / 1000, datetime.UTC).date()
    days = [today + datetime.timedelta(days=n) for n in (-1, 0, 1)]
    code, out, err = _admin(
        harness, "--json", "calendar", "MSFT", "--tz", "Europe/Berlin",
        "--holidays", ",".join(day.isoformat() for day in days),
    )  # fmt: skip
    assert code == 0, err
    events = json.loads(out)["events"]
    assert events[0]["type"] == "calendarset" and events[0]["by"] == "ops-jane"
    assert events[0]["time_zone"] == "Europe/Berlin" and events[0]["open_s"] == 9 * 3600
    assert events[-1]["type"] == "phasechanged" and events[-1]["phase"] == 1  # closed
    assert _instrument(harness, "MSFT")["phase"] == "closed"
    placed = harness.submit("n1", [8, "bob", "MSFT", 0, 1, 42_000, 0, 0, "while-closed"])
    assert placed["events"][0]["code"] == "market_closed"
    code, _, err = _admin(harness, "calendar", "MSFT", "--clear")
    assert code == 0, err
    assert _instrument(harness, "MSFT")["phase"] == "continuous"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--pre-open", "25:00"), "not a time of day"),
        (("--days", "mon-funday"), "weekdays are"),
        (("--tz", "Mars/Olympus"), "unknown time zone"),
        (("--open", "07:00"), "pre-open < open"),
        (("--session-s", "7"), "divisor of a day"),
    ],
)
def test_bad_calendars_are_refused_with_a_clear_message(
    harness: ClusterHarness, args: tuple[str, ...], message: str
) -> None:
    before = _instrument(harness, "NVDA")
    code, out, err = _admin(harness, "calendar", "NVDA", *args)
    assert code != 0 and message in err, (out, err)
    assert "Traceback" not in err
    assert _instrument(harness, "NVDA")["phase"] == before["phase"] == "continuous"


def test_limit_up_limit_down_bands_are_set_shown_and_turned_off(harness: ClusterHarness) -> None:
    before = _instrument(harness, "TSLA")
    code, out, err = _admin(harness, "--json", "luld", "TSLA", "--band-pct", "5")
    assert code == 0, err
    events = json.loads(out)["events"]
    assert events[0]["type"] == "limituplimitdownset" and events[0]["band_bps"] == 500
    reference = Decimal(before["reference_price"])
    low, high = (Decimal(p) for p in _instrument(harness, "TSLA")["price_band"])
    assert abs(low - reference * Decimal("0.95")) <= Decimal("0.01")
    assert abs(high - reference * Decimal("1.05")) <= Decimal("0.01")
    assert _instrument(harness, "TSLA")["limit_state"] is None
    for args, message in (
        (("--band-pct", "5.123"), "at most two decimals"),
        (("--band-pct", "150"), "basis points"),
        ((), "--band-pct"),
    ):
        code, out, err = _admin(harness, "luld", "TSLA", *args)
        assert code != 0 and message in err and "Traceback" not in err, (out, err)
    code, _, err = _admin(harness, "luld", "TSLA", "--off")
    assert code == 0, err
