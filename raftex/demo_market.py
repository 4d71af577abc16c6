"""A live demo market: a market maker and noise traders, trading through the public API.

`raftex up --demo-market` runs it as a process of its own beside the nodes (what
`make run` does), so books, trades, candles and tickers move within seconds of
start. It is an ordinary client: the demo accounts' own API keys, signed
requests to the nodes of cluster.json, no admin token.

- The market maker (alice) keeps three levels of quotes on both sides of every
  symbol around a fair price, and amends a quote when the fair price moves away
  from it or places a new one when it has been filled.
- Noise traders (bob, carol, dave) send crossing orders that trade against the
  quotes (immediate-or-cancel), rest passive orders near the touch, and cancel
  or amend those now and then.
- Each fair price walks slowly and is pulled back to its instrument's reference
  price, so the market stays far inside the price bands and never halts.

Actions are paced at `rate` per second in all (20 by default). A refused or
failed request is logged and the market goes on: the demo keeps trading through
a node's restart or an election.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import signal
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from api.client import ClientError, RaftexClient
from cluster.admin_client import CLUSTER_FILE_NAME, read_cluster_ca, read_cluster_file
from cluster.demo_keys import DEMO_KEYS_FILE_NAME

log = logging.getLogger("raftex.demo_market")

RATE_DEFAULT = 20.0
MAKER = "alice"
TRADERS = ("bob", "carol", "dave")
QUOTE_LEVELS = 3
# Half the spread and the distance between the maker's levels, in ticks per 10,000 of price.
HALF_SPREAD_BPS = 5
LEVEL_STEP_BPS = 4
QUOTE_QTY = (20, 80)
TRADE_QTY = (1, 15)
# The fair price's step per action (in bps of price, one standard deviation) and the share
# of its distance to the reference price it gives back each step.
WALK_BPS = 2.0
REVERSION = 0.002
# Of every 10 actions: how many the maker takes (the rest are the traders').
MAKER_SHARE = 0.5
RESYNC_EVERY = 200
# How often (in actions) the phases are read again, and the phases that take no orders.
PHASES_EVERY = 20
CLOSED_PHASES = ("closed", "post_close")
# Call phases gather orders for an auction: a trader who wants to trade leaves a day order
# that crosses the book instead of an immediate-or-cancel one.
CALL_PHASES = ("pre_open", "pre_close", "volatility_auction")
OPEN_ORDERS_PAGE = 500
REQUEST_TIMEOUT_S = 5.0


@dataclass(slots=True)
class Book:
    """What the demo knows of one symbol: its fair price and the maker's quotes."""

    symbol: str
    tick: Decimal
    reference: Decimal
    fair: float
    # (side, level) -> (client order id, price) of the maker's quote there.
    quotes: dict[tuple[str, int], tuple[str, Decimal]] = field(default_factory=dict)
    # The symbol's trading phase, as /v1/instruments last said.
    phase: str = "continuous"


