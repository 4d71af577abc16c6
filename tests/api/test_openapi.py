"""The OpenAPI document served by every node lists every native route."""

from __future__ import annotations

import pytest
from aiohttp import web

from raftex.node_process import add_routes
from tests.api.conftest import ApiCluster

pytestmark = pytest.mark.asyncio


def registered_native_routes() -> set[tuple[str, str]]:
    app = web.Application()
    add_routes(app, weight_per_min=0)
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource.canonical.startswith("/v1/")
    }


async def test_every_native_route_is_in_the_served_openapi_document(api: ApiCluster) -> None:
    async with api.client(node=api.followers[0]) as client:
        document = await client.request("GET", "/v1/openapi.json", signed=False)
    assert document["openapi"].startswith("3.")
    documented = {
        (method, path) for path, operations in document["paths"].items() for method in operations
    }
    routes = registered_native_routes()
    assert len(routes) > 40
    assert routes - documented == set(), "routes missing from /v1/openapi.json"
    assert documented - routes == set(), "documented routes that no node serves"
