"""Surveillance: each market-abuse pattern planted among random honest traffic is found, and
the honest traffic alone raises no alert."""

from __future__ import annotations

import datetime
import random
from pathlib import Path

import pytest

from cluster.event_log import EventLog
from engine.codes import TradingCapacity
from engine.commands import (
    AddAsset,
    AddInstrument,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    PlaceOrder,
    SetAccountProfile,
)
from engine.events import Accepted
from surveillance.config import RULES, ConfigError, load_parameters
from surveillance.run import surveil
from tests.cli_process import raftex
from tests.cluster.logged_node import BUY, SELL, LoggedNode
from warehouse.build import build
from warehouse.query import run_sql
from warehouse.source import DataDirSource

DAY = datetime.date(2026, 1, 1)
MID = 1_000  # 10.00 USD
HONEST = [f"h{n:02d}" for n in range(20)]
ABUSERS = ["wash1", "wash2", "spoofer", "marker", "igniter", "stuffer"]
# Their counterparties: a seller laying out asks, a buyer taking them (never an honest
# trader, whose own resting orders would stop its order by self-trade prevention).
COUNTERPARTIES = ["ladder", "taker"]
HONEST_STEPS = 3_000  # one honest action every 5 s: a little over 4 hours
STEP_MS = 5_000


class Market:
    """An engine with its event log, and honest traders who quote and trade near the mid."""

    def __init__(self, root: Path, seed: int) -> None:
        self.log = EventLog.open(root / "n1" / "events")
        self.node = LoggedNode(self.log)
        self.rng = random.Random(seed)
        self.mid = MID
        self.resting: dict[str, list[int]] = {name: [] for name in HONEST}
        self.node.run(
            AddAsset("USD", 2),
            AddAsset("ACME", 0),
            AddInstrument("ACME", "ACME", "USD", reference_price=MID, price_band_bps=2_000),
        )
        setup: list[Command] = []
        for name in [*HONEST, *ABUSERS, *COUNTERPARTIES]:
            owner = "owner-w" if name.startswith("wash") else name
            setup += [
                CreateAccount(name),
                Deposit(name, "USD", 100_000_000),
                Deposit(name, "ACME", 1_000_000),
                SetAccountProfile(name, "MEMB", owner, "", TradingCapacity.DEAL),
            ]
        self.node.run(*setup)

    def at(self, step_ms: int, *commands: Command) -> list[int]:
        """Applies `commands` as one entry `step_ms` later; the order ids accepted."""
        self.node.time_ms += step_ms
        applied = self.node.run(*commands)
        return [e.order_id for a in applied for e in a.events if isinstance(e, Accepted)]

    def honest(self, steps: int) -> None:
        for _ in range(steps):
            name = self.rng.choice(HONEST)
            if self.rng.random() < 0.02:
                self.mid += self.rng.choice((-1, 1))
            roll = self.rng.random()
            if roll < 0.1 and self.resting[name]:
                order_id = self.resting[name].pop(self.rng.randrange(len(self.resting[name])))
                self.at(STEP_MS, CancelOrder(name, order_id))
                continue
            side = BUY if self.rng.random() < 0.5 else SELL
            away = self.rng.randint(1, 4) if roll < 0.75 else 0  # at the mid: it may trade
            price = self.mid - away if side == BUY else self.mid + away
            qty = self.rng.randint(1, 20)
            self.resting[name] += self.at(STEP_MS, PlaceOrder(name, "ACME", side, qty, price))

    def close(self, root: Path) -> Path:
        self.log.close()
        warehouse = root / "warehouse"
        source = DataDirSource(root / "n1", None, None)
        try:
            build(source, warehouse)
        finally:
            source.close()
        return warehouse

    def asks_up_to(self, price: int) -> int:
        """The quantity a buy limited at `price` takes: every ask at or below it."""
        asks = self.node.exchange.instruments["ACME"].asks
        return sum(level.qty for level in asks.values() if level.price <= price)

    def touch(self) -> tuple[int, int]:
        """The best bid and ask in the engine's book now (0 for a side with none)."""
        inst = self.node.exchange.instruments["ACME"]
        bids = [level.price for level in inst.bids.values() if level.qty]
        asks = [level.price for level in inst.asks.values() if level.qty]
        return max(bids, default=0), min(asks, default=0)

    # ------------------------------------------------------------- the patterns

    def wash_trade(self) -> None:
        """wash1 joins the best ask; wash2 buys up to it, wash1's order included."""
        _, ask = self.touch()
        self.at(STEP_MS, PlaceOrder("wash1", "ACME", SELL, 10, ask))
        self.at(STEP_MS, PlaceOrder("wash2", "ACME", BUY, self.asks_up_to(ask), ask))

    def spoof(self) -> None:
        """A genuine small sell at the ask; large buys on three levels at and under the bid;
        a buyer takes the ask, the sell fills; the buys are cancelled."""
        bid, ask = self.touch()
        self.at(STEP_MS, PlaceOrder("spoofer", "ACME", SELL, 5, ask))
        fakes = self.at(
            STEP_MS, *(PlaceOrder("spoofer", "ACME", BUY, 150, bid - n) for n in (0, 1, 2))
        )
        self.at(STEP_MS, PlaceOrder("taker", "ACME", BUY, self.asks_up_to(ask), ask))
        self.at(STEP_MS, *(CancelOrder("spoofer", order_id) for order_id in fakes))

    def ignite(self) -> None:
        """A ladder of asks swept by one aggressive buy (70 bps up), then a sale back."""
        _, ask = self.touch()
        top = ask + 7
        self.at(STEP_MS, *(PlaceOrder("ladder", "ACME", SELL, 10, ask + n) for n in range(1, 8)))
        self.at(STEP_MS, PlaceOrder("igniter", "ACME", BUY, self.asks_up_to(top), top))
        bid, _ = self.touch()
        self.at(60_000, PlaceOrder("igniter", "ACME", SELL, 10, bid))

    def stuff(self) -> None:
        """120 messages in one second: 60 orders placed and cancelled at once."""
        bid, ask = self.touch()
        placed = self.at(
            STEP_MS, *(PlaceOrder("stuffer", "ACME", SELL, 1, (ask or bid) + 50) for _ in range(60))
        )
        self.at(10, *(CancelOrder("stuffer", order_id) for order_id in placed))

    def mark_the_close(self) -> None:
        """The day's last trades: buys 3% above the mid, from a ladder."""
        bid, ask = self.touch()
        high = (bid + (ask or bid)) * 103 // 200
        self.at(STEP_MS, PlaceOrder("ladder", "ACME", SELL, 300, high))
        self.at(STEP_MS, PlaceOrder("marker", "ACME", BUY, self.asks_up_to(high), high))


