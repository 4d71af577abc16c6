"""The API's error shape: `{"code": ..., "message": ...}` with a stable code and status."""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger("raftex.api")


class ApiError(Exception):
    """An answer to bad or impossible input: never a traceback, always a stable code."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status >= 400:
            code = exc.reason.lower().replace(" ", "_")
            return error_response(exc.status, code, exc.reason)
        raise
    except Exception:
        # A bug, not bad input: keep the traceback in the node's log, never in the answer.
        log.exception("event=handler_failed method=%s path=%s", request.method, request.path)
        return error_response(500, "internal", "internal error; the node logged it")
