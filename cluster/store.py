"""The per-node RocksDB store: what the applied log left behind, durable and queryable.

Every node applies each Raft log entry (one batch of commands) to its engine and
then hands the commands with their events to `Store.write_batch`. Everything a
batch changes goes into ONE RocksDB WriteBatch (WAL on) together with the new
applied log index, audit head and last event sequence. A batch is therefore
all-or-nothing; after a crash the node reads `applied_index()` and replays the
log from the next entry. Writing an index that is already applied raises
`StoreOrderError`: a replay must never apply an entry twice. With `fsync=True`
each batch is fsynced before `write_batch` returns; with `fsync=False` (a node
whose Raft journal is the durability source) it survives kill -9 of the process
but the last batches before a machine crash may be lost, and are replayed.

Column families (keys are big-endian fixed-width integers, so RocksDB's byte
order is numeric order; names are length-prefixed UTF-8 so that one account's
keys never run into another's; values are msgpack arrays, turned into dicts by
the reads):

    meta             b"format" | b"applied_index" | b"audit_count" | b"last_seq"
                     -> u64, b"audit_head" -> 32 hash bytes
    events           first seq u64 -> [event_to_wire(event), ...]  (a block of
                     consecutive events, up to BLOCK_ROWS_MAX, never across batches)
    audit            audit_no u64 -> prev_hash(32) | hash(32) | msgpack record
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
and written once; records are arrays, not maps. What remains is dominated by
the per-account index entries (balances, balance history, account, open and
client orders, fills): each lands at a random place in a large memtable skip
list, several microseconds apiece, where an appended key costs a fraction.

The audit history holds one record per applied command, chained by SHA-256:
`hash = sha256(prev_hash + record)` where `record` is the msgpack bytes of
`[audit_no, log_index, log_time_ms, submitter, command_wire, outcome]`, stored
verbatim, so verification hashes exactly the bytes on disk. Derived tables
(orders, trades, fills, balances) are built from events alone, never from
commands.

Threading: one writer (the apply or store-writer thread). Reads may come from
other threads; each key is read as a whole batch left it, but a read spanning
several keys may straddle a batch written meanwhile.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

import msgpack
from rocksdict import Checkpoint, ColumnFamily, Options, Rdict, WriteBatch, WriteOptions

from engine.codes import OrderType
from engine.events import (
    Accepted,
    Amended,
    BalanceChanged,
    Cancelled,
    Event,
    Expired,
    Rejected,
    Replenished,
    Trade,
    Triggered,
    event_from_wire,
    event_to_dict,
    event_to_wire,
)

# Bumped when the key layout or a value shape changes; a store of another format refuses to open.
# 2: events and balance history in blocks, order histories inside order records, arrays.
STORE_FORMAT = 2
# Commands per write_batch. Must stay at or above the cluster's commands per log entry
# (cluster.entry.BATCH_COMMANDS_MAX): the store refusing a committed entry stops the node.
BATCH_COMMANDS_MAX = 4_096
# Rows per read (events, orders, trades, fills, balance history, audit records).
READ_LIMIT_MAX = 1_000
# Events of one order returned by `order()`; an order's full history stays in `events`.
ORDER_HISTORY_READ_MAX = 1_000
# Rows per stored block of events or of one account's balance history: bounds what a
# read decodes to reach one row (an order's history reads one block per event).
BLOCK_ROWS_MAX = 64
SUBMITTER_LEN_MAX = 128
NAME_BYTES_MAX = 0xFFFF
NAME_KEY_CACHE_MAX = 65_536
HASH_BYTES = 32
GENESIS_HASH = bytes(HASH_BYTES)
EMPTY_AUDIT_HEAD = GENESIS_HASH.hex()

CF_META = "meta"
CF_EVENTS = "events"
CF_AUDIT = "audit"
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
    CF_AUDIT,
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
META_AUDIT_HEAD = b"audit_head"
META_AUDIT_COUNT = b"audit_count"
META_LAST_SEQ = b"last_seq"

U64 = struct.Struct(">Q")
U16 = struct.Struct(">H")
U64_MAX = 2**64 - 1
# Sorts after every `name | u64` key with the same name: the start of a backwards scan.
_AFTER_ANY_U64 = b"\xff" * (U64.size + 1)

ROLE_MAKER = 0
ROLE_TAKER = 1
ROLE_NAMES = ("maker", "taker")
_STOP_TYPES = (OrderType.STOP.value, OrderType.STOP_LIMIT.value)

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
TRADE_FIELDS = ("trade_id", "seq", "ts_ms", "symbol", "price", "qty", "aggressor_side")
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


class StoreError(Exception):
    """The store cannot do what was asked; the message says what and where."""

    code = "store_error"


class StoreOrderError(StoreError):
    """A batch out of order: an already-applied log index or a gap in event sequences.

    Fatal for the node: it means the log and the store disagree about what was applied.
    """

    code = "store_order"


class StoreCorruptionError(StoreError):
    """Stored data, or events handed in, that break an invariant the store relies on."""

    code = "store_corrupt"


class StoreQueryError(StoreError):
    """A read with a bad cursor or limit: the caller's input, nothing is wrong with the store."""

    code = "store_bad_query"


