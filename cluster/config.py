"""A node's configuration: one typed object, built once at start-up and validated.

Read from a TOML file (`raftex node --config FILE`) with flags taking
precedence. Nothing else in the node reads files or the environment for
settings.
"""

from __future__ import annotations

import os
import socket
import stat
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cluster.keyring import KEK_ENV, KeyringError, load_data_key
from cluster.sealed import DataKey
from cluster.tls import server_context

SECRET_LEN_MIN = 16
FSYNC_POLICIES = ("always", "none")
RATE_LIMIT_IP_PER_S_DEFAULT = 500.0
RATE_LIMIT_KEY_PER_S_DEFAULT = 100.0
FEED_BUFFER_BYTES_MAX_DEFAULT = 4 * 1024 * 1024
REQUESTS_IN_FLIGHT_MAX_DEFAULT = 4_096
HTTP_IDLE_TIMEOUT_S_DEFAULT = 20.0
HTTP_BODY_TIMEOUT_S_DEFAULT = 10.0
FEED_IDLE_TIMEOUT_S_DEFAULT = 60.0
# The SenderCompIDs a node's FIX acceptor has sessions for. quickfix 1.16 creates an
# acceptor's sessions at start (no dynamic sessions), so the set is fixed and documented;
# any account's key may log on with any of them (api/fix_logon.py).
FIX_COMP_IDS_DEFAULT = tuple(f"CLIENT{n}" for n in range(1, 17))
FIX_COMP_IDS_MAX = 256


EXIT_CONFIG = 2
EXIT_KEY = 78  # sysexits' EX_CONFIG: a restart with the same key cannot succeed


class ConfigError(Exception):
    """A configuration the node refuses to start with; the message says what to fix.
    `exit_code`: what the node exits with (a wrong key is told apart: restarting with the
    same key would only repeat it)."""

    def __init__(self, message: str, exit_code: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Peer:
    """A member of the cluster. A read replica has no Raft address: it never listens for
    Raft traffic (it connects to the voters) and never votes."""

    node_id: str
    raft: str
    http: str

    @property
    def voter(self) -> bool:
        return bool(self.raft)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: str
    raft: str
    http: str
    data_dir: Path
    secret: str
    admin_token: str
    peers: tuple[Peer, ...] = field(default_factory=tuple)
    fsync: str = "always"
    # Requests a second per client IP and per API key on this node; 0 turns a limit off.
    rate_limit_ip_per_s: float = RATE_LIMIT_IP_PER_S_DEFAULT
    rate_limit_key_per_s: float = RATE_LIMIT_KEY_PER_S_DEFAULT
    # HTTPS for the API when both are set; nodes trust tls_cert when they call each other.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Bytes a WebSocket subscriber may leave unread (the kernel's send queue included) before
    # it is cut with close code 4008.
    feed_buffer_bytes_max: int = FEED_BUFFER_BYTES_MAX_DEFAULT
    # The kernel send buffer of each WebSocket connection; 0 leaves it to the kernel's
    # autotuning (best latency). A fixed size bounds kernel memory per subscriber.
    feed_socket_send_bytes: int = 0
    # Client requests a node handles at once; more get 503 `busy` (bounded memory and a
    # fast answer rather than a queue no one waits for).
    requests_in_flight_max: int = REQUESTS_IN_FLIGHT_MAX_DEFAULT
    # An HTTP connection must deliver a complete request head within this many seconds of
    # opening or of its previous answer: idle keep-alive connections and clients that
    # trickle header bytes are closed alike. Above aiohttp clients' own 15 s pool timeout,
    # so a pooled connection is not closed under a request being sent on it.
    http_idle_timeout_s: float = HTTP_IDLE_TIMEOUT_S_DEFAULT
    # A request's body must arrive within this once its head has (else 408).
    http_body_timeout_s: float = HTTP_BODY_TIMEOUT_S_DEFAULT
    # A WebSocket connection holding no subscription that sends nothing for this long is
    # closed (1001).
    feed_idle_timeout_s: float = FEED_IDLE_TIMEOUT_S_DEFAULT
    # Run a projector beside this node (a child process) and serve history reads (orders,
    # fills, trades, balance history) from its projection. Off: a lean node that answers
    # those reads with 503 `no_projection`.
    projection: bool = True
    # A read replica (pysyncobj's read-only node): it receives the log and snapshots from
    # the voters (`peers`), applies them, serves reads and feeds, forwards writes, and never
    # votes or counts for a quorum. It has no Raft address of its own.
    replica: bool = False
    # Chaos testing only: lets the admin endpoint partition this node and skew its clock.
    fault_hooks: bool = False
    # The engine's checked mode: every invariant verified after every entry (the chaos
    # suite and tests run it; a broken invariant stops the node rather than diverge).
    checked: bool = False
    # Encryption at rest: the keyring holding the cluster's wrapped data key, and the file
    # of the key-encryption key that opens it (else the RAFTEX_KEK environment variable).
    # With no keyring the node keeps its data in clear.
    keyring_file: Path | None = None
    kek_file: Path | None = None
    data_key: DataKey | None = field(default=None, repr=False)
    # FIX 4.4 order entry (api/fix_acceptor.py) on this port of the HTTP host; 0: none
    # (and quickfix is never imported). Sessions: TargetCompID RAFTEX, SenderCompID one of
    # `fix_comp_ids`.
    fix_port: int = 0
    fix_comp_ids: tuple[str, ...] = FIX_COMP_IDS_DEFAULT

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"

    @property
    def others(self) -> tuple[Peer, ...]:
        return tuple(p for p in self.peers if p.node_id != self.node_id)

    @property
    def role(self) -> str:
        return "replica" if self.replica else "voter"

    def peer_by_raft(self, raft: str) -> Peer | None:
        return next((p for p in self.peers if p.raft == raft), None)


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"address {address!r} is not host:port")
    return host, int(port)


