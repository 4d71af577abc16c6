"""The history projection: orders, fills, trades and balances, as queries want them.

Built from the event log (cluster/event_log.py) in log order by the projector,
in a process of its own beside the node, never on a voter's write path. Each
batch of log entries goes into ONE RocksDB WriteBatch together with the last
log index it covers, so a projector that restarts after a crash resumes at the
next entry and never applies one twice (`write_entries` refuses an index at or
below `applied_index()`). The node reads it as a secondary instance
(`HistoryStore.follow`), so the projector stays its only writer.

Column families (keys are big-endian fixed-width integers, so RocksDB's byte
order is numeric order; names are length-prefixed UTF-8 so that one account's
keys never run into another's; values are msgpack arrays, turned into dicts by
the reads):

    meta             b"format" | b"applied_index" | b"last_seq" | b"log_time_ms" -> u64
    events           first seq u64 -> [event_to_wire(event), ...]  (a block of
                     consecutive events, up to BLOCK_ROWS_MAX, never across batches)
    orders           order_id u64 -> [*ORDER_FIELDS values, [seq, ...]]  (the seqs of
                     the order's first ORDER_HISTORY_READ_MAX events: its history)
    account_orders   name(account) | order_id u64 -> b""  (every order of an account)
    open_orders      name(account) | order_id u64 -> b""  (only while open)
    client_orders    name(account) | name(client_order_id) -> order_id u64
    trades           name(symbol) | trade_id u64 -> TRADE_FIELDS values (public trade)
    fills            name(account) | trade_id u64 | role u8 -> FILL_FIELDS values
    balances         name(account) | name(asset) -> [available, held, seq, ts_ms]
    balance_history  name(account) | first seq u64 -> [[seq, asset, available, held,
                     ts_ms], ...]  (one account's changes in one batch, up to
                     BLOCK_ROWS_MAX per block)

`name(s)` is a u16 byte length followed by the UTF-8 bytes.

Why blocks and arrays: a batch costs per RocksDB entry and per Python object,
hardly per byte. Events and balance history are append-only and read as ranges,
so a batch writes them as a few blocks instead of one entry per row; an order,
a balance or a history touched several times in a batch is folded in memory
and written once; records are arrays, not maps. Everything here is built from
events alone, never from commands.

Threading: one writer (the projector). Reads may come from other threads or
processes; each key is read as a whole batch left it, but a read spanning
several keys may straddle a batch written meanwhile.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgpack
from rocksdict import WriteOptions

from cluster.event_log import LoggedEntry
from cluster.rocks import (
    READ_LIMIT_MAX,
    U16,
    U64,
    U64_MAX,
    Batch,
    RocksDb,
    RocksStore,
    blocks_from,
    check_cursor,
    check_limit,
    last_item,
    name_key,
    scan,
    unpack,
)
from cluster.sealed import DataKey
from cluster.store_errors import StoreCorruptionError, StoreError, StoreOrderError
from engine.events import (
    Accepted,
    Amended,
    BalanceChanged,
    Cancelled,
    Event,
    Expired,
    Replenished,
    Trade,
    Triggered,
    event_from_wire,
    event_to_dict,
    event_to_wire,
)
from engine.order_status import OPEN_STATUSES, OrderStatus, next_status

# Bumped when the key layout or a value shape changes; a store of another format refuses to open.
HISTORY_FORMAT = 3
# Events of one order returned by `order()`; an order's full history stays in `events`.
ORDER_HISTORY_READ_MAX = 1_000
# Rows per stored block of events or of one account's balance history: bounds what a
# read decodes to reach one row (an order's history reads one block per event).
BLOCK_ROWS_MAX = 64

CF_META = "meta"
CF_EVENTS = "events"
CF_ORDERS = "orders"
CF_ACCOUNT_ORDERS = "account_orders"
CF_OPEN_ORDERS = "open_orders"
CF_CLIENT_ORDERS = "client_orders"
CF_TRADES = "trades"
CF_FILLS = "fills"
CF_BALANCES = "balances"
CF_BALANCE_HISTORY = "balance_history"
COLUMN_FAMILIES = (
    CF_META,
    CF_EVENTS,
    CF_ORDERS,
    CF_ACCOUNT_ORDERS,
    CF_OPEN_ORDERS,
    CF_CLIENT_ORDERS,
    CF_TRADES,
    CF_FILLS,
    CF_BALANCES,
    CF_BALANCE_HISTORY,
)

META_FORMAT = b"format"
META_APPLIED_INDEX = b"applied_index"
META_LAST_SEQ = b"last_seq"
META_LOG_TIME_MS = b"log_time_ms"
# Sorts after every `name | u64` key with the same name: the start of a backwards scan.
_AFTER_ANY_U64 = b"\xff" * (U64.size + 1)

ROLE_MAKER = 0
ROLE_TAKER = 1
ROLE_NAMES = ("maker", "taker")

# The stored order record: these fields in this order, then the list of history seqs.
ORDER_FIELDS = (
    "order_id",
    "account",
    "client_order_id",
    "symbol",
    "side",
    "order_type",
    "tif",
    "price",
    "stop_price",
    "display_qty",
    "post_only",
    "expire_at_ms",
    "hold",
    "original_qty",
    # qty is the order's total as the engine sees it: filled_qty + leaves.
    "qty",
    "filled_qty",
    "leaves",
    "cancelled_qty",
    "notional",
    "fees",
    "status",
    "reason",
    "accepted_seq",
    "accepted_ms",
    "updated_seq",
    "updated_ms",
    "event_count",
)
# `auction`: the auction phase that made the trade (0: continuous); rows written before
# auctions existed lack it and read as 0.
TRADE_FIELDS = ("trade_id", "seq", "ts_ms", "symbol", "price", "qty", "aggressor_side", "auction")
FILL_FIELDS = (
    "trade_id",
    "seq",
    "ts_ms",
    "symbol",
    "order_id",
    "side",
    "role",
    "price",
    "qty",
    "fee",
    "leaves",
)
_O = {name: index for index, name in enumerate(ORDER_FIELDS)}
_O_ORDER_ID = _O["order_id"]
_O_ACCOUNT = _O["account"]
_O_PRICE = _O["price"]
_O_QTY = _O["qty"]
_O_FILLED_QTY = _O["filled_qty"]
_O_LEAVES = _O["leaves"]
_O_CANCELLED_QTY = _O["cancelled_qty"]
_O_NOTIONAL = _O["notional"]
_O_FEES = _O["fees"]
_O_STATUS = _O["status"]
_O_REASON = _O["reason"]
_O_UPDATED_SEQ = _O["updated_seq"]
_O_UPDATED_MS = _O["updated_ms"]
_O_EVENT_COUNT = _O["event_count"]
_O_HISTORY = len(ORDER_FIELDS)
_ORDER_RECORD_LEN = len(ORDER_FIELDS) + 1


class HistoryStore(RocksStore):
    """The history projection's store. `HistoryStore.open(path)` for the projector that writes
    it, `HistoryStore.follow(path, dir)` for a node that reads it; close it when done."""

    def __init__(self, db: RocksDb) -> None:
        """Private: use `open` or `follow`, which turn RocksDB errors into StoreError."""
        self._db = db
        self._write_options = WriteOptions()
        # The WAL keeps each WriteBatch all-or-nothing across a crash; no fsync: after a
        # machine crash the projector replays the event log from what survived.
        self._write_options.disable_wal = False
        self._write_options.sync = False
        # (applied index, last seq, log time) in one tuple, read together.
        self._tip: tuple[int, int, int] = (0, 0, 0)
        try:
            self._load_meta()
        except BaseException:
            db.close()
            raise

    @classmethod
    def open(cls, path: Path, data_key: DataKey | None = None) -> HistoryStore:
        """Opens (creating if missing) the store at `path` as its one writer. Raises
        StoreError if the directory is unusable, locked by another process, or holds
        something that is not a history store of this format. `data_key`: its values are
        sealed under it (encryption at rest)."""
        return cls(RocksDb(path, COLUMN_FAMILIES, data_key=data_key))

    @classmethod
    def follow(
        cls, path: Path, secondary_dir: Path, data_key: DataKey | None = None
    ) -> HistoryStore:
        """Opens, read-only, the store a projector writes; `catch_up` shows what it wrote."""
        return cls(RocksDb(path, COLUMN_FAMILIES, secondary_dir, data_key))

    def _reload(self) -> None:
        self._load_meta()

    def _load_meta(self) -> None:
        """Reads the meta record, initialising a fresh store; checks it against the data."""
        meta = self._db.cf(CF_META)
        fmt = meta.get(META_FORMAT)
        if fmt is None:
            if any(last_item(self._db.cf(name)) is not None for name in COLUMN_FAMILIES):
                raise StoreCorruptionError(f"store at {self.path} has data but no meta record")
            if not self._db.secondary:
                batch = self._db.batch()
                handle = self._db.handles[CF_META]
                batch.put(META_FORMAT, U64.pack(HISTORY_FORMAT), handle)
                for key in (META_APPLIED_INDEX, META_LAST_SEQ, META_LOG_TIME_MS):
                    batch.put(key, U64.pack(0), handle)
                self._write(batch)
            return
        if U64.unpack(fmt)[0] != HISTORY_FORMAT:
            raise StoreError(
                f"store at {self.path} has format {U64.unpack(fmt)[0]}, "
                f"this build reads format {HISTORY_FORMAT}"
            )
        try:
            tip = tuple(
                U64.unpack(meta[key])[0]
                for key in (META_APPLIED_INDEX, META_LAST_SEQ, META_LOG_TIME_MS)
            )
        except (KeyError, struct.error) as exc:
            raise StoreCorruptionError(f"store at {self.path}: bad meta record: {exc}") from None
        last_event = last_item(self._db.cf(CF_EVENTS))
        last_stored_seq = 0
        if last_event is not None:
            key, value = last_event
            last_stored_seq = U64.unpack(key)[0] + len(unpack(value)) - 1
        if last_stored_seq != tip[1]:
            raise StoreCorruptionError(
                f"store at {self.path}: last stored event is not meta last_seq {tip[1]}"
            )
        self._tip = tip  # type: ignore[assignment]

    def _write(self, batch: Batch) -> None:
        try:
            self._db.write(batch, self._write_options)
        # rocksdict reports RocksDB statuses as a bare Exception; nothing was applied.
        except Exception as exc:
            raise StoreError(f"store at {self.path}: write failed: {exc}") from None

    # ------------------------------------------------------------ meta

    def applied_index(self) -> int:
        """Log index of the last entry projected; 0 for an empty store. Resume after it."""
        return self._tip[0]

    def last_seq(self) -> int:
        """Highest event sequence projected."""
        return self._tip[1]

    def log_time_ms(self) -> int:
        """Log time of the last entry projected: how far behind the node it is, in time."""
        return self._tip[2]

    # ------------------------------------------------------------ write

    def write_entries(self, entries: Sequence[LoggedEntry]) -> None:
        """Projects log entries, in order, in one atomic write (or nothing at all).

        Raises StoreOrderError if the first is not above `applied_index()`, if they are
        not in order, or if their new events do not continue `last_seq()` without a gap.
        A retry's events (its original outcome) were projected where they first happened.
        """
        if self._db.secondary:
            raise StoreError(f"store at {self.path} is open read-only")
        if not entries:
            return
        applied = self._tip[0]
        builder = _BatchBuilder(self)
        for entry in entries:
            if entry.log_index <= applied:
                raise StoreOrderError(
                    f"log index {entry.log_index} is already projected (the store is at"
                    f" {applied}): a replay must never apply an entry twice"
                )
            applied = entry.log_index
            for command in entry.commands:
                builder.add(command.events)
        last = entries[-1]
        self._write(builder.finish(last.log_index, last.log_time_ms))
        self._tip = (last.log_index, builder.last_seq, last.log_time_ms)

    # ------------------------------------------------------------ reads

    def order(self, order_id: int) -> dict[str, Any] | None:
        """One order's latest state and its history of events, oldest first."""
        check_cursor("order_id", order_id)
        raw = self._db.cf(CF_ORDERS).get(U64.pack(order_id))
        if raw is None:
            return None
        record, seqs = _order_record(raw)
        history = [event_to_dict(event) for event in self._events_at(order_id, seqs)]
        record["history"] = history
        record["history_truncated"] = record["event_count"] > len(history)
        return record

    def order_by_client_id(self, account: str, client_order_id: str) -> dict[str, Any] | None:
        """The order an account placed with `client_order_id` (without its history)."""
        raw = self._db.cf(CF_CLIENT_ORDERS).get(name_key(account) + name_key(client_order_id))
        if raw is None:
            return None
        order = self._db.cf(CF_ORDERS).get(raw)
        if order is None:
            raise StoreCorruptionError(f"client order index points at missing order {raw.hex()}")
        return _order_record(order)[0]

    def orders_of(
        self, account: str, *, open_only: bool, after_order_id: int, limit: int
    ) -> list[dict[str, Any]]:
        """An account's orders with id above `after_order_id`, ascending (without history)."""
        check_cursor("after_order_id", after_order_id)
        check_limit(limit)
        if after_order_id >= U64_MAX:
            return []
        prefix = name_key(account)
        index = self._db.cf(CF_OPEN_ORDERS if open_only else CF_ACCOUNT_ORDERS)
        rows = scan(index, prefix, prefix + U64.pack(after_order_id + 1), limit)
        if not rows:
            return []
        order_keys = [key[len(prefix) :] for key, _ in rows]
        out = []
        for order_key, raw in zip(order_keys, self._db.cf(CF_ORDERS)[order_keys], strict=True):
            if raw is None:
                raise StoreCorruptionError(
                    f"account {account!r} lists missing order {U64.unpack(order_key)[0]}"
                )
            out.append(_order_record(raw)[0])
        return out

    def trades(self, symbol: str, limit: int, before_trade_id: int = 0) -> list[dict[str, Any]]:
        """A symbol's public trades, newest first, with id below `before_trade_id` (0: newest).

        Public: no accounts or order ids (those are in each account's fills).
        """
        check_cursor("before_trade_id", before_trade_id)
        check_limit(limit)
        if before_trade_id == 1:
            return []
        prefix = name_key(symbol)
        start = (
            prefix + U64.pack(before_trade_id - 1) if before_trade_id else prefix + _AFTER_ANY_U64
        )
        rows = scan(self._db.cf(CF_TRADES), prefix, start, limit, backwards=True)
        return [_trade_row(unpack(value)) for _, value in rows]

    def trades_from(self, symbol: str, from_trade_id: int, limit: int) -> list[dict[str, Any]]:
        """A symbol's public trades with id at or above `from_trade_id`, ascending."""
        check_cursor("from_trade_id", from_trade_id)
        check_limit(limit)
        if from_trade_id >= U64_MAX:
            return []
        prefix = name_key(symbol)
        rows = scan(self._db.cf(CF_TRADES), prefix, prefix + U64.pack(from_trade_id), limit)
        return [_trade_row(unpack(value)) for _, value in rows]

    def first_trade_at(self, symbol: str, ts_ms: int) -> int:
        """The id of the symbol's first trade at or after log time `ts_ms` (0: none).

        Trade ids and log time rise together, so a binary search over ids finds it in
        about 64 seeks however many trades the symbol has.
        """
        prefix = name_key(symbol)
        trades = self._db.cf(CF_TRADES)
        newest = scan(trades, prefix, prefix + _AFTER_ANY_U64, 1, backwards=True)
        if not newest:
            return 0
        best, low, high = 0, 1, U64.unpack(newest[0][0][len(prefix) :])[0] + 1
        while low < high:
            middle = (low + high) // 2
            rows = scan(trades, prefix, prefix + U64.pack(middle), 1)
            trade_id = U64.unpack(rows[0][0][len(prefix) :])[0] if rows else high
            if trade_id >= high:
                high = middle
            elif _trade_row(unpack(rows[0][1]))["ts_ms"] >= ts_ms:
                best, high = trade_id, middle
            else:
                low = trade_id + 1
        return best

    def fills_of(self, account: str, after_trade_id: int, limit: int) -> list[dict[str, Any]]:
        """An account's fills with trade id above `after_trade_id`, ascending."""
        check_cursor("after_trade_id", after_trade_id)
        check_limit(limit)
        if after_trade_id >= U64_MAX:
            return []
        prefix = name_key(account)
        rows = scan(self._db.cf(CF_FILLS), prefix, prefix + U64.pack(after_trade_id + 1), limit)
        return [dict(zip(FILL_FIELDS, unpack(value), strict=True)) for _, value in rows]

    def balances(self, account: str) -> dict[str, dict[str, int]]:
        """An account's latest balance per asset (up to READ_LIMIT_MAX assets), as of its
        last BalanceChanged."""
        prefix = name_key(account)
        out: dict[str, dict[str, int]] = {}
        for key, value in scan(self._db.cf(CF_BALANCES), prefix, prefix, READ_LIMIT_MAX):
            available, held, seq, ts_ms = unpack(value)
            asset = key[len(prefix) + U16.size :].decode()
            out[asset] = {"available": available, "held": held, "seq": seq, "ts_ms": ts_ms}
        return out

    def balance_history(self, account: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """An account's balance changes with sequence above `after_seq`, ascending."""
        check_cursor("after_seq", after_seq)
        check_limit(limit)
        if after_seq >= U64_MAX:
            return []
        out: list[dict[str, Any]] = []
        for _, rows in blocks_from(
            self._db.cf(CF_BALANCE_HISTORY), name_key(account), after_seq + 1
        ):
            for seq, asset, available, held, ts_ms in rows:
                if seq <= after_seq:
                    continue
                out.append(
                    {
                        "seq": seq,
                        "ts_ms": ts_ms,
                        "asset": asset,
                        "available": available,
                        "held": held,
                    }
                )
                if len(out) >= limit:
                    return out
        return out

    def _events_at(self, order_id: int, seqs: list[int]) -> list[Event]:
        """The events with these ascending sequences, each looked up in its block."""
        out: list[Event] = []
        if not seqs:
            return out
        cursor = self._db.cf(CF_EVENTS).iter()
        first, wires = 0, []
        for seq in seqs:
            if not first <= seq < first + len(wires):
                cursor.seek_for_prev(U64.pack(seq))
                if cursor.valid():
                    first, wires = U64.unpack(cursor.key())[0], unpack(cursor.value())
                else:
                    first, wires = 0, []
            index = seq - first
            event = event_from_wire(wires[index]) if 0 <= index < len(wires) else None
            if event is None or event.seq != seq:
                raise StoreCorruptionError(
                    f"order {order_id}: event {seq} of its history is missing"
                )
            out.append(event)
        return out


def _order_record(raw: bytes) -> tuple[dict[str, Any], list[int]]:
    """A stored order as the reads return it, and the seqs of its history."""
    values = unpack(raw)
    if type(values) is not list or len(values) != _ORDER_RECORD_LEN:
        raise StoreCorruptionError(f"order record of the wrong shape: {values!r:.200}")
    seqs = values.pop()
    return dict(zip(ORDER_FIELDS, values, strict=True)), seqs


class _BatchBuilder:
    """Turns log entries' events into one RocksDB WriteBatch.

    Everything is gathered in memory and written once by `finish`: the new events as
    blocks, each touched order once (read at most once, since a WriteBatch cannot be
    read back), each touched balance once, and each account's balance changes as one
    block.
    """

    __slots__ = (
        "last_seq",
        "batch",
        "events",
        "orders",
        "balances",
        "balance_rows",
        "cfs",
        "handles",
        "pack",
    )

    def __init__(self, store: HistoryStore) -> None:
        self.last_seq = store.last_seq()
        self.batch = store._db.batch()
        # One packer per batch: msgpack.packb builds a Packer per call (measured on a Trade
        # wire: 0.71 us against 0.33 us for a reused Packer).
        self.pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True).pack
        # The events this batch stores, in sequence order.
        self.events: list[Event] = []
        # order id -> [record, was it open in the store before this batch]
        self.orders: dict[int, list[Any]] = {}
        # (account, asset) -> its last BalanceChanged in this batch
        self.balances: dict[tuple[str, str], BalanceChanged] = {}
        # account -> its balance history rows in this batch
        self.balance_rows: dict[str, list[list[Any]]] = {}
        # The store's own dicts, never single handles copied out of them: close() empties
        # them, and a handle left in a builder that a traceback keeps alive would keep the
        # DB (and its lock) open.
        self.cfs = store._db.cfs
        self.handles = store._db.handles

    def add(self, events: list[Event]) -> None:
        """Takes one command's new events and updates the derived state from them."""
        handlers = _EVENT_HANDLERS
        stored = self.events
        last_seq = self.last_seq
        for event in events:
            seq = event.seq
            if seq <= last_seq:
                continue  # a retry's original outcome: projected where it happened
            if seq != last_seq + 1:
                raise StoreOrderError(
                    f"event seq {seq} does not follow {last_seq} (event sequences must be gap-free)"
                )
            last_seq = seq
            stored.append(event)
            handler = handlers.get(type(event))
            if handler is not None:
                handler(self, event)
        self.last_seq = last_seq

    def finish(self, log_index: int, log_time_ms: int) -> Batch:
        """Writes the events, touched orders, balances and balance history, and the new meta."""
        batch = self.batch
        handles = self.handles
        pack = self.pack
        events = self.events
        handle = handles[CF_EVENTS]
        for start in range(0, len(events), BLOCK_ROWS_MAX):
            block = events[start : start + BLOCK_ROWS_MAX]
            batch.put(U64.pack(block[0].seq), pack([event_to_wire(e) for e in block]), handle)
        handle = handles[CF_ORDERS]
        open_handle = handles[CF_OPEN_ORDERS]
        for order_id, (record, was_open) in self.orders.items():
            key = U64.pack(order_id)
            batch.put(key, pack(record), handle)
            is_open = record[_O_STATUS] in OPEN_STATUSES
            if is_open != was_open:
                index_key = name_key(record[_O_ACCOUNT]) + key
                if is_open:
                    batch.put(index_key, b"", open_handle)
                else:
                    batch.delete(index_key, open_handle)
        handle = handles[CF_BALANCES]
        for (account, asset), e in self.balances.items():
            value = pack([e.available, e.held, e.seq, e.ts_ms])
            batch.put(name_key(account) + name_key(asset), value, handle)
        handle = handles[CF_BALANCE_HISTORY]
        for account, rows in self.balance_rows.items():
            prefix = name_key(account)
            for start in range(0, len(rows), BLOCK_ROWS_MAX):
                block = rows[start : start + BLOCK_ROWS_MAX]
                batch.put(prefix + U64.pack(block[0][0]), pack(block), handle)
        meta = handles[CF_META]
        batch.put(META_APPLIED_INDEX, U64.pack(log_index), meta)
        batch.put(META_LAST_SEQ, U64.pack(self.last_seq), meta)
        batch.put(META_LOG_TIME_MS, U64.pack(log_time_ms), meta)
        return batch

    # ------------------------------------------------------------ orders

    def _touch(self, order_id: int, event: Event) -> list[Any]:
        """The order's record, loaded once per batch, with `event` added to its history."""
        slot = self.orders.get(order_id)
        if slot is None:
            raw = self.cfs[CF_ORDERS].get(U64.pack(order_id))
            if raw is None:
                raise StoreCorruptionError(
                    f"event seq {event.seq} names order {order_id}, which the store never saw"
                    " accepted"
                )
            record = unpack(raw)
            if type(record) is not list or len(record) != _ORDER_RECORD_LEN:
                raise StoreCorruptionError(f"order {order_id}: stored record of the wrong shape")
            slot = self.orders[order_id] = [record, record[_O_STATUS] in OPEN_STATUSES]
        record = slot[0]
        if record[_O_STATUS] not in OPEN_STATUSES:
            raise StoreCorruptionError(
                f"event seq {event.seq} changes order {order_id}, which is {record[_O_STATUS]}"
            )
        history = record[_O_HISTORY]
        if len(history) < ORDER_HISTORY_READ_MAX:
            history.append(event.seq)
        record[_O_UPDATED_SEQ] = event.seq
        record[_O_UPDATED_MS] = event.ts_ms
        record[_O_EVENT_COUNT] += 1
        return record

    def _accepted(self, e: Accepted) -> None:
        order_id = e.order_id
        if order_id in self.orders:
            raise StoreCorruptionError(f"event seq {e.seq} accepts order {order_id} twice")
        # In ORDER_FIELDS order, then the history.
        record = [
            order_id,
            e.account,
            e.client_order_id,
            e.symbol,
            e.side,
            e.order_type,
            e.tif,
            e.price,
            e.stop_price,
            e.display_qty,
            e.post_only,
            e.expire_at_ms,
            e.hold,
            e.qty,  # original_qty
            e.qty,  # qty
            0,  # filled_qty
            e.qty,  # leaves
            0,  # cancelled_qty
            0,  # notional
            0,  # fees
            next_status("", e, order_id),
            "",  # reason
            e.seq,  # accepted_seq
            e.ts_ms,  # accepted_ms
            e.seq,  # updated_seq
            e.ts_ms,  # updated_ms
            1,  # event_count
            [e.seq],  # history
        ]
        self.orders[order_id] = [record, False]
        key = U64.pack(order_id)
        account = name_key(e.account)
        batch = self.batch
        batch.put(account + key, b"", self.handles[CF_ACCOUNT_ORDERS])
        if e.client_order_id:
            batch.put(account + name_key(e.client_order_id), key, self.handles[CF_CLIENT_ORDERS])

    def _trade(self, e: Trade) -> None:
        maker_side = 1 - e.aggressor_side
        self._fill(e, e.maker_order_id, e.maker_account, maker_side, ROLE_MAKER)
        self._fill(e, e.taker_order_id, e.taker_account, e.aggressor_side, ROLE_TAKER)
        # In TRADE_FIELDS order.
        public = [e.trade_id, e.seq, e.ts_ms, e.symbol, e.price, e.qty, e.aggressor_side, e.auction]
        self.batch.put(
            name_key(e.symbol) + U64.pack(e.trade_id), self.pack(public), self.handles[CF_TRADES]
        )

    def _fill(self, e: Trade, order_id: int, account: str, side: int, role: int) -> None:
        if role == ROLE_MAKER:
            fee, leaves = e.maker_fee, e.maker_leaves
        else:
            fee, leaves = e.taker_fee, e.taker_leaves
        record = self._touch(order_id, e)
        if record[_O_LEAVES] - e.qty != leaves or record[_O_ACCOUNT] != account:
            raise StoreCorruptionError(
                f"trade seq {e.seq}: order {order_id} had {record[_O_LEAVES]} left, fills "
                f"{e.qty} and reports {leaves} left"
            )
        record[_O_LEAVES] = leaves
        record[_O_FILLED_QTY] += e.qty
        record[_O_NOTIONAL] += e.price * e.qty
        record[_O_FEES] += fee
        record[_O_STATUS] = next_status(record[_O_STATUS], e, order_id)
        _check_quantities(record, e)
        # In FILL_FIELDS order.
        fill = [
            e.trade_id,
            e.seq,
            e.ts_ms,
            e.symbol,
            order_id,
            side,
            ROLE_NAMES[role],
            e.price,
            e.qty,
            fee,
            leaves,
        ]
        key = name_key(account) + U64.pack(e.trade_id) + bytes((role,))
        self.batch.put(key, self.pack(fill), self.handles[CF_FILLS])

    def _cancelled(self, e: Cancelled) -> None:
        record = self._touch(e.order_id, e)
        if record[_O_LEAVES] - e.qty != e.leaves:
            raise StoreCorruptionError(
                f"cancel seq {e.seq}: order {e.order_id} had {record[_O_LEAVES]} left, cancels "
                f"{e.qty} and reports {e.leaves} left"
            )
        record[_O_QTY] -= e.qty
        record[_O_CANCELLED_QTY] += e.qty
        record[_O_LEAVES] = e.leaves
        record[_O_REASON] = str(e.reason)
        record[_O_STATUS] = next_status(record[_O_STATUS], e, e.order_id)
        _check_quantities(record, e)

    def _expired(self, e: Expired) -> None:
        record = self._touch(e.order_id, e)
        if record[_O_LEAVES] != e.qty:
            raise StoreCorruptionError(
                f"expiry seq {e.seq}: order {e.order_id} had {record[_O_LEAVES]} left, "
                f"expires {e.qty}"
            )
        record[_O_QTY] -= e.qty
        record[_O_LEAVES] = 0
        record[_O_STATUS] = next_status(record[_O_STATUS], e, e.order_id)
        _check_quantities(record, e)

    def _amended(self, e: Amended) -> None:
        record = self._touch(e.order_id, e)
        if record[_O_QTY] != e.old_qty or record[_O_PRICE] != e.old_price:
            raise StoreCorruptionError(
                f"amend seq {e.seq}: order {e.order_id} is {record[_O_QTY]} at "
                f"{record[_O_PRICE]}, the amendment says {e.old_qty} at {e.old_price}"
            )
        record[_O_QTY] = e.qty
        record[_O_PRICE] = e.price
        record[_O_LEAVES] = e.leaves
        _check_quantities(record, e)

    def _triggered(self, e: Triggered) -> None:
        record = self._touch(e.order_id, e)
        if record[_O_STATUS] != OrderStatus.ARMED:
            raise StoreCorruptionError(
                f"trigger seq {e.seq}: order {e.order_id} is {record[_O_STATUS]}, not armed"
            )
        record[_O_STATUS] = next_status(record[_O_STATUS], e, e.order_id)

    def _replenished(self, e: Replenished) -> None:
        self._touch(e.order_id, e)

    # ------------------------------------------------------------ balances

    def _balance_changed(self, e: BalanceChanged) -> None:
        account = e.account
        self.balances[account, e.asset] = e
        row = [e.seq, e.asset, e.available, e.held, e.ts_ms]
        rows = self.balance_rows.get(account)
        if rows is None:
            self.balance_rows[account] = [row]
        else:
            rows.append(row)


