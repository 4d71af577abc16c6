"""The API's pure edges: decimal amounts, freshness and replay of signatures, token buckets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.amounts import from_units, price_decimals, to_units
from api.errors import ApiError
from api.numbers import parse_count
from api.rate_limits import RateLimiter
from api.signing import RECV_WINDOW_MS_MAX, ReplayGuard, check_fresh


@given(st.integers(0, 10**18), st.integers(-4, 18))
def test_units_round_trip_through_decimal_text(units: int, decimals: int) -> None:
    assert to_units(from_units(units, decimals), decimals, "qty") == units


def test_decimal_text() -> None:
    assert from_units(19_000, 2) == "190.00"
    assert from_units(-5, 2) == "-0.05"
    assert from_units(7, 0) == "7"
    assert from_units(7, -2) == "700"
    assert to_units("190", 2, "price") == 19_000
    assert to_units("0.50", 2, "price") == 50
    assert to_units("1.5000", 1, "qty") == 15
    assert to_units("700", -2, "qty") == 7
    assert price_decimals(base_decimals=0, quote_decimals=2) == 2


@pytest.mark.parametrize(
    "text",
    [
        "190.001",
        "abc",
        "",
        "NaN",
        "Infinity",
        190,
        None,
        "1" * 41,
        "1E+999999",
        "1e30",
        "1.5e2",
        # Python's int() and Decimal() read all of these; a client never means them.
        "1_0",
        " 2 ",
        "+4",
        "-4",
        "0005",
        "\u0663",
        "\uff11",
        "1.",
        ".5",
        "1.2.3",
        "1,5",
    ],
)
def test_bad_decimal_text_is_a_400_naming_the_field(text: object) -> None:
    with pytest.raises(ApiError) as caught:
        to_units(text, 2, "price")
    assert (caught.value.status, caught.value.code) == (400, "bad_price")


def test_bad_decimal_text_is_named_in_the_message() -> None:
    with pytest.raises(ApiError) as caught:
        to_units("1_0", 2, "qty")
    assert "digits with at most one point" in caught.value.message
    with pytest.raises(ApiError) as caught:
        to_units("750", -2, "qty")
    assert "multiple of 100" in caught.value.message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("42", 42),
        ("9" * 19, int("9" * 19)),
        ("1_0", None),
        ("+4", None),
        (" 2", None),
        ("04", None),
        ("\u0663", None),
        ("-1", None),
        ("9" * 20, None),
        ("", None),
        (7, None),
    ],
)
def test_counts_are_plain_ascii_digits(text: object, value: int | None) -> None:
    assert parse_count(text) == value


def test_freshness_window() -> None:
    now = 1_800_000_000_000
    assert check_fresh(str(now - 4_000), None, now) == now - 4_000
    with pytest.raises(ApiError) as caught:
        check_fresh(str(now - 6_000), None, now)
    assert caught.value.code == "stale_request"
    assert check_fresh(str(now + 20_000), "30000", now) == now + 20_000
    with pytest.raises(ApiError) as caught:
        check_fresh(str(now), str(RECV_WINDOW_MS_MAX + 1), now)
    assert caught.value.code == "bad_timestamp"


def test_replay_guard_remembers_within_the_window_and_stays_bounded() -> None:
    guard = ReplayGuard(size_max=3)
    guard.check("aa", 1_000)
    with pytest.raises(ApiError) as caught:
        guard.check("aa", 1_001)
    assert caught.value.code == "replayed_request"
    for n, signature in enumerate(("bb", "cc", "dd")):
        guard.check(signature, 1_002 + n)
    guard.check("aa", 1_010)  # pushed out by size, and long stale by its timestamp anyway


def test_token_bucket_refills_and_says_when_to_retry() -> None:
    limiter = RateLimiter("per-IP", rate_per_s=2, burst=3)
    for _ in range(3):
        limiter.take("10.0.0.1", now_s=100.0)
    with pytest.raises(ApiError) as caught:
        limiter.take("10.0.0.1", now_s=100.0)
    assert caught.value.status == 429 and caught.value.headers == {"Retry-After": "1"}
    limiter.take("10.0.0.2", now_s=100.0)  # another client has its own bucket
    limiter.take("10.0.0.1", now_s=100.5)  # half a second refills one token
    with pytest.raises(ApiError):
        limiter.take("10.0.0.1", now_s=100.5)
    RateLimiter("off", rate_per_s=0, burst=1).take("x")
