"""FIX 4.4 order entry against a real 3-node cluster, from an independent initiator.

Every node serves FIX (quickfix acceptor in the node process); the counterparty
is quickfix in initiator mode in this process, with its own FileStore in a
temporary directory, signing its Logon with a demo account's API key. The
stories: logon, the order lifecycle in ExecutionReports (whatever channel
placed the order), cancel, replace, mass cancel, status, refusals, an
unsupported message, a reconnect over a sequence gap, and a leader failover
under a session on a follower.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("quickfix", reason="the fix extra (quickfix) is not installed")

from api.client import RaftexClient
from api.fix_client import (
    FixClient,
    FixEndpoint,
    app_message,
    cancel_request,
    mass_cancel_request,
    new_order_single,
    replace_request,
    status_request,
)
from cluster.demo_keys import issue_demo_keys
from cluster.launcher import DEMO_ACCOUNTS, LAUNCH_FILE_NAME, LocalCluster, free_port
from engine.commands import RevokeApiKey, command_to_wire
from tests.cluster.harness import ClusterHarness

SETTINGS: dict[str, float | bool] = {"rate_limit_key_per_s": 0, "rate_limit_ip_per_s": 0}
BUY, SELL = "1", "2"
NEW, CANCELED, REPLACED, REJECTED, TRADE, STATUS = "0", "4", "5", "8", "F", "I"
EXECUTION_REPORT = "8"
# Failover: a new leader within the session's retry window (api/fix_session.py).
FAILOVER_WAIT_S = 20.0


@dataclass
class FixCluster:
    harness: ClusterHarness
    leader: str
    keys: list[dict[str, Any]]
    fix_ports: dict[str, int]
    tmp: Path

    def key(self, account: str, kind: str = "ed25519") -> dict[str, Any]:
        return next(
            k
            for k in self.keys
            if k["account"] == account and k["kind"] == kind and "trade" in k["scopes"]
        )

    @property
    def follower(self) -> str:
        return next(n for n in sorted(self.fix_ports) if n != self.leader)

    def client(
        self, comp_id: str, account: str, node: str | None = None, kind: str = "ed25519"
    ) -> FixClient:
        """A FIX session (not yet started); on a follower unless `node` says otherwise, so
        every write is forwarded to the leader. Its store is the comp id's, across tests:
        the acceptor remembers the session's sequence numbers, and so must the client."""
        key = self.key(account, kind)
        port = self.fix_ports[node or self.follower]
        return FixClient(
            FixEndpoint("127.0.0.1", port),
            comp_id,
            key["api_key"],
            key["secret"],
            kind,
            self.tmp / f"fix-{comp_id}",
        )

    def rest(self, account: str, coroutine_of: Any) -> Any:
        """Runs `coroutine_of(client)` with a native API client of `account` on the leader."""
        key = self.key(account, "hmac")

        async def go() -> Any:
            http = [self.harness.http(self.leader)]
            async with RaftexClient(http, key["api_key"], key["secret"], "hmac") as client:
                return await coroutine_of(client)

        return asyncio.run(go())


@pytest.fixture(scope="module")
def fix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FixCluster]:
    tmp = tmp_path_factory.mktemp("fix")
    data_dir = tmp / "cluster"
    ports = {f"n{i}": free_port() for i in (1, 2, 3)}
    # The plan (with a FIX port per node) first; the harness then runs that plan.
    LocalCluster(
        data_dir,
        3,
        settings=SETTINGS,
        node_settings={node: {"fix_port": port} for node, port in ports.items()},
    )
    assert json.loads((data_dir / LAUNCH_FILE_NAME).read_text())["node_settings"]
    harness = ClusterHarness(data_dir, 3, settings=SETTINGS, encrypted=False)
    with harness.running():
        leader = harness.wait_leader()
        keys = asyncio.run(
            issue_demo_keys(harness.http(leader), harness.token, data_dir, DEMO_ACCOUNTS)
        )
        harness.wait_all_applied()
        yield FixCluster(harness, leader, keys, ports, tmp)


