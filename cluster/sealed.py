"""Encryption at rest: the AES-GCM formats that seal journal records, store values and whole
files under the cluster's data key.

Every node of a cluster holds the same data key (cluster/keyring.py unwraps it with the
operator's key-encryption key), because what one node writes another reads: the dump a
leader ships to a follower, the event log checkpoint inside it, a backup.

Values (journal records, store values): `Sealer.seal(aad, plaintext)` gives
    version 0x01 (1) | salt (8) | counter (8) | AES-GCM ciphertext and 16-byte tag
under a subkey HKDF-SHA256(data key, salt). Each Sealer draws a fresh random salt, so
each writer session has its own subkey and its nonce is a plain counter: no nonce repeats
under a key however long a node runs, where random 96-bit nonces under one key would be
safe only up to about 2**32 values in all. A forked child re-salts its copy of every
Sealer, so parent and child never count under one subkey. The caller's AAD binds a value
to its place (a record to its raft index and term, a store value to its column family and
key), so a ciphertext moved elsewhere fails to open.

Files (the snapshot dump, backups): a header
    magic b"RFXSEAL\\0" (8) | format version u32 | data key id (8) | salt (16)
then the plaintext in chunks of `FILE_CHUNK_BYTES`, each sealed under HKDF(data key, salt)
with the chunk number as nonce and the header plus a last-chunk flag as AAD: a chunk cannot
be moved, a file cannot be cut at a chunk boundary or spliced from another file. The reader
is seekable (tarfile reads the dump with seeks), decrypting one chunk at a time.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import os
import struct
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

DATA_KEY_BYTES = 32
KEY_ID_BYTES = 8
VALUE_VERSION = 1
VALUE_SALT_BYTES = 8
VALUE_COUNTER = struct.Struct(">Q")
TAG_BYTES = 16
VALUE_OVERHEAD_BYTES = 1 + VALUE_SALT_BYTES + VALUE_COUNTER.size + TAG_BYTES
VALUE_SUBKEY_INFO = b"raftex sealed value v1"
VALUE_SUBKEYS_CACHED_MAX = 1_024

FILE_MAGIC = b"RFXSEAL\x00"
FILE_VERSION = 1
FILE_SALT_BYTES = 16
FILE_HEADER = struct.Struct(f"<8sI{KEY_ID_BYTES}s{FILE_SALT_BYTES}s")
FILE_CHUNK_BYTES = 64 * 1024
FILE_SEALED_CHUNK_BYTES = FILE_CHUNK_BYTES + TAG_BYTES
FILE_SUBKEY_INFO = b"raftex sealed file v1"
_LAST_CHUNK = b"\x01"
_NOT_LAST_CHUNK = b"\x00"


class SealError(Exception):
    """Sealed data that does not open under this key (another key, or damaged), or data in
    clear where this node expects it sealed. The message says which file or value."""


@dataclass(frozen=True, slots=True)
class DataKey:
    """The cluster's data key; `key_id` names it in files and messages, never the key."""

    key: bytes = field(repr=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.key) != DATA_KEY_BYTES:
            raise SealError(f"a data key is {DATA_KEY_BYTES} bytes, not {len(self.key)}")
        object.__setattr__(self, "key_id", key_id(self.key))


def key_id(key: bytes) -> str:
    """A public name for a key: it says whether two keys are the same, not what they are."""
    return hmac.new(key, b"raftex key id", hashlib.sha256).hexdigest()[: 2 * KEY_ID_BYTES]


def _subkey(key: bytes, salt: bytes, info: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key))


_LIVE_SEALERS: weakref.WeakSet[Sealer] = weakref.WeakSet()


