"""The fuzz checks: every decoder that reads bytes from outside, answering each input cleanly.

One check per decoder family. A check calls the decoder's public entry point and lets
through only the error the decoder documents (CommandDecodeError, EntryDecodeError,
JournalError, SnapshotError, SnapshotFileError, StoreError, JsonRefused and ApiError,
BinanceError, FixRefusal and LogonRefused); anything else escapes (IndexError, KeyError,
TypeError, UnicodeDecodeError, RecursionError, MemoryError, or an assertion about what a
decoder accepted) and is a crash. atheris drives them coverage-guided (targets.py, in a
process of its own), hypothesis in-process (test_fuzz_decoders.py).

Each builder imports its decoder itself: a fuzzing process imports, and has atheris
instrument, only the code its target reaches (instrumenting every package took seconds).
"""

# ruff: noqa: PLC0415

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.fuzz.inputs import (
    DATA_KEY_BYTES,
    EVENT_LOG_TIP,
    FRAMED_EVENT_FILE,
    FRAMED_RECORD,
    META_LEN,
    MODE_FRAMED,
    MODE_SEALED,
    SYMBOL,
    T0_MS,
    split_mode,
)

Check = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Target:
    # Builds the check; what it opens (files under `scratch`, a database, an event loop) the
    # exit stack closes.
    build: Callable[[Path, contextlib.ExitStack], Check]
    # The function of tests.fuzz.seeds that gives real encodings to start from.
    seeds: str

    def seed_inputs(self) -> list[bytes]:
        from tests.fuzz import seeds

        return getattr(seeds, self.seeds)()


# -- the Raft log entry and the command wire format -----------------------------------------


def build_command(scratch: Path, stack: contextlib.ExitStack) -> Check:
    from engine.commands import CommandDecodeError, command_from_bytes, command_to_bytes

    def check(data: bytes) -> None:
        try:
            command = command_from_bytes(data)
        except CommandDecodeError:
            return
        # What decodes is a command every node applies alike: it re-encodes to itself.
        assert command_from_bytes(command_to_bytes(command)) == command

    return check


def build_entry(scratch: Path, stack: contextlib.ExitStack) -> Check:
    from cluster.entry import MEMBER_TAG, EntryDecodeError, decode_entry
    from engine.commands import CommandDecodeError, command_from_wire, wire_from_bytes

    def check(data: bytes) -> None:
        try:
            entry = decode_entry(data)
        except EntryDecodeError:
            return
        assert type(entry.ts_ms) is int and type(entry.hash_mark) is bool
        # Then each command, as the node's apply reads it.
        for tag, command in entry.items:
            assert type(tag) is str
            try:
                wire = wire_from_bytes(command)
                if wire and wire[0] == MEMBER_TAG:
                    continue
                command_from_wire(wire)
            except CommandDecodeError:
                pass

    return check


# -- the journal ------------------------------------------------------------------------------


def journal_files(data: bytes) -> tuple[int, bytes, bytes]:
    """(mode, meta file, journal file) of a journal input; an empty meta is no meta file."""
    mode, rest = split_mode(data)
    (meta_len,) = META_LEN.unpack_from(rest.ljust(META_LEN.size, b"\0"))
    meta = rest[META_LEN.size : META_LEN.size + meta_len]
    body = rest[META_LEN.size + meta_len :]
    if mode != MODE_FRAMED:
        return mode, meta, body
    from cluster.journal import _encode_file_header

    if meta:
        meta += struct.pack("<I", zlib.crc32(meta))
    records = [_encode_file_header(None)]
    while len(body) >= FRAMED_RECORD.size:
        length, idx, term = FRAMED_RECORD.unpack_from(body)
        payload = body[FRAMED_RECORD.size : FRAMED_RECORD.size + length]
        body = body[FRAMED_RECORD.size + length :]
        fields = struct.pack("<IQQI", length, idx, term, zlib.crc32(payload))
        records.append(fields + struct.pack("<I", zlib.crc32(fields)) + payload)
    records.append(body)  # a torn record header
    return mode, meta, b"".join(records)


