"""A market to start a cluster with: its quote asset, instruments and funded accounts.

One description, turned into engine commands in one place, for `raftex up`'s demo
market, the chaos suite's and the benchmarks' (which also apply the commands to an
engine alone). Seeding is idempotent: instruments, assets and accounts that exist
are refused, and deposits carry request ids, so a restarted cluster can be seeded
again without paying anyone twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.admin_client import AdminClient, AdminError
from engine.commands import (
    AddAsset,
    AddInstrument,
    Command,
    CreateAccount,
    Deposit,
    SetAccountProfile,
    SetCalendar,
    command_to_wire,
)

SEED_COMMANDS_PER_REQUEST = 200


@dataclass(frozen=True, slots=True)
class Market:
    quote: str
    quote_decimals: int
    # Each instrument's base asset is its symbol, with 0 decimals (whole shares).
    instruments: tuple[AddInstrument, ...]
    accounts: tuple[str, ...]
    # What each account is given: quote minor units, and shares of every instrument.
    cash: int
    shares: int
    # Compliance reference data for some accounts: member, owner, LEI, trading capacity.
    profiles: tuple[SetAccountProfile, ...] = ()
    # Trading calendars of some instruments (none: they trade continuously).
    calendars: tuple[SetCalendar, ...] = ()

    def commands(self) -> list[Command]:
        commands: list[Command] = [AddAsset(self.quote, self.quote_decimals)]
        commands += [AddAsset(inst.base, 0) for inst in self.instruments]
        commands += self.instruments
        for account in self.accounts:
            commands.append(CreateAccount(account))
            commands.append(Deposit(account, self.quote, self.cash, request_id="seed-cash"))
            commands += [
                Deposit(account, inst.base, self.shares, request_id=f"seed-{inst.base}")
                for inst in self.instruments
            ]
        commands += self.profiles
        commands += self.calendars
        return commands


async def seed_market(admin: AdminClient, http: str, market: Market) -> None:
    """Submits the market's commands to the node at `http` (it forwards them to the leader);
    raises AdminError if any of them could not be confirmed (seeding again is safe)."""
    wires = [command_to_wire(c) for c in market.commands()]
    for start in range(0, len(wires), SEED_COMMANDS_PER_REQUEST):
        body: dict[str, Any] = {
            "commands": wires[start : start + SEED_COMMANDS_PER_REQUEST],
            "detail": "summary",
        }
        answer = await admin.call(http, "POST", "/v1/admin/commands/batch", body)
        lost = [row for row in answer["outcomes"] if row.get("code") == "not_committed"]
        if lost:
            raise AdminError(f"seeding: {len(lost)} commands not committed; {lost[0]['message']}")
