"""Signed requests, scopes, replays, TOTP and rate limits, through real HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid

import pyotp
import pytest

from api.client import ClientError, RaftexClient
from api.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from cluster.demo_keys import ed25519_pair
from tests.api.conftest import KEY_RATE_PER_S, ApiCluster, fresh_account
from tests.api.raw import raw_call

pytestmark = pytest.mark.asyncio


async def test_both_key_kinds_sign_requests(api: ApiCluster) -> None:
    for kind in ("ed25519", "hmac"):
        async with api.client("bob", kind) as bob:
            profile = await bob.account()
            assert profile["account"] == "bob" and profile["scopes"] == ["read", "trade"]
            assert profile["second_factor"] is True


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({KEY_HEADER: None}, "unauthenticated"),
        ({KEY_HEADER: "no-such-key"}, "unknown_key"),
        ({SIGNATURE_HEADER: "00" * 64}, "bad_signature"),
        ({SIGNATURE_HEADER: "not-hex"}, "bad_signature"),
        ({TIMESTAMP_HEADER: "12345"}, "stale_request"),
        ({TIMESTAMP_HEADER: "soon"}, "bad_timestamp"),
    ],
)
async def test_bad_signatures_are_refused(api: ApiCluster, change: dict, code: str) -> None:
    async with api.client("alice") as alice:
        headers = alice.sign("GET", "/v1/account", "", b"")
    for name, value in change.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    status, body = await raw_call(api.followers[0], "GET", "/v1/account", headers)
    assert (status, body["code"]) == (401, code)


async def test_a_signature_covers_the_body(api: ApiCluster) -> None:
    async with api.client("alice") as alice:
        body = json.dumps({"symbol": "AAPL", "side": "buy", "qty": "1", "price": "180.00"}).encode()
        headers = alice.sign("POST", "/v1/orders", "", body)
    tampered = body.replace(b'"1"', b'"100"')
    status, answer = await raw_call(api.leader_http, "POST", "/v1/orders", headers, tampered)
    assert (status, answer["code"]) == (401, "bad_signature")


async def test_a_replayed_request_is_refused_and_never_applied_twice(api: ApiCluster) -> None:
    """Same node: refused. Another node: its signature-derived client order id makes the
    state machine answer with the original order instead of placing a second one."""
    async with api.client("alice") as alice:
        body = json.dumps({"symbol": "AAPL", "side": "buy", "qty": "1", "price": "181.00"}).encode()
        headers = {**alice.sign("POST", "/v1/orders", "", body), "Content-Type": "application/json"}
        first_node, second_node = api.followers
        status, placed = await raw_call(first_node, "POST", "/v1/orders", headers, body)
        assert status == 200 and placed["status"] == "open"
        status, again = await raw_call(first_node, "POST", "/v1/orders", headers, body)
        assert (status, again["code"]) == (401, "replayed_request")
        status, elsewhere = await raw_call(second_node, "POST", "/v1/orders", headers, body)
        assert status == 200 and elsewhere["retried"] is True
        assert elsewhere["order"]["order_id"] == placed["order_id"]
        await alice.cancel_order(placed["order_id"])


async def test_scopes_are_enforced(api: ApiCluster) -> None:
    async with api.client("alice") as alice:
        with pytest.raises(ClientError) as caught:
            await alice.withdraw("USD", "1.00")
        assert (caught.value.status, caught.value.code) == (403, "missing_scope")
        with pytest.raises(ClientError) as caught:
            await alice.create_key("hmac", ["read"])
        assert (caught.value.status, caught.value.code) == (403, "missing_scope")
    account = await fresh_account(api, "scopes")
    async with await account.client(["read", "trade", "security"]) as owner:
        made = await owner.create_key("hmac", ["read"])
    async with RaftexClient(api.followers, made["key_id"], made["secret"], "hmac") as reader:
        profile = await _retry_until_known(reader)
        assert profile["scopes"] == ["read"]
        with pytest.raises(ClientError) as caught:
            await reader.place_order("AAPL", "buy", "1", price="180.00")
        assert (caught.value.status, caught.value.code) == (403, "missing_scope")


async def _retry_until_known(client: RaftexClient) -> dict:
    """A new key is known on a follower once the follower applied it (read-your-writes)."""
    for _ in range(50):
        try:
            return await client.account()
        except ClientError as exc:
            if exc.code != "unknown_key":
                raise
            await asyncio.sleep(0.05)
    raise AssertionError("the new key never became known")


async def test_creating_keys_needs_a_fresh_totp_code_and_no_escalation(api: ApiCluster) -> None:
    account = await fresh_account(api, "keys")
    async with await account.client(["read", "trade", "security"]) as owner:
        with pytest.raises(ClientError) as caught:
            await owner.request(
                "POST", "/v1/account/keys", body={"kind": "hmac", "scopes": ["read"]}
            )
        assert (caught.value.status, caught.value.code) == (401, "bad_second_factor")
        with pytest.raises(ClientError) as caught:
            await owner.create_key("hmac", ["read", "withdraw"])
        assert (caught.value.status, caught.value.code) == (403, "scope_escalation")
        private_hex, public_hex = ed25519_pair()
        # Neither refusal spent a code (the second never reached the log); one works once in
        # the whole cluster, then never again, on any node.
        code = await owner.next_totp_code()
        first_node, second_node = api.followers
        body = json.dumps(
            {"kind": "ed25519", "public_key": public_hex, "scopes": ["read", "trade"]}
        ).encode()
        headers = {**owner.sign("POST", "/v1/account/keys", "", body), "X-Raftex-TOTP": code}
        status, made = await raw_call(first_node, "POST", "/v1/account/keys", headers, body)
        assert status == 201 and made["kind"] == "ed25519" and "secret" not in made
        other_body = json.dumps({"kind": "hmac", "scopes": ["read"]}).encode()
        headers = {**owner.sign("POST", "/v1/account/keys", "", other_body), "X-Raftex-TOTP": code}
        status, answer = await raw_call(
            second_node, "POST", "/v1/account/keys", headers, other_body
        )
        assert (status, answer["code"]) == (401, "second_factor_used")
        assert "already used" in answer["message"] and "secret" not in answer
        async with RaftexClient(api.followers, made["key_id"], private_hex, "ed25519") as fresh:
            assert (await _retry_until_known(fresh))["account"] == account.name
            listed = {k["key_id"] for k in (await owner.keys())["keys"]}
            assert made["key_id"] in listed
            revoked = await owner.revoke_key(made["key_id"])
            assert revoked["status"] == "revoked"
            await api.applied_everywhere(revoked["seq"])
            for node in api.all_http:
                with pytest.raises(ClientError) as caught:
                    await fresh.request(
                        "GET", "/v1/account", node=node, params={"n": uuid.uuid4().hex}
                    )
                assert caught.value.code == "unknown_key"


async def test_withdrawal_needs_the_withdraw_scope_and_totp(api: ApiCluster) -> None:
    account = await fresh_account(api, "withdraw")
    async with await account.client(["read", "withdraw"]) as client:
        before = await _retry_until_known(client)
        assert before["scopes"] == ["read", "withdraw"]
        usd = next(b for b in (await client.balances())["balances"] if b["asset"] == "USD")
        done = await client.withdraw("USD", "12.34", request_id=uuid.uuid4().hex)
        assert done["status"] == "done"
        assert float(done["available"]) == pytest.approx(float(usd["available"]) - 12.34)
        with pytest.raises(ClientError) as caught:
            await client.request(
                "POST",
                "/v1/account/withdrawals",
                body={"asset": "USD", "amount": "1.00", "request_id": "x"},
            )
        assert caught.value.code == "bad_second_factor"


async def test_per_key_rate_limit_answers_429_with_retry_after(api: ApiCluster) -> None:
    made = await api.admin(
        "POST", "/v1/admin/accounts/alice/keys", {"kind": "hmac", "scopes": ["read"]}
    )
    async with RaftexClient([api.leader_http], made["key_id"], made["secret"], "hmac") as client:
        await _retry_until_known(client)
        burst = int(KEY_RATE_PER_S * 2) + 20
        results = await asyncio.gather(
            *(client.request("GET", "/v1/account", params={"n": n}) for n in range(burst)),
            return_exceptions=True,
        )
    limited = [r for r in results if isinstance(r, ClientError)]
    assert limited and all(r.status == 429 and r.code == "rate_limited" for r in limited)
    assert len(limited) < burst


async def test_a_key_creation_replayed_to_another_node_reveals_no_secret(api: ApiCluster) -> None:
    account = await fresh_account(api, "replay-key")
    async with await account.client(["read", "security"]) as owner:
        code = await owner.next_totp_code()
        body = json.dumps({"kind": "hmac", "scopes": ["read"]}).encode()
        headers = {
            **owner.sign("POST", "/v1/account/keys", "", body),
            "X-Raftex-TOTP": code,
            "Content-Type": "application/json",
        }
        first_node, second_node = api.followers
        status, made = await raw_call(first_node, "POST", "/v1/account/keys", headers, body)
        assert status == 201 and made["secret"]
        status, replayed = await raw_call(second_node, "POST", "/v1/account/keys", headers, body)
        assert (status, replayed["code"]) == (401, "replayed_request")
        assert "secret" not in replayed
        await owner.revoke_key(made["key_id"])


async def test_a_read_only_key_cannot_revoke_other_keys(api: ApiCluster) -> None:
    made = await api.admin(
        "POST", "/v1/admin/accounts/bob/keys", {"kind": "hmac", "scopes": ["read"]}
    )
    async with RaftexClient(api.followers, made["key_id"], made["secret"], "hmac") as reader:
        await _retry_until_known(reader)
        with pytest.raises(ClientError) as caught:
            await reader.revoke_key(api.key("bob", "ed25519")["api_key"])
        assert (caught.value.status, caught.value.code) == (403, "missing_scope")
        assert (await reader.revoke_key(made["key_id"]))["status"] == "revoked"


async def test_a_totp_code_must_be_six_ascii_digits(api: ApiCluster) -> None:
    async with api.client("alice", scope="security") as alice:
        wide = "".join(chr(0xFF10 + int(d)) for d in pyotp.TOTP(api.totp["alice"]).now())
        body = json.dumps({"kind": "hmac", "scopes": ["read"]}).encode()
        headers = {**alice.sign("POST", "/v1/account/keys", "", body), "X-Raftex-TOTP": wide}
        status, answer = await raw_call(api.followers[0], "POST", "/v1/account/keys", headers, body)
        assert (status, answer["code"]) == (401, "bad_second_factor")
