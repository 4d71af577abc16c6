"""What every part of the engine shares: the state and the one way to emit an event.

`emit(event_type, *fields)` is the dispatcher's: it numbers the event with the
next sequence number and the log time, records it among the command's events
and returns it. No part touches the sequence itself.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.events import Event, Rejected
from engine.exchange_state import ExchangeState

Emit = Callable[..., Event]


class Part:
    def __init__(self, state: ExchangeState, emit: Emit) -> None:
        self.state = state
        self.emit = emit

    def reject(self, account: str, client_id: str, command: str, code: str, message: str) -> Event:
        return self.emit(Rejected, account, client_id, command, code, message)
