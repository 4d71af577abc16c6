"""The native API fuzzed from its own OpenAPI document (schemathesis), against a live cluster.

Every documented operation, signed as a client signs (an HMAC trade key, or the admin
token), gets schema-valid data (no 5xx, every answer as documented) and schema-violating
data (every answer a 4xx with a stable code, and nothing a user can see changes). No answer
and no node's log may hold a traceback. RAFTEX_SOAK=1 runs many more examples.

The document types little (parameters are strings, body fields untyped, success answers
without a schema), so schema-violating data is a body: not JSON, not an object, or with a
field the operation does not take; and the schema checks hold the error answers to
`{"code", "message"}`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from schemathesis import CheckFunction, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.client import RaftexClient
from api.signing import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    hmac_signature,
    signing_payload,
)
from cluster.views import BOOK_VIEW_DEPTH
from tests.api.conftest import ApiCluster, fresh_account

pytestmark = pytest.mark.soak

SOAK = os.environ.get("RAFTEX_SOAK") == "1"
EXAMPLES_PER_OPERATION = 200 if SOAK else 10
REQUEST_TIMEOUT_S = 10.0
RATE_LIMITED_RETRIES_MAX = 5
EXCERPT_CHARS = 300
PROBLEMS_SHOWN_MAX = 20
OPERATIONS_MIN = 40
BODY_OPERATIONS_MIN = 10

# Operations no pass sends, and why.
NOT_FUZZED = {
    # Cluster members only, signed with the node key no client holds: a client's request
    # stops at that signature (tests/api/test_node_channel.py).
    ("POST", "/v1/internal/commands"),
}
# Admin writes that schema-valid data may well turn into a real change of the cluster every
# API test shares (a member removed, a node cut off or its clock skewed, any engine command
# an admin may submit). The negative pass still sends them: they must be refused.
NOT_FUZZED_POSITIVE = {
    ("POST", "/v1/admin/members"),
    ("POST", "/v1/admin/faults"),
    ("POST", "/v1/admin/commands"),
    ("POST", "/v1/admin/commands/batch"),
}
# Fixed query parameters: a hash read waits up to `timeout_ms` (5 s by default, 120 s at
# most) for the hash to be recorded, by design; the fuzz does not wait.
FIXED_QUERY = {("GET", "/v1/admin/hash"): {"timeout_ms": "0"}}
POSITIVE_CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS: list[CheckFunction] = [not_a_server_error, response_schema_conformance]

Judge = Callable[[schemathesis.Case, requests.Response], None]


@dataclass
class Fuzzer:
    """Sends schemathesis' cases to the nodes, signed like a client, and keeps what went
    wrong (all of it, so one run reports every finding, not only the first)."""

    api: ApiCluster
    account: str
    key_id: str
    secret: str
    # Path parameters that name something of the fuzzing account's (its name, its resting
    # orders' ids and client order ids): half the cases of an operation with one of these
    # take a real one, so a refusal is tested on what exists, not only on what does not.
    own: dict[str, list[str]] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)
    problems: list[str] = field(default_factory=list)

    def send(self, case: schemathesis.Case, node: str) -> requests.Response:
        kwargs = case.as_transport_kwargs(base_url=f"http://{node}")
        names = ("method", "url", "headers", "params", "cookies", "json", "data")
        prepared = self.session.prepare_request(
            requests.Request(**{name: kwargs[name] for name in names if name in kwargs})
        )
        admin = case.operation.path.startswith("/v1/admin/")
        for _ in range(RATE_LIMITED_RETRIES_MAX):
            prepared.headers.update(self.auth_headers(prepared, admin))
            response = self.session.send(prepared, timeout=REQUEST_TIMEOUT_S)
            if response.status_code != 429:
                break
            time.sleep(float(response.headers.get("Retry-After", "1")))
        if "Traceback" in response.text:
            self.problem(case, response, "a traceback in the answer")
        if response.status_code == 401:
            # Every request is signed right: a 401 means the fuzz stopped at the door.
            self.problem(case, response, "refused as unauthenticated")
        return response

    def auth_headers(self, prepared: requests.PreparedRequest, admin: bool) -> dict[str, str]:
        """The admin token, or a client's signature over exactly what is sent: the path and
        query as encoded on the wire, and the body's bytes."""
        if admin:
            return {"Authorization": f"Bearer {self.api.harness.token}"}
        assert prepared.method is not None and prepared.path_url is not None
        path, _, query = prepared.path_url.partition("?")
        body = prepared.body or b""
        body = body.encode() if isinstance(body, str) else body
        timestamp_ms = int(time.time() * 1000)
        payload = signing_payload(timestamp_ms, prepared.method, path, query, body)
        return {
            KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: str(timestamp_ms),
            SIGNATURE_HEADER: hmac_signature(self.secret.encode(), payload),
        }

    def validate(
        self, case: schemathesis.Case, response: requests.Response, checks: list[CheckFunction]
    ) -> None:
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                self.problem(case, response, f"{failure.title} ({failure.message.strip()})")

    def problem(self, case: schemathesis.Case, response: requests.Response, what: str) -> None:
        request = response.request
        body = request.body[:EXCERPT_CHARS] if request.body else b""
        self.problems.append(
            f"{case.operation.label}: {what}: {request.method} {request.path_url} body={body!r}"
            f" -> {response.status_code} {response.text[:EXCERPT_CHARS]!r}"
        )

    def run(self, mode: GenerationMode, skipped: set[tuple[str, str]], judge: Judge) -> int:
        """Every operation of the document a node serves, but the skipped ones, each with a
        Hypothesis run of its own; returns how many operations were fuzzed."""
        answer = self.session.get(
            f"http://{self.api.leader_http}/v1/openapi.json", timeout=REQUEST_TIMEOUT_S
        )
        schema = schemathesis.openapi.from_dict(answer.json())
        # Unknown query parameters are not schema-violating (the API ignores them, as the
        # document allows), and the security headers are the signature's, not the fuzz's.
        schema.config.generation.update(
            allow_extra_parameters=False, with_security_parameters=False
        )
        operations = [result.ok() for result in schema.get_all_operations()]
        if mode == GenerationMode.NEGATIVE:
            # Only a body can be sent against the document: every parameter is a string,
            # and a path or query is one (Hypothesis would search for a violation in vain).
            operations = [o for o in operations if o.body]
        fuzzed = [o for o in operations if (o.method.upper(), o.path) not in skipped]
        for operation in fuzzed:
            self.fuzz(operation, mode, judge)
        return len(fuzzed)

    def fuzz(
        self, operation: schemathesis.APIOperation, mode: GenerationMode, judge: Judge
    ) -> None:
        fixed_query = FIXED_QUERY.get((operation.method.upper(), operation.path))
        cases = operation.as_strategy(generation_mode=mode, query=fixed_query)
        for name, values in self.own.items():
            if f"{{{name}}}" in operation.path and values:
                own_cases = st.sampled_from(values).flatmap(
                    lambda value, name=name: operation.as_strategy(
                        generation_mode=mode, query=fixed_query, path_parameters={name: value}
                    )
                )
                cases = st.one_of(cases, own_cases)

        # No shrinking (each step is a request to the cluster) and no example database: a
        # finding is recorded, not raised, so the example that showed it is the one reported.
        # Health checks off: a live cluster is slow to answer by Hypothesis' measure.
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(
            case=cases,
            node=st.sampled_from(self.api.all_http),
        )
        def one(case: schemathesis.Case, node: str) -> None:
            # Negative mode also yields valid cases (an optional body left out): not sent.
            assume(case.meta is not None and case.meta.generation.mode == mode)
            judge(case, self.send(case, node))

        one()


