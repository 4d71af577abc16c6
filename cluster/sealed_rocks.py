"""RocksDB values sealed at rest: a column family, a write batch and a cursor that seal what
goes in and open what comes out, with the stores' code unchanged above them.

A value is sealed with its column family's name and its key as AAD (cluster/sealed.py), so
a value copied under another key or into another column family does not open. Keys stay in
clear (RocksDB orders by them: sequence numbers, order ids, length-prefixed account and
symbol names). An empty value (the index rows) stays empty: it holds nothing to hide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rocksdict import ColumnFamily, Rdict, RdictIter, WriteBatch

from cluster.sealed import Sealer, SealError
from cluster.store_errors import StoreCorruptionError


class SealedHandle:
    """A column family handle with the AAD prefix its values are sealed with."""

    __slots__ = ("handle", "prefix")

    def __init__(self, name: str, handle: ColumnFamily) -> None:
        self.handle = handle
        self.prefix = name.encode() + b"\x00"


class SealedBatch:
    """A WriteBatch whose `put` seals the value; the same calls as rocksdict's."""

    __slots__ = ("raw", "_sealer")

    def __init__(self, sealer: Sealer) -> None:
        self.raw = WriteBatch(raw_mode=True)
        self._sealer = sealer

    def put(self, key: bytes, value: bytes, handle: SealedHandle) -> None:
        if value:
            value = self._sealer.seal(handle.prefix + key, value)
        self.raw.put(key, value, handle.handle)

    def delete(self, key: bytes, handle: SealedHandle) -> None:
        self.raw.delete(key, handle.handle)


class SealedColumn:
    """A column family read through the sealer: the reads the stores make of an Rdict."""

    __slots__ = ("_cf", "_path", "_prefix", "_sealer")

    def __init__(self, cf: Rdict, name: str, sealer: Sealer, path: str) -> None:
        self._cf = cf
        self._prefix = name.encode() + b"\x00"
        self._sealer = sealer
        self._path = path

    def _open(self, key: bytes, value: bytes) -> bytes:
        if not value:
            return value
        try:
            return self._sealer.open(self._prefix + key, value)
        except SealError as exc:
            raise StoreCorruptionError(f"store at {self._path}, key {key.hex()}: {exc}") from None

    def get(self, key: bytes) -> bytes | None:
        value = self._cf.get(key)
        return None if value is None else self._open(key, value)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, list):
            return [
                None if value is None else self._open(k, value)
                for k, value in zip(key, self._cf[key], strict=True)
            ]
        return self._open(key, self._cf[key])

    def items(self, **options: Any) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._cf.items(**options):
            yield key, self._open(key, value)

    def values(self, **options: Any) -> Iterator[bytes]:
        for key, value in self._cf.items(**options):
            yield self._open(key, value)

    def keys(self, **options: Any) -> Iterator[bytes]:
        return self._cf.keys(**options)

    def iter(self) -> SealedCursor:
        return SealedCursor(self._cf.iter(), self)

    def close(self) -> None:
        self._cf.close()


class SealedCursor:
    """An RdictIter whose `value()` is opened."""

    __slots__ = ("_column", "_cursor")

    def __init__(self, cursor: RdictIter, column: SealedColumn) -> None:
        self._cursor = cursor
        self._column = column

    def seek_for_prev(self, key: bytes) -> None:
        self._cursor.seek_for_prev(key)

    def valid(self) -> bool:
        return self._cursor.valid()

    def key(self) -> bytes:
        return self._cursor.key()

    def value(self) -> bytes:
        key = self._cursor.key()
        return self._column._open(key, self._cursor.value())