def _alerts(warehouse: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for alert in surveil(warehouse, DAY, list(RULES), load_parameters(None)):
        found.setdefault(alert.rule, set()).add(alert.account)
    return found


def test_honest_traffic_alone_raises_no_alert(tmp_path: Path) -> None:
    market = Market(tmp_path, seed=11)
    market.honest(HONEST_STEPS)
    warehouse = market.close(tmp_path)
    [row] = run_sql(warehouse, "SELECT count(*) AS trades FROM trades").to_pylist()
    assert row["trades"] > 200, "enough honest trading to have raised something"
    assert _alerts(warehouse) == {}


def test_every_planted_pattern_is_found_and_no_honest_trader_is_flagged(tmp_path: Path) -> None:
    market = Market(tmp_path, seed=11)
    market.honest(HONEST_STEPS // 3)
    market.wash_trade()
    market.honest(HONEST_STEPS // 6)
    market.spoof()
    market.honest(HONEST_STEPS // 6)
    market.ignite()
    market.honest(HONEST_STEPS // 6)
    market.stuff()
    market.honest(HONEST_STEPS // 6)
    market.mark_the_close()
    warehouse = market.close(tmp_path)

    found = _alerts(warehouse)
    assert found.get("wash_trades") == {"wash2"}
    assert found.get("layering") == {"spoofer"}
    assert found.get("momentum_ignition") == {"igniter"}
    assert found.get("quote_stuffing") == {"stuffer"}
    assert "marker" in found.get("marking_the_close", set())
    flagged = set().union(*found.values())
    assert not flagged & set(HONEST), f"honest traders flagged: {found}"

    stored = run_sql(warehouse, "SELECT rule, account, score, trade_ids FROM alerts")
    rows = stored.to_pylist()
    assert {(r["rule"], r["account"]) for r in rows} >= {("wash_trades", "wash2")}
    assert all(0 < r["score"] <= 1 for r in rows)
    assert all(r["trade_ids"] for r in rows if r["rule"] != "quote_stuffing")


def test_parameters_come_from_one_documented_file_and_bad_ones_are_refused(
    tmp_path: Path,
) -> None:
    defaults = load_parameters(None)
    assert set(defaults) == set(RULES)
    assert defaults["spoofing"]["look_back_minutes"] == 30
    tighter = tmp_path / "rules.toml"
    tighter.write_text("[spoofing]\ncancelled_to_filled_min = 5\n")
    assert load_parameters(tighter)["spoofing"]["cancelled_to_filled_min"] == 5
    for text, message in (
        ("[nonsense]\nx = 1\n", "unknown rule"),
        ("[spoofing]\nwindow = 1\n", "has no parameter"),
        ("[spoofing]\nlook_back_minutes = -1\n", "must be a number"),
        ("[spoofing\n", "not valid TOML"),
    ):
        tighter.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_parameters(tighter)
    done = raftex("surveil", "--date", "2026-01-01", "--warehouse", str(tmp_path), "--rules", "x")
    assert done.returncode == 2 and "unknown rule" in done.stderr
