"""Accounts' compliance reference data: member, beneficial owner, LEI, trading capacity."""

from __future__ import annotations

from conftest import ALICE, BOB, BUY, SELL, one, place

from engine import Exchange, RejectCode
from engine.codes import TradingCapacity
from engine.commands import SetAccountProfile
from engine.events import Accepted, AccountProfileChanged, Rejected

# GLEIF's own LEI: a valid ISO 17442 code (check digits 97-10).
VALID_LEI = "506700GE1G29325QX363"


def test_a_profile_is_set_by_command_and_orders_take_its_capacity(ex: Exchange) -> None:
    events = ex.apply(SetAccountProfile(BOB, "MEMB1", "owner-b", VALID_LEI, TradingCapacity.AOTC))
    changed = one(events, AccountProfileChanged)
    assert (changed.account, changed.member, changed.owner, changed.lei, changed.capacity) == (
        BOB,
        "MEMB1",
        "owner-b",
        VALID_LEI,
        TradingCapacity.AOTC,
    )
    assert one(place(ex, BOB, BUY, 1, 99), Accepted).capacity == TradingCapacity.AOTC
    own = place(ex, BOB, BUY, 1, 98, capacity=TradingCapacity.MTCH)
    assert one(own, Accepted).capacity == TradingCapacity.MTCH, "an order's own capacity wins"
    assert one(place(ex, ALICE, SELL, 1, 105), Accepted).capacity == TradingCapacity.DEAL


def test_a_profile_survives_a_snapshot(ex: Exchange) -> None:
    ex.apply(SetAccountProfile(BOB, "MEMB1", "owner-b", "", TradingCapacity.MTCH))
    restored = Exchange.restore(ex.snapshot())
    assert restored.state_hash() == ex.state_hash()
    assert one(place(restored, BOB, BUY, 1, 99), Accepted).capacity == TradingCapacity.MTCH


def test_a_bad_profile_is_refused_and_changes_nothing(ex: Exchange) -> None:
    for command, code in (
        (SetAccountProfile("nobody", "M", "O"), RejectCode.UNKNOWN_ACCOUNT),
        (SetAccountProfile(BOB, "", "O"), RejectCode.INVALID_PROFILE),
        (SetAccountProfile(BOB, "M", ""), RejectCode.INVALID_PROFILE),
        (SetAccountProfile(BOB, "M", "O", "506700GE1G29325QX364"), RejectCode.INVALID_PROFILE),
        (SetAccountProfile(BOB, "M", "O", "short"), RejectCode.INVALID_PROFILE),
        (
            SetAccountProfile(BOB, "M", "O", "", TradingCapacity.ACCOUNT_DEFAULT),
            RejectCode.INVALID_PROFILE,
        ),
    ):
        events = ex.apply(command)
        assert one(events, Rejected).code == code
        assert not [e for e in events if isinstance(e, AccountProfileChanged)]
    assert one(place(ex, BOB, BUY, 1, 99), Accepted).capacity == TradingCapacity.DEAL
