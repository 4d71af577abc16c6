"""Digests that name something without revealing it: a node's state at one log index (what
`raftex admin hash` compares and a backup records), and a cluster's secret (what a backup
records so that a restore can tell it was given the wrong one)."""

from __future__ import annotations

import hashlib
import hmac


def node_state_hash(engine_hash: str, audit_head: str) -> str:
    """The engine's state and the audit chain's head together."""
    return hashlib.sha256(f"{engine_hash}:{audit_head}".encode()).hexdigest()


def secret_check(secret: str) -> str:
    """A short HMAC of a fixed label under the secret: equal for equal secrets, and useless
    for finding the secret."""
    return hmac.new(secret.encode(), b"raftex backup", "sha256").hexdigest()[:16]
