"""A voter that lost its disk does not vote until a leader has sent it the log again.

Raft's election safety rests on every voter remembering, on disk, whom it voted for in
each term. A voter whose data directory is gone (a replaced disk, a wipe, a power loss
with fsync off) comes back at term 0 with no vote, and would vote a second time in a term
it had already voted in: two leaders in one term. The half-hour chaos soak found exactly
that (term 368, leaders n1 and n3, after a follower was wiped).

Such a voter cannot know which terms it voted in, but it can tell that it has lost
something: its log holds no entry from any leader (the last entry's term is 0) while the
candidate's log does, so the cluster has elected leaders before, possibly with this
voter's vote. It then ignores the candidate, and votes again once a leader has sent it
entries or a snapshot (and with them a term past the elections it may have voted in).

At a cluster's first start no log has a leader's entry yet and every voter votes as
usual. The price is availability, never safety: with one voter down, a wiped voter and
the last one cannot elect a leader until the first is back, as with two disks lost.
"""

from __future__ import annotations

from typing import Any

from pysyncobj.transport import TCPTransport


class VoteGuardTransport(TCPTransport):
    """pysyncobj's TCP transport that drops a vote request the node must not answer."""

    def _onMessageReceived(self, node: Any, message: Any) -> None:
        if must_ignore(message, self._syncObj.last_log_term()):
            return
        super()._onMessageReceived(node, message)


def must_ignore(message: Any, my_last_log_term: int) -> bool:
    """A vote request from a candidate whose log holds a leader's entry, to a voter whose
    log holds none."""
    return (
        isinstance(message, dict)
        and message.get("type") == "request_vote"
        and my_last_log_term == 0
        and message.get("last_log_term", 0) > 0
    )
