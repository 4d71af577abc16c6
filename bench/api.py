"""`raftex bench api`: order entry over HTTP and WebSocket fan-out on a local 3-node cluster.

Starts a fresh cluster (fsync `always`, rate limits off; R read replicas beside
the 3 voters with `--replicas R`) in a temporary directory, gives each client
its own funded account and HMAC key, then, at the same time:
- C clients place orders over keep-alive HTTP on the leader, each waiting for
  its acknowledgement (closed loop); even clients buy and odd clients sell at
  one price, so orders trade and every trade moves the book;
- S subscribers hold the `book` channel of that symbol, spread over the
  replicas (on one follower when there are none), and record each update's
  sequence number and its delay from the entry's log time to delivery.
It checks that every subscriber received the same complete series of updates,
and reports the CPU of the leader, the followers and the replicas per order.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from api.client import ClientError, RaftexClient
from bench.cpu import cpu_seconds, cpu_used, per_order_us
from cluster.admin_client import AdminClient
from cluster.launcher import LocalCluster, wait_for_leader
from cluster.market import Market, seed_market
from engine.commands import AddInstrument

LEADER_WAIT_S = 30.0
SYMBOL = "BENCH"
QUOTE = "USD"
PRICE = "100.00"
CASH_CENTS = 10**13
SHARES = 10**9
SETTLE_S = 1.0
# How long the slowest feed may take to reach the last update once trading stops.
DRAIN_WAIT_S = 30.0
DRAIN_POLL_S = 0.05
OPEN_FILES_SPARE = 512
UPDATE_HEAD = re.compile(
    r'\{"channel":"book","type":"update","symbol":"[^"]*","seq":(\d+),"ts_ms":(\d+)'
)


@dataclass(frozen=True, slots=True)
class ApiBench:
    clients: int
    subscribers: int
    replicas: int
    # Where the subscribers were connected: node id -> how many.
    subscribers_by_node: dict[str, int]
    seconds: float
    orders_per_request: int
    key_kind: str
    orders_acked: int
    orders_per_s: float
    orders_failed: int
    ack_latency_ms_p50: float
    ack_latency_ms_p99: float
    # CPU of every process of the run (nodes, and this process's clients and subscribers)
    # per acknowledged order, and per process.
    cpu_us_per_order: float
    cpu_us_per_order_by_process: dict[str, float]
    book_updates: int
    md_messages_delivered: int
    md_messages_per_s: float
    delivery_ms_p50: float
    delivery_ms_p99: float
    every_subscriber_complete: bool
    subscribers_cut: int


@dataclass
class _Subscriber:
    seqs: list[int] = field(default_factory=list)
    delays_ms: list[float] = field(default_factory=list)
    cut: bool = False


def run_api_bench(
    clients: int, subscribers: int, seconds: float, batch: int = 1, replicas: int = 0
) -> ApiBench:
    _allow_open_files(subscribers)
    with tempfile.TemporaryDirectory(prefix="raftex-bench-api-") as tmp:
        cluster = LocalCluster(
            Path(tmp),
            3,
            fsync="always",
            settings={"rate_limit_ip_per_s": 0, "rate_limit_key_per_s": 0},
            replicas=replicas,
        )
        cluster.start()
        try:
            return asyncio.run(_measure(cluster, clients, subscribers, seconds, batch))
        finally:
            cluster.stop()


def _allow_open_files(subscribers: int) -> None:
    """Each subscriber is a socket here and one on a node (which inherit this limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = subscribers + OPEN_FILES_SPARE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


async def _measure(
    cluster: LocalCluster, clients: int, subscribers: int, seconds: float, batch: int
) -> ApiBench:
    token = cluster.admin_token
    leader = await wait_for_leader(cluster.nodes, token, LEADER_WAIT_S)
    leader_http = cluster.node(leader).http
    serving = [n.node_id for n in cluster.replicas] or [
        next(n.node_id for n in cluster.voters if n.node_id != leader)
    ]
    keys = await _setup(leader_http, token, clients)
    feeds = [_Subscriber() for _ in range(subscribers)]
    feed_nodes = [serving[n % len(serving)] for n in range(subscribers)]
    async with asyncio.TaskGroup() as tasks:
        readers = [
            tasks.create_task(_subscribe(cluster.node(node_id).http, feed))
            for node_id, feed in zip(feed_nodes, feeds, strict=True)
        ]
        await asyncio.sleep(SETTLE_S)
        latencies: list[float] = []
        failed = [0]
        roles = {p.pid: _role(cluster, n, leader) for n, p in cluster.processes.items()}
        roles[os.getpid()] = "clients"
        before = cpu_seconds(roles)
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _trade(leader_http, key, n, deadline, batch, latencies, failed)
                for n, key in enumerate(keys)
            )
        )
        elapsed = time.perf_counter() - started
        used = cpu_used(before, cpu_seconds(roles))
        await asyncio.sleep(SETTLE_S)
        await _until_feeds_end_alike(feeds, DRAIN_WAIT_S)
        for reader in readers:
            reader.cancel()
    series = {tuple(feed.seqs) for feed in feeds if not feed.cut}
    delays = sorted(d for feed in feeds for d in feed.delays_ms)
    delivered = sum(len(feed.seqs) for feed in feeds)
    return ApiBench(
        clients=clients,
        subscribers=subscribers,
        replicas=len(cluster.replicas),
        subscribers_by_node={n: feed_nodes.count(n) for n in serving},
        seconds=seconds,
        orders_per_request=batch,
        key_kind="hmac",
        orders_acked=len(latencies),
        orders_per_s=round(len(latencies) / elapsed),
        orders_failed=failed[0],
        ack_latency_ms_p50=_pct(sorted(latencies), 0.5),
        ack_latency_ms_p99=_pct(sorted(latencies), 0.99),
        cpu_us_per_order=per_order_us(sum(used.values()), len(latencies)),
        cpu_us_per_order_by_process={
            role: per_order_us(
                sum(s for pid, s in used.items() if roles[pid] == role), len(latencies)
            )
            for role in ("leader", "followers", "replicas", "clients")
        },
        book_updates=max((len(feed.seqs) for feed in feeds), default=0),
        md_messages_delivered=delivered,
        md_messages_per_s=round(delivered / elapsed),
        delivery_ms_p50=_pct(delays, 0.5),
        delivery_ms_p99=_pct(delays, 0.99),
        every_subscriber_complete=len(series) == 1 and not any(feed.cut for feed in feeds),
        subscribers_cut=sum(feed.cut for feed in feeds),
    )


