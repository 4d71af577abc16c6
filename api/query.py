"""Query and body fields, checked with one clear error per field."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from api.errors import ApiError
from api.numbers import parse_count


async def read_body(request: web.Request, timeout_s: float) -> bytes:
    """The request's body, which must arrive within `timeout_s` once its head has: a client
    trickling it would otherwise hold a request (and its in-flight slot) for ever."""
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise ApiError(
            408, "request_timeout", f"the request body did not arrive within {timeout_s:g} s"
        ) from None


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    value = parse_count(text)
    if value is None:
        raise ApiError(400, f"bad_{name}", f"{name} must be a whole number (ASCII digits)")
    if not low <= value <= high:
        raise ApiError(400, f"bad_{name}", f"{name} must be {low}..{high}")
    return value


def choice(body: dict[str, Any], name: str, options: dict[str, Any], default: str | None) -> Any:
    """A field whose value is one of a few lowercase names."""
    value = body.get(name, default)
    if value is None:
        raise ApiError(400, f"bad_{name}", f"{name} is required: {'|'.join(options)}")
    if type(value) is not str or value.lower() not in options:
        raise ApiError(400, f"bad_{name}", f"{name} must be one of {'|'.join(options)}")
    return options[value.lower()]


def text_field(
    body: dict[str, Any], name: str, len_max: int, default: str = "", *, required: bool = False
) -> str:
    value = body.get(name, default)
    if type(value) is not str or len(value) > len_max or not value.isprintable():
        raise ApiError(400, f"bad_{name}", f"{name} must be text of at most {len_max} characters")
    if required and not value:
        raise ApiError(400, f"bad_{name}", f"{name} is required")
    return value


def known_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