@dataclass
class LogMarks:
    """Where each node's log ended when the test began: what is after it, the test wrote."""

    offsets: dict[Path, int]

    @staticmethod
    def now(api: ApiCluster) -> LogMarks:
        paths = [node.log_path for node in api.harness.cluster.nodes]
        return LogMarks({path: path.stat().st_size for path in paths})

    def tracebacks(self) -> list[str]:
        found = []
        for path, offset in self.offsets.items():
            with path.open("rb") as log:
                log.seek(offset)
                lines = log.read().decode(errors="replace").splitlines()
            found += [f"{path.name}: {line}" for line in lines if "Traceback" in line]
        return found


@pytest.fixture(scope="module")
def fuzzer(api: ApiCluster) -> Iterator[Fuzzer]:
    """Fuzzes as an account of its own, funded like the demo ones: what it does and what it
    must not change are its own, whatever the other tests' accounts hold. Its key is HMAC,
    read and trade: the security and withdraw endpoints answer it 403, after the signature
    and before their bodies are read."""
    account = asyncio.run(fresh_account(api, "fuzz"))
    key = asyncio.run(account.key("hmac", ["read", "trade"]))
    fuzzer = Fuzzer(api, account.name, key["key_id"], key["secret"])
    yield fuzzer
    fuzzer.session.close()


