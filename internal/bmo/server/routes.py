"""Path routing that forgives what clients send (CLIENTS.md §2.2, "base URL variants").

`//v1//models`, `/v1/models/`, and the bare `/chat/completions` all reach the same handler.
aiohttp's own router would answer these with its HTML 404/405 pages, so bmo routes itself: one
catch-all aiohttp route, exact paths in a dict, and a few prefixes for ids that may contain `/`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from bmo.errors import MethodNotAllowed, NotFound
from bmo.protocol.dialect import Dialect

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Entry = tuple[Handler, str, str, "Dialect | None"]  # handler, scope, route name, error dialect
_SLASHES = re.compile(r"/{2,}")


def normalise(path: str) -> str:
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


class Router:
    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Entry]] = {}
        self._prefix: list[tuple[str, dict[str, Entry]]] = []
        self._declared: list[tuple[str, Entry]] = []  # (method, entry) as added: the public table

    def add(self, method: str, path: str, handler: Handler, *, scope: str, dialect: Dialect | None = None) -> None:
        """`path` ending in `/{tail}` matches any rest of the path (stored as match_info tail).
        `dialect` renders the route's errors (None: the OpenAI envelope)."""
        entry: Entry = (handler, scope, path.replace("{tail}", "{id}"), dialect)
        self._declared.append((method, entry))
        paths = [path, path[3:]] if path.startswith("/v1/") else [path]  # clients configured without /v1
        for p in paths:
            if p.endswith("/{tail}"):
                prefix = p[: -len("{tail}")]
                for known, table in self._prefix:
                    if known == prefix:
                        table[method] = entry
                        break
                else:
                    self._prefix.append((prefix, {method: entry}))
                    self._prefix.sort(key=lambda x: -len(x[0]))
            else:
                self._exact.setdefault(p, {})[method] = entry

    def exact_paths(self) -> list[str]:
        return sorted(self._exact)

    def declared(self) -> list[tuple[str, Entry]]:
        """Every route as it was added (method, entry; the entry's route name is its path with
        `{id}` for a tail), without the `/v1`-less aliases: what `/openapi.json` documents."""
        return list(self._declared)

    def resolve(self, method: str, raw_path: str) -> tuple[Entry, str]:
        """(the route's entry, tail). Raises NotFound/MethodNotAllowed."""
        path = normalise(raw_path)
        table = self._exact.get(path)
        tail = ""
        if table is None:
            for prefix, t in self._prefix:
                if path.startswith(prefix) and len(path) > len(prefix):
                    table, tail = t, path[len(prefix) :]
                    break
        if table is None:
            raise NotFound(f"Unknown request URL: {method} {raw_path}.", code="not_found")
        if method == "HEAD" and "GET" in table:
            method = "GET"
        entry = table.get(method)
        if entry is None:
            allowed = ", ".join(sorted(table))
            raise MethodNotAllowed(
                f"Method {method} is not allowed on {path}; use {allowed}.",
                headers={"Allow": allowed},
            )
        return entry, tail
