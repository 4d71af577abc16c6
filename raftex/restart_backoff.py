"""How long to wait before starting again a process that exited: the one policy of the
launcher's nodes (raftex/supervisor.py) and a node's projector (raftex/projector_child.py).
0.5 s, doubling up to 10 s, and back to 0.5 s after a run that lasted a minute."""

from __future__ import annotations

from dataclasses import dataclass

BACKOFF_S_FIRST = 0.5
BACKOFF_S_MAX = 10.0
HEALTHY_AFTER_S = 60.0


@dataclass(slots=True)
class RestartBackoff:
    delay_s: float = BACKOFF_S_FIRST

    def after_exit(self, ran_s: float) -> float:
        """The wait before the next start, for a run that lasted `ran_s`."""
        if ran_s >= HEALTHY_AFTER_S:
            self.delay_s = BACKOFF_S_FIRST
        delay_s = self.delay_s
        self.delay_s = min(BACKOFF_S_MAX, delay_s * 2)
        return delay_s