def cid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def report(client: FixClient, cl_ord_id: str, exec_type: str, **more: str) -> dict[int, str]:
    match = {11: cl_ord_id, 150: exec_type}
    match.update({int(tag[1:]): value for tag, value in more.items()})
    return client.expect(EXECUTION_REPORT, match)


def test_logon_with_the_account_key_and_a_bad_signature_is_refused(fix: FixCluster) -> None:
    with fix.client("CLIENT1", "alice") as good:
        assert good.wait_logged_on()
    key = fix.key("bob", "hmac")
    forged = FixClient(
        FixEndpoint("127.0.0.1", fix.fix_ports[fix.follower]),
        "CLIENT2",
        key["api_key"],
        "not-the-secret",
        "hmac",
        fix.tmp / "fix-forged",
    )
    with forged:
        logout = forged.expect("5", kept=forged.admin_received)
        assert "signature does not verify" in logout[58]
        assert not forged.logged_on


def test_a_limit_order_is_new_then_filled_by_another_account(fix: FixCluster) -> None:
    """Alice's FIX order rests; Bob crosses it over the native API in two parts."""
    with fix.client("CLIENT1", "alice") as alice:
        assert alice.wait_logged_on()
        order = cid("buy")
        alice.send(new_order_single(order, "MSFT", BUY, "5", price="401.00"))
        new = report(alice, order, NEW)
        assert new[39] == "0" and new[151] == "5" and new[14] == "0" and new[1] == "alice"

        async def cross(client: RaftexClient) -> None:
            await client.place_order("MSFT", "sell", "2", price="401.00")
            await client.place_order("MSFT", "sell", "3", price="401.00")

        fix.rest("bob", cross)
        partial = report(alice, order, TRADE, t39="1")
        assert (partial[32], partial[31], partial[14], partial[151]) == ("2", "401.00", "2", "3")
        filled = report(alice, order, TRADE, t39="2")
        assert (filled[32], filled[14], filled[151], filled[6]) == ("3", "5", "0", "401")
        assert filled[37] == new[37]


def test_orders_placed_over_the_native_api_are_reported_too(fix: FixCluster) -> None:
    with fix.client("CLIENT1", "alice") as alice:
        assert alice.wait_logged_on()
        order = cid("rest")
        fix.rest(
            "alice",
            lambda c: c.place_order("NVDA", "buy", "1", price="130.00", client_order_id=order),
        )
        assert report(alice, order, NEW)[55] == "NVDA"
        fix.rest("alice", lambda c: c.cancel_order(client_order_id=order))
        assert report(alice, order, CANCELED)[39] == "4"


def test_cancel_and_a_cancel_of_an_unknown_order(fix: FixCluster) -> None:
    with fix.client("CLIENT3", "carol") as carol:
        assert carol.wait_logged_on()
        order = cid("resting")
        carol.send(new_order_single(order, "TSLA", BUY, "4", price="240.00"))
        report(carol, order, NEW)
        cancel = cid("cancel")
        carol.send(cancel_request(cancel, order, "TSLA", BUY, "4"))
        cancelled = report(carol, cancel, CANCELED, t41=order)
        assert (cancelled[39], cancelled[151], cancelled[14], cancelled[38]) == ("4", "0", "0", "4")
        again = cid("cancel")
        carol.send(cancel_request(again, "no-such-order", "TSLA", BUY, "4"))
        refused = carol.expect("9", {11: again})
        assert (refused[41], refused[434], refused[102]) == ("no-such-order", "1", "1")
        assert "unknown_order" in refused[58]