def build_journal(scratch: Path, stack: contextlib.ExitStack) -> Check:
    from cluster.journal import DurableJournal, FsyncPolicy, JournalError
    from cluster.sealed import DataKey

    data_key = DataKey(DATA_KEY_BYTES)
    path = scratch / "raft.journal"
    meta_path = scratch / "raft.journal.meta"

    def check(data: bytes) -> None:
        mode, meta, body = journal_files(data)
        path.write_bytes(body)
        if meta:
            meta_path.write_bytes(meta)
        else:
            meta_path.unlink(missing_ok=True)
        try:
            journal = DurableJournal(
                path, FsyncPolicy.NONE, data_key if mode == MODE_SEALED else None
            )
        except JournalError:
            return
        try:
            entries = journal[:]
            assert isinstance(entries, list)
            for command, idx, term in entries:
                assert type(command) is bytes and type(idx) is int and type(term) is int
            assert type(journal.getCurrentTerm()) is int
            voted_for = journal.getVotedForNodeId()
            assert voted_for is None or type(voted_for) is str
            assert type(journal.getRaftCommitIndex()) is int
        finally:
            journal.close()

    return check


# -- the engine snapshot and the dump file ------------------------------------------------


def build_snapshot(scratch: Path, stack: contextlib.ExitStack) -> Check:
    from engine import Exchange, SnapshotError

    def check(data: bytes) -> None:
        with contextlib.suppress(SnapshotError):
            Exchange.restore(data)

    return check


