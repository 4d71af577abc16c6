"""Real encodings to start the fuzzers from: what the decoders see when nothing is wrong.

Each decoder family gets a few inputs written by the code that writes them in production
(a command's bytes, a log entry, a journal file, an engine snapshot of a small but busy
exchange, a dump file, an event log entry, a WebSocket op, Binance parameters, a FIX
message's fields), so mutations start inside the format instead of at its first check.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import msgpack

from cluster.entry import encode_entry, member_record
from cluster.event_log import CF_ENTRIES, CF_META, META_TIP, AppliedCommand, EventLog
from cluster.journal import DurableJournal, FsyncPolicy
from cluster.sealed import DataKey
from cluster.snapshot_file import SnapshotMeta, write_snapshot_file
from engine import Exchange, OrderType, SelfTradePrevention, Side, TimeInForce, TradingStatus
from engine.codes import KeyKind, Scope
from engine.commands import (
    AddApiKey,
    AddAsset,
    AddInstrument,
    AmendOrder,
    CancelOrder,
    Command,
    CreateAccount,
    Deposit,
    MassCancel,
    PlaceOrder,
    RevokeApiKey,
    SetAccountEnabled,
    SetAccountProfile,
    SetCalendar,
    SetLimitUpLimitDown,
    SetMemberRateLimit,
    SetRateLimit,
    SetSecondFactor,
    SetTradingStatus,
    Signed,
    Tick,
    UpdateInstrument,
    Withdraw,
    command_to_bytes,
)
from tests.fuzz.inputs import (
    DATA_KEY_BYTES,
    EVENT_LOG_ENTRY,
    EVENT_LOG_TIP,
    FRAMED_EVENT_FILE,
    FRAMED_RECORD,
    MODE_FRAMED,
    MODE_RAW,
    MODE_SEALED,
    SYMBOL,
    T0_MS,
    journal_input,
)

DATA_KEY = DataKey(DATA_KEY_BYTES)

SETUP: list[Command] = [
    AddAsset("ACME", 0),
    AddAsset("USD", 2),
    AddInstrument(SYMBOL, "ACME", "USD", 1, 1, 1, 10_000, 10**12, 1_000, 1, 2, 100, 60_000),
    AddInstrument("HALT", "HALT", "USD", status=TradingStatus.HALTED),
    CreateAccount("alice"),
    CreateAccount("bob"),
    Deposit("alice", "USD", 1_000_000, request_id="dep-1"),
    Deposit("alice", "ACME", 1_000),
    Deposit("bob", "USD", 1_000_000),
    Deposit("bob", "ACME", 1_000),
    SetAccountProfile("alice", "firm-a", "owner-a", "5493001KJTIIGC8Y1R12"),
    SetRateLimit("bob", 50, by="ops"),
    SetMemberRateLimit("firm-a", 100),
    AddApiKey("alice", "k-alice", KeyKind.ED25519, "ab" * 32, Scope.READ | Scope.TRADE),
    AddApiKey("bob", "k-bob", KeyKind.HMAC, "sealed-secret", Scope.READ),
    SetSecondFactor("alice", "sealed-totp", request_id="2fa-1"),
    PlaceOrder("alice", SYMBOL, Side.BUY, 10, 99, client_order_id="a-1"),
    PlaceOrder("alice", SYMBOL, Side.BUY, 5, 98, tif=TimeInForce.GTD, expire_time_ms=T0_MS + 10**7),
    PlaceOrder("bob", SYMBOL, Side.SELL, 7, 101, display_qty=2, client_order_id="b-1"),
    PlaceOrder("bob", SYMBOL, Side.SELL, 3, 99, stp=SelfTradePrevention.CANCEL_BOTH),
    PlaceOrder(
        "bob", SYMBOL, Side.SELL, 4, 90, OrderType.STOP_LIMIT, stop_price=95, client_order_id="b-s"
    ),
    AmendOrder("alice", 0, "a-1", qty=8),
    Signed("ab" * 64, T0_MS, 0, PlaceOrder("alice", SYMBOL, Side.BUY, 1, 97)),
    SetCalendar(
        SYMBOL, "America/New_York", 0, 3_600, 20_000, 21_600, 25_200, holidays="2024-12-25"
    ),
    SetLimitUpLimitDown(SYMBOL, 500),
]
# Commands for the wire seeds that the set-up does not already have.
MORE_COMMANDS: list[Command] = [
    UpdateInstrument(SYMBOL, max_qty=900, by="ops"),
    SetTradingStatus(SYMBOL, TradingStatus.CLOSED),
    Withdraw("alice", "USD", 5, request_id="w-1"),
    SetAccountEnabled("bob", False),
    CancelOrder("alice", 7),
    CancelOrder("alice", client_order_id="a-1"),
    MassCancel("alice", SYMBOL),
    RevokeApiKey("bob", "k-bob"),
    Tick(),
]


def exchange() -> Exchange:
    """A small exchange with something in every part of its state."""
    ex = Exchange()
    for step, command in enumerate(SETUP):
        ex.apply(command, T0_MS + step)
    return ex


def command_seeds() -> list[bytes]:
    return [command_to_bytes(c) for c in SETUP + MORE_COMMANDS]


def entry_seeds() -> list[bytes]:
    items = [(f"n1/{i}", data) for i, data in enumerate(command_seeds()[:6])]
    return [
        encode_entry(T0_MS, items),
        encode_entry(T0_MS, items[:1], hash_mark=True),
        encode_entry(T0_MS, [("n1/9", member_record("add", "n4", "h:1", "h:2"))]),
        encode_entry(T0_MS, []),
    ]


def snapshot_seeds() -> list[bytes]:
    return [exchange().snapshot(), Exchange().snapshot()]


def journal_seeds() -> list[bytes]:
    """Journal inputs (mode, meta file length, meta file, journal file): real files in clear
    and sealed, and the framed mode's records (the target adds the header and every CRC)."""
    seeds = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode, key in ((MODE_RAW, None), (MODE_SEALED, DATA_KEY)):
            path = Path(tmp) / f"journal-{mode}"
            journal = DurableJournal(path, FsyncPolicy.NONE, key)
            try:
                for idx, data in enumerate(entry_seeds()[:3], start=1):
                    journal.add(data, idx, 1)
                journal.setCurrentTerm(3, "n2")
            finally:
                journal.close()
            meta = Path(f"{path}.meta").read_bytes()
            seeds.append(journal_input(mode, meta, path.read_bytes()))
            seeds.append(journal_input(mode, b"", path.read_bytes()))
    records = [(entry, idx, 2) for idx, entry in enumerate(entry_seeds()[:2], start=5)]
    framed = b"".join(FRAMED_RECORD.pack(len(p), i, t) + p for p, i, t in records)
    meta_body = meta[:-4]  # the framed mode adds the CRC
    seeds.append(journal_input(MODE_FRAMED, meta_body, framed))
    return seeds