def test_replace_changes_quantity_and_price_and_the_new_clordid_names_the_order(
    fix: FixCluster,
) -> None:
    with fix.client("CLIENT3", "carol") as carol:
        assert carol.wait_logged_on()
        order = cid("first")
        carol.send(new_order_single(order, "TSLA", SELL, "5", price="260.00"))
        placed = report(carol, order, NEW)
        second = cid("second")
        carol.send(replace_request(second, order, "TSLA", SELL, "8", "259.50"))
        replaced = report(carol, second, REPLACED, t41=order)
        assert (replaced[38], replaced[44], replaced[151], replaced[37]) == (
            "8",
            "259.50",
            "8",
            placed[37],
        )
        wrong_type = cid("third")
        carol.send(replace_request(wrong_type, second, "TSLA", SELL, "8", "259.00", ord_type="1"))
        refused = carol.expect("9", {11: wrong_type})
        assert refused[434] == "2" and "keeps the order type" in refused[58]
        cancel = cid("cancel")
        carol.send(cancel_request(cancel, second, "TSLA", SELL))
        assert report(carol, cancel, CANCELED, t41=second)[37] == placed[37]


def test_mass_cancel_by_symbol_then_everything(fix: FixCluster) -> None:
    with fix.client("CLIENT4", "dave") as dave:
        assert dave.wait_logged_on()
        orders = [(cid("m"), "AAPL"), (cid("m"), "AAPL"), (cid("m"), "NVDA")]
        for order, symbol in orders:
            price = "180.00" if symbol == "AAPL" else "128.00"
            dave.send(new_order_single(order, symbol, BUY, "1", price=price))
            report(dave, order, NEW)
        by_symbol = cid("mass")
        dave.send(mass_cancel_request(by_symbol, "AAPL"))
        summary = dave.expect("r", {11: by_symbol})
        assert (summary[530], summary[531], summary[533]) == ("1", "1", "2")
        for order, _ in orders[:2]:
            report(dave, order, CANCELED)
        everything = cid("mass")
        dave.send(mass_cancel_request(everything))
        summary = dave.expect("r", {11: everything})
        assert (summary[530], summary[531], summary[533]) == ("7", "7", "1")
        report(dave, orders[2][0], CANCELED)


def test_order_status_of_an_open_a_closed_and_an_unknown_order(fix: FixCluster) -> None:
    with fix.client("CLIENT4", "dave") as dave:
        assert dave.wait_logged_on()
        order = cid("status")
        dave.send(new_order_single(order, "AAPL", BUY, "3", price="181.00"))
        report(dave, order, NEW)
        dave.send(status_request(order, "AAPL", BUY))
        status = report(dave, order, STATUS)
        assert (status[39], status[151], status[38]) == ("0", "3", "3")
        cancel = cid("cancel")
        dave.send(cancel_request(cancel, order, "AAPL", BUY))
        assert report(dave, cancel, CANCELED)[38] == "3"
        dave.send(status_request(order, "AAPL", BUY))
        assert report(dave, order, STATUS)[39] == "4"
        dave.send(status_request("never-placed", "AAPL", BUY))
        unknown = report(dave, "never-placed", STATUS)
        assert (unknown[39], unknown[103]) == ("8", "5")


def test_refused_orders_are_rejected_with_the_reason(fix: FixCluster) -> None:
    with fix.client("CLIENT1", "alice") as alice:
        assert alice.wait_logged_on()
        too_big = cid("funds")
        # 100,000 shares at 200.00 is 20M USD; alice holds 10M.
        alice.send(new_order_single(too_big, "AAPL", BUY, "100000", price="200.00"))
        refused = report(alice, too_big, REJECTED)
        assert (refused[39], refused[103], refused[37]) == ("8", "3", "NONE")
        assert refused[58].startswith("insufficient_funds")
        bad_price = cid("price")
        alice.send(new_order_single(bad_price, "AAPL", BUY, "1", price="190.001"))
        assert "decimal places" in report(alice, bad_price, REJECTED)[58]
        unknown = cid("symbol")
        alice.send(new_order_single(unknown, "NOPE", BUY, "1", price="1.00"))
        assert report(alice, unknown, REJECTED)[103] == "1"


