"""The read views published after each entry equal a view built from the whole engine."""

from __future__ import annotations

from bench.workload import standard_workload
from cluster.views import NodeView, full_view, next_view
from engine import Exchange
from engine.codes import KeyKind, Scope
from engine.commands import AddApiKey, AddAsset, CreateAccount, RevokeApiKey, SetSecondFactor

ENTRY_COMMANDS = 50


def test_views_built_entry_by_entry_match_the_engine() -> None:
    workload = standard_workload(3_000, seed=7, account_count=40, symbol_count=3)
    ex = Exchange()
    view = NodeView()
    commands = workload.setup + workload.commands
    for index, start in enumerate(range(0, len(commands), ENTRY_COMMANDS), 1):
        events = []
        for command in commands[start : start + ENTRY_COMMANDS]:
            events.extend(ex.apply(command, 1_000 + index))
        view = next_view(view, ex, index, events)
        whole = full_view(ex, index)
        assert view.applied_index == whole.applied_index
        assert view.last_seq == whole.last_seq == ex.seq
        assert dict(view.instruments) == dict(whole.instruments)
        assert {a: dict(b) for a, b in view.balances.items() if b} == {
            a: dict(b) for a, b in whole.balances.items() if b
        }
        for symbol, book in whole.books.items():
            if symbol in view.books:
                assert (view.books[symbol].bids, view.books[symbol].asks) == (book.bids, book.asks)
            else:
                assert not book.bids and not book.asks
    assert view.last_trades, "the workload trades, so last trades are published"


def test_access_view_follows_keys_assets_and_second_factors() -> None:
    ex = Exchange()
    view = NodeView()
    steps = [
        [CreateAccount("alice"), AddAsset("USD", 2)],
        [AddApiKey("alice", "k1", KeyKind.ED25519, "ab" * 32, Scope.READ | Scope.TRADE)],
        [
            AddApiKey("alice", "k2", KeyKind.HMAC, "sealed", Scope.READ),
            SetSecondFactor("alice", "s"),
        ],
        [RevokeApiKey("alice", "k1")],
    ]
    for index, commands in enumerate(steps, 1):
        events = [event for command in commands for event in ex.apply(command, index)]
        view = next_view(view, ex, index, events)
        whole = full_view(ex, index)
        assert dict(view.access.api_keys) == dict(whole.access.api_keys)
        assert dict(view.access.assets) == dict(whole.access.assets) == {"USD": 2}
        assert dict(view.access.second_factors) == dict(whole.access.second_factors)
    assert set(view.access.api_keys) == {"k2"} and view.access.api_keys["k2"].account == "alice"
