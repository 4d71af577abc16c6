"""The message-rate control: an account's order messages per second of log time."""

from __future__ import annotations

from conftest import ALICE, BOB, BUY, SELL, T0, one, place

from engine import Exchange, RejectCode
from engine.commands import (
    AmendOrder,
    CancelOrder,
    SetAccountProfile,
    SetMemberRateLimit,
    SetRateLimit,
)
from engine.events import (
    Accepted,
    Amended,
    Cancelled,
    MemberRateLimitChanged,
    RateLimitChanged,
    Rejected,
)


def test_the_message_over_the_limit_in_a_second_is_refused_and_the_next_second_is_free(
    ex: Exchange,
) -> None:
    one(ex.apply(SetRateLimit(BOB, 3), T0), RateLimitChanged)
    for price in (95, 96, 97):
        one(place(ex, BOB, BUY, 1, price, ts_ms=T0 + 100), Accepted)
    refused = one(place(ex, BOB, BUY, 1, 98, ts_ms=T0 + 900), Rejected)
    assert refused.code == RejectCode.RATE_LIMITED
    assert refused.message == "more than 3 order messages in one second"
    one(place(ex, ALICE, SELL, 1, 105, ts_ms=T0 + 900), Accepted)  # others are not limited
    one(place(ex, BOB, BUY, 1, 98, ts_ms=T0 + 1_000), Accepted)  # the next second


def test_cancels_count_but_are_never_refused_and_amends_are(ex: Exchange) -> None:
    ex.apply(SetRateLimit(BOB, 2), T0)
    first = one(place(ex, BOB, BUY, 1, 95, ts_ms=T0 + 10), Accepted).order_id
    second = one(place(ex, BOB, BUY, 1, 94, ts_ms=T0 + 20), Accepted).order_id
    one(ex.apply(CancelOrder(BOB, first), T0 + 30), Cancelled)
    refused = one(ex.apply(AmendOrder(BOB, second, price=96), T0 + 40), Rejected)
    assert refused.code == RejectCode.RATE_LIMITED
    one(ex.apply(AmendOrder(BOB, second, price=96), T0 + 1_040), Amended)


def test_the_count_survives_a_snapshot_so_every_node_refuses_the_same_message(
    ex: Exchange,
) -> None:
    ex.apply(SetRateLimit(BOB, 1), T0)
    one(place(ex, BOB, BUY, 1, 95, ts_ms=T0 + 10), Accepted)
    restored = Exchange.restore(ex.snapshot())
    assert restored.state_hash() == ex.state_hash()
    for engine in (ex, restored):
        assert one(place(engine, BOB, BUY, 1, 96, ts_ms=T0 + 20), Rejected).code == (
            RejectCode.RATE_LIMITED
        )


def test_a_bad_limit_is_refused(ex: Exchange) -> None:
    assert one(ex.apply(SetRateLimit(BOB, -1), T0), Rejected).code == RejectCode.INVALID_AMOUNT
    assert one(ex.apply(SetRateLimit("nobody", 5), T0), Rejected).code == (
        RejectCode.UNKNOWN_ACCOUNT
    )


def test_a_member_limit_counts_all_its_accounts_together(ex: Exchange) -> None:
    for account in (BOB, ALICE):
        ex.apply(SetAccountProfile(account, "MEMB", account), T0)
    one(ex.apply(SetMemberRateLimit("MEMB", 3, by="ops"), T0), MemberRateLimitChanged)
    one(place(ex, BOB, BUY, 1, 95, ts_ms=T0 + 100), Accepted)
    one(place(ex, ALICE, SELL, 1, 105, ts_ms=T0 + 200), Accepted)
    one(place(ex, BOB, BUY, 1, 94, ts_ms=T0 + 300), Accepted)
    refused = one(place(ex, ALICE, SELL, 1, 106, ts_ms=T0 + 400), Rejected)
    assert refused.code == RejectCode.RATE_LIMITED
    assert refused.message == "more than 3 order messages of member MEMB in one second"
    restored = Exchange.restore(ex.snapshot())
    assert restored.state_hash() == ex.state_hash()
    one(place(restored, ALICE, SELL, 1, 106, ts_ms=T0 + 1_000), Accepted)
    one(ex.apply(SetMemberRateLimit("MEMB", 0), T0 + 1_000), MemberRateLimitChanged)
    for n in range(5):
        one(place(ex, BOB, BUY, 1, 90 + n, ts_ms=T0 + 1_100), Accepted)
