"""Which cluster a data directory belongs to, so that a node never starts on another's.

A journal in clear says nothing about its cluster, and a node given one would take its
entries (and its terms) for its own. So the first start writes a fingerprint of the
cluster secret beside the data, an HMAC that does not reveal the secret, and every later
start compares it. An encrypted node is refused by its data key as well; this covers the
clear ones and says plainly what is wrong.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from cluster.durable_file import replace_file
from cluster.fingerprints import secret_check

IDENTITY_FILE_NAME = "cluster.identity"


class IdentityError(Exception):
    """The data directory holds another cluster's data."""


def claim_data_dir(data_dir: Path, secret: str) -> None:
    """Records the cluster in a data directory that has no record yet; raises IdentityError
    if it records another cluster."""
    path = data_dir / IDENTITY_FILE_NAME
    mine = secret_check(secret)
    try:
        recorded = path.read_text().strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        replace_file(path, (mine + "\n").encode())
        return
    if not hmac.compare_digest(recorded, mine):
        raise IdentityError(
            f"{data_dir} holds another cluster's data (its {IDENTITY_FILE_NAME} names a "
            "different cluster secret): give this node its own empty data directory, or the "
            "secret of the cluster this directory belongs to"
        )
