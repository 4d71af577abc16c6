"""Binance's request weight: a caller's minute is counted and limited, others are not touched."""

from __future__ import annotations

import pytest

from api.binance_params import BinanceError
from api.binance_weight import USED_WEIGHT_HEADER, RequestWeights


def test_request_weight_is_limited_per_caller_per_minute() -> None:
    weights = RequestWeights(limit_per_min=50)
    assert weights.spend("10.0.0.1", 20, now_s=120.0) == 20
    assert weights.spend("10.0.0.1", 30, now_s=121.0) == 50
    assert weights.spend("10.0.0.2", 20, now_s=121.0) == 20
    with pytest.raises(BinanceError) as refused:
        weights.spend("10.0.0.1", 1, now_s=150.5)
    assert (refused.value.status, refused.value.code) == (429, -1003)
    assert refused.value.headers == {"Retry-After": "30", USED_WEIGHT_HEADER: "50"}
    assert weights.spend("10.0.0.1", 1, now_s=180.0) == 1  # a new minute
    assert RequestWeights(limit_per_min=0).spend("x", 10_000) == 10_000