async def _until_feeds_end_alike(feeds: list[_Subscriber], timeout_s: float) -> None:
    """Replicas apply behind the leader: on a loaded machine a fixed pause stopped a slow
    replica's subscribers short of the last update, and the run counted them incomplete.
    Waits, within `timeout_s`, until every open feed ends at the same update."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if len({feed.seqs[-1] if feed.seqs else None for feed in feeds if not feed.cut}) <= 1:
            return
        await asyncio.sleep(DRAIN_POLL_S)


def _role(cluster: LocalCluster, node_id: str, leader: str) -> str:
    if node_id == leader:
        return "leader"
    return "replicas" if cluster.node(node_id).replica else "followers"


async def _setup(http: str, token: str, clients: int) -> list[dict[str, Any]]:
    market = Market(
        quote=QUOTE,
        quote_decimals=2,
        instruments=(
            AddInstrument(
                SYMBOL, SYMBOL, QUOTE, max_qty=10**6, max_notional=10**14, reference_price=10_000
            ),
        ),
        accounts=tuple(f"bench{n:03d}" for n in range(clients)),
        cash=CASH_CENTS,
        shares=SHARES,
    )
    keys = []
    async with AdminClient(token, timeout_s=30.0) as admin:
        await seed_market(admin, http, market)
        for account in market.accounts:
            made = await admin.call(
                http,
                "POST",
                f"/v1/admin/accounts/{account}/keys",
                {"kind": "hmac", "scopes": ["read", "trade"]},
            )
            keys.append(made)
    return keys


async def _trade(
    http: str,
    key: dict[str, Any],
    n: int,
    deadline: float,
    batch: int,
    latencies: list[float],
    failed: list[int],
) -> None:
    """One order per request (`POST /v1/orders`), or `batch` per request (`/v1/orders/batch`);
    every order of a request gets that request's latency."""
    side = "buy" if n % 2 == 0 else "sell"
    async with RaftexClient([http], key["key_id"], key["secret"], "hmac") as client:
        sequence = 0
        while time.perf_counter() < deadline:
            sequence += 1
            sent = time.perf_counter()
            try:
                if batch == 1:
                    await client.place_order(
                        SYMBOL, side, "1", price=PRICE, client_order_id=f"b{n}-{sequence}"
                    )
                else:
                    orders = [
                        {
                            "symbol": SYMBOL,
                            "side": side,
                            "qty": "1",
                            "price": PRICE,
                            "client_order_id": f"b{n}-{sequence}-{i}",
                        }
                        for i in range(batch)
                    ]
                    answer = await client.request(
                        "POST", "/v1/orders/batch", body={"orders": orders}
                    )
                    failed[0] += sum(1 for o in answer["outcomes"] if "order_id" not in o)
            except ClientError:
                failed[0] += batch
                continue
            latencies.extend([(time.perf_counter() - sent) * 1000] * batch)


