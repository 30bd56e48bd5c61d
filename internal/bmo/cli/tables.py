"""Tables that fit (SPEC §8): every table readable at 80 columns, in a terminal and piped.

Rich shrinks every column of a wide table until cells fold into fragments (`outco/me`) or vanish.
Here bmo decides the widths itself, before Rich sees the table:

1. every cell is one line; a column is as wide as its widest cell;
2. too wide for the console: shorten what has a shorter form (`/v1/chat/completions` ->
   `chat/completions`, a date without its year);
3. still too wide: drop whole columns, least important first, until the rest fits at their
   minimum widths; then give the room left back, most important first, and cut the cells that
   still do not fit with `…`;
4. a `keep` column (a request id, a key prefix, a name: whatever a user copies into the next
   command) is never cut and never dropped; if those alone are wider than the console, the line
   is longer than the console, never the id shorter.

`--wide` skips 2 and 3: every column, every cell whole. Cells are plain text (never Rich markup,
so a glob like `claude-[34]*` prints as itself); a column may give each cell a style. Times are
local time; the header of a time column carries the offset (`started (+01:00)`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

GAP = 2  # spaces between columns (no box: a box costs 3 columns a column, which 80 cannot spare)


@dataclass(frozen=True, slots=True)
class Col:
    header: str
    priority: int = 5  # 0 is shown always; higher numbers are dropped first when the console is narrow
    keep: bool = False  # never cut, never dropped: ids, key prefixes, names a user copies
    min: int = 0  # may be cut (with `…`) down to this width; 0: shown whole or dropped
    justify: str = "left"
    shorten: Callable[[str], str] | None = None  # a shorter form of a cell, tried before cutting
    style: Callable[[str], str | None] | None = None  # a Rich style for a cell, from its text


def fit(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int, *, wide: bool = False) -> list[int | None]:
    """The width of each column, None for a dropped one. Pure, so tests can check the choice."""
    n = len(cols)
    cells = [[one_line(r[i]) for r in rows] for i in range(n)]
    natural = [max([cell_len(c.header), *(cell_len(x) for x in cells[i])]) for i, c in enumerate(cols)]

    def total(ws: Sequence[int | None]) -> int:
        shown = [w for w in ws if w is not None]
        return sum(shown) + GAP * max(0, len(shown) - 1)

    if wide or total(natural) <= width:
        return list[int | None](natural)
    full = list(natural)
    for i, c in enumerate(cols):
        if c.shorten is not None:
            full[i] = max([cell_len(c.header), *(cell_len(c.shorten(x)) for x in cells[i])])
    if total(full) <= width:
        return list[int | None](full)
    # Most important first, a column is in if it still fits: whole, or (one with a `min`) cut down
    # to its least; keep columns are in regardless. The room left then widens the cut ones.
    least = [
        full[i] if c.keep or not c.min else min(full[i], max(c.min, cell_len(c.header)))
        for i, c in enumerate(cols)
    ]
    shown: list[int | None] = [None] * n
    for i in sorted(range(n), key=lambda i: (0 if cols[i].keep else cols[i].priority, i)):
        for choice in dict.fromkeys((full[i], least[i])):
            trial = list(shown)
            trial[i] = choice
            if cols[i].keep or cols[i].priority == 0 or total(trial) <= width:
                shown = trial
                break
    room = width - total(shown)
    for i in sorted((i for i in range(n) if shown[i] is not None), key=lambda i: (cols[i].priority, i)):
        w = shown[i]
        assert w is not None
        grow = max(0, min(room, full[i] - w))
        shown[i] = w + grow
        room -= grow
    return shown


def render(
    out: Console,
    cols: Sequence[Col],
    rows: Sequence[Sequence[str]],
    *,
    wide: bool = False,
    title: str | None = None,
    empty: str | None = None,
) -> list[int | None]:
    """Print `title` (one line), then the table fitted to the console (see `fit`). Returns the
    widths chosen."""
    if title:
        out.print(Text(title, style="bold"), soft_wrap=True)
    if not rows and empty:
        out.print(empty, highlight=False, markup=False, soft_wrap=True)
        return []
    rows = [[one_line(x) for x in r] for r in rows]
    widths = fit(cols, rows, out.width, wide=wide)
    natural_cut = [
        w is not None and c.shorten is not None and w < max([cell_len(c.header), *(cell_len(str(r[i])) for r in rows)])
        for i, (c, w) in enumerate(zip(cols, widths, strict=True))
    ]
    t = Table(box=None, show_edge=False, pad_edge=False, padding=(0, GAP // 2), header_style="bold", expand=False)
    shown = [i for i, w in enumerate(widths) if w is not None]
    for i in shown:
        c = cols[i]
        t.add_column(c.header, width=widths[i], no_wrap=True, overflow="ellipsis", justify=c.justify)  # type: ignore[arg-type]
    for r in rows:
        line = []
        for i in shown:
            c, text = cols[i], str(r[i])
            if natural_cut[i] and c.shorten is not None:
                text = c.shorten(text)
            line.append(Text(text, style=(c.style(text) if c.style else None) or ""))
        t.add_row(*line)
    need = sum(w for w in widths if w is not None) + GAP * max(0, len(shown) - 1)
    saved = out.width
    if need > out.width:  # only keep columns (or --wide) get here: a longer line, never a cut id
        out.width = need
    try:
        _print(out, t)
    finally:
        out.width = saved
    return widths


def _print(out: Console, t: Table) -> None:
    """Print a table; piped, without the spaces Rich pads each line's end with."""
    if out.is_terminal:
        out.print(t)
        return
    with out.capture() as cap:
        out.print(t)
    for line in cap.get().splitlines():
        out.print(line.rstrip(), markup=False, highlight=False, soft_wrap=True, emoji=False)


