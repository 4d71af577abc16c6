"""The Raft log entry: one batch of commands with the leader's clock.

`[ENTRY_VERSION, ts_ms, hash_mark, [[submitter, command_bytes], ...]]` in
msgpack, each command the msgpack bytes it was encoded to once, at the edge that
validated it (engine.commands.command_to_bytes), and decoded once, where it is
applied. `submitter` is `node_id/request_no`, so the node that accepted the
request can hand the outcome back to the waiting client once the entry is
applied. `hash_mark` asks every node to record its state hash right after
applying the entry, which is how replicas are compared at the same index.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from engine.commands import wire_to_bytes

ENTRY_VERSION = 2
# A membership record travels as the bytes of `[MEMBER_TAG, action, id, raft, http]` in place
# of a command, so every replica learns the HTTP address of every member.
MEMBER_TAG = "!member"
BATCH_COMMANDS_MAX = 512
BATCH_BYTES_MAX = 256 * 1024


class EntryDecodeError(ValueError):
    """An entry this node cannot read: the log or the leader is not to be trusted."""


@dataclass(frozen=True, slots=True)
class Entry:
    ts_ms: int
    hash_mark: bool
    items: list[tuple[str, bytes]]


def encode_entry(ts_ms: int, items: list[tuple[str, bytes]], hash_mark: bool = False) -> bytes:
    return msgpack.packb([ENTRY_VERSION, ts_ms, hash_mark, items], use_bin_type=True)


def decode_entry(payload: bytes) -> Entry:
    try:
        version, ts_ms, hash_mark, items = msgpack.unpackb(payload, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise EntryDecodeError(f"log entry is not a batch: {exc}") from None
    if version != ENTRY_VERSION or type(ts_ms) is not int or not isinstance(items, list):
        raise EntryDecodeError(f"log entry version {version!r} or shape not understood")
    pairs = []
    for item in items:
        if type(item) is not list or len(item) != 2:
            raise EntryDecodeError("a log entry's item is not a [submitter, command] pair")
        pairs.append((str(item[0]), item[1]))
    return Entry(ts_ms, bool(hash_mark), pairs)


def member_record(action: str, node_id: str, raft: str, http: str) -> bytes:
    """The bytes of a membership change, as it travels in the log beside commands."""
    return wire_to_bytes([MEMBER_TAG, action, node_id, raft, http])