def shown(problems: list[str]) -> str:
    more = len(problems) - PROBLEMS_SHOWN_MAX
    return "\n".join(problems[:PROBLEMS_SHOWN_MAX] + ([f"... and {more} more"] if more > 0 else []))


def rest_orders(fuzzer: Fuzzer) -> None:
    """The fuzzing account's only open orders: two, resting in two books (and holding funds),
    named in the fuzz's paths, for a refused cancel or amend to leave alone."""

    async def place() -> list[dict[str, Any]]:
        async with RaftexClient(fuzzer.api.all_http, fuzzer.key_id, fuzzer.secret, "hmac") as c:
            await c.mass_cancel()
            instruments = await c.request("GET", "/v1/instruments", signed=False)
            bands = {i["symbol"]: i["price_band"] for i in instruments["instruments"]}
            # At the edges of the price bands, where no other test's order crosses them.
            return [
                await c.place_order("MSFT", "buy", "3", price=bands["MSFT"][0]),
                await c.place_order("AAPL", "sell", "2", price=bands["AAPL"][1]),
            ]

    placed = asyncio.run(place())
    fuzzer.own = {
        "account": [fuzzer.account],
        "order_id": [str(order["order_id"]) for order in placed],
        "client_order_id": [order["client_order_id"] for order in placed],
    }


def seen_by_user(fuzzer: Fuzzer) -> dict[str, Any]:
    """What users see: every book's depth, and the fuzzing account's balances, open orders
    and keys, read on the leader. Not the engine's state hash: it covers the sequence number
    and the log clock, which every entry moves (a time tick, a refused write alike)."""
    leader = f"http://{fuzzer.api.leader_http}"

    def get(path: str, params: dict[str, Any] | None = None, signed: bool = True) -> Any:
        prepared = fuzzer.session.prepare_request(
            requests.Request("GET", leader + path, params=params)
        )
        if signed:
            prepared.headers.update(fuzzer.auth_headers(prepared, admin=False))
        answer = fuzzer.session.send(prepared, timeout=REQUEST_TIMEOUT_S)
        assert answer.status_code == 200, answer.text
        return answer.json()

    symbols = [i["symbol"] for i in get("/v1/instruments", signed=False)["instruments"]]
    books = {}
    for symbol in symbols:
        book = get(f"/v1/book/{symbol}", {"depth": BOOK_VIEW_DEPTH}, signed=False)
        books[symbol] = {"bids": book["bids"], "asks": book["asks"]}
    return {
        "books": books,
        "balances": get("/v1/account/balances")["balances"],
        "open_orders": get("/v1/orders", {"status": "open"})["orders"],
        "keys": get("/v1/account/keys")["keys"],
    }


def test_schema_valid_requests_get_documented_answers_and_never_a_server_error(
    api: ApiCluster, fuzzer: Fuzzer
) -> None:
    marks = LogMarks.now(api)
    fuzzer.problems.clear()
    rest_orders(fuzzer)

    def judge(case: schemathesis.Case, response: requests.Response) -> None:
        fuzzer.validate(case, response, POSITIVE_CHECKS)

    fuzzed = fuzzer.run(GenerationMode.POSITIVE, NOT_FUZZED | NOT_FUZZED_POSITIVE, judge)
    assert fuzzed > OPERATIONS_MIN
    assert fuzzer.problems == [], shown(fuzzer.problems)
    assert marks.tracebacks() == []


def test_schema_violating_requests_are_refused_with_a_code_and_change_nothing(
    api: ApiCluster, fuzzer: Fuzzer
) -> None:
    marks = LogMarks.now(api)
    fuzzer.problems.clear()
    rest_orders(fuzzer)
    before = seen_by_user(fuzzer)
    assert len(before["open_orders"]) == 2

    def judge(case: schemathesis.Case, response: requests.Response) -> None:
        fuzzer.validate(case, response, NEGATIVE_CHECKS)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        code = answer.get("code") if isinstance(answer, dict) else None
        if not 400 <= response.status_code < 500 or not isinstance(code, str) or not code:
            fuzzer.problem(case, response, "not refused with a 4xx and a code")

    fuzzed = fuzzer.run(GenerationMode.NEGATIVE, NOT_FUZZED, judge)
    assert fuzzed >= BODY_OPERATIONS_MIN
    assert fuzzer.problems == [], shown(fuzzer.problems)
    assert seen_by_user(fuzzer) == before
    assert marks.tracebacks() == []