class Sealer:
    """Seals and opens values under one data key; safe to share between threads."""

    __slots__ = ("__weakref__", "_aead", "_counter", "_data_key", "_opened", "_prefix")

    def __init__(self, data_key: DataKey) -> None:
        self._data_key = data_key
        self._opened: dict[bytes, AESGCM] = {}
        self._resalt()
        _LIVE_SEALERS.add(self)

    @property
    def data_key(self) -> DataKey:
        return self._data_key

    def _resalt(self) -> None:
        salt = os.urandom(VALUE_SALT_BYTES)
        self._aead = _subkey(self._data_key.key, salt, VALUE_SUBKEY_INFO)
        self._prefix = bytes([VALUE_VERSION]) + salt
        self._counter = itertools.count()

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        counter = VALUE_COUNTER.pack(next(self._counter))
        nonce = b"\x00\x00\x00\x00" + counter
        return self._prefix + counter + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, aad: bytes, sealed: bytes) -> bytes:
        """The plaintext; SealError if `sealed` was not sealed here under this key with `aad`."""
        if len(sealed) < VALUE_OVERHEAD_BYTES or sealed[0] != VALUE_VERSION:
            raise SealError(f"a sealed value of {len(sealed)} bytes in an unknown format")
        salt = bytes(sealed[1 : 1 + VALUE_SALT_BYTES])
        aead = self._opened.get(salt)
        if aead is None:
            if len(self._opened) >= VALUE_SUBKEYS_CACHED_MAX:
                self._opened.clear()
            aead = self._opened[salt] = _subkey(self._data_key.key, salt, VALUE_SUBKEY_INFO)
        start = 1 + VALUE_SALT_BYTES
        nonce = b"\x00\x00\x00\x00" + bytes(sealed[start : start + VALUE_COUNTER.size])
        try:
            return aead.decrypt(nonce, bytes(sealed[start + VALUE_COUNTER.size :]), aad)
        except InvalidTag:
            raise SealError(
                f"a value does not open under data key {self._data_key.key_id}: sealed "
                "under another key, moved from another place, or damaged"
            ) from None


def _resalt_after_fork() -> None:
    for sealer in list(_LIVE_SEALERS):
        sealer._resalt()


os.register_at_fork(after_in_child=_resalt_after_fork)


def _file_header(data_key: DataKey, salt: bytes) -> bytes:
    return FILE_HEADER.pack(FILE_MAGIC, FILE_VERSION, bytes.fromhex(data_key.key_id), salt)


def _nonce(chunk: int) -> bytes:
    return chunk.to_bytes(12, "big")


class SealedFileWriter(io.RawIOBase):
    """A write-only file object sealing what is written to `raw`; `close()` writes the last
    chunk (and does not close `raw`)."""

    def __init__(self, raw: BinaryIO, data_key: DataKey) -> None:
        salt = os.urandom(FILE_SALT_BYTES)
        self._raw = raw
        self._header = _file_header(data_key, salt)
        self._aead = _subkey(data_key.key, salt, FILE_SUBKEY_INFO)
        self._buffer = bytearray()
        self._chunk = 0
        self._written = 0
        raw.write(self._header)

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._written

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._buffer += data
        self._written += len(data)
        # The last chunk is held back until close: only then is it known to be the last.
        while len(self._buffer) > FILE_CHUNK_BYTES:
            self._emit(bytes(self._buffer[:FILE_CHUNK_BYTES]), last=False)
            del self._buffer[:FILE_CHUNK_BYTES]
        return len(data)

    def _emit(self, chunk: bytes, last: bool) -> None:
        flag = _LAST_CHUNK if last else _NOT_LAST_CHUNK
        self._raw.write(self._aead.encrypt(_nonce(self._chunk), chunk, self._header + flag))
        self._chunk += 1

    def close(self) -> None:
        if not self.closed:
            self._emit(bytes(self._buffer), last=True)
            self._buffer.clear()
        super().close()