def render_pairs(out: Console, pairs: Sequence[tuple[str, str]], *, title: str | None = None) -> None:
    """A two-column key/value table: keys whole, long values wrap (no value here is an id that a
    cut would spoil: those are short enough for any console)."""
    if title:
        out.print(Text(title, style="bold"), soft_wrap=True)
    key_w = max((cell_len(k) for k, _ in pairs), default=0)
    t = Table(box=None, show_header=False, show_edge=False, pad_edge=False, padding=(0, GAP // 2), expand=False)
    t.add_column(width=key_w, no_wrap=True, style="bold")
    t.add_column(overflow="fold", max_width=max(20, out.width - key_w - GAP))
    for k, v in pairs:
        t.add_row(Text(one_line(k)), Text(one_line(v)))
    _print(out, t)


# ---- cells ------------------------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(value: Any) -> str:
    """A cell is one line of printable text: whitespace runs (a multi-line description) are one
    space, and any other control character is shown as `\\xNN`. Much of what a table shows came
    from clients (a user-agent, a session name), and an escape sequence in it must not reach the
    operator's terminal (Rich itself lets ESC through)."""
    text = str(value)
    if not _CONTROL.search(text):
        return text
    text = " ".join(text.split())
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def to_ts(value: Any) -> float | None:
    """A unix time from a float or an ISO-8601 string (what the HTTP API sends)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def offset(ts: float) -> str:
    """The local UTC offset at `ts`, as `+01:00`."""
    off = time.localtime(ts).tm_gmtoff
    sign = "-" if off < 0 else "+"
    off = abs(off)
    return f"{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"


def time_header(name: str, stamps: Sequence[Any]) -> str:
    """`name (+01:00)`: the local offset the column's times are in (each cell carries its own
    when they differ, across a change to summer time)."""
    offs = {offset(t) for t in (to_ts(s) for s in stamps) if t is not None}
    return f"{name} ({offs.pop()})" if len(offs) == 1 else name if offs else f"{name} ({offset(time.time())})"


def local_time(value: Any, stamps: Sequence[Any] = (), empty: str = "-") -> str:
    """`2026-12-02 10:21:11` in local time; with `+01:00` appended when `stamps` (the column)
    span more than one offset."""
    ts = to_ts(value)
    if ts is None:
        return empty
    s = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    if stamps and len({offset(t) for t in (to_ts(x) for x in stamps) if t is not None}) > 1:
        s += offset(ts)
    return s


def short_time(cell: str) -> str:
    """`2026-12-02 10:21:11` -> `12-02 10:21:11` (a `Col.shorten` for times)."""
    return cell[5:] if len(cell) >= 19 and cell[4] == "-" else cell


def short_route(cell: str) -> str:
    """`/v1/chat/completions` -> `chat/completions` (a `Col.shorten` for routes)."""
    return cell[4:] if cell.startswith("/v1/") else cell


def number(v: Any) -> str:
    """Config values as a user writes them: 30 not 30.0, true not True, [] for an empty list."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(number(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {number(x)}" for k, x in v.items()) + "}"
    return str(v)


def ms(v: Any) -> str:
    return "-" if v is None else f"{float(v):.1f}"


STATE_STYLES = {
    "ready": "green", "ok": "green", "active": "green", "up": "green",
    "degraded": "yellow", "expired": "yellow", "disabled": "red", "down": "red", "revoked": "red",
}  # fmt: skip


def state_style(cell: str) -> str | None:
    return STATE_STYLES.get(cell)


def outcome_style(cell: str) -> str | None:
    return "green" if cell == "ok" else "yellow" if cell in ("client_error", "cancelled") else "red"
