"""`raftex admin rotate-key`: the cluster's data key re-wrapped under a new key-encryption key.

Nothing is sent to the nodes and nothing they wrote is re-encrypted: the data key stays the
same, so running nodes keep working, and a node that starts afterwards opens the keyring
with the new key. For a local cluster (`--cluster`), the keyring and the key file are the
ones its launch plan names; elsewhere `--keyring` and `--kek-file` (or RAFTEX_KEK) say which.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cluster.keyring import (
    KEK_ENV,
    KEYRING_FILE_NAME,
    KeyringError,
    kek_id,
    new_kek_text,
    open_keyring,
    parse_kek,
    read_kek_file,
    rotate_kek,
)
from cluster.launcher import LAUNCH_FILE_NAME


def _local_cluster_files(cluster_file: Path) -> tuple[Path, Path | None]:
    """The keyring and key file of a cluster `raftex up` runs, from its launch plan."""
    data_dir = cluster_file.resolve().parent
    try:
        plan = json.loads((data_dir / LAUNCH_FILE_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise KeyringError(f"no launch plan beside {cluster_file} ({exc})") from None
    keyring = data_dir / KEYRING_FILE_NAME
    if not plan.get("kek_file") or not keyring.exists():
        raise KeyringError(
            f"the cluster in {data_dir} keeps its data in clear: there is no key to rotate"
        )
    return keyring, Path(plan["kek_file"])


def rotate_key(
    cluster_file: Path | None,
    keyring: Path | None,
    kek_file: Path | None,
    new_kek_file: Path | None,
    kek_env: str | None,
) -> dict[str, Any]:
    """Re-wraps the data key; what changed, for the operator (never a key)."""
    if keyring is None:
        if cluster_file is None:
            raise KeyringError("give --keyring (and --kek-file or RAFTEX_KEK), or --cluster")
        keyring, planned = _local_cluster_files(cluster_file)
        kek_file = kek_file or planned
    if kek_file is not None:
        old = read_kek_file(kek_file)
    elif kek_env:
        old = parse_kek(kek_env, f"the {KEK_ENV} environment variable")
    else:
        raise KeyringError(f"give --kek-file or set {KEK_ENV}: the key in use now")
    if new_kek_file is not None:
        new = read_kek_file(new_kek_file)
    elif kek_file is not None:
        new = parse_kek(new_kek_text(), "a new key")
    else:
        raise KeyringError(
            f"the key in use comes from {KEK_ENV}: give --new-kek-file, a file holding the new"
            " key (`raftex new-kek --out FILE` makes one), to set it from"
        )
    data_key = open_keyring(keyring, old)
    rotate_kek(keyring, kek_file, old, new)
    return {
        "keyring": str(keyring),
        "data_key_id": data_key.key_id,
        "old_kek_id": kek_id(old),
        "new_kek_id": kek_id(new),
        "kek_file": None if kek_file is None else str(kek_file),
        "next": (
            f"nodes that start from now on read the new key from {kek_file}"
            if kek_file is not None
            else f"set {KEK_ENV} to the key in {new_kek_file} before the nodes next start; "
            "the old key opens the keyring until the next rotation"
        ),
    }
