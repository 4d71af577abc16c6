"""`raftex bench fix`: order entry over one FIX 4.4 session, beside `raftex bench api`.

Starts a fresh 3-node cluster (fsync `always`, rate limits off) whose nodes
serve FIX, seeds one symbol with a maker's large resting sell, and connects one
FIX session (quickfix in initiator mode, its own store in the temporary
directory) to the leader for a funded account. It sends `orders`
NewOrderSingles (buy 1 at the maker's price, so each fills at once) keeping up
to `window` of them unanswered, and times each from its send to its first
ExecutionReport (New, or Rejected). Then, in the same run, `raftex bench api`
measures HTTP order entry on a cluster of its own, and both figures are
reported side by side (the machines are shared: ratios measured together are
what is comparable).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from api.fix_client import FixClient, FixEndpoint, FixFields, new_order_single
from bench.api import ApiBench, run_api_bench
from cluster.admin_client import AdminClient
from cluster.launcher import LocalCluster, free_port, wait_for_leader
from cluster.market import Market, seed_market
from engine.codes import Side
from engine.commands import AddInstrument, PlaceOrder, command_to_wire

LEADER_WAIT_S = 30.0
LOGON_WAIT_S = 10.0
SYMBOL = "FIXB"
QUOTE = "USD"
PRICE = "100.00"
PRICE_UNITS = 10_000
ACCOUNT = "fixbench"
MAKER = "fixmaker"
CASH_CENTS = 10**13
SHARES = 10**9
MAKER_QTY = 10**6
COMP_ID = "CLIENT1"
# An order whose first report has not come within this is counted lost.
REPORT_WAIT_S = 30.0
API_SUBSCRIBERS = 1


@dataclass(frozen=True, slots=True)
class FixBench:
    orders: int
    window: int
    orders_reported: int
    orders_rejected: int
    orders_lost: int
    orders_per_s: float
    # From NewOrderSingle sent to its first ExecutionReport received.
    round_trip_ms_p50: float
    round_trip_ms_p99: float
    seconds: float


@dataclass(frozen=True, slots=True)
class FixAndApiBench:
    fix: FixBench
    api: ApiBench
    fix_to_api_orders_per_s: float


class _Window:
    """Orders sent and not yet answered, at most `window`; fed by quickfix's thread."""

    def __init__(self, window: int) -> None:
        self.room = threading.Semaphore(window)
        self.lock = threading.Lock()
        self.sent_at: dict[str, float] = {}
        self.latencies_ms: list[float] = []
        self.rejected = 0
        self.all_done = threading.Event()
        self.expected = 0

    def sent(self, cl_ord_id: str) -> None:
        with self.lock:
            self.sent_at[cl_ord_id] = time.perf_counter()

    def on_message(self, fields: FixFields) -> None:
        if fields.get(35) != "8":
            return
        with self.lock:
            sent = self.sent_at.pop(fields.get(11, ""), None)
            if sent is None:
                return  # a later report of an order already answered
            self.latencies_ms.append((time.perf_counter() - sent) * 1000)
            if fields.get(150) == "8":
                self.rejected += 1
            if len(self.latencies_ms) == self.expected:
                self.all_done.set()
        self.room.release()


def run_fix_bench(orders: int, window: int, api_clients: int, api_seconds: float) -> FixAndApiBench:
    fix = _run_fix(orders, window)
    api = run_api_bench(api_clients, API_SUBSCRIBERS, api_seconds)
    ratio = round(fix.orders_per_s / api.orders_per_s, 3) if api.orders_per_s else 0.0
    return FixAndApiBench(fix, api, ratio)


def _run_fix(orders: int, window: int) -> FixBench:
    with tempfile.TemporaryDirectory(prefix="raftex-bench-fix-") as tmp:
        ports = {f"n{i}": free_port() for i in (1, 2, 3)}
        cluster = LocalCluster(
            Path(tmp) / "cluster",
            3,
            fsync="always",
            settings={"rate_limit_ip_per_s": 0, "rate_limit_key_per_s": 0},
            node_settings={node: {"fix_port": port} for node, port in ports.items()},
        )
        cluster.start()
        try:
            leader, key = asyncio.run(_setup(cluster))
            return _measure(
                FixEndpoint("127.0.0.1", ports[leader]), key, Path(tmp) / "client", orders, window
            )
        finally:
            cluster.stop()


