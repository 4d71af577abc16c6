"""A FIX 4.4 client of a raftex node: quickfix in initiator mode, with its own FileStore.

    with FixClient(FixEndpoint("127.0.0.1", 9880), "CLIENT1", key_id, secret, "ed25519",
                   Path("fix-client")) as fix:
        fix.wait_logged_on()
        fix.send(new_order_single("o-1", "AAPL", "1", "10", price="190.00"))
        report = fix.expect("8", {11: "o-1"})

The Logon is signed as api/fix_logon.py says. Received application messages are
kept as {tag: text} maps (the fields of a message without repeating groups,
which is every message the gateway sends) until `expect` takes them; admin
messages seen both ways are kept too, so a test can see the session layer at work
(a ResendRequest sent, a Logout's text). Used by the tests and `raftex bench fix`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import quickfix

from api.fix_acceptor import BEGIN_STRING, TARGET_COMP_ID, data_dictionary
from api.fix_logon import logon_payload, sign_logon

log = logging.getLogger("raftex.fix_client")

SOH = "\x01"
EXPECT_TIMEOUT_S = 10.0
RECONNECT_INTERVAL_S = 1
HEARTBEAT_S = 30
# Received messages kept for `expect`; a client that never takes them drops the oldest.
KEPT_MESSAGES_MAX = 100_000

FixFields = dict[int, str]


@dataclass(frozen=True, slots=True)
class FixEndpoint:
    host: str
    port: int


def fields_of(message: quickfix.Message) -> FixFields:
    """Header, body and trailer tags of a message without repeating groups, as text."""
    out: FixFields = {}
    for part in message.toString().split(SOH):
        tag, sep, value = part.partition("=")
        if sep and tag.isdigit():
            out.setdefault(int(tag), value)
    return out


def utc_now() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y%m%d-%H:%M:%S.") + f"{now.microsecond // 1000:03d}"


def app_message(msg_type: str, fields: dict[int, str]) -> quickfix.Message:
    message = quickfix.Message()
    message.getHeader().setField(quickfix.BeginString(BEGIN_STRING))
    message.getHeader().setField(quickfix.MsgType(msg_type))
    for tag, value in fields.items():
        message.setField(tag, value)
    return message


def new_order_single(
    cl_ord_id: str,
    symbol: str,
    side: str,
    qty: str,
    price: str = "",
    ord_type: str = "2",
    tif: str = "1",
    stop_px: str = "",
    expire_time: str = "",
) -> quickfix.Message:
    """Side "1" buy, "2" sell; OrdType 1 market, 2 limit, 3 stop, 4 stop limit; TimeInForce
    0 day, 1 GTC, 3 IOC, 4 FOK, 6 GTD (with `expire_time`)."""
    fields = {11: cl_ord_id, 55: symbol, 54: side, 38: qty, 40: ord_type, 60: utc_now()}
    for tag, value in ((44, price), (59, tif), (99, stop_px), (126, expire_time)):
        if value:
            fields[tag] = value
    return app_message("D", fields)


def cancel_request(
    cl_ord_id: str, orig_cl_ord_id: str, symbol: str, side: str, qty: str = ""
) -> quickfix.Message:
    fields = {11: cl_ord_id, 41: orig_cl_ord_id, 55: symbol, 54: side, 60: utc_now()}
    if qty:
        fields[38] = qty
    return app_message("F", fields)


def replace_request(
    cl_ord_id: str,
    orig_cl_ord_id: str,
    symbol: str,
    side: str,
    qty: str,
    price: str,
    ord_type: str = "2",
) -> quickfix.Message:
    fields = {
        11: cl_ord_id,
        41: orig_cl_ord_id,
        55: symbol,
        54: side,
        38: qty,
        44: price,
        40: ord_type,
        60: utc_now(),
    }
    return app_message("G", fields)


def mass_cancel_request(cl_ord_id: str, symbol: str = "") -> quickfix.Message:
    """By symbol (MassCancelRequestType 1) or, without one, every order (7)."""
    fields = {11: cl_ord_id, 530: "1" if symbol else "7", 60: utc_now()}
    if symbol:
        fields[55] = symbol
    return app_message("q", fields)


def status_request(cl_ord_id: str, symbol: str, side: str) -> quickfix.Message:
    return app_message("H", {11: cl_ord_id, 55: symbol, 54: side})


class _Initiator(quickfix.Application):  # type: ignore[misc]
    # quickfix names its callbacks in camelCase (onLogon, fromApp, ...).

    def __init__(self, client: FixClient) -> None:
        super().__init__()
        self.client = client

    def onCreate(self, session_id: quickfix.SessionID) -> None:
        pass

    def onLogon(self, session_id: quickfix.SessionID) -> None:
        self.client._logged_on(True)

    def onLogout(self, session_id: quickfix.SessionID) -> None:
        self.client._logged_on(False)

    def toAdmin(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        header = message.getHeader()
        if header.getField(35) == "A":
            self.client._sign(message)
        self.client._keep(self.client.admin_sent, fields_of(message))

    def toApp(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        pass

    def fromAdmin(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        self.client._keep(self.client.admin_received, fields_of(message))

    def fromApp(self, message: quickfix.Message, session_id: quickfix.SessionID) -> None:
        handler = self.client.on_app_message
        if handler is None:
            self.client._keep(self.client.received, fields_of(message))
            return
        try:
            handler(fields_of(message))
        except Exception:
            # An exception escaping a quickfix callback ends the process (SWIG's director
            # calls Py_Exit): the handler's bug is logged instead.
            log.exception("event=fix_client_handler_failed session=%s", self.client.comp_id)


class FixClient:
    """One initiator session (SenderCompID `comp_id`, TargetCompID RAFTEX) to a node.

    quickfix keeps sessions in a process-wide registry: two clients in one process need
    distinct SenderCompIDs (stop one before starting another with the same).
    """

    def __init__(
        self,
        endpoint: FixEndpoint,
        comp_id: str,
        key_id: str,
        secret: str,
        kind: str,
        store_dir: Path,
        heartbeat_s: int = HEARTBEAT_S,
        on_app_message: Callable[[FixFields], None] | None = None,
    ) -> None:
        """`on_app_message`: called with each application message received (on quickfix's
        thread) instead of keeping it for `expect`: what a load generator wants."""
        self.comp_id = comp_id
        self.on_app_message = on_app_message
        self.key_id = key_id
        self._secret = secret
        self._kind = kind
        self.session_id = quickfix.SessionID(BEGIN_STRING, comp_id, TARGET_COMP_ID)
        self.received: list[FixFields] = []
        self.admin_received: list[FixFields] = []
        self.admin_sent: list[FixFields] = []
        self._changed = threading.Condition()
        self._logged_on_now = False
        store_dir.mkdir(parents=True, exist_ok=True)
        settings_file = store_dir / "initiator.cfg"
        settings_file.write_text(
            "\n".join(
                [
                    "[DEFAULT]",
                    "ConnectionType=initiator",
                    f"ReconnectInterval={RECONNECT_INTERVAL_S}",
                    f"FileStorePath={store_dir / 'store'}",
                    f"FileLogPath={store_dir / 'log'}",
                    "StartTime=00:00:00",
                    "EndTime=00:00:00",
                    "UseDataDictionary=Y",
                    f"DataDictionary={data_dictionary()}",
                    f"HeartBtInt={heartbeat_s}",
                    f"SocketConnectHost={endpoint.host}",
                    f"SocketConnectPort={endpoint.port}",
                    "SocketNodelay=Y",
                    "ResetOnLogon=N",
                    "ResetOnLogout=N",
                    "ResetOnDisconnect=N",
                    "TimestampPrecision=3",
                    "",
                    "[SESSION]",
                    f"BeginString={BEGIN_STRING}",
                    f"SenderCompID={comp_id}",
                    f"TargetCompID={TARGET_COMP_ID}",
                ]
            )
            + "\n"
        )
        self._settings = quickfix.SessionSettings(str(settings_file))
        self._store = quickfix.FileStoreFactory(self._settings)
        self._log = quickfix.FileLogFactory(self._settings)
        self._app = _Initiator(self)
        self._initiator: quickfix.SocketInitiator | None = quickfix.SocketInitiator(
            self._app, self._store, self._settings, self._log
        )
        self._started = False

    def __enter__(self) -> FixClient:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._initiator is None:
            raise RuntimeError("a stopped FixClient does not start again; make a new one")
        self._initiator.start()
        self._started = True

    def stop(self) -> None:
        """Logout (waiting a moment for the answer), then the connection and threads."""
        if self._started:
            self._initiator.stop()
            self._started = False
        # The session leaves quickfix's process-wide registry with its initiator: another
        # client may then take the same SenderCompID.
        self._initiator = None

    @property
    def logged_on(self) -> bool:
        return self._logged_on_now

    def wait_logged_on(self, timeout_s: float = EXPECT_TIMEOUT_S) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._logged_on_now, timeout_s)

    def send(self, message: quickfix.Message) -> None:
        if not quickfix.Session.sendToTarget(message, self.session_id):
            raise ConnectionError(f"session {self.comp_id} could not send (not logged on?)")

    def expect(
        self,
        msg_type: str,
        match: dict[int, str] | None = None,
        timeout_s: float = EXPECT_TIMEOUT_S,
        kept: list[FixFields] | None = None,
    ) -> FixFields:
        """The first message of `msg_type` whose fields include `match`, taken from what was
        received (waiting up to `timeout_s` for it); TimeoutError with what did come."""
        source = self.received if kept is None else kept
        want = {35: msg_type, **(match or {})}

        def found() -> int:
            for index, fields in enumerate(source):
                if all(fields.get(tag) == value for tag, value in want.items()):
                    return index
            return -1

        with self._changed:
            if not self._changed.wait_for(lambda: found() >= 0, timeout_s):
                raise TimeoutError(f"no {want} within {timeout_s} s; kept {source[-5:]}")
            return source.pop(found())

    def nothing_more(self, msg_type: str, match: dict[int, str], wait_s: float) -> bool:
        """Whether no such message arrives within `wait_s`."""
        try:
            self.expect(msg_type, match, wait_s)
        except TimeoutError:
            return True
        return False

    def next_sender_seq(self) -> int:
        session = quickfix.Session.lookupSession(self.session_id)
        return session.getExpectedSenderNum()

    # ------------------------------------------------------------ quickfix's threads

    def _sign(self, logon: quickfix.Message) -> None:
        header = logon.getHeader()
        reset = logon.isSetField(141) and logon.getField(141) == "Y"
        seq = 1 if reset else int(header.getField(34))
        payload = logon_payload(self.comp_id, TARGET_COMP_ID, seq, header.getField(52))
        signature = sign_logon(self._kind, self._secret, payload)
        logon.setField(553, self.key_id)
        logon.setField(95, str(len(signature)))
        logon.setField(96, signature)

    def _keep(self, kept: list[FixFields], fields: FixFields) -> None:
        with self._changed:
            kept.append(fields)
            if len(kept) > KEPT_MESSAGES_MAX:
                del kept[0]
            self._changed.notify_all()

    def _logged_on(self, now: bool) -> None:
        with self._changed:
            self._logged_on_now = now
            self._changed.notify_all()
