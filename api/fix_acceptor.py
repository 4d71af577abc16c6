"""FIX 4.4 order entry beside the HTTP API: a quickfix acceptor inside the node process.

The session layer (Logon, heartbeats, test requests, sequence numbers persisted
per session in a FileStore, ResendRequest and SequenceReset-GapFill, Logout,
validation against the FIX 4.4 data dictionary) is quickfix's, a maintained C++
engine: none of it is written here. This module is the glue:

- quickfix's callbacks run on its threads (one per connection). They only read
  what a message carries and hand it to the event loop, which owns the
  gateway, the sessions and the account trackers (single writer); a Logon
  waits (bounded) for the loop's answer, since quickfix needs it to accept or
  refuse.
- Each applied entry's events reach the loop once (the node's subscription,
  filtered on the apply thread to the accounts some session trades for);
  every order event of such an account becomes an ExecutionReport to its
  sessions, whichever channel placed the order. A session logged out keeps
  its account: reports are stored and resent when the client asks.

Sessions are a fixed set (quickfix 1.16 has no dynamic acceptor sessions):
TargetCompID RAFTEX, SenderCompID one of the node's `fix_comp_ids`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sysconfig
from collections.abc import AsyncIterator
from pathlib import Path

import quickfix

from api.errors import ApiError
from api.fix_logon import (
    FixPrincipal,
    LogonFields,
    LogonRefused,
    authenticate_logon,
    same_account,
)
from api.fix_orders import SUPPORTED_MSG_TYPES, TAGS_READ, FixInbound
from api.fix_session import FixSession
from api.fix_tracking import AccountOrders
from api.gateway import Gateway
from cluster.config import NodeConfig, split_address
from cluster.port import EntryApplied
from cluster.private_file import replace_private
from cluster.rocks import READ_LIMIT_MAX
from engine.events import Accepted, Amended, Cancelled, Event, Expired, Trade, Triggered

log = logging.getLogger("raftex.fix")

TARGET_COMP_ID = "RAFTEX"
BEGIN_STRING = "FIX.4.4"
FIX_DIR_NAME = "fix"
BINDINGS_FILE_NAME = "sessions.json"
# How long a Logon may wait for the event loop's verdict before it is refused.
LOGON_CHECK_TIMEOUT_S = 5.0
SEED_WAIT_S = 5.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_ORDER_EVENTS = frozenset({Accepted, Cancelled, Expired, Amended, Triggered})
# Logon tags: Username, RawData, ResetSeqNumFlag.
USERNAME = 553
RAW_DATA = 96
RESET_SEQ_NUM_FLAG = 141


def fix_dir(data_dir: Path) -> Path:
    return data_dir / FIX_DIR_NAME


def data_dictionary() -> Path:
    """The FIX 4.4 data dictionary the quickfix wheel installs (share/quickfix)."""
    return Path(sysconfig.get_paths()["data"]) / "share" / "quickfix" / "FIX44.xml"


def settings_text(config: NodeConfig) -> str:
    """The acceptor's quickfix settings: one session per allowed SenderCompID, stores and
    logs under the node's data directory, never reset (sequence numbers survive Logouts,
    disconnects and node restarts)."""
    base = fix_dir(config.data_dir)
    host = split_address(config.http)[0]
    lines = [
        "[DEFAULT]",
        "ConnectionType=acceptor",
        f"SocketAcceptPort={config.fix_port}",
        "SocketReuseAddress=Y",
        "SocketNodelay=Y",
        f"FileStorePath={base / 'store'}",
        f"FileLogPath={base / 'log'}",
        "StartTime=00:00:00",
        "EndTime=00:00:00",
        "UseDataDictionary=Y",
        f"DataDictionary={data_dictionary()}",
        "ValidateUserDefinedFields=N",
        "ResetOnLogon=N",
        "ResetOnLogout=N",
        "ResetOnDisconnect=N",
        "PersistMessages=Y",
        "TimestampPrecision=3",
    ]
    if host in LOOPBACK_HOSTS:
        # quickfix 1.16 listens on every interface: a node that serves HTTP on loopback
        # only takes FIX connections from it too.
        lines.append("AllowedRemoteAddresses=127.0.0.1")
    for comp_id in config.fix_comp_ids:
        lines += [
            "",
            "[SESSION]",
            f"BeginString={BEGIN_STRING}",
            f"SenderCompID={TARGET_COMP_ID}",
            f"TargetCompID={comp_id}",
        ]
    return "\n".join(lines) + "\n"


class FixDesk(quickfix.Application):  # type: ignore[misc]
    # quickfix names its callbacks in camelCase (onLogon, fromApp, ...).
    """The acceptor's application: quickfix's callbacks in, the loop's sessions behind.

    An exception escaping a callback ends the whole process (quickfix's SWIG director
    calls Py_Exit), so every callback catches what is not quickfix's own and logs it.
    """

    def __init__(self, gw: Gateway, config: NodeConfig, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.gw = gw
        self.loop = loop
        self.bindings_file = fix_dir(config.data_dir) / BINDINGS_FILE_NAME
        self.orders_of: dict[str, AccountOrders] = {}
        self.sessions: dict[str, FixSession] = {
            comp_id: FixSession(
                gw, quickfix.SessionID(BEGIN_STRING, TARGET_COMP_ID, comp_id), self.orders_of
            )
            for comp_id in config.fix_comp_ids
        }
        for comp_id, account in self._read_bindings().items():
            if comp_id in self.sessions:
                self.sessions[comp_id].bound_account = account
        # Read on the apply thread: replaced whole, never changed in place.
        self.watched: frozenset[str] = frozenset()
        self._rewatch()
        # Seeds of accounts' open orders under way (owned here, cancelled at shutdown).
        self.seeding: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ quickfix's threads

    def onCreate(self, session_id: quickfix.SessionID) -> None:
        pass

    def onLogon(self, session_id: quickfix.SessionID) -> None:
        log.info("event=fix_logon session=%s", session_id.getTargetCompID().getValue())

    def onLogout(self, session_id: quickfix.SessionID) -> None:
        log.info("event=fix_logout session=%s", session_id.getTargetCompID().getValue())

    def toAdmin(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        pass

    def toApp(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        pass

    def fromAdmin(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        if message.getHeader().getField(35) != "A":
            return
        comp_id = session_id.getTargetCompID().getValue()
        try:
            logon = _logon_fields(message)
            reset = message.isSetField(RESET_SEQ_NUM_FLAG) and (
                message.getField(RESET_SEQ_NUM_FLAG) == "Y"
            )
            verdict = asyncio.run_coroutine_threadsafe(self.admit(comp_id, logon, reset), self.loop)
            refusal = verdict.result(timeout=LOGON_CHECK_TIMEOUT_S)
        except TimeoutError:
            refusal = "the node is too busy to check this Logon now; retry"
        except Exception:
            # Not bad input: a bug. Logged with its traceback; the Logon is refused.
            log.exception("event=fix_logon_failed session=%s", comp_id)
            refusal = "internal error checking the Logon; the node logged it"
        if refusal:
            log.info("event=fix_logon_refused session=%s reason=%r", comp_id, refusal)
            raise quickfix.RejectLogon(refusal)

    def fromApp(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        msg_type = message.getHeader().getField(35)
        if msg_type not in SUPPORTED_MSG_TYPES:
            # quickfix answers BusinessMessageReject (35=j), reason 3: unsupported type.
            raise quickfix.UnsupportedMessageType()
        comp_id = session_id.getTargetCompID().getValue()
        try:
            fields = {tag: message.getField(tag) for tag in TAGS_READ if message.isSetField(tag)}
            inbound = FixInbound(msg_type, int(message.getHeader().getField(34)), fields)
            self.loop.call_soon_threadsafe(self.sessions[comp_id].deliver, inbound)
        except Exception:
            log.exception("event=fix_message_failed session=%s type=%s", comp_id, msg_type)

    # ------------------------------------------------------------ the apply thread

    def on_entry(self, applied: EntryApplied) -> None:
        """One hop to the loop per entry with events of a followed account, none else."""
        watched = self.watched
        if not watched:
            return
        mine = [e for e in applied.events if _concerns(e, watched)]
        if mine:
            self.loop.call_soon_threadsafe(self.publish, mine)

    # ------------------------------------------------------------ the event loop

    async def admit(self, comp_id: str, logon: LogonFields, reset: bool) -> str:
        """ "" if the Logon may proceed (the session then trades for its key's account),
        else the reason it is refused."""
        session = self.sessions[comp_id]
        try:
            principal = await authenticate_logon(self.gw, logon)
        except LogonRefused as exc:
            return str(exc)
        if not same_account(session.bound_account, principal, reset):
            return (
                f"SenderCompID {comp_id} holds another account's messages; log on with"
                " ResetSeqNumFlag(141)=Y to start it afresh"
            )
        session.principal = principal
        if session.bound_account != principal.account:
            session.bound_account = principal.account
            await asyncio.to_thread(self._write_bindings)
            self._rewatch()
        # Not awaited: the Logon must not wait for the projection to catch up.
        seeding = asyncio.create_task(self._seed(principal))
        self.seeding.add(seeding)
        seeding.add_done_callback(self.seeding.discard)
        return ""

    def publish(self, events: list[Event]) -> None:
        for event in events:
            for account in _accounts_of(event) & self.watched:
                orders = self.orders_of.get(account)
                if orders is None:
                    orders = self.orders_of[account] = AccountOrders(account)
                executions = orders.on_event(event)
                if not executions:
                    continue
                for session in self.sessions.values():
                    if session.bound_account == account:
                        for execution in executions:
                            session.report(account, execution)

    async def _seed(self, principal: FixPrincipal) -> None:
        """The account's open orders from the history projection, so reports of orders
        placed before this node followed it carry their ClOrdID and quantities."""
        account = principal.account
        orders = self.orders_of.get(account)
        if orders is None:
            orders = self.orders_of[account] = AccountOrders(account)
        if self.gw.history is None:
            return
        try:
            store = await asyncio.wait_for(self.gw.history_store(), SEED_WAIT_S)
            rows = await asyncio.to_thread(
                lambda: store.orders_of(
                    account, open_only=True, after_order_id=0, limit=READ_LIMIT_MAX
                )
            )
        except (ApiError, TimeoutError) as exc:
            # A best effort: the account's events still come, only older orders lack a seed.
            log.warning("event=fix_seed_skipped account=%s reason=%r", account, exc)
            return
        for row in rows:
            orders.seed(row)

    def _rewatch(self) -> None:
        self.watched = frozenset(s.bound_account for s in self.sessions.values() if s.bound_account)

    def _read_bindings(self) -> dict[str, str]:
        try:
            raw = json.loads(self.bindings_file.read_text())
        except FileNotFoundError:
            return {}
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        ):
            raise ValueError(f"{self.bindings_file} is not a map of SenderCompID to account")
        return raw

    def _write_bindings(self) -> None:
        bound = {c: s.bound_account for c, s in self.sessions.items() if s.bound_account}
        replace_private(self.bindings_file, json.dumps(bound, sort_keys=True))


def _logon_fields(message: quickfix.Message) -> LogonFields:
    header = message.getHeader()

    def text(tag: int) -> str:
        return message.getField(tag) if message.isSetField(tag) else ""

    return LogonFields(
        sender_comp_id=header.getField(49),
        target_comp_id=header.getField(56),
        msg_seq_num=int(header.getField(34)),
        sending_time=header.getField(52),
        username=text(USERNAME),
        raw_data=text(RAW_DATA),
    )


def _concerns(event: Event, watched: frozenset[str]) -> bool:
    """Whether an event is an order event of a followed account (on the apply thread: no
    allocation per event)."""
    kind = type(event)
    if kind is Trade:
        return event.maker_account in watched or event.taker_account in watched
    return kind in _ORDER_EVENTS and event.account in watched


def _accounts_of(event: Event) -> frozenset[str]:
    kind = type(event)
    if kind is Trade:
        return frozenset((event.maker_account, event.taker_account))
    if kind in _ORDER_EVENTS:
        return frozenset((event.account,))
    return frozenset()


@contextlib.asynccontextmanager
async def fix_acceptor(gw: Gateway, config: NodeConfig) -> AsyncIterator[FixDesk]:
    """The acceptor, its sessions' workers and its event subscription, for the block."""
    base = fix_dir(config.data_dir)
    for sub in ("store", "log"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    settings_file = base / "acceptor.cfg"
    replace_private(settings_file, settings_text(config))
    desk = FixDesk(gw, config, asyncio.get_running_loop())
    settings = quickfix.SessionSettings(str(settings_file))
    store = quickfix.FileStoreFactory(settings)
    logs = quickfix.FileLogFactory(settings)
    acceptor = quickfix.ThreadedSocketAcceptor(desk, store, settings, logs)
    workers = [asyncio.create_task(s.run()) for s in desk.sessions.values()]
    unsubscribe = gw.node.subscribe(desk.on_entry)
    try:
        await asyncio.to_thread(acceptor.start)
        log.info("event=fix_started port=%d sessions=%d", config.fix_port, len(desk.sessions))
        yield desk
    finally:
        unsubscribe()
        # force=True: Logout is sent to every session, without waiting up to 10 s for
        # answers a stopping node does not need.
        await asyncio.to_thread(acceptor.stop, True)
        tasks = [*workers, *desk.seeding]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # quickfix's objects hold references to one another in C++: they die together.
        del acceptor, logs, store, settings
