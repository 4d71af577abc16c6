"""The browser UI every node serves at /ui/: a trading page and a cluster page.

Static files only (api/ui/): the pages call this node's own REST API and
WebSocket feed, sign requests in the browser with the key the user signs in with
(kept in the tab's session storage, never sent), and read the cluster page's
status with the admin token the same way. The chart libraries are committed
under api/ui/vendor/ (TradingView's lightweight-charts for candles, Chart.js for
depth; their licences beside them), so nothing is downloaded at run time.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

UI_DIR = Path(__file__).parent / "ui"
# The pages load nothing from elsewhere and are never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def add_ui_routes(app: web.Application) -> None:
    app.router.add_get("/", to_ui)
    app.router.add_get("/ui", to_ui)
    app.router.add_get("/ui/", trading_page)
    app.router.add_get("/ui/cluster", cluster_page)
    app.router.add_static("/ui/static/", UI_DIR / "static")
    app.router.add_static("/ui/vendor/", UI_DIR / "vendor")


async def to_ui(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


async def trading_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(UI_DIR / "index.html", headers=SECURITY_HEADERS)


async def cluster_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(UI_DIR / "cluster.html", headers=SECURITY_HEADERS)
