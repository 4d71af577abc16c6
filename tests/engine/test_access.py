"""Reference data and access in the replicated state: asset decimals, API keys, second factors."""

from conftest import ALICE, BOB, apply_rejected, one

from engine import Exchange, RejectCode
from engine.access import API_KEYS_PER_ACCOUNT_MAX
from engine.codes import KeyKind, Scope
from engine.commands import (
    AddApiKey,
    AddAsset,
    RevokeApiKey,
    SetSecondFactor,
    command_from_wire,
    command_to_wire,
)
from engine.events import ApiKeyChanged, AssetAdded, Rejected, SecondFactorSet

PUBLIC_KEY = "ab" * 32
TRADER_SCOPES = Scope.READ | Scope.TRADE


def test_asset_decimals_are_set_once(ex: Exchange) -> None:
    event = one(ex.apply(AddAsset("USD", 2)), AssetAdded)
    assert (event.asset, event.decimals) == ("USD", 2)
    assert ex.assets == {"USD": 2}
    apply_rejected(ex, AddAsset("USD", 4), RejectCode.ALREADY_EXISTS)
    apply_rejected(ex, AddAsset("EUR", 19), RejectCode.INVALID_ASSET)
    apply_rejected(ex, AddAsset("", 2), RejectCode.INVALID_ASSET)


def test_api_key_added_and_revoked_without_its_material_in_events(ex: Exchange) -> None:
    added = one(
        ex.apply(AddApiKey(ALICE, "k1", KeyKind.ED25519, PUBLIC_KEY, TRADER_SCOPES)), ApiKeyChanged
    )
    assert (added.account, added.key_id, added.active, added.scopes) == (
        ALICE,
        "k1",
        True,
        TRADER_SCOPES,
    )
    assert PUBLIC_KEY not in repr(added)
    assert ex.api_keys["k1"].material == PUBLIC_KEY
    revoked = one(ex.apply(RevokeApiKey(ALICE, "k1")), ApiKeyChanged)
    assert not revoked.active and "k1" not in ex.api_keys


def test_bad_api_keys_are_rejected_and_change_nothing(ex: Exchange) -> None:
    ex.apply(AddApiKey(ALICE, "k1", KeyKind.HMAC, "sealed", Scope.READ))
    apply_rejected(
        ex, AddApiKey("nobody", "k2", KeyKind.HMAC, "s", Scope.READ), RejectCode.UNKNOWN_ACCOUNT
    )
    apply_rejected(
        ex, AddApiKey(BOB, "k1", KeyKind.HMAC, "s", Scope.READ), RejectCode.ALREADY_EXISTS
    )
    apply_rejected(ex, AddApiKey(BOB, "k2", KeyKind.HMAC, "s", 0), RejectCode.INVALID_KEY)
    apply_rejected(ex, AddApiKey(BOB, "k2", KeyKind.HMAC, "s", 32), RejectCode.INVALID_KEY)
    apply_rejected(ex, AddApiKey(BOB, "k2", KeyKind.HMAC, "", Scope.READ), RejectCode.INVALID_KEY)
    apply_rejected(
        ex, AddApiKey(BOB, "k2", KeyKind.ED25519, "AB" * 32, Scope.READ), RejectCode.INVALID_KEY
    )
    # Revoking someone else's key is the same as revoking a key that does not exist.
    apply_rejected(ex, RevokeApiKey(BOB, "k1"), RejectCode.UNKNOWN_KEY)


def test_keys_per_account_are_bounded(ex: Exchange) -> None:
    for n in range(API_KEYS_PER_ACCOUNT_MAX):
        one(ex.apply(AddApiKey(ALICE, f"k{n}", KeyKind.HMAC, "s", Scope.READ)), ApiKeyChanged)
    apply_rejected(
        ex, AddApiKey(ALICE, "one-more", KeyKind.HMAC, "s", Scope.READ), RejectCode.TOO_MANY_KEYS
    )
    one(ex.apply(AddApiKey(BOB, "bob-key", KeyKind.HMAC, "s", Scope.READ)), ApiKeyChanged)


def test_second_factor_enrolment(ex: Exchange) -> None:
    one(ex.apply(SetSecondFactor(ALICE, "sealed-totp")), SecondFactorSet)
    assert ex.second_factors == {ALICE: "sealed-totp"}
    apply_rejected(ex, SetSecondFactor("nobody", "x"), RejectCode.UNKNOWN_ACCOUNT)
    apply_rejected(ex, SetSecondFactor(BOB, ""), RejectCode.INVALID_KEY)


def test_access_state_survives_snapshot_and_counts_in_the_hash(ex: Exchange) -> None:
    before = ex.state_hash()
    for command in (
        AddAsset("USD", 2),
        AddApiKey(ALICE, "k1", KeyKind.ED25519, PUBLIC_KEY, TRADER_SCOPES),
        SetSecondFactor(ALICE, "sealed"),
    ):
        ex.apply(command)
    assert ex.state_hash() != before
    restored = Exchange.restore(ex.snapshot())
    assert restored.state_hash() == ex.state_hash()
    assert restored.api_keys["k1"].material == PUBLIC_KEY
    assert restored.assets == {"USD": 2} and restored.second_factors == {ALICE: "sealed"}


def test_long_key_material_travels_on_the_wire() -> None:
    command = AddApiKey(ALICE, "k1", KeyKind.HMAC, "g" * 400, Scope.READ)
    assert command_from_wire(command_to_wire(command)) == command


def test_a_second_factor_request_applies_once(ex: Exchange) -> None:
    first = one(ex.apply(SetSecondFactor(ALICE, "sealed-1", "req-1")), SecondFactorSet)
    again = ex.apply(SetSecondFactor(ALICE, "sealed-1", "req-1"))
    assert again == [first]
    replay = ex.apply(SetSecondFactor(ALICE, "sealed-2", "req-1"))
    assert one(replay, Rejected).code == RejectCode.DUPLICATE_CLIENT_ORDER_ID
    assert ex.second_factors[ALICE] == "sealed-1"