def dump_file(data: bytes) -> tuple[int, bytes]:
    """(mode, dump file) of a dump input: framed, the input is the msgpack of the dump's
    metadata and the target writes the tar and its digest around it."""
    import tarfile

    from cluster.snapshot_file import META_DIGEST_NAME, META_NAME

    mode, body = split_mode(data)
    if mode != MODE_FRAMED:
        return mode, body
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in (
            FRAMED_EVENT_FILE,
            (META_NAME, body),
            (META_DIGEST_NAME, hashlib.sha256(body).hexdigest().encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return mode, out.getvalue()


def build_dump(scratch: Path, stack: contextlib.ExitStack) -> Check:
    from cluster.sealed import DataKey
    from cluster.snapshot_file import SnapshotFileError, extract_event_log, read_snapshot_meta

    data_key = DataKey(DATA_KEY_BYTES)
    path = scratch / "raft.dump"
    dest = scratch / "events"

    def check(data: bytes) -> None:
        mode, body = dump_file(data)
        path.write_bytes(body)
        key = data_key if mode == MODE_SEALED else None
        try:
            meta = read_snapshot_meta(path, key)
        except SnapshotFileError:
            return
        assert type(meta.applied_index) is int and type(meta.engine) is bytes
        for entry in (meta.last_entry, meta.prev_entry):
            assert len(entry) == 3 and type(entry[1]) is int and type(entry[2]) is int
        assert isinstance(meta.event_log_digests, dict)
        shutil.rmtree(dest, ignore_errors=True)
        try:
            extract_event_log(path, dest, meta.event_log_digests, key)
        except SnapshotFileError:
            pass
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    return check


# -- the event log ----------------------------------------------------------------------------


def build_event_log(scratch: Path, stack: contextlib.ExitStack) -> Check:
    """A real log of three entries; each input replaces the middle entry's value (or the
    tip) with its bytes, and every read walks over it. The log is planted through its
    database, as a disk would change it."""
    from cluster.event_log import CF_ENTRIES, CF_META, META_TIP, AppliedCommand, EventLog
    from cluster.rocks import U64
    from cluster.store_errors import StoreError
    from engine import Exchange
    from engine.commands import command_to_bytes
    from tests.fuzz import seeds

    log = EventLog.open(scratch / "events")
    stack.callback(log.close)
    ex = Exchange()
    commands = seeds.SETUP[:6]
    for log_index, pair in enumerate((commands[:2], commands[2:4], commands[4:]), start=1):
        applied = [
            AppliedCommand(f"n1/{i}", command_to_bytes(c), ex.apply(c, T0_MS + log_index))
            for i, c in enumerate(pair)
        ]
        log.write_entry(log_index, T0_MS + log_index, applied)
    entries = log._db.cf(CF_ENTRIES)
    meta = log._db.cf(CF_META)
    planted_key = U64.pack(2)
    real_entry, real_tip = entries[planted_key], meta[META_TIP]

    def reads() -> None:
        for read in (
            lambda: log.entries_after(0, 100),
            lambda: log.events_since(0, 100),
            lambda: log.events_since(3, 100),
            lambda: log.audit_records(0, 100),
            lambda: log.audit_records(2, 100),
            lambda: log.audit_head_at(2),
            lambda: log.audit_head_at(3),
            lambda: (log.applied_index(), log.audit_count(), log.audit_head(), log.last_seq()),
        ):
            with contextlib.suppress(StoreError):
                read()
        report = log.verify_audit()
        assert type(report.ok) is bool and type(report.reason) is str

    def check(data: bytes) -> None:
        mode, body = split_mode(data)
        try:
            if mode == EVENT_LOG_TIP:
                meta[META_TIP] = body
                try:
                    log._reload()
                except StoreError:
                    return
            else:
                entries[planted_key] = body
            reads()
        finally:
            entries[planted_key] = real_entry
            meta[META_TIP] = real_tip
            log._reload()

    return check


# -- the native WebSocket messages ----------------------------------------------------------


def build_ws_message(scratch: Path, stack: contextlib.ExitStack) -> Check:
    """parse_json on the raw bytes (as for a request body), then one text message through the
    feed's receive loop: every answer is one strict JSON message and nothing escapes."""
    from aiohttp import WSMessage, WSMsgType

    from api import feeds
    from api.errors import ApiError
    from api.json_input import JsonRefused, parse_json

    loop = asyncio.new_event_loop()
    stack.callback(loop.close)

    class FeedGateway:
        """What the receive loop reads of the gateway: one instrument, no keys, no wait."""

        def instrument(self, symbol: str) -> object:
            if symbol != SYMBOL:
                raise ApiError(404, "unknown_symbol", f"no instrument {symbol!r}")
            return object()

        async def known_key(self, key_id: str) -> None:
            raise ApiError(401, "unknown_key", "no such API key")

        async def wait_until_applied(self, min_seq: int) -> None:
            raise ApiError(409, "behind", f"not at {min_seq} yet")

    class Hub:
        """Refuses to add a subscription: what follows is a real feed's replay, not the
        reading of a message."""

        gw = FeedGateway()

        def add(self, key: Any, subscriber: Any) -> None:
            raise ApiError(503, "fuzz_no_feeds", "this hub serves no feed")

        def remove(self, key: Any, subscriber: Any) -> None:
            pass

    class Transport:
        def __init__(self) -> None:
            self.frames: list[bytes] = []

        def get_extra_info(self, name: str) -> None:
            return None

        def is_closing(self) -> bool:
            return False

        def write(self, frame: bytes) -> None:
            self.frames.append(frame)

        def get_write_buffer_size(self) -> int:
            return 0

    class Socket:
        def __init__(self, text: str) -> None:
            self.messages = [WSMessage(WSMsgType.TEXT, text, None)]

        def __aiter__(self) -> Socket:
            return self

        async def __anext__(self) -> WSMessage:
            if not self.messages:
                raise StopAsyncIteration
            return self.messages.pop()

        async def close(self, *, code: int, message: bytes) -> None:
            pass

    hub = Hub()

    def strict_json(text: str) -> Any:
        return json.loads(text, parse_constant=_refuse_constant)

    def check(data: bytes) -> None:
        try:
            value = parse_json(data)
        except JsonRefused:
            pass
        else:
            # What parse_json accepts is JSON: it writes back as strict JSON.
            json.dumps(value, allow_nan=False)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return  # not a text frame: aiohttp closes the socket itself
        transport = Transport()
        subscriber = feeds.Subscriber(Socket(text), transport, 1 << 20)  # type: ignore[arg-type]
        loop.run_until_complete(feeds._receive_loop(None, hub, subscriber))  # type: ignore[arg-type]
        assert len(transport.frames) == 1, transport.frames
        frame = transport.frames[0]
        header = 2 if frame[1] < 126 else 4 if frame[1] == 126 else 10
        answer = strict_json(frame[header:].decode())
        assert isinstance(answer, dict) and type(answer.get("type")) is str, answer

    return check


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# -- Binance parameters -----------------------------------------------------------------------


BINANCE_ALLOWED = frozenset(
    {"symbol", "side", "type", "quantity", "price", "limit", "orderId", "origClientOrderId"}
)


def build_binance_params(scratch: Path, stack: contextlib.ExitStack) -> Check:
    """Query and body, split at the first NUL byte (text as aiohttp hands it over)."""
    from api.binance_params import BinanceError, read_params, read_signed_params

    def check(data: bytes) -> None:
        query, _, body = data.partition(b"\0")
        query_text = query.decode("utf-8", "surrogateescape")
        body_text = body.decode("utf-8", "surrogateescape")
        try:
            params = read_params((query_text, body_text), BINANCE_ALLOWED)
        except BinanceError:
            pass
        else:
            assert set(params) <= BINANCE_ALLOWED and all(params.values())
        try:
            signed = read_signed_params(query_text, body_text, BINANCE_ALLOWED)
        except BinanceError:
            pass
        else:
            assert signed.signature and type(signed.payload) is str

    return check


# -- FIX messages -----------------------------------------------------------------------------


def fix_fields(data: bytes) -> dict[int, str]:
    """`tag=value` fields split on SOH, as quickfix hands them over (the last of a tag wins)."""
    fields: dict[int, str] = {}
    for raw in data.split(b"\x01"):
        tag, equals, value = raw.partition(b"=")
        if equals and tag.isdigit() and len(tag) <= 9:
            fields[int(tag)] = value.decode("utf-8", "surrogateescape")
    return fields


def build_fix(scratch: Path, stack: contextlib.ExitStack) -> Check:
    """An application message (what the acceptor reads off quickfix's message into a
    FixInbound) through the order decoder, or a Logon (35=A) through its authentication,
    against the view of a small exchange. quickfix's own parser is not ours to fuzz."""
    from api import fix_logon, fix_orders
    from api.errors import ApiError
    from api.gateway import Gateway
    from cluster.views import full_view
    from tests.fuzz import seeds

    view = full_view(seeds.exchange(), 1)
    loop = asyncio.new_event_loop()
    stack.callback(loop.close)

    class FixGateway:
        """What decoding reads of the gateway: the view, its unit conversions (the real
        ones), the API keys (Ed25519 only: no sealer here), a replay guard and key limits
        that let everything through."""

        node = SimpleNamespace(view=view)
        sealer = None
        replay = SimpleNamespace(check=lambda canonical, now_ms: None)
        key_limits = SimpleNamespace(take=lambda key_id: None)
        decimals = Gateway.decimals
        scales = Gateway.scales
        price_units = Gateway.price_units
        qty_units = Gateway.qty_units

        async def known_key(self, key_id: str) -> Any:
            key = view.access.api_keys.get(key_id)
            if key is None or key.kind != 0:
                raise ApiError(401, "unknown_key", "no such API key")
            return key

    gw = FixGateway()

    def check(data: bytes) -> None:
        fields = fix_fields(data)
        msg_type = fields.get(35, "")
        seq_text = fields.get(34, "1")
        msg_seq_num = int(seq_text) if seq_text.isascii() and seq_text.isdigit() else 1
        if msg_type == "A":
            logon = fix_logon.LogonFields(
                fields.get(49, ""),
                fields.get(56, ""),
                msg_seq_num,
                fields.get(52, ""),
                fields.get(553, ""),
                fields.get(96, ""),
            )
            with contextlib.suppress(fix_logon.LogonRefused):
                loop.run_until_complete(fix_logon.authenticate_logon(gw, logon))  # type: ignore[arg-type]
            return
        if msg_type not in fix_orders.SUPPORTED_MSG_TYPES:
            return  # quickfix answers an unsupported type itself
        read = {tag: value for tag, value in fields.items() if tag in fix_orders.TAGS_READ}
        inbound = fix_orders.FixInbound(msg_type, msg_seq_num, read)
        with contextlib.suppress(fix_orders.FixRefusal):
            fix_orders.decode(gw, "alice", inbound)  # type: ignore[arg-type]

    return check


TARGETS: dict[str, Target] = {
    "command": Target(build_command, "command_seeds"),
    "entry": Target(build_entry, "entry_seeds"),
    "journal": Target(build_journal, "journal_seeds"),
    "snapshot": Target(build_snapshot, "snapshot_seeds"),
    "dump": Target(build_dump, "dump_seeds"),
    "event_log": Target(build_event_log, "event_log_seeds"),
    "ws_message": Target(build_ws_message, "ws_seeds"),
    "binance_params": Target(build_binance_params, "binance_seeds"),
    "fix": Target(build_fix, "fix_seeds"),
}