# Unbound, at class level: a table of bound methods on the builder would be a reference
# cycle that keeps the column family handles, and so the DB lock, alive after close().
_EVENT_HANDLERS: dict[type, Callable[[_BatchBuilder, Any], None]] = {
    Accepted: _BatchBuilder._accepted,
    Trade: _BatchBuilder._trade,
    Cancelled: _BatchBuilder._cancelled,
    Expired: _BatchBuilder._expired,
    Amended: _BatchBuilder._amended,
    Triggered: _BatchBuilder._triggered,
    Replenished: _BatchBuilder._replenished,
    BalanceChanged: _BatchBuilder._balance_changed,
}


def _check_quantities(record: list[Any], event: Event) -> None:
    """The engine's invariant: an order's total is what filled plus what is left."""
    if record[_O_LEAVES] < 0 or record[_O_QTY] != record[_O_FILLED_QTY] + record[_O_LEAVES]:
        raise StoreCorruptionError(
            f"event seq {event.seq}: order {record[_O_ORDER_ID]} has qty {record[_O_QTY]}, "
            f"filled {record[_O_FILLED_QTY]} and {record[_O_LEAVES]} left"
        )


def _trade_row(values: list[Any]) -> dict[str, Any]:
    if len(values) == len(TRADE_FIELDS) - 1:
        values = [*values, 0]
    return dict(zip(TRADE_FIELDS, values, strict=True))
