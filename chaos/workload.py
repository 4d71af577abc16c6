"""Concurrent clients that trade, amend, cancel, read, deposit and withdraw, recording
every invocation and completion.

Each client owns one account and one HMAC key, talks to a node chosen at random
(followers forward writes), and retries a write whose fate is unknown on
another node with the same client order id or request id, until its deadline;
then the operation is recorded as indefinite (`info`).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from api.client import ClientError, RaftexClient, Unavailable
from chaos.history import FAIL, INFO, OK, History, Op
from cluster.admin_client import AdminClient, AdminError
from engine.commands import Deposit, Withdraw, command_to_wire

OP_DEADLINE_S = 8.0
REQUEST_TIMEOUT_S = 2.0
RETRY_PAUSE_S = 0.2
INDEFINITE_CODES = ("not_committed", "overloaded", "unavailable", "busy", "behind")
TRANSFER_AMOUNT_MAX = 10_000


class Client:
    def __init__(
        self,
        process: int,
        account: str,
        key: dict[str, Any],
        nodes: list[str],
        admin_token: str,
        history: History,
        t0: float,
        seed: int,
        symbols: list[tuple[str, int]],
    ) -> None:
        self.process = process
        self.account = account
        self.key = key
        self.nodes = nodes
        self.admin_token = admin_token
        self.history = history
        self.t0 = t0
        self.rng = random.Random(seed * 1_000_003 + process)
        self.symbols = symbols
        self.open_orders: list[tuple[str, int]] = []  # (symbol, order id)
        self.acked: list[tuple[int, int]] = []  # (order id, seq it was applied at)
        self.counter = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self, until_s: float) -> None:
        async with (
            RaftexClient(
                self.nodes,
                self.key["key_id"],
                self.key["secret"],
                "hmac",
                timeout_s=REQUEST_TIMEOUT_S,
            ) as client,
            AdminClient(self.admin_token, timeout_s=REQUEST_TIMEOUT_S) as admin,
        ):
            while self.now() < until_s:
                roll = self.rng.random()
                if roll < 0.55 or not self.open_orders:
                    await self.place(client)
                elif roll < 0.70:
                    await self.cancel(client)
                elif roll < 0.80:
                    await self.amend(client)
                elif roll < 0.92:
                    await self.read(client)
                else:
                    await self.transfer(admin)

    def _node(self, avoid: str = "") -> str:
        """A random node; after a timeout, not the node that kept silent."""
        return self.rng.choice([n for n in self.nodes if n != avoid] or self.nodes)

    async def _write(
        self, invocation: Op, call: Any, node_choice: bool = True
    ) -> tuple[str, Any, str]:
        """(kind, answer or error, node) after retrying unknown outcomes until the deadline."""
        deadline = invocation.time_s + OP_DEADLINE_S
        last_error: Any = None
        silent = ""
        while self.now() < deadline:
            node = self._node(silent) if node_choice else ""
            try:
                return OK, await call(node), node
            except ClientError as exc:
                if isinstance(exc, Unavailable):
                    silent = node
                if not isinstance(exc, Unavailable) and exc.code not in INDEFINITE_CODES:
                    return (
                        (OK if exc.body and exc.body.get("status") == "rejected" else FAIL),
                        exc,
                        node,
                    )
                last_error = exc
            except AdminError as exc:
                if not exc.status:
                    silent = node
                if exc.status and exc.status < 500 and exc.code not in INDEFINITE_CODES:
                    return FAIL, exc, node
                last_error = exc
            await asyncio.sleep(RETRY_PAUSE_S)
        return INFO, last_error, ""

    async def place(self, client: RaftexClient) -> None:
        symbol, reference = self.rng.choice(self.symbols)
        side = self.rng.choice(("buy", "sell"))
        ticks = reference + self.rng.randint(-200, 200)
        price = f"{ticks // 100}.{ticks % 100:02d}"
        self.counter += 1
        cid = f"p{self.process}-{self.counter}"
        tif = self.rng.choice(("gtc", "gtc", "gtc", "ioc"))
        value = {
            "account": self.account,
            "client_order_id": cid,
            "symbol": symbol,
            "side": side,
            "qty": str(self.rng.randint(1, 5)),
            "price": price,
            "tif": tif,
        }
        invocation = self.history.invoke(self.process, "place", value, self.now())

        async def call(node: str) -> Any:
            body = {
                k: value[k] for k in ("symbol", "side", "qty", "price", "tif", "client_order_id")
            }
            return await client.request("POST", "/v1/orders", body=body, node=node)

        kind, answer, node = await self._write(invocation, call)
        self._complete(invocation, kind, answer, node)
        if kind == OK and isinstance(answer, dict):
            order = answer.get("order") or answer
            order_id = order.get("order_id")
            if order_id:
                self.acked.append((order_id, answer["seq"]))
                if answer.get("status") in ("open", "partially_filled"):
                    self.open_orders.append((symbol, order_id))

    async def cancel(self, client: RaftexClient) -> None:
        order_id = self.open_orders.pop(self.rng.randrange(len(self.open_orders)))[1]
        value = {"account": self.account, "order_id": order_id}
        invocation = self.history.invoke(self.process, "cancel", value, self.now())

        async def call(node: str) -> Any:
            return await client.request("DELETE", f"/v1/orders/{order_id}", node=node)

        kind, answer, node = await self._write(invocation, call)
        self._complete(invocation, kind, answer, node)

    async def amend(self, client: RaftexClient) -> None:
        symbol, order_id = self.rng.choice(self.open_orders)
        value = {"account": self.account, "order_id": order_id, "qty": "1"}
        invocation = self.history.invoke(self.process, "amend", value, self.now())

        async def call(node: str) -> Any:
            body = {"symbol": symbol, "qty": "1"}
            return await client.request("PATCH", f"/v1/orders/{order_id}", body=body, node=node)

        kind, answer, node = await self._write(invocation, call)
        self._complete(invocation, kind, answer, node)

    async def read(self, client: RaftexClient) -> None:
        """Read-your-writes on any node: an acknowledged order must be there, or the node
        must say it is behind."""
        if not self.acked:
            return
        order_id, seq = self.rng.choice(self.acked)
        node = self._node()
        value = {"account": self.account, "order_id": order_id, "min_seq": seq}
        invocation = self.history.invoke(self.process, "read", value, self.now())
        try:
            await client.request(
                "GET", f"/v1/orders/{order_id}", params={"min_seq": seq}, node=node
            )
            self.history.complete(invocation, OK, {"found": True}, self.now(), node)
        except ClientError as exc:
            if exc.code == "unknown_order":
                self.history.complete(invocation, OK, {"found": False}, self.now(), node)
            else:
                self.history.complete(invocation, FAIL, {"code": exc.code}, self.now(), node)

    async def transfer(self, admin: AdminClient) -> None:
        deposit = self.rng.random() < 0.6
        self.counter += 1
        request_id = f"t{self.process}-{self.counter}"
        amount = self.rng.randint(1, TRANSFER_AMOUNT_MAX)
        f = "deposit" if deposit else "withdraw"
        value = {
            "account": self.account,
            "request_id": request_id,
            "asset": "USD",
            "amount": amount,
        }
        invocation = self.history.invoke(self.process, f, value, self.now())
        command = (Deposit if deposit else Withdraw)(self.account, "USD", amount, request_id)

        async def call(node: str) -> Any:
            body = {"command": command_to_wire(command), "timeout_ms": 2_000}
            return await admin.call(node, "POST", "/v1/admin/commands", body)

        kind, answer, node = await self._write(invocation, call)
        self._complete(invocation, kind, answer, node)

    def _complete(self, invocation: Op, kind: str, answer: Any, node: str) -> None:
        if isinstance(answer, dict):
            value = {k: answer[k] for k in ("seq", "status", "order_id", "code") if k in answer}
            led_by = answer.get("led_by", "")
        elif isinstance(answer, ClientError):
            value = {"code": answer.code, "status": answer.status}
            led_by = (answer.body or {}).get("led_by", "") if isinstance(answer.body, dict) else ""
        else:
            value = {"error": str(answer)[:200]} if answer is not None else {}
            led_by = ""
        self.history.complete(invocation, kind, value, self.now(), led_by)