async def _setup(cluster: LocalCluster) -> tuple[str, dict[str, Any]]:
    token = cluster.admin_token
    leader = await wait_for_leader(cluster.nodes, token, LEADER_WAIT_S)
    http = cluster.node(leader).http
    market = Market(
        quote=QUOTE,
        quote_decimals=2,
        instruments=(
            AddInstrument(
                SYMBOL,
                SYMBOL,
                QUOTE,
                max_qty=MAKER_QTY,
                max_notional=10**14,
                reference_price=PRICE_UNITS,
            ),
        ),
        accounts=(ACCOUNT, MAKER),
        cash=CASH_CENTS,
        shares=SHARES,
    )
    async with AdminClient(token, timeout_s=30.0) as admin:
        await seed_market(admin, http, market)
        resting = PlaceOrder(MAKER, SYMBOL, Side.SELL, MAKER_QTY, PRICE_UNITS)
        await admin.call(http, "POST", "/v1/admin/commands", {"command": command_to_wire(resting)})
        key = await admin.call(
            http,
            "POST",
            f"/v1/admin/accounts/{ACCOUNT}/keys",
            {"kind": "hmac", "scopes": ["read", "trade"]},
        )
    return leader, key


def _measure(
    endpoint: FixEndpoint, key: dict[str, Any], store: Path, orders: int, window: int
) -> FixBench:
    pending = _Window(window)
    pending.expected = orders
    client = FixClient(
        endpoint,
        COMP_ID,
        key["key_id"],
        key["secret"],
        "hmac",
        store,
        on_app_message=pending.on_message,
    )
    with client:
        if not client.wait_logged_on(LOGON_WAIT_S):
            raise ConnectionError(f"the FIX session did not log on within {LOGON_WAIT_S} s")
        started = time.perf_counter()
        for n in range(orders):
            if not pending.room.acquire(timeout=REPORT_WAIT_S):
                break
            cl_ord_id = f"f{n}"
            pending.sent(cl_ord_id)
            client.send(new_order_single(cl_ord_id, SYMBOL, "1", "1", price=PRICE, tif="1"))
        pending.all_done.wait(REPORT_WAIT_S)
        elapsed = time.perf_counter() - started
    with pending.lock:
        latencies = sorted(pending.latencies_ms)
        reported = len(latencies)
        rejected = pending.rejected
    return FixBench(
        orders=orders,
        window=window,
        orders_reported=reported,
        orders_rejected=rejected,
        orders_lost=orders - reported,
        orders_per_s=round(reported / elapsed) if elapsed else 0.0,
        round_trip_ms_p50=_pct(latencies, 0.5),
        round_trip_ms_p99=_pct(latencies, 0.99),
        seconds=round(elapsed, 2),
    )


def _pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def format_fix_bench(result: FixAndApiBench, as_json: bool) -> str:
    if as_json:
        return json.dumps(asdict(result))
    f, a = result.fix, result.api
    rows = [
        ("FIX orders (window)", f"{f.orders:,} ({f.window} unanswered at most, one session)"),
        ("FIX orders reported/s", f"{f.orders_per_s:,.0f} (rejected {f.orders_rejected})"),
        ("FIX round trip p50/p99", f"{f.round_trip_ms_p50} / {f.round_trip_ms_p99} ms"),
        ("HTTP orders acked/s", f"{a.orders_per_s:,.0f} ({a.clients} clients)"),
        ("HTTP ack latency p50/p99", f"{a.ack_latency_ms_p50} / {a.ack_latency_ms_p99} ms"),
        ("FIX / HTTP orders per s", f"{result.fix_to_api_orders_per_s}"),
    ]
    return "\n".join(f"{name:<28}{value}" for name, value in rows)
