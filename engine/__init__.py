"""The deterministic exchange core: commands in, events out. No I/O, clock or randomness."""

from engine.codes import (
    CancelReason,
    OrderType,
    RejectCode,
    SelfTradePrevention,
    Side,
    StatusReason,
    TimeInForce,
    TradingStatus,
)
from engine.exchange import FEE_ACCOUNT, Exchange, InvariantBroken
from engine.snapshot import SnapshotError

__all__ = [
    "FEE_ACCOUNT",
    "CancelReason",
    "Exchange",
    "InvariantBroken",
    "OrderType",
    "RejectCode",
    "SelfTradePrevention",
    "Side",
    "SnapshotError",
    "StatusReason",
    "TimeInForce",
    "TradingStatus",
]
