"""Book reads: L2 levels and L3 queues in time priority, best first."""

from conftest import ALICE, BOB, BUY, CAROL, SELL, rest

from engine import Exchange


def test_l3_lists_each_level_in_time_priority_and_agrees_with_l2(ex: Exchange) -> None:
    first = rest(ex, ALICE, BUY, 3, 99)
    second = rest(ex, BOB, BUY, 5, 99)
    better = rest(ex, CAROL, BUY, 1, 100)
    ask = rest(ex, ALICE, SELL, 2, 105)
    bids, asks = ex.depth_l3("ACME")
    assert bids == [(100, [(better, 1)]), (99, [(first, 3), (second, 5)])]
    assert asks == [(105, [(ask, 2)])]
    l2_bids = ex.depth("ACME")[0]
    assert [(p, q, n) for p, q, n in l2_bids] == [
        (price, sum(qty for _, qty in queue), len(queue)) for price, queue in bids
    ]
    assert ex.depth_l3("ACME", levels=1)[0] == [(100, [(better, 1)])]
    assert ex.level_queue("ACME", BUY, 99) == [(first, 3), (second, 5)]
    assert ex.level_queue("ACME", SELL, 99) == []
