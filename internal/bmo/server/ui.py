"""GET /ui and /ui/<asset>: the web console (SPEC §3), a static page from package data.

The page and its assets are public: they hold no data, and the page asks for a key with the
`ledger` scope and sends it to the ledger routes, which check it as for any client. Every answer
carries a Content-Security-Policy that allows nothing but this origin (no inline script or style,
nothing fetched from elsewhere, no framing), `nosniff`, and `Referrer-Policy: no-referrer`.
`no-cache`: a browser revalidates, so a new bmo's console is never mixed with an old one's.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

from bmo import ui
from bmo.errors import NotFound
from bmo.server.context import STATE

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
    "Cache-Control": "no-cache",
}


@cache  # package data never changes while the process runs
def _read(name: str) -> bytes:
    return resources.files(ui).joinpath(name).read_bytes()


def _asset(name: str) -> web.Response:
    content_type = ui.ASSETS.get(name)
    if content_type is None:
        raise NotFound(f"The web console has no file {name!r}.", code="not_found")
    return web.Response(body=_read(name), headers={**HEADERS, "Content-Type": content_type})


async def page(request: web.Request) -> web.StreamResponse:
    """The web console (HTML; it asks for a key with the `ledger` scope)."""
    return _asset(ui.PAGE)


async def asset(request: web.Request) -> web.StreamResponse:
    """A file of the web console (script, style sheet)."""
    return _asset(request[STATE].tail)