class SealedFileReader(io.RawIOBase):
    """A seekable read-only view of a sealed file's plaintext."""

    def __init__(self, path: Path, data_key: DataKey) -> None:
        self._path = path
        self._raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            header = self._raw.read(FILE_HEADER.size)
            if len(header) < FILE_HEADER.size:
                raise SealError(f"{path}: a sealed file shorter than its header")
            magic, version, stored_id, salt = FILE_HEADER.unpack(header)
            if magic != FILE_MAGIC or version != FILE_VERSION:
                raise SealError(f"{path}: not a sealed file this version reads")
            if stored_id.hex() != data_key.key_id:
                raise SealError(
                    f"{path} was sealed under data key {stored_id.hex()}; this node holds "
                    f"{data_key.key_id}: it comes from another cluster or another keyring"
                )
            sealed_bytes = os.fstat(self._raw.fileno()).st_size - FILE_HEADER.size
            self._chunks, tail = divmod(sealed_bytes, FILE_SEALED_CHUNK_BYTES)
            if tail:
                if tail < TAG_BYTES:
                    raise SealError(f"{path}: cut inside a chunk (damaged or truncated)")
                self._chunks += 1
            if self._chunks == 0:
                raise SealError(f"{path}: a sealed file with no chunk (truncated)")
            self._size = sealed_bytes - self._chunks * TAG_BYTES
        except BaseException:
            self._raw.close()
            raise
        self._header = header
        self._aead = _subkey(data_key.key, salt, FILE_SUBKEY_INFO)
        self._position = 0
        self._cached_chunk = -1
        self._cached = b""
        try:
            # The last chunk says the file is whole: a file cut at a chunk boundary is refused
            # here, not only by a reader that happens to read to its end.
            self._open_chunk(self._chunks - 1)
        except BaseException:
            self._raw.close()
            raise

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"{self._path}: seek to a negative position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._position >= self._size:
            return 0
        chunk, skip = divmod(self._position, FILE_CHUNK_BYTES)
        plain = self._open_chunk(chunk)
        count = min(len(buffer), len(plain) - skip)
        buffer[:count] = plain[skip : skip + count]
        self._position += count
        return count

    def _open_chunk(self, chunk: int) -> bytes:
        if chunk != self._cached_chunk:
            self._raw.seek(FILE_HEADER.size + chunk * FILE_SEALED_CHUNK_BYTES)
            sealed = self._raw.read(FILE_SEALED_CHUNK_BYTES)
            last = chunk == self._chunks - 1
            aad = self._header + (_LAST_CHUNK if last else _NOT_LAST_CHUNK)
            try:
                self._cached = self._aead.decrypt(_nonce(chunk), sealed, aad)
            except InvalidTag:
                raise SealError(
                    f"{self._path}: chunk {chunk} does not open: damaged, truncated or spliced"
                ) from None
            self._cached_chunk = chunk
        return self._cached

    def close(self) -> None:
        self._raw.close()
        super().close()


def is_sealed_file(path: Path) -> bool:
    with open(path, "rb") as source:
        return source.read(len(FILE_MAGIC)) == FILE_MAGIC


def open_for_reading(path: Path, data_key: DataKey | None, clear_ok: bool = False) -> BinaryIO:
    """The file's plaintext: sealed files open under `data_key`; a file in clear is read as
    it is where this node keeps data in clear, or where `clear_ok` (a restore that
    encrypts a backup taken in clear)."""
    if is_sealed_file(path):
        if data_key is None:
            raise SealError(
                f"{path} is encrypted at rest: give the node its key-encryption key and keyring"
            )
        return io.BufferedReader(SealedFileReader(path, data_key))  # type: ignore[return-value]
    if data_key is not None and not clear_ok:
        raise SealError(f"{path} is in clear, but this node keeps its data encrypted at rest")
    return open(path, "rb")


@contextmanager
def open_for_writing(path: Path, data_key: DataKey | None) -> Iterator[BinaryIO]:
    """Writes `path`, sealed under `data_key` if given; on a clean exit the file is complete
    and fsynced (the caller renames it into place)."""
    with open(path, "wb") as raw:
        if data_key is None:
            yield raw
        else:
            sealed = SealedFileWriter(raw, data_key)
            yield sealed  # type: ignore[misc]
            sealed.close()
        raw.flush()
        os.fsync(raw.fileno())
