"""Response helpers shared by every handler: JSON bodies, the error envelope, body reading."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from bmo.errors import BmoError, InvalidRequest, RequestTimeout, RequestTooLarge
from bmo.protocol.dialect import Dialect
from bmo.server.context import RUNTIME

JSON = "application/json"


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=JSON, headers=headers)


def error_response(err: BmoError, dialect: Dialect | None = None) -> web.Response:
    """The one renderer of errors at the HTTP edge (SPEC §5): in the envelope of the route's
    dialect, the OpenAI one for every other route."""
    body = dialect.render_error(err) if dialect is not None else orjson.dumps(err.body())
    return web.Response(body=body, status=err.status, content_type=JSON, headers=err.headers)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, or 413 before reading more than the limit. A body that has not all
    arrived with the headers must keep arriving: 408 after `server.header_timeout_s` without a
    byte (SPEC §11). A body aiohttp cannot decode (bad chunking) is 400 `bad_request`."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise too_large(max_bytes)
    try:
        if not request.content.is_eof():  # the common case, a body that came with its headers, waits for nothing
            return await _arriving(request, max_bytes)
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(max_bytes) from None
    except RequestPayloadError:
        raise bad_body() from None
    if len(body) > max_bytes:
        raise too_large(max_bytes)
    return body


async def _arriving(request: web.Request, max_bytes: int) -> bytes:
    idle = request.app[RUNTIME].runtime.cfg.server.header_timeout_s
    content = request.content
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await content.readany()
        except TimeoutError:
            raise RequestTimeout(
                f"The request body stopped arriving: nothing came for {idle:g}s (server.header_timeout_s)."
            ) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        chunks.append(chunk)


def bad_body() -> InvalidRequest:
    return InvalidRequest("The request body is not valid HTTP (its framing or encoding).", code="bad_request")


def too_large(max_bytes: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The request body is larger than the limit of {max_bytes / 1048576:g} MiB (server.max_body_mb).",
        param=None,
    )
