"""RocksDB as the node's stores use it (rocksdict): opening with column families, as the one
writer or as a secondary reader beside it, closing, checkpoints, and ordered keys.

Keys are big-endian fixed-width integers, so RocksDB's byte order is numeric
order; names are length-prefixed UTF-8, so that one account's keys never run
into another's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

import msgpack
from rocksdict import AccessType, Checkpoint, ColumnFamily, Options, Rdict

U64 = struct.Struct(">Q")
U16 = struct.Struct(">H")
U64_MAX = 2**64 - 1
NAME_BYTES_MAX = 0xFFFF
NAME_KEY_CACHE_MAX = 65_536


# Rows per read (events, orders, trades, fills, balance history, audit records).
READ_LIMIT_MAX = 1_000


class StoreError(Exception):
    """A store that cannot do what was asked; the message says what and where."""

    code = "store_error"


class StoreOrderError(StoreError):
    """A write out of order: an already-applied log index or a gap in event sequences.

    Fatal for a node: it means the log and the store disagree about what was applied.
    """

    code = "store_order"


class StoreCorruptionError(StoreError):
    """Stored data, or data handed in, that break an invariant the store relies on."""

    code = "store_corrupt"


class StoreQueryError(StoreError):
    """A read with a bad cursor or limit: the caller's input, nothing is wrong with the store."""

    code = "store_bad_query"


def check_cursor(name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise StoreQueryError(f"{name} must be an integer from 0 to {U64_MAX}, not {value!r}")


def check_limit(limit: int) -> None:
    if type(limit) is not int or not 1 <= limit <= READ_LIMIT_MAX:
        raise StoreQueryError(f"limit must be an integer from 1 to {READ_LIMIT_MAX}, not {limit!r}")


@lru_cache(maxsize=NAME_KEY_CACHE_MAX)
def name_key(name: str) -> bytes:
    """A length-prefixed name: no account's keys are a prefix of another account's."""
    raw = name.encode()
    if len(raw) > NAME_BYTES_MAX:
        raise StoreError(f"name of {len(raw)} bytes is longer than {NAME_BYTES_MAX}")
    return U16.pack(len(raw)) + raw


def unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


def _options(secondary: bool) -> Options:
    options = Options(raw_mode=True)
    if secondary:
        # A secondary instance keeps every file open (RocksDB requires it).
        options.set_max_open_files(-1)
    else:
        options.create_if_missing(True)
        options.create_missing_column_families(True)
    # Corruption found while reading is reported, not skipped.
    options.set_paranoid_checks(True)
    return options


class RocksDb:
    """One RocksDB database and its column families, open for writing or as a secondary."""

    def __init__(
        self, path: Path, column_families: Sequence[str], secondary_dir: Path | None = None
    ) -> None:
        """`secondary_dir`: open as a secondary instance beside the process that writes it
        (`catch_up` then shows what it wrote); its own files go there."""
        self.path = Path(path)
        self.secondary = secondary_dir is not None
        self.cfs: dict[str, Rdict] = {}
        self.handles: dict[str, ColumnFamily] = {}
        if not self.secondary:
            if self.path.exists() and not self.path.is_dir():
                raise StoreError(f"store path {self.path} exists and is not a directory")
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {self.path}: {exc.strerror}") from None
            _check_column_families(self.path, column_families)
        elif not (self.path / "CURRENT").exists():
            raise StoreError(f"no store at {self.path} yet")
        cf_options = {name: Options(raw_mode=True) for name in column_families}
        access = (
            AccessType.secondary(str(secondary_dir))
            if secondary_dir is not None
            else AccessType.read_write()
        )
        try:
            if secondary_dir is not None:
                secondary_dir.mkdir(parents=True, exist_ok=True)
            self.db: Rdict | None = Rdict(
                str(self.path),
                _options(self.secondary),
                column_families=cf_options,
                access_type=access,
            )
        # rocksdict reports every RocksDB status (lock, corruption, I/O) as a bare Exception.
        except Exception as exc:
            raise StoreError(
                f"cannot open store at {self.path}: {exc} "
                "(is another process using this data directory, or is it not a raftex store?)"
            ) from None
        try:
            for name in column_families:
                self.cfs[name] = self.db.get_column_family(name)
                self.handles[name] = self.db.get_column_family_handle(name)
        except BaseException:
            self.close()
            raise

    def live(self) -> Rdict:
        if self.db is None:
            raise StoreError(f"store at {self.path} is closed")
        return self.db

    def cf(self, name: str) -> Rdict:
        self.live()
        return self.cfs[name]

    def catch_up(self) -> None:
        """A secondary: sees what the writing process has written since the last call."""
        try:
            self.live().try_catch_up_with_primary()
        # rocksdict reports RocksDB statuses as a bare Exception.
        except Exception as exc:
            raise StoreError(f"store at {self.path}: cannot follow its writer: {exc}") from None

    def checkpoint(self, dest: Path) -> None:
        """A consistent checkpoint of the whole database at `dest` (which must not exist),
        hard-linking the SST files where it can: cheap, for snapshots and backups."""
        db = self.live()
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

    def close(self) -> None:
        """Releases the database and its lock; safe to call twice. The column families go
        first: each keeps the DB (and its lock) alive, so a DB closed before them would
        stay locked until they are collected."""
        if self.db is None:
            return
        db, self.db = self.db, None
        for cf in self.cfs.values():
            cf.close()
        self.cfs.clear()
        self.handles.clear()
        db.close()


class RocksStore:
    """What every store built on one RocksDb shares: its path, its lifetime, and for one
    opened as a follower, catching up with the process that writes it."""

    _db: RocksDb

    def close(self) -> None:
        """Releases the database and its lock; safe to call twice."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._db.path

    def catch_up(self) -> None:
        """A follower: sees what its writer has written since the last call."""
        self._db.catch_up()
        self._reload()

    def _reload(self) -> None:
        """Re-reads what the store keeps in memory of its state (its tip)."""
        raise NotImplementedError


def _check_column_families(path: Path, column_families: Sequence[str]) -> None:
    """Refuses a store written with other column families (another store, another format)."""
    if not (path / "CURRENT").exists():
        return
    try:
        found = set(Rdict.list_cf(str(path), Options(raw_mode=True)))
    # rocksdict reports RocksDB statuses as a bare Exception; opening will say what is wrong.
    except Exception:
        return
    unknown = found - set(column_families) - {"default"}
    if unknown:
        raise StoreError(
            f"store at {path} has column families {sorted(unknown)} this store does not use:"
            " it was written by another build, or is another kind of store"
        )


def last_key(cf: Rdict) -> bytes | None:
    for key in cf.keys(backwards=True):
        return key
    return None


def last_item(cf: Rdict) -> tuple[bytes, bytes] | None:
    for item in cf.items(backwards=True):
        return item
    return None


def scan(
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


def blocks_from(cf: Rdict, prefix: bytes, first: int) -> Iterator[tuple[int, Any]]:
    """Yields (first number, rows) of the blocks under `prefix | u64` keys, from the block
    that may hold `first` (the last one starting at or before it) onwards."""
    start = prefix + U64.pack(first)
    for key, _ in cf.items(backwards=True, from_key=start):
        if key.startswith(prefix):
            start = key
        break
    for key, value in cf.items(from_key=start):
        if not key.startswith(prefix):
            return
        yield U64.unpack(key[len(prefix) :])[0], unpack(value)
