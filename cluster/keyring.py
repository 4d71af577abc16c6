"""The cluster's data key, wrapped by the operator's key-encryption key (KEK).

The data key seals what a node writes (cluster/sealed.py). It is kept only wrapped, in
`keyring.json`:
    {"version": 1, "data_key_id": "<hex>",
     "wraps": [{"kek_id": "<hex>", "sealed": "<base64 of nonce (12) | AES-GCM ciphertext>"}]}
one wrap per KEK that opens it. The keyring lives beside the nodes' data directories,
never inside one: a node whose data directory is lost must still read the dump its leader
ships it, and a wrapped key is useless without its KEK.

The KEK is the operator's: 32 random bytes in base64, from a file of their own (mode 0600,
like an SSH key) or from the RAFTEX_KEK environment variable; raftex never writes it beside
the data. A KEK that opens no wrap is refused with its id and the ids the keyring holds, so
a node given the wrong key says so and stops instead of failing on the first sealed record.

Rotation (`raftex admin rotate-key`) re-wraps the same data key under a new KEK in three
crash-safe steps, each an atomic file replace: the keyring gains the new wrap, the KEK file
gets the new key, the old wrap goes. A node starting at any moment in between finds a wrap
its KEK opens. Data already written stays as it is: only the wrapping changes.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cluster.private_file import replace_private
from cluster.sealed import DATA_KEY_BYTES, DataKey, key_id

KEK_ENV = "RAFTEX_KEK"
KEK_BYTES = 32
KEYRING_FILE_NAME = "keyring.json"
KEYRING_VERSION = 1
WRAP_NONCE_BYTES = 12
KEYRING_BYTES_MAX = 64 * 1024


class KeyringError(Exception):
    """A key or keyring the node cannot use; the message says what to fix."""


def parse_kek(text: str, source: str) -> bytes:
    """A KEK from its base64 text (standard or URL-safe alphabet)."""
    cleaned = "".join(text.split()).translate(str.maketrans("-_", "+/"))
    try:
        kek = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        kek = b""
    if len(kek) != KEK_BYTES:
        raise KeyringError(
            f"{source} is not a key-encryption key: expected {KEK_BYTES} random bytes in "
            "base64 (make one with `raftex new-kek --out FILE`)"
        )
    return kek


def read_kek_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyringError(f"cannot read the key-encryption key file {path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyringError(
            f"key-encryption key file {path} is open to other users "
            f"(mode {stat.S_IMODE(mode):04o}); chmod 600 {path}"
        )
    return parse_kek(text, f"key-encryption key file {path}")


def new_kek_text() -> str:
    return base64.b64encode(os.urandom(KEK_BYTES)).decode()


def default_kek_file(environ: Mapping[str, str]) -> Path:
    """Where `raftex up` keeps a local cluster's key-encryption key: the user's own config
    directory, apart from any data directory."""
    config_home = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(config_home).expanduser() / "raftex" / "kek"


def ensure_kek_file(path: Path) -> bool:
    """Creates `path` with a new key (mode 0600, its directory 0700) if missing; whether it
    did. An existing file is left as it is (read_kek_file checks it)."""
    if path.exists():
        return False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    replace_private(path, new_kek_text() + "\n")
    return True


def kek_id(kek: bytes) -> str:
    return key_id(kek)


def _aad(data_key_id: str) -> bytes:
    return b"raftex data key " + data_key_id.encode()


def _wrap(kek: bytes, data_key: DataKey) -> dict[str, str]:
    nonce = os.urandom(WRAP_NONCE_BYTES)
    sealed = nonce + AESGCM(kek).encrypt(nonce, data_key.key, _aad(data_key.key_id))
    return {"kek_id": kek_id(kek), "sealed": base64.b64encode(sealed).decode()}


def _write(path: Path, data_key: DataKey, wraps: list[dict[str, str]]) -> None:
    document = {"version": KEYRING_VERSION, "data_key_id": data_key.key_id, "wraps": wraps}
    replace_private(path, json.dumps(document, indent=2) + "\n")


def create_keyring(path: Path, kek: bytes) -> DataKey:
    """A new data key, wrapped under `kek` into `path` (which must not exist)."""
    if path.exists():
        raise KeyringError(f"{path} exists: a keyring is created once, with its cluster")
    data_key = DataKey(os.urandom(DATA_KEY_BYTES))
    _write(path, data_key, [_wrap(kek, data_key)])
    return data_key


def _read(path: Path) -> tuple[str, list[dict[str, str]]]:
    try:
        if path.stat().st_size > KEYRING_BYTES_MAX:
            raise KeyringError(f"{path} is larger than a keyring ({KEYRING_BYTES_MAX} bytes)")
        document: Any = json.loads(path.read_text())
        if document["version"] != KEYRING_VERSION:
            raise KeyringError(f"{path}: keyring version {document['version']} not understood")
        wraps = [
            {"kek_id": str(w["kek_id"]), "sealed": str(w["sealed"])} for w in document["wraps"]
        ]
        return str(document["data_key_id"]), wraps
    except OSError as exc:
        raise KeyringError(f"cannot read the keyring {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyringError(f"{path} is not a raftex keyring ({exc!r})") from None


def backup_data_key_id(path: Path) -> str:
    """The id of the data key a keyring holds (no key needed to read it)."""
    return _read(path)[0]


def open_keyring(path: Path, kek: bytes) -> DataKey:
    """The data key, unwrapped with `kek`; KeyringError if `kek` does not open it."""
    data_key_id, wraps = _read(path)
    ours = kek_id(kek)
    for wrap in wraps:
        if wrap["kek_id"] != ours:
            continue
        try:
            sealed = base64.b64decode(wrap["sealed"], validate=True)
            nonce, ciphertext = sealed[:WRAP_NONCE_BYTES], sealed[WRAP_NONCE_BYTES:]
            data_key = DataKey(AESGCM(kek).decrypt(nonce, ciphertext, _aad(data_key_id)))
        except (InvalidTag, binascii.Error, ValueError):
            raise KeyringError(f"{path}: the wrap for key {ours} is damaged") from None
        if data_key.key_id != data_key_id:
            raise KeyringError(f"{path}: the data key is not the one the keyring names")
        return data_key
    held = ", ".join(w["kek_id"] for w in wraps) or "none"
    raise KeyringError(
        f"wrong key-encryption key: key {ours} does not open the keyring {path} (it opens "
        f"with key {held}); give the node the key the cluster was created or rotated with"
    )


def load_data_key(keyring: Path, kek_file: Path | None, kek_env: str | None) -> DataKey:
    """The data key a node runs with: its KEK from `kek_file`, else from the RAFTEX_KEK
    value `kek_env`."""
    if kek_file is not None:
        kek = read_kek_file(kek_file)
    elif kek_env:
        kek = parse_kek(kek_env, f"the {KEK_ENV} environment variable")
    else:
        raise KeyringError(
            f"the data is encrypted at rest with keyring {keyring}, but no key-encryption key"
            f" was given: set kek_file or the {KEK_ENV} environment variable"
        )
    return open_keyring(keyring, kek)


def rotate_kek(keyring: Path, kek_file: Path | None, old_kek: bytes, new_kek: bytes) -> None:
    """Re-wraps the data key under `new_kek`; with `kek_file`, also puts the new key there.

    Without `kek_file` (the key comes from RAFTEX_KEK) the old wrap stays until the
    next rotation, so nodes started with the old variable still open the keyring."""
    data_key = open_keyring(keyring, old_kek)
    if kek_id(new_kek) == kek_id(old_kek):
        raise KeyringError("the new key-encryption key is the one in use: nothing to rotate")
    new_wrap = _wrap(new_kek, data_key)
    _write(keyring, data_key, [new_wrap, _wrap(old_kek, data_key)])
    if kek_file is None:
        return
    replace_private(kek_file, base64.b64encode(new_kek).decode() + "\n")
    _write(keyring, data_key, [new_wrap])