def dump_seeds() -> list[bytes]:
    """A real dump file (clear and sealed), and the framed mode's input: the meta's msgpack
    (the target writes the tar and the digests around it)."""
    seeds = []
    ex = exchange()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        event_log = EventLog.open(root / "events")
        try:
            event_log.write_entry(1, T0_MS, [AppliedCommand("n1/1", command_seeds()[0], [])])
            event_log.checkpoint(root / "checkpoint")
        finally:
            event_log.close()
        meta = SnapshotMeta(7, (b"e", 7, 1), (b"d", 6, 1), ["127.0.0.1:1"], [], ex.snapshot())
        for mode, key in ((MODE_RAW, None), (MODE_SEALED, DATA_KEY)):
            dump = root / f"dump-{mode}"
            write_snapshot_file(dump, meta, root / "checkpoint", key)
            seeds.append(bytes([mode]) + dump.read_bytes())
    engine = Exchange().snapshot()
    packed = msgpack.packb(
        [
            3,
            7,
            [b"e", 7, 1],
            [b"d", 6, 1],
            ["127.0.0.1:1"],
            [["n1", "h:1", "h:2"]],
            engine,
            hashlib.sha256(engine).hexdigest(),
            {FRAMED_EVENT_FILE[0]: hashlib.sha256(FRAMED_EVENT_FILE[1]).hexdigest()},
        ],
        use_bin_type=True,
    )
    seeds.append(bytes([MODE_FRAMED]) + packed)
    return seeds


def event_log_seeds() -> list[bytes]:
    """The values a real event log holds: each entry (mode 0) and the tip (mode 1)."""
    ex = Exchange()
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog.open(Path(tmp) / "events")
        try:
            for log_index, command in enumerate(SETUP[:8], start=1):
                events = ex.apply(command, T0_MS + log_index)
                applied = [AppliedCommand("n1/1", command_to_bytes(command), events)]
                log.write_entry(log_index, T0_MS + log_index, applied)
            entries = [bytes([EVENT_LOG_ENTRY]) + v for v in log._db.cf(CF_ENTRIES).values()]
            return [*entries, bytes([EVENT_LOG_TIP]) + log._db.cf(CF_META)[META_TIP]]
        finally:
            log.close()


def ws_seeds() -> list[bytes]:
    ops = [
        {"op": "subscribe", "channel": "book", "symbol": SYMBOL, "since": 5, "id": 1},
        {"op": "subscribe", "channel": "user", "min_seq": 3},
        {"op": "unsubscribe", "channel": "trades", "symbol": SYMBOL},
        {"op": "login", "key": "k-alice", "timestamp": str(T0_MS), "signature": "ab" * 64},
    ]
    return [json.dumps(op).encode() for op in ops] + [b'[1, 2.5e3, null, true, {"a": "\\u00e9"}]']


def binance_seeds() -> list[bytes]:
    """Query and body, split by a NUL byte."""
    return [
        b"symbol=ACMEUSD&side=BUY&type=LIMIT&quantity=1.5&price=10\x00timestamp=1&recvWindow=5000",
        b"symbol=ACME%2BUSD&limit=5\x00",
        b"\x00symbol=ACME&signature=abcdef&timestamp=1",
        b"orderId=7&origClientOrderId=a%20b+c\x00newClientOrderId=x",
    ]


def fix_seeds() -> list[bytes]:
    """FIX fields as `tag=value` separated by SOH, MsgType first, as on the wire."""
    messages = [
        "35=D|11=c-1|55=ACME|54=1|38=10|40=2|44=99.5|59=1",
        "35=D|11=c-2|55=ACME|54=2|38=3|40=4|44=99|99=98|59=6|126=20240102-03:04:05.678|18=6",
        "35=D|11=c-3|55=ACME|54=1|38=10|40=1|111=2",
        "35=F|11=c-4|41=c-1|37=12|55=ACME",
        "35=G|11=c-5|41=c-1|37=12|55=ACME|40=2|38=5|44=100",
        "35=q|11=c-6|530=1|55=ACME",
        "35=H|11=c-7|37=12|55=ACME",
        "35=A|49=CLIENT|56=RAFTEX|34=1|52=20240102-03:04:05.678|553=k-alice|96=" + "A" * 88,
    ]
    return [m.replace("|", "\x01").encode() for m in messages]
