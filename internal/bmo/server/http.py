"""Response helpers shared by every handler: JSON bodies, the error envelope, body reading."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bmo.errors import BmoError, RequestTooLarge
from bmo.protocol.dialect import Dialect

JSON = "application/json"


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=JSON, headers=headers)


def error_response(err: BmoError, dialect: Dialect | None = None) -> web.Response:
    """The one renderer of errors at the HTTP edge (SPEC §5): in the envelope of the route's
    dialect, the OpenAI one for every other route."""
    body = dialect.render_error(err) if dialect is not None else orjson.dumps(err.body())
    return web.Response(body=body, status=err.status, content_type=JSON, headers=err.headers)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, or 413 before reading more than the limit."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise too_large(max_bytes)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(max_bytes) from None
    if len(body) > max_bytes:
        raise too_large(max_bytes)
    return body


def too_large(max_bytes: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The request body is larger than the limit of {max_bytes / 1048576:g} MiB (server.max_body_mb).",
        param=None,
    )
