"""One FIX session of a node's acceptor: who it trades for, and its requests, in order.

quickfix hands each application message over on its own thread; the acceptor
queues it here, on the event loop, and this session's worker takes everything
that has queued up and works it as one batch: its writes go through the gateway
together (one submit, sharing log entries: the FIX analogue of
`POST /v1/orders/batch`), in the order they came, so a cancel right behind its
order finds it; then status requests are answered. One worker per session keeps
the order of the session's messages without a lock.

The answers made here are the ones only the request knows: a refusal
(ExecutionReport rejected, OrderCancelReject, OrderMassCancelReport), a status,
and the original outcome of a resent order. Everything that happens to an
order (new, fills, cancelled, replaced, expired) is reported from the event
stream by the acceptor, whichever channel placed it.

A write that the log did not confirm (a leader lost mid-way) is submitted again
for up to SUBMIT_RETRY_WINDOW_S: the same NewOrderSingle under the same ClOrdID
is applied at most once by the state machine, so a session on a follower rides
through a leader failover. A cancel retried that way may be answered with an
OrderCancelReject after its Canceled report: the order is gone either way.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass

import quickfix

from api.errors import ApiError
from api.fix_logon import FixPrincipal
from api.fix_orders import (
    MASS_CANCEL_ALL,
    MASS_CANCEL_BY_SYMBOL,
    NEW_ORDER_SINGLE,
    ORDER_CANCEL_REPLACE_REQUEST,
    ORDER_CANCEL_REQUEST,
    ORDER_MASS_CANCEL_REQUEST,
    ORDER_STATUS_REQUEST,
    SIDES,
    CancelRequest,
    FixInbound,
    FixRefusal,
    FixRequest,
    MassCancelRequest,
    NewOrder,
    ReplaceRequest,
    StatusRequest,
    decode,
)
from api.fix_reports import (
    MASS_CANCEL_REJECTED,
    RESPONSE_TO_CANCEL,
    RESPONSE_TO_REPLACE,
    cancel_reject,
    execution_report,
    mass_cancel_report,
    now_ms,
)
from api.fix_tracking import (
    CXL_REJ_OTHER,
    CXL_REJ_REASONS,
    FIX_ORD_STATUS,
    ORD_REJ_OTHER,
    ORD_REJ_REASONS,
    ORD_STATUS_REJECTED,
    AccountOrders,
    Execution,
    PendingChange,
    TrackedOrder,
    order_from_record,
    rejected_order,
    status_report,
    unknown_status,
)
from api.gateway import Gateway, WriteOutcome
from engine.codes import OrderType, Side
from engine.commands import AmendOrder, CancelOrder, Command, MassCancel
from engine.events import Accepted, Cancelled
from engine.order_status import OrderStatus

log = logging.getLogger("raftex.fix")

# Messages a session may have waiting; more are refused, not queued without bound.
INBOX_MESSAGES_MAX = 10_000
# Requests worked as one batch (one submit through the log).
BATCH_REQUESTS_MAX = 200
SUBMIT_RETRY_WINDOW_S = 15.0
SUBMIT_RETRY_PAUSE_S = 0.2
CXL_REJ_UNKNOWN_ORDER = 1
MASS_CANCEL_NOT_SUPPORTED = "0"
MASS_CANCEL_UNKNOWN_SECURITY = "1"
MASS_CANCEL_OTHER = "99"
NOT_COMMITTED_TEXT = (
    "not committed (no leader reachable): resend with the same ClOrdID, it is applied at most once"
)


@dataclass(frozen=True, slots=True)
class Received:
    """An application message with the principal its session had when it arrived."""

    principal: FixPrincipal
    inbound: FixInbound


@dataclass(frozen=True, slots=True)
class Write:
    """A request on its way through the log, with the command it became."""

    principal: FixPrincipal
    request: FixRequest
    command: Command


class FixSession:
    """A session (one SenderCompID) and its worker; `principal` is set by each Logon."""

    def __init__(
        self,
        gw: Gateway,
        session_id: quickfix.SessionID,
        orders_of: dict[str, AccountOrders],
    ) -> None:
        self.gw = gw
        self.session_id = session_id
        self.comp_id = session_id.getTargetCompID().getValue()
        self.orders_of = orders_of
        self.principal: FixPrincipal | None = None
        # The account whose reports this session's store holds (kept across logouts).
        self.bound_account = ""
        self.inbox: asyncio.Queue[Received] = asyncio.Queue(INBOX_MESSAGES_MAX)
        self._exec_ids = itertools.count(1)

    # ------------------------------------------------------------ in and out

    def deliver(self, inbound: FixInbound) -> None:
        """Event loop: a message from quickfix's thread joins the inbox."""
        principal = self.principal
        if principal is None:
            log.warning("event=fix_message_before_logon session=%s", self.comp_id)
            return
        try:
            self.inbox.put_nowait(Received(principal, inbound))
        except asyncio.QueueFull:
            self._refuse(
                Received(principal, inbound),
                FixRefusal(f"session has {INBOX_MESSAGES_MAX} messages waiting; slow down"),
            )

    def send(self, message: quickfix.Message) -> None:
        """To the counterparty; stored (and resent on request) while it is logged out."""
        try:
            quickfix.Session.sendToTarget(message, self.session_id)
        except quickfix.SessionNotFound:
            log.error("event=fix_session_gone session=%s", self.comp_id)

    def report(self, account: str, execution: Execution) -> None:
        self.send(execution_report(self.gw, account, execution))

    def _exec_id(self, kind: str) -> str:
        """Ids of the reports only this session makes (refusals, statuses); the event
        reports' ids are the engine's seq (api/fix_tracking.py)."""
        return f"{kind}-{self.gw.node.node_id}-{self.comp_id}-{now_ms()}-{next(self._exec_ids)}"

    # ------------------------------------------------------------ the worker

    async def run(self) -> None:
        """Until cancelled (the acceptor owns this task and stops it at shutdown)."""
        while True:
            batch = [await self.inbox.get()]
            while len(batch) < BATCH_REQUESTS_MAX and not self.inbox.empty():
                batch.append(self.inbox.get_nowait())
            await self.work(batch)

    async def work(self, batch: list[Received]) -> None:
        writes: list[Write] = []
        statuses: list[tuple[FixPrincipal, StatusRequest]] = []
        for received in batch:
            try:
                self._check_key(received.principal)
                request = decode(self.gw, received.principal.account, received.inbound)
                if isinstance(request, StatusRequest):
                    statuses.append((received.principal, request))
                    continue
                writes.append(
                    Write(received.principal, request, self._command(received.principal, request))
                )
            except FixRefusal as refusal:
                self._refuse(received, refusal)
        if writes:
            outcomes = await self._submit([w.command for w in writes])
            for write, outcome in zip(writes, outcomes, strict=True):
                await self._answer(write, outcome)
        for principal, status in statuses:
            await self._status(principal, status)

    def _check_key(self, principal: FixPrincipal) -> None:
        """A key revoked after the Logon trades no more: the request is refused and the
        session logged out."""
        if self.gw.node.view.access.api_keys.get(principal.key_id) is not None:
            return
        session = quickfix.Session.lookupSession(self.session_id)
        if session is not None and session.isLoggedOn():
            session.logout(f"API key {principal.key_id} was revoked")
        raise FixRefusal(f"API key {principal.key_id} was revoked; log on with a valid key")

    def _command(self, principal: FixPrincipal, request: FixRequest) -> Command:
        account = principal.account
        if isinstance(request, NewOrder):
            return request.command
        if isinstance(request, MassCancelRequest):
            if request.request_type not in (MASS_CANCEL_BY_SYMBOL, MASS_CANCEL_ALL):
                raise FixRefusal(
                    "MassCancelRequestType supports 1 (by symbol) and 7 (all orders)",
                    CXL_REJ_OTHER,
                )
            return MassCancel(account, request.symbol)
        assert isinstance(request, CancelRequest | ReplaceRequest)
        orders = self._orders(account)
        order = orders.find(request.orig_cl_ord_id, request.order_id)
        if order is not None and order.symbol != request.symbol:
            raise FixRefusal(f"order {order.order_id} is in {order.symbol}, not {request.symbol}")
        if isinstance(request, ReplaceRequest):
            self._check_replace(request, order)
        if order is not None:
            orders.expect_change(
                order.order_id, PendingChange(request.cl_ord_id, request.orig_cl_ord_id)
            )
        # An order this node does not follow (placed before it did): by the ids given.
        order_id = order.order_id if order is not None else request.order_id
        client_id = "" if order_id else request.orig_cl_ord_id
        if isinstance(request, CancelRequest):
            return CancelOrder(account, order_id, client_id)
        return AmendOrder(account, order_id, client_id, qty=request.qty, price=request.price)

    @staticmethod
    def _check_replace(request: ReplaceRequest, order: TrackedOrder | None) -> None:
        if not request.qty and not request.price:
            raise FixRefusal("a replace changes OrderQty(38), Price(44) or both")
        if order is not None and order.order_type != request.order_type:
            raise FixRefusal(
                f"a replace keeps the order type ({OrderType(order.order_type).name}); cancel"
                " and place a new order to change it"
            )
        if request.price and request.order_type not in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            raise FixRefusal(f"a {request.order_type.name} order has no Price(44) to replace")

    def _orders(self, account: str) -> AccountOrders:
        orders = self.orders_of.get(account)
        if orders is None:
            orders = self.orders_of[account] = AccountOrders(account)
        return orders

    async def _submit(self, commands: list[Command]) -> list[WriteOutcome | ApiError]:
        """Each command's outcome; those the log did not confirm are submitted again for up
        to SUBMIT_RETRY_WINDOW_S (a leader being elected), then answered as refused."""
        outcomes: list[WriteOutcome | ApiError] = [
            ApiError(503, "not_committed", NOT_COMMITTED_TEXT) for _ in commands
        ]
        waiting = list(range(len(commands)))
        deadline = time.monotonic() + SUBMIT_RETRY_WINDOW_S
        while waiting:
            try:
                got = await self.gw.submit_many([commands[i] for i in waiting])
            except ApiError as exc:
                got = [exc] * len(waiting)
            retry = []
            for index, outcome in zip(waiting, got, strict=True):
                outcomes[index] = outcome
                if isinstance(outcome, ApiError) and outcome.status == 503:
                    retry.append(index)
            if not retry or time.monotonic() >= deadline:
                break
            log.info(
                "event=fix_resubmit session=%s commands=%d reason=%s",
                self.comp_id,
                len(retry),
                next(o.code for o in got if isinstance(o, ApiError)),
            )
            waiting = retry
            await asyncio.sleep(SUBMIT_RETRY_PAUSE_S)
        return outcomes

    # ------------------------------------------------------------ answers

    async def _answer(self, write: Write, outcome: WriteOutcome | ApiError) -> None:
        request, account = write.request, write.principal.account
        if isinstance(outcome, ApiError):
            text = NOT_COMMITTED_TEXT if outcome.status == 503 else outcome.message
            code = ""
        elif (rejected := outcome.rejected) is not None:
            code, text = rejected.code, f"{rejected.code}: {rejected.message}"
        else:
            await self._done(write, outcome)
            return
        if isinstance(request, NewOrder):
            command = request.command
            assert command is write.command
            self.report(
                account,
                rejected_order(
                    self._exec_id("R"),
                    request.cl_ord_id,
                    command,
                    text,
                    ORD_REJ_REASONS.get(code, ORD_REJ_OTHER),
                    now_ms(),
                ),
            )
        elif isinstance(request, CancelRequest | ReplaceRequest):
            self._cancel_rejected(account, request, CXL_REJ_REASONS.get(code, CXL_REJ_OTHER), text)
        elif isinstance(request, MassCancelRequest):
            self.send(
                mass_cancel_report(
                    request.cl_ord_id,
                    request.request_type,
                    MASS_CANCEL_REJECTED,
                    0,
                    text,
                    MASS_CANCEL_OTHER,
                    request.symbol,
                )
            )

    async def _done(self, write: Write, outcome: WriteOutcome) -> None:
        """A write the state machine applied: the event stream reports what it did, except
        a resent order (the original outcome, repeated: its status) and a mass cancel's
        summary."""
        request = write.request
        if isinstance(request, MassCancelRequest):
            cancelled = sum(1 for e in outcome.events if type(e) is Cancelled)
            self.send(
                mass_cancel_report(
                    request.cl_ord_id,
                    request.request_type,
                    request.request_type,
                    cancelled,
                    symbol=request.symbol,
                )
            )
            return
        events = outcome.events
        if isinstance(request, NewOrder) and len(events) == 1 and type(events[0]) is Accepted:
            await self._status(
                write.principal, StatusRequest(request.cl_ord_id, events[0].order_id, "")
            )

    def _cancel_rejected(
        self, account: str, request: CancelRequest | ReplaceRequest, reason: int, text: str
    ) -> None:
        orders = self._orders(account)
        order = orders.find(request.orig_cl_ord_id, request.order_id)
        if order is not None:
            orders.drop_change(order.order_id)
        self.send(
            cancel_reject(
                request.cl_ord_id,
                request.orig_cl_ord_id,
                order.order_id if order is not None else request.order_id,
                FIX_ORD_STATUS[OrderStatus(order.status)]
                if order is not None
                else ORD_STATUS_REJECTED,
                RESPONSE_TO_CANCEL if isinstance(request, CancelRequest) else RESPONSE_TO_REPLACE,
                reason,
                text,
            )
        )

    def _refuse(self, received: Received, refusal: FixRefusal) -> None:
        """The answer to a message refused at the edge: nothing was submitted."""
        inbound, account = received.inbound, received.principal.account
        kind = inbound.msg_type
        cl_ord_id = inbound.get(11)
        if kind == NEW_ORDER_SINGLE:
            self.report(
                account,
                rejected_order(
                    self._exec_id("R"),
                    cl_ord_id,
                    None,
                    refusal.text,
                    refusal.reason,
                    now_ms(),
                    symbol=inbound.get(55),
                    side=SIDES.get(inbound.get(54), Side.BUY),
                ),
            )
        elif kind in (ORDER_CANCEL_REQUEST, ORDER_CANCEL_REPLACE_REQUEST):
            request = CancelRequest(cl_ord_id, inbound.get(41), 0, inbound.get(55))
            if kind == ORDER_CANCEL_REPLACE_REQUEST:
                request = ReplaceRequest(
                    cl_ord_id, inbound.get(41), 0, inbound.get(55), OrderType.LIMIT, 0, 0
                )
            reason = CXL_REJ_UNKNOWN_ORDER if "unknown order" in refusal.text else CXL_REJ_OTHER
            self._cancel_rejected(account, request, reason, refusal.text)
        elif kind == ORDER_MASS_CANCEL_REQUEST:
            unknown_symbol = refusal.text.startswith("unknown symbol")
            self.send(
                mass_cancel_report(
                    cl_ord_id,
                    inbound.get(530),
                    MASS_CANCEL_REJECTED,
                    0,
                    refusal.text,
                    MASS_CANCEL_UNKNOWN_SECURITY if unknown_symbol else MASS_CANCEL_NOT_SUPPORTED,
                )
            )
        elif kind == ORDER_STATUS_REQUEST:
            self.report(
                account,
                unknown_status(
                    self._exec_id("S"), cl_ord_id, inbound.get(55), now_ms(), refusal.text
                ),
            )

    async def _status(self, principal: FixPrincipal, request: StatusRequest) -> None:
        """ExecType I: the order as this node follows it, else as the history projection
        holds it (a closed order, or one placed before this node followed the account)."""
        account = principal.account
        order = self._orders(account).find(request.cl_ord_id, request.order_id)
        if order is not None:
            self.report(account, status_report(order, self._exec_id("S"), now_ms()))
            return
        record = None
        text = "unknown order"
        try:
            history = await self.gw.history_store()
            if request.order_id:
                record = await asyncio.to_thread(history.order, request.order_id)
            else:
                record = await asyncio.to_thread(
                    history.order_by_client_id, account, request.cl_ord_id
                )
        except ApiError as exc:
            text = f"order status unavailable here: {exc.message}"
        if record is None or record["account"] != account:
            self.report(
                account,
                unknown_status(
                    self._exec_id("S"), request.cl_ord_id, request.symbol, now_ms(), text
                ),
            )
            return
        found = order_from_record(record)
        self.report(account, status_report(found, self._exec_id("S"), now_ms()))
