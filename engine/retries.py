"""At-most-once: the outcome remembered under each (account, client or request id).

A retry of the same command within the retention gets its original outcome event
back (with its original sequence number) and changes nothing; another command
under a remembered id is refused. The table is in the order outcomes happened
(log time never goes back and restore keeps that order), so the ids to forget
are always at its front.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.codes import RejectCode
from engine.commands import Command, Deposit, PlaceOrder, SetSecondFactor, Withdraw
from engine.events import Event
from engine.exchange_state import ExchangeState
from engine.part import Emit, Part

DAY_MS = 86_400_000
# How long a client order id (or request id) is remembered: a retry within this log time
# gets the original outcome; after it the id may be used again. Bounds the table's memory.
CLIENT_ID_RETENTION_MS = DAY_MS


class Retries(Part):
    def __init__(self, state: ExchangeState, emit: Emit, repeat: Callable[[Event], None]) -> None:
        super().__init__(state, emit)
        self.repeat = repeat

    def forget_expired(self) -> None:
        client_ids = self.state.client_ids
        if not client_ids:
            return
        horizon = self.state.now_ms - CLIENT_ID_RETENTION_MS
        if next(iter(client_ids.values()))[1].ts_ms >= horizon:
            return
        while client_ids:
            key, (_, event) = next(iter(client_ids.items()))
            if event.ts_ms >= horizon:
                break
            del client_ids[key]

    def answered_before(self, key: tuple[str, str], cmd: Command, name: str) -> bool:
        """A known id: the same command gets its original outcome again, another command is
        rejected (the id is taken). False for an id not seen (or forgotten)."""
        prior = self.state.client_ids.get(key)
        if prior is None:
            return False
        if prior[0] == cmd:
            self.repeat(prior[1])
        else:
            self.reject(
                key[0], key[1], name, RejectCode.DUPLICATE_CLIENT_ORDER_ID, "id already used"
            )
        return True

    def remember(self, account: str, client_id: str, cmd: Command, outcome: Event) -> None:
        if client_id:
            self.state.client_ids[(account, client_id)] = (cmd, outcome)

    def is_retry(self, cmd: Command) -> bool:
        """Whether `cmd` repeats a remembered command under its client or request id, which
        its handler will answer with the original outcome."""
        client_id = client_id_of(cmd)
        if not client_id:
            return False
        prior = self.state.client_ids.get((cmd.account, client_id))  # type: ignore[union-attr]
        return prior is not None and prior[0] == cmd


def client_id_of(cmd: Command) -> str:
    """The id under which the engine remembers a command's outcome, if it has one."""
    if type(cmd) is PlaceOrder:
        return cmd.client_order_id
    if type(cmd) is Deposit or type(cmd) is Withdraw or type(cmd) is SetSecondFactor:
        return cmd.request_id
    return ""