def test_an_unsupported_message_gets_a_business_message_reject(fix: FixCluster) -> None:
    with fix.client("CLIENT1", "alice") as alice:
        assert alice.wait_logged_on()
        alice.send(app_message("g", {335: "status-1", 263: "0"}))
        reject = alice.expect("j")
        assert (reject[372], reject[380]) == ("g", "3")


def test_reports_missed_while_disconnected_come_back_through_a_resend_request(
    fix: FixCluster,
) -> None:
    """Carol's order fills while her initiator is away: on Logon the acceptor's sequence
    is ahead of what her store expects, her engine asks for the gap, and the fill comes as
    a possible duplicate."""
    store = fix.tmp / "fix-gap"
    key = fix.key("carol")
    endpoint = FixEndpoint("127.0.0.1", fix.fix_ports[fix.follower])
    order = cid("gap")
    with FixClient(endpoint, "CLIENT5", key["api_key"], key["secret"], "ed25519", store) as carol:
        assert carol.wait_logged_on()
        carol.send(new_order_single(order, "NVDA", SELL, "2", price="141.00"))
        report(carol, order, NEW)
    fix.rest("bob", lambda c: c.place_order("NVDA", "buy", "2", price="141.00"))
    with FixClient(endpoint, "CLIENT5", key["api_key"], key["secret"], "ed25519", store) as carol:
        assert carol.wait_logged_on()
        resend = carol.expect("2", kept=carol.admin_sent)
        assert int(resend[7]) >= 1
        filled = report(carol, order, TRADE, t39="2")
        assert filled[43] == "Y"


def test_a_key_revoked_after_logon_trades_no_more(fix: FixCluster) -> None:
    harness = fix.harness
    made = harness.call(
        fix.leader, "POST", "/v1/admin/accounts/bob/keys", {"kind": "hmac", "scopes": ["trade"]}
    )
    harness.wait_all_applied()
    endpoint = FixEndpoint("127.0.0.1", fix.fix_ports[fix.follower])
    store = fix.tmp / "fix-revoked"
    with FixClient(endpoint, "CLIENT7", made["key_id"], made["secret"], "hmac", store) as bob:
        assert bob.wait_logged_on()
        harness.submit(fix.leader, command_to_wire(RevokeApiKey("bob", made["key_id"])))
        harness.wait_all_applied()
        order = cid("revoked")
        bob.send(new_order_single(order, "AAPL", SELL, "1", price="200.00"))
        assert "was revoked" in report(bob, order, REJECTED)[58]
        logout = bob.expect("5", kept=bob.admin_received)
        assert "revoked" in logout[58]


def test_a_session_on_a_follower_rides_through_a_leader_failover(fix: FixCluster) -> None:
    """The leader dies under a session on a follower: an order sent meanwhile is applied
    once a new leader is elected, and the same ClOrdID sent again is not applied twice."""
    harness = fix.harness
    follower = fix.follower
    with fix.client("CLIENT6", "dave", node=follower) as dave:
        assert dave.wait_logged_on()
        before = cid("before")
        dave.send(new_order_single(before, "AAPL", BUY, "1", price="182.00"))
        report(dave, before, NEW)
        harness.cluster.kill(fix.leader)
        during = cid("during")
        dave.send(new_order_single(during, "AAPL", BUY, "1", price="182.00"))
        placed = dave.expect(EXECUTION_REPORT, {11: during, 150: NEW}, FAILOVER_WAIT_S)
        dave.send(new_order_single(during, "AAPL", BUY, "1", price="182.00"))
        again = report(dave, during, STATUS)
        assert again[37] == placed[37] and again[39] == "0"
        assert dave.nothing_more(EXECUTION_REPORT, {11: during, 150: NEW}, 1.0)
    counts = harness.accepted_counts(follower)
    assert counts[("dave", during)] == 1 and counts[("dave", before)] == 1