class DemoMarket:
    def __init__(self, clients: dict[str, RaftexClient], seed: int) -> None:
        self.clients = clients
        self.random = random.Random(seed)
        self.books: list[Book] = []
        self.resting: dict[str, list[tuple[str, str]]] = {t: [] for t in TRADERS}
        self.actions = 0
        self.refused = 0
        self._next_id = 0

    async def load(self) -> None:
        """The symbols, each fair price at its last trade (or reference), and the maker's
        quotes left from an earlier run cancelled, so they do not pile up."""
        maker = self.clients[MAKER]
        answer = await maker.instruments()
        for inst in answer["instruments"]:
            ticker = await maker.ticker(inst["symbol"])
            reference = Decimal(inst["reference_price"])
            last = ticker.get("last")
            fair = float(Decimal(last) if last else reference)
            book = Book(inst["symbol"], Decimal(inst["tick_size"]), reference, fair)
            book.phase = inst["phase"]
            self.books.append(book)
        for account, client in self.clients.items():
            try:
                await client.mass_cancel()
            except ClientError as exc:
                log.warning("event=cancel_failed account=%s reason=%s", account, exc)

    async def run(self, rate: float, stop: asyncio.Event) -> None:
        period_s = 1.0 / rate
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            try:
                await self.step()
            except ClientError as exc:
                self.refused += 1
                log.info("event=refused reason=%s", exc)
            next_at = max(next_at + period_s, loop.time() - 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - loop.time()))

    async def step(self) -> None:
        self.actions += 1
        book = self.books[self.actions % len(self.books)]
        self._walk(book)
        if self.actions % RESYNC_EVERY == 0:
            await self._resync()
        if self.actions % PHASES_EVERY == 0:
            await self._read_phases()
        if book.phase in CLOSED_PHASES:
            return
        if self.random.random() < MAKER_SHARE:
            await self._requote(book)
        else:
            await self._trade(book, self.random.choice(TRADERS))

    def _walk(self, book: Book) -> None:
        reference = float(book.reference)
        step = self.random.gauss(0.0, WALK_BPS / 10_000) * book.fair
        book.fair += step + REVERSION * (reference - book.fair)

    def _price(self, book: Book, bps_from_fair: float) -> Decimal:
        """The price `bps_from_fair` away from fair, on the tick grid."""
        raw = book.fair * (1 + bps_from_fair / 10_000)
        ticks = max(1, math.floor(raw / float(book.tick) + 0.5))
        return book.tick * ticks

    def _client_order_id(self, who: str) -> str:
        self._next_id += 1
        return f"demo-{who}-{self.random.getrandbits(32):08x}-{self._next_id}"

    async def _requote(self, book: Book) -> None:
        """Moves (or replaces) the one quote of this book furthest from where it should be."""
        maker = self.clients[MAKER]
        targets = {
            (side, level): self._price(book, sign * (HALF_SPREAD_BPS + level * LEVEL_STEP_BPS))
            for side, sign in (("buy", -1), ("sell", 1))
            for level in range(QUOTE_LEVELS)
        }

        def distance(place: tuple[str, int]) -> Decimal:
            quote = book.quotes.get(place)
            return Decimal(10**9) if quote is None else abs(quote[1] - targets[place])

        place = max(targets, key=distance)
        quote = book.quotes.get(place)
        price = targets[place]
        if quote is not None and quote[1] == price:
            return
        if quote is not None:
            try:
                await maker.amend_order(book.symbol, client_order_id=quote[0], price=str(price))
                book.quotes[place] = (quote[0], price)
                return
            except ClientError as exc:
                # Filled or gone since: quote afresh.
                log.debug("event=amend_refused reason=%s", exc)
                del book.quotes[place]
        side, _ = place
        cid = self._client_order_id(MAKER)
        qty = self.random.randint(*QUOTE_QTY)
        await maker.place_order(book.symbol, side, str(qty), str(price), client_order_id=cid)
        book.quotes[place] = (cid, price)

    async def _trade(self, book: Book, who: str) -> None:
        client = self.clients[who]
        side = self.random.choice(("buy", "sell"))
        sign = 1 if side == "buy" else -1
        roll = self.random.random()
        resting = self.resting[who]
        if roll < 0.5:
            # Through the maker's first level: a trade.
            price = self._price(book, sign * (HALF_SPREAD_BPS + LEVEL_STEP_BPS))
            qty = self.random.randint(*TRADE_QTY)
            tif = "day" if book.phase in CALL_PHASES else "ioc"
            await client.place_order(book.symbol, side, str(qty), str(price), tif=tif)
        elif roll < 0.8 or not resting:
            price = self._price(book, -sign * self.random.uniform(0, HALF_SPREAD_BPS * 2))
            cid = self._client_order_id(who)
            qty = self.random.randint(*TRADE_QTY)
            await client.place_order(book.symbol, side, str(qty), str(price), client_order_id=cid)
            resting.append((book.symbol, cid))
        elif roll < 0.9:
            _, cid = resting.pop(self.random.randrange(len(resting)))
            await client.cancel_order(client_order_id=cid)
        else:
            symbol, cid = self.random.choice(resting)
            await client.amend_order(
                symbol, client_order_id=cid, qty=str(self.random.randint(1, 5))
            )

    async def _read_phases(self) -> None:
        """Each symbol's phase and reference price (a session opens at the last close)."""
        answer = await self.clients[MAKER].instruments()
        phases = {inst["symbol"]: inst for inst in answer["instruments"]}
        for book in self.books:
            inst = phases.get(book.symbol)
            if inst is not None:
                book.phase = inst["phase"]
                book.reference = Decimal(inst["reference_price"])

    async def _resync(self) -> None:
        """Forgets quotes and resting orders that traded away, from the open orders."""
        for who, client in self.clients.items():
            answer = await client.orders(status="open", limit=OPEN_ORDERS_PAGE)
            open_ids = {row["client_order_id"] for row in answer["orders"]}
            if who == MAKER:
                for book in self.books:
                    book.quotes = {p: q for p, q in book.quotes.items() if q[0] in open_ids}
            else:
                self.resting[who] = [r for r in self.resting[who] if r[1] in open_ids]


def _clients(data_dir: Path) -> dict[str, RaftexClient]:
    cluster_file = data_dir / CLUSTER_FILE_NAME
    nodes = [node.http for node in read_cluster_file(cluster_file)]
    ca = read_cluster_ca(cluster_file)
    keys = json.loads((data_dir / DEMO_KEYS_FILE_NAME).read_text())
    hmac_keys = {row["account"]: row for row in keys if row["kind"] == "hmac"}
    return {
        account: RaftexClient(
            nodes,
            hmac_keys[account]["api_key"],
            hmac_keys[account]["secret"],
            kind="hmac",
            timeout_s=REQUEST_TIMEOUT_S,
            ca_file=ca,
        )
        for account in (MAKER, *TRADERS)
    }


async def _main(data_dir: Path, rate: float, seed: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    clients = _clients(data_dir)
    for client in clients.values():
        await client.__aenter__()
    try:
        market = DemoMarket(clients, seed)
        while not stop.is_set():
            try:
                await market.load()
                break
            except ClientError as exc:
                log.warning("event=waiting_for_cluster reason=%s", exc)
                await asyncio.sleep(1.0)
        log.info("event=started symbols=%d rate=%s", len(market.books), rate)
        await market.run(rate, stop)
        log.info("event=stopped actions=%d refused=%d", market.actions, market.refused)
    finally:
        for client in clients.values():
            await client.__aexit__()


def run_demo_market(data_dir: Path, rate: float = RATE_DEFAULT, seed: int = 0) -> int:
    """`raftex demo-market`: trades on the cluster of DATA_DIR until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s level=%(levelname)s process=demo-market %(message)s",
    )
    for name in (CLUSTER_FILE_NAME, DEMO_KEYS_FILE_NAME):
        if not (data_dir / name).exists():
            print(
                f"raftex demo-market: no {name} in {data_dir}: start the cluster with "
                "`raftex up` first"
            )
            return 2
    asyncio.run(_main(data_dir, rate, seed or random.randrange(1, 2**31)))
    return 0
