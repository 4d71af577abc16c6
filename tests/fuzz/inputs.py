"""The fuzz inputs' formats: how one byte string stands for a journal, a dump, a log value.

A journal or dump input starts with a mode byte: the file as it is on disk (in clear, or
sealed under DATA_KEY_BYTES), or "framed": fields the target wraps in their CRCs or
digests, so that mutations reach the decoding behind those checks instead of stopping at
them every time. Nothing of the project is imported here: a fuzzing process imports only
its own decoder (checks.py).
"""

from __future__ import annotations

import struct

MODE_RAW = 0  # the file as it is on disk, in clear
MODE_FRAMED = 1  # fields the target frames with their CRCs/digests
MODE_SEALED = 2  # the file as it is on disk, read with DATA_KEY_BYTES (encryption at rest)
MODES = 3
# The data key of the sealed modes: the fuzzers only ever open files sealed under it.
DATA_KEY_BYTES = bytes(range(32))
META_LEN = struct.Struct("<H")  # a journal input: mode, meta file length, meta file, journal
FRAMED_RECORD = struct.Struct("<IQQ")  # a framed journal record: length, index, term, payload
EVENT_LOG_ENTRY = 0  # an event log input: mode 0 replaces an entry's value, 1 the tip
EVENT_LOG_TIP = 1
# The one event log file in a framed dump's tar (its digest goes in the metadata).
FRAMED_EVENT_FILE = ("events/CURRENT", b"MANIFEST-000001\n")
T0_MS = 1_700_000_000_000
SYMBOL = "ACME"


def split_mode(data: bytes) -> tuple[int, bytes]:
    return (data[0] % MODES, data[1:]) if data else (MODE_RAW, b"")


def journal_input(mode: int, meta: bytes, journal: bytes) -> bytes:
    return bytes([mode]) + META_LEN.pack(len(meta)) + meta + journal