class OrderStatus(StrEnum):
    """An order's state as the store derives it from events."""

    ARMED = "armed"  # a stop order waiting for its trigger price
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"  # may have filled in part first: see filled_qty
    EXPIRED = "expired"


OPEN_STATUSES = frozenset({OrderStatus.ARMED, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})
# Plain strings for the records: what is stored and what the reads return.
_ARMED = OrderStatus.ARMED.value
_OPEN = OrderStatus.OPEN.value
_PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED.value
_FILLED = OrderStatus.FILLED.value
_CANCELLED = OrderStatus.CANCELLED.value
_EXPIRED = OrderStatus.EXPIRED.value


class OutcomeResult(StrEnum):
    """The compact outcome of one command, as the audit history records it."""

    ACCEPTED = "accepted"  # an order was accepted (outcome.order_id says which)
    REJECTED = "rejected"  # outcome.code is the engine's reject code
    APPLIED = "applied"  # changed state without accepting an order (cancel, deposit, ...)
    NONE = "none"  # no events at all (a Tick with nothing to expire)


@dataclass(frozen=True, slots=True)
class AppliedCommand:
    """One command of a log entry as the engine applied it."""

    submitter: str  # node id + request tag of whoever submitted it, e.g. "n1/42"
    command: list  # engine.commands.command_to_wire(...) form
    events: list[Event]  # what engine Exchange.apply returned for it


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The result of re-hashing the audit chain; `records` counts the records found good."""

    ok: bool
    records: int
    first_bad: int | None
    reason: str


@lru_cache(maxsize=NAME_KEY_CACHE_MAX)
def name_key(name: str) -> bytes:
    """A length-prefixed name: no account's keys are a prefix of another account's."""
    raw = name.encode()
    if len(raw) > NAME_BYTES_MAX:
        raise StoreError(f"name of {len(raw)} bytes is longer than {NAME_BYTES_MAX}")
    return U16.pack(len(raw)) + raw


def u64_key(n: int) -> bytes:
    """A big-endian u64: byte order is numeric order."""
    return U64.pack(n)


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


def _db_options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    # Corruption found while reading is reported, not skipped.
    options.set_paranoid_checks(True)
    return options


def _cf_options() -> dict[str, Options]:
    return {name: Options(raw_mode=True) for name in COLUMN_FAMILIES}


class Store:
    """A node's RocksDB store. Open with `Store.open(path)`; close it when done."""

    def __init__(self, path: Path, db: Rdict, fsync: bool) -> None:
        """Private: use `Store.open`, which turns RocksDB errors into StoreError."""
        self._path = path
        self._db: Rdict | None = db
        self._cfs: dict[str, Rdict] = {}
        self._handles: dict[str, ColumnFamily] = {}
        self._write_options = WriteOptions()
        # The WAL stays on either way: it is what makes one WriteBatch all-or-nothing
        # across a crash. `sync` only decides whether write_batch waits for an fsync.
        self._write_options.disable_wal = False
        self._write_options.sync = fsync
        self._applied_index = 0
        # (audit count, audit head) in one tuple, so a reader on another thread never pairs
        # the count of one batch with the head of another.
        self._audit_tip: tuple[int, bytes] = (0, GENESIS_HASH)
        self._last_seq = 0
        try:
            for name in COLUMN_FAMILIES:
                self._cfs[name] = db.get_column_family(name)
                self._handles[name] = db.get_column_family_handle(name)
            self._load_meta()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ lifetime

    @classmethod
    def open(cls, path: Path, *, fsync: bool = True) -> Store:
        """Opens (creating if missing) the store at `path`.

        `fsync=True` makes every batch durable against a machine crash before
        `write_batch` returns. `fsync=False` is for a node whose Raft journal is the
        durability source (and for tests and benchmarks): each batch is still one
        atomic WriteBatch through the WAL and survives kill -9 of the process, but
        the last batches before a machine crash may be lost, and are replayed from
        the log after `applied_index()`.
        Raises StoreError if the directory is unusable, locked by another process,
        or holds something that is not a store of this format.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise StoreError(f"store path {path} exists and is not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store directory {path}: {exc.strerror}") from None
        _check_column_families(path)
        try:
            db = Rdict(str(path), _db_options(), column_families=_cf_options())
        # rocksdict reports every RocksDB status (lock, corruption, I/O) as a bare Exception.
        except Exception as exc:
            raise StoreError(
                f"cannot open store at {path}: {exc} "
                "(is another process using this data directory, or is it not a raftex store?)"
            ) from None
        return cls(path, db, fsync)

    def close(self) -> None:
        """Releases the database and its lock; safe to call twice."""
        if self._db is not None:
            db, self._db = self._db, None
            _close_db(db, self._cfs, self._handles)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._path

    def _live(self) -> Rdict:
        if self._db is None:
            raise StoreError(f"store at {self._path} is closed")
        return self._db

    def _load_meta(self) -> None:
        """Reads the meta record, initialising a fresh store; checks it against the data."""
        meta = self._cfs[CF_META]
        fmt = meta.get(META_FORMAT)
        if fmt is None:
            if any(_last_key(self._cfs[name]) is not None for name in COLUMN_FAMILIES):
                raise StoreCorruptionError(f"store at {self._path} has data but no meta record")
            batch = WriteBatch(raw_mode=True)
            handle = self._handles[CF_META]
            batch.put(META_FORMAT, U64.pack(STORE_FORMAT), handle)
            batch.put(META_APPLIED_INDEX, U64.pack(0), handle)
            batch.put(META_AUDIT_HEAD, GENESIS_HASH, handle)
            batch.put(META_AUDIT_COUNT, U64.pack(0), handle)
            batch.put(META_LAST_SEQ, U64.pack(0), handle)
            self._live().write(batch, self._write_options)
            return
        if U64.unpack(fmt)[0] != STORE_FORMAT:
            raise StoreError(
                f"store at {self._path} has format {U64.unpack(fmt)[0]}, "
                f"this build reads format {STORE_FORMAT}"
            )
        try:
            self._applied_index = U64.unpack(meta[META_APPLIED_INDEX])[0]
            audit_head = meta[META_AUDIT_HEAD]
            audit_count = U64.unpack(meta[META_AUDIT_COUNT])[0]
            self._last_seq = U64.unpack(meta[META_LAST_SEQ])[0]
        except (KeyError, struct.error) as exc:
            raise StoreCorruptionError(f"store at {self._path}: bad meta record: {exc}") from None
        if len(audit_head) != HASH_BYTES:
            raise StoreCorruptionError(f"store at {self._path}: audit head is not a hash")
        self._audit_tip = (audit_count, audit_head)
        last_event = _last_item(self._cfs[CF_EVENTS])
        last_audit = _last_key(self._cfs[CF_AUDIT])
        last_stored_seq = 0
        if last_event is not None:
            key, value = last_event
            last_stored_seq = U64.unpack(key)[0] + len(_unpack(value)) - 1
        if last_stored_seq != self._last_seq:
            raise StoreCorruptionError(
                f"store at {self._path}: last stored event is not meta last_seq {self._last_seq}"
            )
        if (U64.unpack(last_audit)[0] if last_audit else 0) != audit_count:
            raise StoreCorruptionError(
                f"store at {self._path}: last audit record is not meta count {audit_count}"
            )

    # ------------------------------------------------------------ meta

    def applied_index(self) -> int:
        """Log index of the last batch written; 0 for an empty store. Replay starts after it."""
        return self._applied_index

    def audit_head(self) -> str:
        """Hex SHA-256 of the last audit record (64 zeros when empty): equal on every replica."""
        return self._audit_tip[1].hex()

    def audit_count(self) -> int:
        """Number of audit records, which is the audit_no of the last one."""
        return self._audit_tip[0]

    def last_seq(self) -> int:
        """Highest event sequence stored; the engine's next event must be this plus one."""
        return self._last_seq

    # ------------------------------------------------------------ write

    def write_batch(
        self, log_index: int, log_time_ms: int, commands: Sequence[AppliedCommand]
    ) -> None:
        """Writes one applied log entry atomically (durably with fsync), or nothing at all.

        Raises StoreOrderError if `log_index` is not above `applied_index()` or if
        the events' new sequence numbers do not continue `last_seq()` without a gap.
        Events with a sequence at or below the last stored one are an idempotent
        retry's original outcome: audited for that command, not stored again.
        """
        db = self._live()
        if type(log_index) is not int or type(log_time_ms) is not int:
            raise StoreError(f"log index {log_index!r} and log time {log_time_ms!r} must be ints")
        if log_index <= self._applied_index:
            raise StoreOrderError(
                f"log index {log_index} is already applied (store is at {self._applied_index}):"
                " a replay must never apply an entry twice"
            )
        if log_index > U64_MAX or not 0 <= log_time_ms <= U64_MAX:
            raise StoreError(f"log index {log_index} / log time {log_time_ms} out of range")
        if len(commands) > BATCH_COMMANDS_MAX:
            raise StoreError(
                f"batch of {len(commands)} commands is over the limit of {BATCH_COMMANDS_MAX}"
            )
        batch = _BatchBuilder(self, log_index, log_time_ms)
        for command in commands:
            batch.add(command)
        write_batch = batch.finish()
        try:
            db.write(write_batch, self._write_options)
        # rocksdict reports RocksDB statuses as a bare Exception; nothing was applied.
        except Exception as exc:
            raise StoreError(f"log index {log_index}: write failed: {exc}") from None
        self._applied_index = log_index
        self._audit_tip = (batch.audit_no, batch.audit_head)
        self._last_seq = batch.last_seq

    # ------------------------------------------------------------ reads

    def events_since(self, seq: int, limit: int) -> list[Event]:
        """Events with a sequence above `seq`, ascending: how a feed refills a gap."""
        _check_cursor("seq", seq)
        _check_limit(limit)
        if seq >= U64_MAX:
            return []
        out: list[Event] = []
        for first, wires in _blocks_from(self._cf(CF_EVENTS), b"", seq + 1):
            skip = max(seq + 1 - first, 0)
            for expected, wire in enumerate(wires[skip : skip + limit - len(out)], first + skip):
                event = event_from_wire(wire)
                if event.seq != expected:
                    raise StoreCorruptionError(
                        f"event block {first} holds seq {event.seq} where {expected} belongs"
                    )
                out.append(event)
            if len(out) >= limit:
                break
        return out

    def order(self, order_id: int) -> dict[str, Any] | None:
        """One order's latest state and its history of events, oldest first."""
        _check_cursor("order_id", order_id)
        raw = self._cf(CF_ORDERS).get(U64.pack(order_id))
        if raw is None:
            return None
        record, seqs = _order_record(raw)
        history = [event_to_dict(event) for event in self._events_at(order_id, seqs)]
        record["history"] = history
        record["history_truncated"] = record["event_count"] > len(history)
        return record

    def order_by_client_id(self, account: str, client_order_id: str) -> dict[str, Any] | None:
        """The order an account placed with `client_order_id` (without its history)."""
        raw = self._cf(CF_CLIENT_ORDERS).get(name_key(account) + name_key(client_order_id))
        if raw is None:
            return None
        order = self._cf(CF_ORDERS).get(raw)
        if order is None:
            raise StoreCorruptionError(f"client order index points at missing order {raw.hex()}")
        return _order_record(order)[0]

    def orders_of(
        self, account: str, *, open_only: bool, after_order_id: int, limit: int
    ) -> list[dict[str, Any]]:
        """An account's orders with id above `after_order_id`, ascending (without history)."""
        _check_cursor("after_order_id", after_order_id)
        _check_limit(limit)
        if after_order_id >= U64_MAX:
            return []
        prefix = name_key(account)
        index = self._cf(CF_OPEN_ORDERS if open_only else CF_ACCOUNT_ORDERS)
        rows = _scan(index, prefix, prefix + U64.pack(after_order_id + 1), limit)
        if not rows:
            return []
        order_keys = [key[len(prefix) :] for key, _ in rows]
        out = []
        for order_key, raw in zip(order_keys, self._cf(CF_ORDERS)[order_keys], strict=True):
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
        _check_cursor("before_trade_id", before_trade_id)
        _check_limit(limit)
        if before_trade_id == 1:
            return []
        prefix = name_key(symbol)
        start = (
            prefix + U64.pack(before_trade_id - 1) if before_trade_id else prefix + _AFTER_ANY_U64
        )
        rows = _scan(self._cf(CF_TRADES), prefix, start, limit, backwards=True)
        return [dict(zip(TRADE_FIELDS, _unpack(value), strict=True)) for _, value in rows]

    def fills_of(self, account: str, after_trade_id: int, limit: int) -> list[dict[str, Any]]:
        """An account's fills with trade id above `after_trade_id`, ascending."""
        _check_cursor("after_trade_id", after_trade_id)
        _check_limit(limit)
        if after_trade_id >= U64_MAX:
            return []
        prefix = name_key(account)
        rows = _scan(self._cf(CF_FILLS), prefix, prefix + U64.pack(after_trade_id + 1), limit)
        return [dict(zip(FILL_FIELDS, _unpack(value), strict=True)) for _, value in rows]

    def balances(self, account: str) -> dict[str, dict[str, int]]:
        """An account's latest balance per asset (up to READ_LIMIT_MAX assets), as of its
        last BalanceChanged."""
        prefix = name_key(account)
        out: dict[str, dict[str, int]] = {}
        for key, value in _scan(self._cf(CF_BALANCES), prefix, prefix, READ_LIMIT_MAX):
            available, held, seq, ts_ms = _unpack(value)
            asset = key[len(prefix) + U16.size :].decode()
            out[asset] = {"available": available, "held": held, "seq": seq, "ts_ms": ts_ms}
        return out

    def balance_history(self, account: str, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """An account's balance changes with sequence above `after_seq`, ascending."""
        _check_cursor("after_seq", after_seq)
        _check_limit(limit)
        if after_seq >= U64_MAX:
            return []
        out: list[dict[str, Any]] = []
        for _, rows in _blocks_from(self._cf(CF_BALANCE_HISTORY), name_key(account), after_seq + 1):
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

    def audit_records(self, after_no: int, limit: int) -> list[dict[str, Any]]:
        """Audit records numbered above `after_no`, ascending, hashes in hex."""
        _check_cursor("after_no", after_no)
        _check_limit(limit)
        if after_no >= U64_MAX:
            return []
        rows = _scan(self._cf(CF_AUDIT), b"", U64.pack(after_no + 1), limit)
        return [_audit_record_dict(value) for _, value in rows]

    def verify_audit(self) -> AuditReport:
        """Re-hashes the whole audit chain from record 1 and names the first bad record.

        Checks, per record: it is where its number says (no missing record), it
        decodes, it links to the previous record's hash, and its hash is the
        SHA-256 of the previous hash and its own stored bytes. Then that the chain
        ends with the store's audit head. Covers the records present when it
        starts, so it may run while batches are written; records past the head
        are caught when the store opens.
        """
        count, head = self._audit_tip
        expected_no = 1
        prev_hash = GENESIS_HASH
        for key, value in self._cf(CF_AUDIT).items():
            if expected_no > count:
                break
            no = U64.unpack(key)[0] if len(key) == U64.size else -1
            if no != expected_no:
                return AuditReport(
                    False,
                    expected_no - 1,
                    expected_no,
                    f"missing record: expected record {expected_no}, found key {key.hex()}",
                )
            problem = _audit_record_problem(no, value, prev_hash)
            if problem:
                return AuditReport(False, no - 1, no, problem)
            prev_hash = value[HASH_BYTES : 2 * HASH_BYTES]
            expected_no += 1
        records = expected_no - 1
        if records < count:
            return AuditReport(
                False,
                records,
                records + 1,
                f"missing record: the chain ends at {records}, the store counts {count}",
            )
        if prev_hash != head:
            # Every record is sound but the head disagrees: blame the last one (0: none).
            return AuditReport(
                False,
                records,
                records,
                f"head mismatch: record {records} hashes to {prev_hash.hex()}, the store's "
                f"audit head is {head.hex()}",
            )
        return AuditReport(True, records, None, "")

    # ------------------------------------------------------------ checkpoint

    def checkpoint(self, dest: Path) -> None:
        """A consistent RocksDB checkpoint of the whole store at `dest` (which must not exist).

        Hard-links the SST files where it can, so it is cheap; it opens as a Store
        with the same applied index, audit head and data. For snapshots and backups.
        """
        db = self._live()
        dest = Path(dest)
        if dest.exists():
            raise StoreError(f"checkpoint destination {dest} already exists")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            Checkpoint(db).create_checkpoint(str(dest))
        except OSError as exc:
            raise StoreError(f"cannot create checkpoint at {dest}: {exc.strerror}") from None
        # rocksdict reports RocksDB statuses as a bare Exception.
        except Exception as exc:
            raise StoreError(f"cannot create checkpoint at {dest}: {exc}") from None

    # ------------------------------------------------------------ internals

    def _cf(self, name: str) -> Rdict:
        self._live()
        return self._cfs[name]

    def _events_at(self, order_id: int, seqs: list[int]) -> list[Event]:
        """The events with these ascending sequences, each looked up in its block."""
        out: list[Event] = []
        if not seqs:
            return out
        cursor = self._cf(CF_EVENTS).iter()
        first, wires = 0, []
        for seq in seqs:
            if not first <= seq < first + len(wires):
                cursor.seek_for_prev(U64.pack(seq))
                if cursor.valid():
                    first, wires = U64.unpack(cursor.key())[0], _unpack(cursor.value())
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


def _check_column_families(path: Path) -> None:
    """Refuses a store written with another set of column families (another format)."""
    if not (path / "CURRENT").exists():
        return
    try:
        found = set(Rdict.list_cf(str(path), Options(raw_mode=True)))
    # rocksdict reports RocksDB statuses as a bare Exception; opening will say what is wrong.
    except Exception:
        return
    unknown = found - set(COLUMN_FAMILIES) - {"default"}
    if unknown:
        raise StoreError(
            f"store at {path} has column families {sorted(unknown)} that format "
            f"{STORE_FORMAT} does not use: it was written by another build"
        )


def _close_db(db: Rdict, cfs: dict[str, Rdict], handles: dict[str, ColumnFamily]) -> None:
    """Closes the column families and drops their handles first: each keeps the DB (and its
    lock) alive, so a DB closed before them would stay locked until they are collected."""
    for cf in cfs.values():
        cf.close()
    cfs.clear()
    handles.clear()
    db.close()


def _last_key(cf: Rdict) -> bytes | None:
    for key in cf.keys(backwards=True):
        return key
    return None


def _last_item(cf: Rdict) -> tuple[bytes, bytes] | None:
    for item in cf.items(backwards=True):
        return item
    return None


def _scan(
    cf: Rdict, prefix: bytes, start: bytes, limit: int, backwards: bool = False
) -> list[tuple[bytes, bytes]]:
    """Up to `limit` rows from `start` (inclusive; backwards: at or before) within `prefix`."""
    rows: list[tuple[bytes, bytes]] = []
    if limit <= 0:
        return rows
    for key, value in cf.items(backwards=backwards, from_key=start):
        if not key.startswith(prefix):
            break
        rows.append((key, value))
        if len(rows) >= limit:
            break
    return rows


def _blocks_from(cf: Rdict, prefix: bytes, seq: int) -> Iterator[tuple[int, Any]]:
    """Yields (first seq, rows) of the blocks under `prefix | first seq u64` keys, from the
    block that may hold `seq` (the last one starting at or before it) onwards."""
    start = prefix + U64.pack(seq)
    for key, _ in cf.items(backwards=True, from_key=start):
        if key.startswith(prefix):
            start = key
        break
    for key, value in cf.items(from_key=start):
        if not key.startswith(prefix):
            return
        yield U64.unpack(key[len(prefix) :])[0], _unpack(value)


def _check_cursor(name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise StoreQueryError(f"{name} must be an integer from 0 to {U64_MAX}, not {value!r}")


def _check_limit(limit: int) -> None:
    if type(limit) is not int or not 1 <= limit <= READ_LIMIT_MAX:
        raise StoreQueryError(f"limit must be an integer from 1 to {READ_LIMIT_MAX}, not {limit!r}")


def _order_record(raw: bytes) -> tuple[dict[str, Any], list[int]]:
    """A stored order as the reads return it, and the seqs of its history."""
    values = _unpack(raw)
    if type(values) is not list or len(values) != _ORDER_RECORD_LEN:
        raise StoreCorruptionError(f"order record of the wrong shape: {values!r:.200}")
    seqs = values.pop()
    return dict(zip(ORDER_FIELDS, values, strict=True)), seqs


def _audit_record_problem(no: int, value: bytes, prev_hash: bytes) -> str:
    """Why stored audit record `no` is bad, or "" when it is good."""
    if len(value) <= 2 * HASH_BYTES:
        return f"record {no} is truncated ({len(value)} bytes)"
    stored_prev = value[:HASH_BYTES]
    stored_hash = value[HASH_BYTES : 2 * HASH_BYTES]
    body = value[2 * HASH_BYTES :]
    if stored_prev != prev_hash:
        return (
            f"broken link: record {no} names previous hash {stored_prev.hex()}, "
            f"record {no - 1} hashes to {prev_hash.hex()}"
        )
    if hashlib.sha256(prev_hash + body).digest() != stored_hash:
        return f"hash mismatch: record {no} does not hash to its stored hash"
    try:
        fields = _unpack(body)
    except (ValueError, msgpack.UnpackException) as exc:
        return f"record {no} does not decode: {exc}"
    if not isinstance(fields, list) or len(fields) != 6 or fields[0] != no:
        return f"record {no} has the wrong shape or number"
    return ""


def _audit_record_dict(value: bytes) -> dict[str, Any]:
    audit_no, log_index, log_time_ms, submitter, command, outcome = _unpack(value[2 * HASH_BYTES :])
    seqs, retry, result, code, order_id = outcome
    return {
        "audit_no": audit_no,
        "log_index": log_index,
        "log_time_ms": log_time_ms,
        "submitter": submitter,
        "command": command,
        "outcome": {
            "seqs": seqs,
            "retry": retry,
            "result": result,
            "code": code,
            "order_id": order_id,
        },
        "prev_hash": value[:HASH_BYTES].hex(),
        "hash": value[HASH_BYTES : 2 * HASH_BYTES].hex(),
    }


def _outcome_summary(events: list[Event]) -> tuple[str, str, int]:
    """(result, reject code, order id) of one command from its events.

    Timer events (expiries, pause ends) may come first; a command has at most one
    Accepted or Rejected of its own, and for a retry it is the original one.
    """
    for event in events:
        if type(event) is Accepted:
            return OutcomeResult.ACCEPTED.value, "", event.order_id
        if type(event) is Rejected:
            return OutcomeResult.REJECTED.value, str(event.code), 0
    return (OutcomeResult.APPLIED.value if events else OutcomeResult.NONE.value), "", 0


class _BatchBuilder:
    """Turns one log entry's commands and events into one RocksDB WriteBatch.

    Per command it writes only the audit record; everything else is gathered in
    memory and written once per batch by `finish`: the new events as blocks, each
    touched order once (read at most once, since a WriteBatch cannot be read back),
    each touched balance once, and each account's balance changes as one block.
    """

    __slots__ = (
        "log_index",
        "log_time_ms",
        "last_seq",
        "audit_no",
        "audit_head",
        "batch",
        "events",
        "orders",
        "balances",
        "balance_rows",
        "cfs",
        "handles",
        "pack",
    )

    def __init__(self, store: Store, log_index: int, log_time_ms: int) -> None:
        self.log_index = log_index
        self.log_time_ms = log_time_ms
        self.last_seq = store._last_seq
        self.audit_no, self.audit_head = store._audit_tip
        self.batch = WriteBatch(raw_mode=True)
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
        self.cfs = store._cfs
        self.handles = store._handles

    def add(self, command: AppliedCommand) -> None:
        """Takes the command's new events, updates the derived state, appends its audit record."""
        submitter = command.submitter
        if type(submitter) is not str or len(submitter) > SUBMITTER_LEN_MAX:
            raise StoreError(f"submitter must be a string of at most {SUBMITTER_LEN_MAX} chars")
        events = command.events
        handlers = _EVENT_HANDLERS
        stored = self.events
        last_seq = self.last_seq
        retry = False
        for event in events:
            seq = event.seq
            if seq <= last_seq:
                # An idempotent retry's original outcome: already stored once.
                retry = True
                continue
            if seq != last_seq + 1:
                raise StoreOrderError(
                    f"log index {self.log_index}: event seq {seq} does not follow {last_seq}"
                    " (event sequences must be gap-free)"
                )
            last_seq = seq
            stored.append(event)
            handler = handlers.get(type(event))
            if handler is not None:
                handler(self, event)
        self.last_seq = last_seq
        result, code, order_id = _outcome_summary(events)
        audit_no = self.audit_no + 1
        try:
            body = self.pack(
                [
                    audit_no,
                    self.log_index,
                    self.log_time_ms,
                    submitter,
                    command.command,
                    [[event.seq for event in events], retry, result, code, order_id],
                ]
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise StoreError(f"command from {submitter} cannot be encoded: {exc}") from None
        head = self.audit_head
        digest = hashlib.sha256(head + body).digest()
        self.batch.put(U64.pack(audit_no), head + digest + body, self.handles[CF_AUDIT])
        self.audit_no = audit_no
        self.audit_head = digest

    def finish(self) -> WriteBatch:
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
        batch.put(META_APPLIED_INDEX, U64.pack(self.log_index), meta)
        batch.put(META_AUDIT_HEAD, self.audit_head, meta)
        batch.put(META_AUDIT_COUNT, U64.pack(self.audit_no), meta)
        batch.put(META_LAST_SEQ, U64.pack(self.last_seq), meta)
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
            record = _unpack(raw)
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
            _ARMED if e.order_type in _STOP_TYPES else _OPEN,
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
        public = [e.trade_id, e.seq, e.ts_ms, e.symbol, e.price, e.qty, e.aggressor_side]
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
        record[_O_STATUS] = _PARTIALLY_FILLED if leaves else _FILLED
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
        if not e.leaves:
            record[_O_STATUS] = _CANCELLED
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
        record[_O_STATUS] = _EXPIRED
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
        if record[_O_STATUS] != _ARMED:
            raise StoreCorruptionError(
                f"trigger seq {e.seq}: order {e.order_id} is {record[_O_STATUS]}, not armed"
            )
        record[_O_STATUS] = _OPEN

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