def load_config(path: Path | None, overrides: dict[str, Any]) -> NodeConfig:
    """File values, then non-empty overrides (flags); validated before return."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    raw.update({k: v for k, v in overrides.items() if v not in (None, "", [])})
    for name in ("secret", "admin_token"):
        _read_secret_file(raw, name)
    replica = _flag(raw, "replica", False)
    if replica and raw.get("raft"):
        raise ConfigError(
            "a replica has no raft address (it connects to the voters); remove `raft`"
        )
    required = (
        ("node_id", "http", "data_dir") if replica else ("node_id", "raft", "http", "data_dir")
    )
    missing = [k for k in required if not raw.get(k)]
    if missing:
        raise ConfigError(f"missing setting(s): {', '.join(missing)}")
    if not raw.get("secret"):
        raise ConfigError(
            "missing cluster secret: set `secret` or `secret_file` (node-to-node traffic needs it)"
        )
    peers = tuple(_peer(p) for p in raw.get("peers", []))
    config = NodeConfig(
        node_id=str(raw["node_id"]),
        raft=str(raw.get("raft", "")),
        http=str(raw["http"]),
        data_dir=Path(raw["data_dir"]),
        secret=str(raw["secret"]),
        admin_token=str(raw.get("admin_token", "")),
        peers=peers,
        fsync=str(raw.get("fsync", "always")),
        rate_limit_ip_per_s=_rate(raw, "rate_limit_ip_per_s", RATE_LIMIT_IP_PER_S_DEFAULT),
        rate_limit_key_per_s=_rate(raw, "rate_limit_key_per_s", RATE_LIMIT_KEY_PER_S_DEFAULT),
        tls_cert=Path(raw["tls_cert"]) if raw.get("tls_cert") else None,
        tls_key=Path(raw["tls_key"]) if raw.get("tls_key") else None,
        fault_hooks=raw.get("fault_hooks", False) is True,
        checked=raw.get("checked", False) is True,
        projection=_flag(raw, "projection", True),
        replica=replica,
        feed_buffer_bytes_max=_positive_int(
            raw, "feed_buffer_bytes_max", FEED_BUFFER_BYTES_MAX_DEFAULT
        ),
        feed_socket_send_bytes=_positive_int(raw, "feed_socket_send_bytes", 0, zero_ok=True),
        requests_in_flight_max=_positive_int(
            raw, "requests_in_flight_max", REQUESTS_IN_FLIGHT_MAX_DEFAULT
        ),
        http_idle_timeout_s=_seconds(raw, "http_idle_timeout_s", HTTP_IDLE_TIMEOUT_S_DEFAULT),
        http_body_timeout_s=_seconds(raw, "http_body_timeout_s", HTTP_BODY_TIMEOUT_S_DEFAULT),
        feed_idle_timeout_s=_seconds(raw, "feed_idle_timeout_s", FEED_IDLE_TIMEOUT_S_DEFAULT),
        keyring_file=Path(raw["keyring_file"]) if raw.get("keyring_file") else None,
        kek_file=Path(raw["kek_file"]) if raw.get("kek_file") else None,
        fix_port=_positive_int(raw, "fix_port", 0, zero_ok=True),
        fix_comp_ids=_comp_ids(raw),
    )
    if not replica and not any(p.node_id == config.node_id for p in peers):
        config = replace(config, peers=(*peers, Peer(config.node_id, config.raft, config.http)))
    validate(config)
    return _with_data_key(config, os.environ.get(KEK_ENV))


def _with_data_key(config: NodeConfig, kek_env: str | None) -> NodeConfig:
    """Unwraps the data key now, so that a wrong key stops the node before it opens any data."""
    if config.keyring_file is None:
        if config.kek_file is not None:
            raise ConfigError("kek_file without keyring_file: set both to encrypt at rest")
        return config
    data_dir = config.data_dir.resolve()
    if config.kek_file is not None:
        kek_path = config.kek_file.resolve()
        if (
            kek_path.is_relative_to(data_dir)
            or kek_path.parent == config.keyring_file.resolve().parent
        ):
            raise ConfigError(
                f"the key-encryption key file {config.kek_file} is beside the data it protects:"
                " keep it out of the data directory and away from the keyring"
            )
    try:
        data_key = load_data_key(config.keyring_file, config.kek_file, kek_env)
    except KeyringError as exc:
        raise ConfigError(str(exc), EXIT_KEY) from None
    return replace(config, data_key=data_key)


def _read_secret_file(raw: dict[str, Any], name: str) -> None:
    """`{name}_file`: the setting's value is that file's content (a Docker secret, say). The
    file must not be readable by anyone but its owner, like an SSH key."""
    path_text = raw.pop(f"{name}_file", None)
    if path_text is None:
        return
    if raw.get(name):
        raise ConfigError(f"set {name} or {name}_file, not both")
    path = Path(str(path_text))
    try:
        mode = path.stat().st_mode
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {name}_file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{name}_file {path} is open to other users (mode {stat.S_IMODE(mode):04o});"
            f" chmod 600 {path}"
        )
    raw[name] = value


def _rate(raw: dict[str, Any], name: str, default: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{name} must be a number >= 0 (0 turns the limit off)")
    return float(value)


def _flag(raw: dict[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if type(value) is not bool:
        raise ConfigError(f"{name} must be true or false")
    return value


def _seconds(raw: dict[str, Any], name: str, default: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a number of seconds > 0")
    return float(value)


def _positive_int(raw: dict[str, Any], name: str, default: int, zero_ok: bool = False) -> int:
    value = raw.get(name, default)
    if type(value) is not int or value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{name} must be a positive integer")
    return value


def _comp_ids(raw: dict[str, Any]) -> tuple[str, ...]:
    value = raw.get("fix_comp_ids", list(FIX_COMP_IDS_DEFAULT))
    if (
        not isinstance(value, list)
        or not 0 < len(value) <= FIX_COMP_IDS_MAX
        or not all(isinstance(v, str) and v.isascii() and v.isalnum() for v in value)
        or len(set(value)) != len(value)
    ):
        raise ConfigError(
            f"fix_comp_ids must be a list of 1..{FIX_COMP_IDS_MAX} distinct alphanumeric names"
        )
    return tuple(value)


def _peer(entry: Any) -> Peer:
    if not isinstance(entry, dict) or not all(
        isinstance(entry.get(k), str) for k in ("id", "raft", "http")
    ):
        raise ConfigError("each peer needs string `id`, `raft` and `http`")
    return Peer(entry["id"], entry["raft"], entry["http"])


def validate(config: NodeConfig) -> None:
    if len(config.secret) < SECRET_LEN_MIN:
        raise ConfigError(f"cluster secret must be at least {SECRET_LEN_MIN} characters")
    if not config.admin_token:
        raise ConfigError("missing admin_token: the admin endpoints need a credential")
    if config.fsync not in FSYNC_POLICIES:
        raise ConfigError(f"fsync must be one of {', '.join(FSYNC_POLICIES)}, not {config.fsync!r}")
    ids = [p.node_id for p in config.peers]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"peer ids repeat: {ids}")
    raft_addrs = [p.raft for p in config.peers]
    if len(set(raft_addrs)) != len(raft_addrs):
        raise ConfigError(f"peer raft addresses repeat: {raft_addrs}")
    if config.replica:
        _check_replica_peers(config)
    else:
        me = next(p for p in config.peers if p.node_id == config.node_id)
        if me.raft != config.raft or me.http != config.http:
            raise ConfigError(f"peer entry for {config.node_id} disagrees with its own addresses")
    for peer in config.peers:
        split_address(peer.raft)
        split_address(peer.http)
    data_dir = config.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data dir {data_dir}: {exc.strerror}") from None
    if not os.access(data_dir, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(f"data dir {data_dir} is not readable and writable")
    _check_tls(config)
    listens = (
        (("http", config.http),)
        if config.replica
        else (("raft", config.raft), ("http", config.http))
    )
    for what, address in listens:
        _check_port_free(what, address)
    if config.fix_port:
        if config.fix_port >= 65536:
            raise ConfigError(f"fix_port {config.fix_port} is not a port (1..65535)")
        # quickfix 1.16 binds its acceptor on every interface (INADDR_ANY).
        _check_port_free("fix", f"0.0.0.0:{config.fix_port}")


def _check_replica_peers(config: NodeConfig) -> None:
    """A replica's peers are the voters it follows: itself is none of them."""
    if not config.peers:
        raise ConfigError("a replica needs the voters as peers (it follows their log)")
    if any(p.node_id == config.node_id for p in config.peers):
        raise ConfigError(
            f"a replica is not one of its peers: remove {config.node_id} from `peers`"
        )


def _check_tls(config: NodeConfig) -> None:
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("TLS needs both tls_cert and tls_key (or neither)")
    if config.tls_cert is None or config.tls_key is None:
        return
    try:
        server_context(config.tls_cert, config.tls_key)
    except OSError as exc:
        raise ConfigError(f"cannot load TLS certificate or key: {exc}") from None


def _check_port_free(what: str, address: str) -> None:
    host, port = split_address(address)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"{what} address {address} is not available: {exc.strerror}"
            ) from None
