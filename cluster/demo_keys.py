"""API keys and second factors for the demo accounts of a local cluster (`raftex up`).

Issued once, on first start, through the admin endpoints, and written to
DIR/demo-keys.json and DIR/demo-totp.json (mode 0600): an Ed25519 private key
never leaves this machine, an HMAC secret is shown once by the node that made it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cluster.admin_client import AdminClient
from cluster.private_file import replace_private

DEMO_KEYS_FILE_NAME = "demo-keys.json"
DEMO_TOTP_FILE_NAME = "demo-totp.json"
DEMO_SCOPES = ["read", "trade"]
# The account owner's key: it may also manage the account's keys and second factor (with a
# TOTP code), which the trading keys cannot.
DEMO_OWNER_SCOPES = ["read", "trade", "security"]


def ed25519_pair() -> tuple[str, str]:
    """(private key hex, public key hex) of a fresh Ed25519 key."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private.private_bytes_raw().hex(), public.hex()


async def issue_demo_keys(
    http: str,
    token: str,
    data_dir: Path,
    accounts: tuple[str, ...],
    ca_file: Path | None = None,
) -> list[dict[str, Any]]:
    """One HMAC and one Ed25519 key (read, trade), an Ed25519 owner key (read, trade,
    security) and a TOTP secret per account; idempotent across restarts because the files
    are written only once."""
    keys_file = data_dir / DEMO_KEYS_FILE_NAME
    if keys_file.exists():
        return json.loads(keys_file.read_text())
    rows: list[dict[str, Any]] = []
    factors: dict[str, str] = {}
    async with AdminClient(token, ca_file=ca_file) as client:
        for account in accounts:
            base = f"/v1/admin/accounts/{account}"
            made = await client.call(
                http, "POST", f"{base}/keys", {"kind": "hmac", "scopes": DEMO_SCOPES}
            )
            rows.append(_row(account, "hmac", made["key_id"], made["secret"], DEMO_SCOPES))
            for scopes in (DEMO_SCOPES, DEMO_OWNER_SCOPES):
                private_hex, public_hex = ed25519_pair()
                made = await client.call(
                    http,
                    "POST",
                    f"{base}/keys",
                    {"kind": "ed25519", "public_key": public_hex, "scopes": scopes},
                )
                rows.append(_row(account, "ed25519", made["key_id"], private_hex, scopes))
            factor = await client.call(http, "POST", f"{base}/second-factor", {})
            factors[account] = factor["totp_secret"]
    replace_private(data_dir / DEMO_TOTP_FILE_NAME, json.dumps(factors, indent=2) + "\n")
    replace_private(keys_file, json.dumps(rows, indent=2) + "\n")
    return rows


def _row(account: str, kind: str, key_id: str, secret: str, scopes: list[str]) -> dict[str, Any]:
    return {"account": account, "kind": kind, "api_key": key_id, "secret": secret, "scopes": scopes}
