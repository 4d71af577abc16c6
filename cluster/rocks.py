"""RocksDB as the node's stores use it (rocksdict): opening with column families, as the one
writer or as a secondary reader beside it, closing, checkpoints, and ordered keys.

Keys are big-endian fixed-width integers, so RocksDB's byte order is numeric
order; names are length-prefixed UTF-8, so that one account's keys never run
into another's.

Encrypted at rest (a data key given): every value is sealed (cluster/sealed_rocks.py) and
the default column family records under `AT_REST_KEY` which key: a store opened with
another key, without one, or with one where it was written in clear is refused at open,
with a message saying which, rather than failing on its first value.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

import msgpack
from rocksdict import AccessType, Checkpoint, Options, Rdict, WriteBatch, WriteOptions

from cluster.sealed import DataKey, Sealer
from cluster.sealed_rocks import SealedBatch, SealedColumn, SealedHandle
from cluster.store_errors import StoreError, StoreKeyError, StoreQueryError

U64 = struct.Struct(">Q")
U16 = struct.Struct(">H")
U64_MAX = 2**64 - 1
NAME_BYTES_MAX = 0xFFFF
NAME_KEY_CACHE_MAX = 65_536
AT_REST_KEY = b"raftex.at_rest"
AT_REST_CLEAR = b"clear"
AT_REST_SEALED = b"sealed "


# Rows per read (events, orders, trades, fills, balance history, audit records).
READ_LIMIT_MAX = 1_000


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
        self,
        path: Path,
        column_families: Sequence[str],
        secondary_dir: Path | None = None,
        data_key: DataKey | None = None,
    ) -> None:
        """`secondary_dir`: open as a secondary instance beside the process that writes it
        (`catch_up` then shows what it wrote); its own files go there. `data_key`: values
        are sealed under it (encryption at rest); `cfs` and `handles` then seal and open."""
        self.path = Path(path)
        self.secondary = secondary_dir is not None
        self._sealer = Sealer(data_key) if data_key is not None else None
        self._raw_cfs: list[Rdict] = []
        self.cfs: dict[str, Any] = {}
        self.handles: dict[str, Any] = {}
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
        created = not (self.path / "CURRENT").exists()
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
                f"cannot open store at {self.path}: {exc}{_open_hint(str(exc))}"
            ) from None
        try:
            self._check_at_rest(created, data_key, column_families)
            for name in column_families:
                cf = self.db.get_column_family(name)
                handle = self.db.get_column_family_handle(name)
                self._raw_cfs.append(cf)
                if self._sealer is None:
                    self.cfs[name], self.handles[name] = cf, handle
                else:
                    self.cfs[name] = SealedColumn(cf, name, self._sealer, str(self.path))
                    self.handles[name] = SealedHandle(name, handle)
        except BaseException:
            self.close()
            raise

    def _check_at_rest(
        self, created: bool, data_key: DataKey | None, column_families: Sequence[str]
    ) -> None:
        """Records a new store's mode (synced: a lost mark would misname the store after a
        crash); refuses one written under another, writing nothing to it."""
        db = self.live()
        wanted = AT_REST_CLEAR if data_key is None else AT_REST_SEALED + data_key.key_id.encode()
        found = db.get(AT_REST_KEY)
        if found is None:
            if self.secondary:
                return  # its writer has not recorded a mode yet: nothing to open either
            if created or not any(
                last_key(db.get_column_family(name)) is not None for name in column_families
            ):
                found = wanted  # new, or created and left empty by a crash before the mark
            else:
                found = AT_REST_CLEAR  # rows written before encryption at rest existed
            if found == wanted:
                db.put(AT_REST_KEY, wanted, write_opt=_synced())
        if found == wanted:
            return
        if found == AT_REST_CLEAR:
            raise StoreKeyError(
                f"store at {self.path} is in clear, but this node keeps its data encrypted at "
                "rest: restore the cluster from a backup with a key-encryption key to encrypt it"
            )
        stored_id = found[len(AT_REST_SEALED) :].decode("ascii", "replace")
        if data_key is None:
            raise StoreKeyError(
                f"store at {self.path} is encrypted at rest (data key {stored_id}): give the "
                "node its key-encryption key and keyring"
            )
        raise StoreKeyError(
            f"store at {self.path} was sealed under data key {stored_id}, this node holds "
            f"{data_key.key_id}: another cluster's store or another keyring"
        )

    def batch(self) -> Batch:
        """A write batch; its `put(key, value, self.handles[name])` seals when encrypted."""
        if self._sealer is None:
            return WriteBatch(raw_mode=True)
        return SealedBatch(self._sealer)

    def write(self, batch: Batch, options: WriteOptions) -> None:
        """Writes a batch from `batch()` atomically (rocksdict errors pass through)."""
        raw = batch.raw if isinstance(batch, SealedBatch) else batch
        self.live().write(raw, options)

    def live(self) -> Rdict:
        if self.db is None:
            raise StoreError(f"store at {self.path} is closed")
        return self.db

    def cf(self, name: str) -> Column:
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
        for cf in self._raw_cfs:
            cf.close()
        self._raw_cfs.clear()
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


RESEAL_BATCH_ROWS = 10_000


def reseal(source: Path, dest: Path, column_families: Sequence[str], data_key: DataKey) -> None:
    """Copies a store in clear at `source` into a new one at `dest` with every value sealed
    under `data_key` (encrypting an existing store); `dest` is a compact checkpoint."""
    staging = dest.with_name(dest.name + ".staging")
    clear = RocksDb(source, column_families)
    try:
        sealed = RocksDb(staging, column_families, data_key=data_key)
        try:
            for name in column_families:
                batch = sealed.batch()
                for rows, (key, value) in enumerate(clear.cf(name).items(), start=1):
                    batch.put(key, value, sealed.handles[name])
                    if rows % RESEAL_BATCH_ROWS == 0:
                        sealed.write(batch, WriteOptions())
                        batch = sealed.batch()
                sealed.write(batch, WriteOptions())
            sealed.checkpoint(dest)
        finally:
            sealed.close()
    finally:
        clear.close()


def _synced() -> WriteOptions:
    options = WriteOptions()
    options.sync = True
    return options


Batch = WriteBatch | SealedBatch
"""What `RocksDb.batch()` gives: rocksdict's WriteBatch, or one that seals its values."""

Column = Rdict | SealedColumn
"""What `RocksDb.cfs` holds: the column family, or the same read through the sealer."""


def last_key(cf: Column) -> bytes | None:
    for key in cf.keys(backwards=True):
        return key
    return None


def last_item(cf: Column) -> tuple[bytes, bytes] | None:
    for item in cf.items(backwards=True):
        return item
    return None


def scan(
    cf: Column, prefix: bytes, start: bytes, limit: int, backwards: bool = False
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


def blocks_from(cf: Column, prefix: bytes, first: int) -> Iterator[tuple[int, Any]]:
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


def _open_hint(status: str) -> str:
    """What an operator should look at, by RocksDB's status text: a full or failing disk
    says so itself; anything else is most often a second process or a foreign directory."""
    if "No space left" in status or "Input/output error" in status:
        return " (the disk is full or failing: free or replace it, then start the node again)"
    return " (is another process using this data directory, or is it not a raftex store?)"
