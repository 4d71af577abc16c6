"""A node's event log written from the standard workload, as a node's apply loop writes it:
what the snapshot and warehouse benchmarks start from."""

from __future__ import annotations

from bench.engine import START_MS
from bench.workload import COMMANDS_PER_MS, standard_workload
from cluster.event_log import AppliedCommand, EventLog
from cluster.gc_policy import tune_gc_for_apply
from engine import Exchange
from engine.commands import command_to_bytes

ENTRY_COMMANDS = 500


def write_workload_log(event_log: EventLog, commands: int, seed: int) -> Exchange:
    """Applies the workload's setup and `commands` commands in entries of ENTRY_COMMANDS at
    the workload's pace of log time; the engine, in the state the log describes."""
    workload = standard_workload(commands, seed)
    ex = Exchange()
    everything = workload.setup + workload.commands
    tune_gc_for_apply()
    for index, start in enumerate(range(0, len(everything), ENTRY_COMMANDS), start=1):
        ts = START_MS + start // COMMANDS_PER_MS
        applied = [
            AppliedCommand(f"bench/{n}", command_to_bytes(c), ex.apply(c, ts))
            for n, c in enumerate(everything[start : start + ENTRY_COMMANDS], start)
        ]
        event_log.write_entry(index, ts, applied)
    return ex
