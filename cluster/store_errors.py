"""The errors of the node's RocksDB stores: one small hierarchy, each with a stable code."""

from __future__ import annotations


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


class StoreKeyError(StoreError):
    """A store sealed under another data key, sealed where the node has none, or in clear
    where the node encrypts at rest: opening it would fail on its first value."""

    code = "store_key"
