"""An engine with its event log (and, if given, the history projected from it), applied to
together as a node's apply loop and its projector do: for the event log and projection tests."""

from __future__ import annotations

from cluster.event_log import AppliedCommand, EventLog
from cluster.rocks import READ_LIMIT_MAX
from engine import Exchange, Side
from engine.commands import AddInstrument, Command, CreateAccount, Deposit, command_to_bytes
from engine.events import Accepted
from projection.history import HistoryStore

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_MS = 10
CASH = 1_000_000
SHARES = 1_000
PRICE = 1_000
BUY = Side.BUY
SELL = Side.SELL


class LoggedNode:
    def __init__(self, event_log: EventLog, history: HistoryStore | None = None) -> None:
        self.log = event_log
        self.history = history
        self.exchange = Exchange()
        self.log_index = event_log.applied_index()
        self.time_ms = START_MS
        self.request_no = 0

    def run(
        self, *commands: Command, write: bool = True, project: bool = True
    ) -> list[AppliedCommand]:
        """Applies `commands` as the next log entry; by default logs it, and projects it when
        the node has a history."""
        self.log_index += 1
        self.time_ms += STEP_MS
        applied = [self.applied(command) for command in commands]
        if write:
            self.log.write_entry(self.log_index, self.time_ms, applied)
            if project and self.history is not None:
                self.project()
        return applied

    def project(self) -> None:
        """What the projector does: the log's entries after the store's position, in one write."""
        assert self.history is not None
        self.history.write_entries(
            self.log.entries_after(self.history.applied_index(), READ_LIMIT_MAX)
        )

    def applied(self, command: Command) -> AppliedCommand:
        self.request_no += 1
        events = self.exchange.apply(command, self.time_ms)
        return AppliedCommand(f"n1/{self.request_no}", command_to_bytes(command), events)

    def order_id(self, applied: AppliedCommand) -> int:
        accepted = [e for e in applied.events if isinstance(e, Accepted)]
        assert len(accepted) == 1, applied.events
        return accepted[0].order_id


def market_setup() -> list[Command]:
    return [
        AddInstrument(
            "ACME", "ACME", "USD", maker_fee_bps=10, taker_fee_bps=20, reference_price=PRICE
        ),
        *(CreateAccount(name) for name in ("alice", "bob", "carol")),
        *(Deposit(name, "USD", CASH) for name in ("alice", "bob", "carol")),
        *(Deposit(name, "ACME", SHARES) for name in ("alice", "bob", "carol")),
    ]
