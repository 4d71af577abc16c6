"""Sealing of shared secrets (HMAC key secrets, TOTP secrets) before they enter the log.

The log, snapshots, audit records and backups hold only the sealed form; every
node derives the same sealing key from the cluster secret, so any node can
verify an HMAC signature or a TOTP code, and a copy of the data alone cannot.
"""

from __future__ import annotations

import base64
from collections import OrderedDict

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEALING_INFO = b"raftex secret sealing v1"
UNSEALED_CACHE_MAX = 4_096


class SealError(ValueError):
    """Sealed material this cluster's key did not seal (wrong secret or corrupted)."""


class Sealer:
    def __init__(self, cluster_secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SEALING_INFO).derive(
            cluster_secret.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        # Unsealing costs ~20 µs; signed requests reuse the same few keys.
        self._cache: OrderedDict[str, bytes] = OrderedDict()

    def seal(self, secret: bytes) -> str:
        return self._fernet.encrypt(secret).decode("ascii")

    def unseal(self, sealed: str) -> bytes:
        secret = self._cache.get(sealed)
        if secret is not None:
            self._cache.move_to_end(sealed)
            return secret
        try:
            secret = self._fernet.decrypt(sealed.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SealError("sealed secret does not open with this cluster's key") from None
        self._cache[sealed] = secret
        if len(self._cache) > UNSEALED_CACHE_MAX:
            self._cache.popitem(last=False)
        return secret