async def _subscribe(http: str, feed: _Subscriber) -> None:
    """A `book` subscriber on a plain stream, until cancelled: the benchmark shares two
    cores with the nodes, and a client library's per-message work (aiohttp's took a third
    of the machine at 20,000 messages/s) would be measured as delivery delay."""
    host, port = http.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /v1/ws HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            _client_frame(
                0x1, json.dumps({"op": "subscribe", "channel": "book", "symbol": SYMBOL}).encode()
            )
        )
        await _read_frames(reader, writer, feed)
    finally:
        writer.close()


async def _read_frames(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, feed: _Subscriber
) -> None:
    while True:
        first, second = await reader.readexactly(2)
        opcode, size = first & 0x0F, second & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await reader.readexactly(8), "big")
        payload = await reader.readexactly(size)
        if opcode == 0x8:
            feed.cut = True
            return
        if opcode == 0x9:
            writer.write(_client_frame(0xA, payload))
            continue
        head = UPDATE_HEAD.match(payload.decode())
        if head is not None:
            feed.seqs.append(int(head[1]))
            feed.delays_ms.append(time.time() * 1000 - int(head[2]))


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame must be masked (RFC 6455 5.3); payloads here are short."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


def _pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def format_api_bench(result: ApiBench, as_json: bool) -> str:
    if as_json:
        return json.dumps(asdict(result))
    r = result
    rows = [
        ("clients / subscribers", f"{r.clients} / {r.subscribers} ({r.key_kind} keys)"),
        ("subscribers on", ", ".join(f"{n}: {c}" for n, c in r.subscribers_by_node.items())),
        ("orders per request", f"{r.orders_per_request}"),
        ("orders acked/s over HTTP", f"{r.orders_per_s:,.0f} (failed {r.orders_failed})"),
        ("ack latency p50/p99", f"{r.ack_latency_ms_p50} / {r.ack_latency_ms_p99} ms"),
        ("CPU per order", f"{r.cpu_us_per_order} us {r.cpu_us_per_order_by_process}"),
        ("book updates per subscriber", f"{r.book_updates:,}"),
        ("market data delivered/s", f"{r.md_messages_per_s:,.0f}"),
        ("delivery delay p50/p99", f"{r.delivery_ms_p50} / {r.delivery_ms_p99} ms"),
        ("every subscriber complete", f"{r.every_subscriber_complete} (cut {r.subscribers_cut})"),
    ]
    return "\n".join(f"{name:<28}{value}" for name, value in rows)
