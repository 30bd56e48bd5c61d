"""The ledger check: does bmo write one run row per request the driver sent?

Rows are read through `GET /v1/openai-compat/runs` (paged with `cursor`), or, when that route
is missing, `bmo runs list --json`. When neither exists yet the check reports "n/a (no ledger
yet)" instead of failing, so the benchmark runs before and after the ledger lands. Only rows of
`/v1/chat/completions` count (when rows name their route), or with `route="messages"` only rows
of `/v1/messages` (likewise "responses" and "completions": `POST /v1/responses`, legacy
`/v1/completions`): each is checked apart, against what was sent to it.
Rows may be written after the response, so the count is polled until it stops moving.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

PAGES = (500, 100)  # page sizes to try: SPEC sets no maximum; bmo allows 500
MAX_PAGES = 1000  # 500k rows: far above any run of this benchmark


def _rows_of(body: Any) -> tuple[list[Any], Any]:
    """(rows, next cursor) from whichever list shape the route answers with."""
    if isinstance(body, list):
        return body, None
    if not isinstance(body, dict):
        return [], None
    rows = next((body[k] for k in ("data", "runs", "items", "rows") if isinstance(body.get(k), list)), [])
    cursor = next((body[k] for k in ("next_cursor", "cursor", "next") if body.get(k)), None)
    if cursor is None and body.get("has_more") and rows and isinstance(rows[-1], dict):
        cursor = rows[-1].get("request_id")
    return rows, cursor


def _is_chat(row: Any) -> bool:
    if not isinstance(row, dict) or "route" not in row:
        return True
    return "chat/completions" in str(row["route"])


def _is_messages(row: Any) -> bool:
    """A row of `POST /v1/messages` (not of count_tokens); rows that name no route are chat's."""
    if not isinstance(row, dict) or "route" not in row:
        return False
    return str(row["route"]).split("?", 1)[0].rstrip("/").endswith("/messages")


def _route_is(path: str) -> Callable[[Any], bool]:
    """Rows of exactly `path` (any query string): `/v1/responses`, not `/v1/responses/{id}`."""

    def counted(row: Any) -> bool:
        if not isinstance(row, dict) or "route" not in row:
            return False
        return str(row["route"]).split("?", 1)[0].rstrip("/") == path

    return counted


def _counts(route: str) -> Callable[[Any], bool]:
    if route == "messages":
        return _is_messages
    if route in ("responses", "completions"):
        return _route_is(f"/v1/{route}")
    return _is_chat


def _page(base: str, key: str, limit: int, cursor: Any) -> Any:
    q = {"limit": limit, **({"cursor": cursor} if cursor else {})}
    url = f"{base}/v1/openai-compat/runs?{urllib.parse.urlencode(q)}"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return orjson.loads(resp.read())


def _via_http(base: str, key: str, route: str = "chat") -> int | None:
    """Chat (or `route`) rows through the HTTP route, or None when the route does not exist."""
    counted = _counts(route)
    count, cursor, sizes = 0, None, list(PAGES)
    for _ in range(MAX_PAGES):
        try:
            body = _page(base, key, sizes[0], cursor)
        except urllib.error.HTTPError as e:
            if e.code in (404, 405):
                return None
            if e.code == 400 and len(sizes) > 1:  # page size above the server's maximum
                sizes.pop(0)
                continue
            raise
        rows, cursor = _rows_of(body)
        count += sum(1 for r in rows if counted(r))
        if not rows or not cursor:
            return count
    return count


def _via_cli(bmo: Path, home: Path, env: dict[str, str], route: str = "chat") -> int | None:
    """The CLI has no cursor: it can count up to its --limit, so ask for one more than that."""
    counted = _counts(route)
    for limit in (1_000_000, PAGES[0]):
        cmd = [str(bmo), "runs", "list", "--json", "--limit", str(limit), "--home", str(home)]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if p.returncode == 0:
            try:
                rows, _ = _rows_of(orjson.loads(p.stdout))
            except orjson.JSONDecodeError:
                return None
            n = sum(1 for r in rows if counted(r))
            return n if len(rows) < limit else None  # cut at the limit: cannot tell
    return None


def count_rows(
    base: str, key: str, bmo: Path, home: Path, env: dict[str, str], expect: int, route: str = "chat"
) -> int | None:
    """Chat (or `route`) rows in the ledger once the count settles (None: there is no ledger
    yet, or no way to count)."""
    last: int | None = None
    deadline = time.monotonic() + 20
    while True:
        n = _via_http(base, key, route)
        if n is None:
            n = _via_cli(bmo, home, env, route)
        if n is None:
            return None
        if (n == last and n >= expect) or time.monotonic() > deadline:
            return n
        last = n
        time.sleep(1.0)


def check(
    base: str,
    key: str,
    bmo: Path,
    home: Path,
    env: dict[str, str],
    sent_min: int,
    sent_max: int,
    route: str = "chat",
) -> tuple[str, bool | None]:
    """The ledger line for the report, and whether zero rows were lost (None: not measurable).
    `route`: "chat" (rows of /v1/chat/completions), "messages" (rows of /v1/messages),
    "responses" or "completions" (rows of /v1/responses, of /v1/completions)."""
    try:
        rows = count_rows(base, key, bmo, home, env, sent_min, route)
    except Exception as e:  # the check must never sink the run it reports on
        return f"ledger check: error ({type(e).__name__}: {e})", None
    return verdict(rows, sent_min, sent_max)


def verdict(rows: int | None, sent_min: int, sent_max: int) -> tuple[str, bool | None]:
    if rows is None:
        return "ledger check: n/a (no ledger yet)", None
    want = f"{sent_min}" if sent_min == sent_max else f"{sent_min}–{sent_max}"
    ok = sent_min <= rows <= sent_max
    return f"ledger check: {rows} rows for {want} requests sent: {'ok' if ok else 'MISMATCH'}", ok
