"""The benchmark's one markdown table: absolute figures, ratios, and the issue's targets.

`results[scenario][target]` holds one driver result plus what the orchestrator read from /proc
(`cpu_s` of the gateway during the scenario, `rss_peak_kib`...). Ratios are bmo / raw proxy
measured in the same run (the issue's targets are set on these), and, when the run has the
floor (floor.py: bmo's work by hand), floor / raw proxy and bmo / floor. "bmo − direct" is the
latency bmo adds over calling the upstream directly. Only ratios hold on a shared, noisy
machine; the absolute figures are context.

A second, smaller table sets bmo's `/v1/messages` figures (the Anthropic dialect, the same
process and upstream) beside its chat ones from the same run: "messages / chat", with the
target CPU per request and per token ≤ 1.1× chat. Only bmo has that route. Tables of the same
shape follow for `/v1/responses` ("responses / chat", sent with `store` false; the cost of
storing, `store` left out, is its own small table, not a target) and `/v1/completions`
("completions / chat"; then its time to first byte, one stream at a time, against the
upstream's own `/v1/completions`: added ≤ 1 ms over direct).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Results = dict[str, dict[str, dict[str, Any]]]
MIB = 1024.0
MB_IN_MIB = 1e6 / 1048576  # the targets are in MB


def _get(results: Results, scn: str, target: str, key: str) -> float | None:
    v = results.get(scn, {}).get(target, {}).get(key)
    return float(v) if isinstance(v, (int, float)) else None


def cpu_per_request_ms(r: dict[str, Any]) -> float | None:
    return 1000.0 * r["cpu_s"] / r["ok"] if r.get("cpu_s") is not None and r.get("ok") else None


def cpu_per_token_us(r: dict[str, Any]) -> float | None:
    return 1e6 * r["cpu_s"] / r["tokens"] if r.get("cpu_s") is not None and r.get("tokens") else None


@dataclass
class Row:
    scenario: str
    label: str
    value: Callable[[dict[str, Any]], float | None]
    fmt: str
    ratio: bool = True  # bmo / raw proxy
    added: bool = False  # bmo − direct
    target: str = ""
    check: Callable[[float | None, float | None], bool | None] | None = None  # (bmo/raw, bmo−direct)


def _key(k: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda r: float(r[k]) if isinstance(r.get(k), (int, float)) else None


def _kib_to_mib(k: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda r: r[k] / MIB if r.get(k) else None


def _at_least(x: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda ratio, _added: None if ratio is None else ratio >= x


def _at_most(x: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda ratio, _added: None if ratio is None else ratio <= x


def rows() -> list[Row]:
    out: list[Row] = []
    for scn in ("ns1", "ns16", "ns64"):
        out += [
            Row(scn, "req/s", _key("rps"), "{:.0f}"),
            Row(scn, "latency p50 ms", _key("lat_p50_ms"), "{:.2f}", added=True),
            Row(scn, "latency p99 ms", _key("lat_p99_ms"), "{:.2f}", added=True),
            Row(scn, "gateway CPU ms/request", cpu_per_request_ms, "{:.3f}"),
            Row(scn, "gateway core busy %", _key("cpu_pct"), "{:.0f}", ratio=False),
            Row(scn, "load+upstream core busy %", _key("load_busy_pct"), "{:.0f}", ratio=False),
            Row(scn, "others' CPU on the machine, % of a core", _key("others_pct"), "{:.0f}", ratio=False),
        ]
        if scn == "ns64":
            out[-7].target, out[-7].check = "req/s ≥ 0.8× raw", _at_least(0.8)
            out[-4].target, out[-4].check = "CPU/req ≤ 1.25× raw", _at_most(1.25)
    ttft_added = Row("st1", "TTFT p50 ms", _key("ttft_p50_ms"), "{:.2f}", added=True)
    ttft_added.target = "added ≤ 2 ms over direct"
    ttft_added.check = lambda _r, added: None if added is None else added <= 2.0
    out += [
        ttft_added,
        Row("st1", "TTFT p99 ms", _key("ttft_p99_ms"), "{:.2f}", added=True),
        Row("st1", "gateway CPU ms/stream", cpu_per_request_ms, "{:.3f}"),
        Row("st64", "TTFT p50 ms", _key("ttft_p50_ms"), "{:.2f}", added=True),
        Row("st64", "TTFT p99 ms", _key("ttft_p99_ms"), "{:.2f}", added=True),
        Row("st64", "relayed tokens/s", _key("tok_s"), "{:.0f}", target="≥ 0.95× raw", check=_at_least(0.95)),
        Row("st64", "gateway CPU µs/token", cpu_per_token_us, "{:.1f}", target="≤ 1.3× raw", check=_at_most(1.3)),
        Row("st64", "load+upstream core busy %", _key("load_busy_pct"), "{:.0f}", ratio=False),
        Row("st64", "others' CPU on the machine, % of a core", _key("others_pct"), "{:.0f}", ratio=False),
        Row("idle", "RSS MiB, idle after warm-up", _kib_to_mib("rss_kib"), "{:.1f}"),
        Row("idle1000", "streams open at once", _key("max_open"), "{:.0f}", ratio=False),
        Row("idle1000", "streams completed ok", _key("ok"), "{:.0f}", ratio=False),
        Row("idle1000", "peak RSS MiB (sampled)", _kib_to_mib("rss_peak_kib"), "{:.1f}"),
        Row("idle1000", "VmHWM MiB (peak since start)", _kib_to_mib("hwm_kib"), "{:.1f}"),
    ]
    return out


def _fmt(fmt: str, v: float | None) -> str:
    return "—" if v is None else fmt.format(v)


MESSAGES_LIMIT = 1.1  # messages / chat, CPU per request and per token
NO_ROUTE = "n/a: no /v1/messages route"
SIDE_LIMIT = MESSAGES_LIMIT  # responses / chat and completions / chat, likewise
TTFB_ADDED_MS = 1.0  # /v1/completions' first byte, added over the upstream's own


def messages_rows() -> list[Row]:
    """The rows of the /v1/messages table; a row with a target is met when messages / chat ≤ MESSAGES_LIMIT."""
    cpu_target = f"≤ {MESSAGES_LIMIT:g}× chat"
    return [
        Row("ns64", "req/s", _key("rps"), "{:.0f}"),
        Row("ns64", "latency p50 ms", _key("lat_p50_ms"), "{:.2f}"),
        Row("ns64", "gateway CPU ms/request", cpu_per_request_ms, "{:.3f}", target=cpu_target),
        Row("st64", "TTFT p50 ms", _key("ttft_p50_ms"), "{:.2f}"),
        Row("st64", "relayed tokens/s", _key("tok_s"), "{:.0f}"),
        Row("st64", "gateway CPU µs/token", cpu_per_token_us, "{:.1f}", target=cpu_target),
    ]


def render_messages(results: Results, key: str, titles: dict[str, str], ledger: tuple[str, bool | None] | None) -> str:
    """The /v1/messages table: bmo's chat figures (target `bmo`) beside those of target `key`."""
    lines = [
        "### /v1/messages beside /v1/chat/completions (bmo only)",
        "",
        "The same bmo process, agent and fake OpenAI upstream, loaded through the Anthropic dialect "
        "(Anthropic SSE: `text_delta` events counted as tokens, `message_stop` required) in its own "
        "turn right after bmo's chat turn, every round. The raw proxy and the floor have no Anthropic "
        "route: they have no figures here.",
        "",
    ]
    if not any(key in by for by in results.values()):
        return "\n".join([*lines, "Not measured: this bmo has no /v1/messages route.", ""])
    head = ["scenario", "metric", "bmo chat", "bmo messages", "raw proxy, floor", "messages / chat", "target", "met"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts: list[bool | None] = []
    for row in messages_rows():
        by = results.get(row.scenario, {})
        c = row.value(by["bmo"]) if "bmo" in by else None
        m = row.value(by[key]) if key in by else None
        ratio = m / c if m is not None and c else None
        met = None
        if row.target:
            met = None if ratio is None else ratio <= MESSAGES_LIMIT
            verdicts.append(met)
        cells = [titles.get(row.scenario, row.scenario), row.label, _fmt(row.fmt, c), _fmt(row.fmt, m), NO_ROUTE]
        cells += [_fmt("{:.2f}×", ratio), row.target, {True: "met", False: "NOT met"}.get(met, "")]
        lines.append("| " + " | ".join(cells) + " |")
    if ledger is not None:
        line, ok = ledger
        cells = ["ledger", "/v1/messages rows written = requests sent", "", line, "", "", "zero rows lost"]
        lines.append("| " + " | ".join([*cells, {True: "met", False: "NOT met"}.get(ok, "n/a")]) + " |")
    met_n = sum(1 for v in verdicts if v is True)
    known = sum(1 for v in verdicts if v is not None)
    lines += ["", f"/v1/messages targets (CPU per request and per token ≤ {MESSAGES_LIMIT:g}× chat): "
              f"{met_n} of {known} met.", ""]  # fmt: skip
    return "\n".join(lines)


@dataclass(frozen=True)
class Side:
    """One of bmo's other routes in a table of its own beside bmo's chat figures (bmo only)."""

    name: str  # "responses": the column "bmo responses", the ratio "responses / chat"
    route: str  # "/v1/responses"
    key: str  # its target's key in `results`
    others: str = ""  # the "raw proxy, floor" cell (default: they have no such route)


def side_rows() -> list[Row]:
    """`messages_rows()`, and after each scenario's how busy the rest of the machine was during
    the route's turn (no ratio: it is what to read the ratios against)."""
    others = "others' CPU on the machine, % of a core"
    rows = messages_rows()
    rows.insert(3, Row("ns64", others, _key("others_pct"), "{:.0f}", ratio=False))
    rows.append(Row("st64", others, _key("others_pct"), "{:.0f}", ratio=False))
    return rows


def _met(v: bool | None) -> str:
    return "met" if v else "NOT met" if v is False else ""


def _side_table(
    results: Results, side: Side, titles: dict[str, str], ledger: tuple[str, bool | None] | None
) -> tuple[list[str], list[bool | None]]:
    """The rows of `side_rows()` for `side` beside bmo's chat ones, and their verdicts."""
    ratio_name = f"{side.name} / chat"
    head = ["scenario", "metric", "bmo chat", f"bmo {side.name}", "raw proxy, floor", ratio_name, "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts: list[bool | None] = []
    for row in side_rows():
        by = results.get(row.scenario, {})
        c = row.value(by["bmo"]) if "bmo" in by else None
        m = row.value(by[side.key]) if side.key in by else None
        ratio = m / c if row.ratio and m is not None and c else None
        met = None
        if row.target:
            met = None if ratio is None else ratio <= SIDE_LIMIT
            verdicts.append(met)
        cells = [titles.get(row.scenario, row.scenario), row.label, _fmt(row.fmt, c), _fmt(row.fmt, m)]
        cells += [side.others or f"n/a: no {side.route} route", _fmt("{:.2f}×", ratio), row.target, _met(met)]
        lines.append("| " + " | ".join(cells) + " |")
    if ledger is not None:
        line, ok = ledger
        cells = ["ledger", f"{side.route} rows written = requests sent", "", line, "", "", "zero rows lost"]
        lines.append("| " + " | ".join([*cells, _met(ok) or "n/a"]) + " |")
    return lines, verdicts


def _summary(what: str, verdicts: Sequence[bool | None]) -> str:
    met_n = sum(1 for v in verdicts if v is True)
    known = sum(1 for v in verdicts if v is not None)
    return f"{what}: {met_n} of {known} met."


def render_responses(
    results: Results,
    key: str,
    store_key: str,
    titles: dict[str, str],
    ledger: tuple[str, bool | None] | None,
) -> str:
    """The /v1/responses table (target `key`, sent with `store` false) beside bmo's chat
    figures, then the cost of storing: target `store_key`, streams sent without `store`."""
    side = Side("responses", "/v1/responses", key)
    lines = [
        "### /v1/responses beside /v1/chat/completions (bmo only)",
        "",
        'The same bmo process, agent and fake OpenAI upstream, loaded through the Responses API (`{"model", '
        '"input", "stream", "store": false}`; `response.output_text.delta` events counted as tokens, exactly '
        "one terminal event and that `response.completed` required) in its own turn after bmo's chat turn, "
        "every round. The raw proxy and the floor have no such route: they have no figures here.",
        "",
    ]
    if not any(key in by for by in results.values()):
        return "\n".join([*lines, "Not measured: this bmo has no /v1/responses route.", ""])
    table, verdicts = _side_table(results, side, titles, ledger)
    lines += table
    lines += ["", _summary(f"/v1/responses targets (CPU per request and per token ≤ {SIDE_LIMIT:g}× chat)", verdicts)]
    lines += [
        "",
        "#### The cost of storing (`store` left out: true, OpenAI's default; not a target)",
        "",
        "The same streams again, sent without `store`: bmo keeps each answer (its `responses` table) "
        "before the terminal event goes out. In its own turn after the `store: false` one, every round.",
        "",
    ]
    head = ["scenario", "metric", "bmo chat", "responses, store false", "responses, store true"]
    head += ["store true / chat", "store true / store false"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in (
        Row("st64", "TTFT p50 ms", _key("ttft_p50_ms"), "{:.2f}"),
        Row("st64", "relayed tokens/s", _key("tok_s"), "{:.0f}"),
        Row("st64", "gateway CPU ms/stream", cpu_per_request_ms, "{:.3f}"),
        Row("st64", "gateway CPU µs/token", cpu_per_token_us, "{:.1f}"),
    ):
        by = results.get(row.scenario, {})
        c, u, st = (row.value(by[k]) if k in by else None for k in ("bmo", key, store_key))
        cells = [titles.get(row.scenario, row.scenario), row.label, *(_fmt(row.fmt, v) for v in (c, u, st))]
        cells += [_fmt("{:.2f}×", st / c if st is not None and c else None)]
        cells += [_fmt("{:.2f}×", st / u if st is not None and u else None)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def render_completions(
    results: Results,
    key: str,
    refs: tuple[str, str],
    ttfb_scenario: str,
    titles: dict[str, str],
    ledger: tuple[str, bool | None] | None,
) -> str:
    """The /v1/completions table (target `key`) beside bmo's chat figures, then its time to
    first byte in `ttfb_scenario` against `refs`: the upstream's own /v1/completions (direct)
    and the raw proxy's (one hop that does nothing)."""
    direct_key, proxy_key = refs
    side = Side("completions", "/v1/completions", key, "n/a: not loaded (floor: no such route)")
    lines = [
        "### /v1/completions beside /v1/chat/completions (bmo only)",
        "",
        "The same bmo process, agent and fake OpenAI upstream (its `/v1/completions`: `text_completion` chunks, "
        'the same count and pacing as its chat chunks), loaded through legacy completions (`{"model", "prompt", '
        '"max_tokens", "stream"}`; chunks with a non-empty `text` counted as tokens, `data: [DONE]` required; no '
        "agent loop: bmo relays the upstream's chunks one by one) in its own turn after bmo's chat turn, every "
        "round. The floor has no such route; the raw proxy passes it through, but is loaded through it only "
        "in the first-byte scenario below.",
        "",
    ]
    if not any(key in by for by in results.values()):
        return "\n".join([*lines, "Not measured: this bmo has no /v1/completions route.", ""])
    table, verdicts = _side_table(results, side, titles, ledger)
    lines += table
    by = results.get(ttfb_scenario, {})
    title = titles.get(ttfb_scenario, ttfb_scenario)
    lines += [
        "",
        f"#### Time to first byte, {title}",
        "",
        "The upstream's own `/v1/completions` (direct), the raw proxy's (one aiohttp hop that does nothing: "
        "what any gateway in between costs at least) and bmo's, in turn, one stream at a time. TTFB: the "
        "response's status line and headers in (bmo holds its headers for the first chunk, so its first "
        "byte comes with the first token); TTFT: the first chunk with text.",
        "",
    ]
    head = ["scenario", "metric", "direct", "raw proxy", "bmo completions", "raw proxy − direct", "bmo − direct"]
    head += ["target", "met"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in (
        Row(ttfb_scenario, "TTFB p50 ms", _key("ttfb_p50_ms"), "{:.2f}", added=True, target="≤ 1 ms added"),
        Row(ttfb_scenario, "TTFB p99 ms", _key("ttfb_p99_ms"), "{:.2f}", added=True),
        Row(ttfb_scenario, "TTFT p50 ms", _key("ttft_p50_ms"), "{:.2f}", added=True),
        Row(ttfb_scenario, "latency p50 ms (whole stream)", _key("lat_p50_ms"), "{:.2f}", added=True),
        Row(ttfb_scenario, "gateway CPU ms/stream", cpu_per_request_ms, "{:.3f}", added=False),
    ):
        d, p, b = (row.value(by[k]) if k in by else None for k in (direct_key, proxy_key, key))
        added = b - d if row.added and b is not None and d is not None else None
        hop = p - d if row.added and p is not None and d is not None else None
        met = None
        if row.target:
            met = None if added is None else added <= TTFB_ADDED_MS
            verdicts.append(met)
        cells = [title, row.label, *(_fmt(row.fmt, v) for v in (d, p, b)), _fmt("{:+.2f}", hop)]
        cells.append(_fmt("{:+.2f}", added))
        target = f"added ≤ {TTFB_ADDED_MS:g} ms over direct" if row.target else ""
        lines.append("| " + " | ".join([*cells, target, _met(met)]) + " |")
    what = f"/v1/completions targets (CPU per request and per token ≤ {SIDE_LIMIT:g}× chat, first byte ≤ "
    lines += ["", _summary(what + f"{TTFB_ADDED_MS:g} ms over direct)", verdicts), ""]
    return "\n".join(lines)


def render(
    results: Results,
    targets: list[tuple[str, str]],
    titles: dict[str, str],
    ledger_line: str,
    ledger_ok: bool | None,
    limits: dict[str, float],
    messages: tuple[str, tuple[str, bool | None] | None] | None = None,
) -> str:
    """`targets` is [(key, column title)] in column order; keys include direct, proxy, bmo.
    `messages`: (the key of bmo's /v1/messages target in `results`, its ledger check or None)
    adds the /v1/messages table after the targets."""
    floor = any(k == "floor" for k, _ in targets)
    extra = ["floor / raw", "bmo / floor"] if floor else []
    head = ["scenario", "metric"] + [t for _, t in targets] + ["bmo / raw", *extra, "bmo − direct", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts: list[tuple[str, bool | None]] = []
    for row in rows():
        by_target = results.get(row.scenario, {})
        vals = {k: row.value(by_target[k]) if k in by_target else None for k, _ in targets}
        b, r, d, f = vals.get("bmo"), vals.get("proxy"), vals.get("direct"), vals.get("floor")
        ratio = b / r if row.ratio and b is not None and r else None
        floor_cells = []
        if floor:
            floor_cells = [
                _fmt("{:.2f}×", f / r if row.ratio and f is not None and r else None),
                _fmt("{:.2f}×", b / f if row.ratio and b is not None and f else None),
            ]
        added = b - d if row.added and b is not None and d is not None else None
        target, met = row.target, None
        if row.check is not None:
            met = row.check(ratio, added)
        if row.label.startswith("RSS MiB, idle"):
            target = f"≤ 80 MB ({limits['idle_mib']:.1f} MiB)"
            met = None if b is None else b <= limits["idle_mib"]
        if row.label.startswith("peak RSS"):
            target = f"≤ 200 MB ({limits['streams_mib']:.1f} MiB)"
            met = None if b is None else b <= limits["streams_mib"]
        cells = [titles.get(row.scenario, row.scenario), row.label]
        cells += [_fmt(row.fmt, vals[k]) for k, _ in targets]
        cells += [_fmt("{:.2f}×", ratio), *floor_cells, _fmt("{:+.2f}", added), target]
        cells.append({True: "met", False: "NOT met"}.get(met, ""))
        if row.target or target:
            verdicts.append((f"{titles.get(row.scenario, row.scenario)}: {row.label} — {target}", met))
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["ledger", "rows written = requests sent"]
    cells += [ledger_line if k == "bmo" else "" for k, _ in targets]
    cells += [""] * (2 + len(extra)) + ["zero rows lost", {True: "met", False: "NOT met"}.get(ledger_ok, "n/a")]
    lines.append("| " + " | ".join(cells) + " |")
    verdicts.append(("ledger: zero rows lost", ledger_ok))
    met_n = sum(1 for _, v in verdicts if v is True)
    known = sum(1 for _, v in verdicts if v is not None)
    lines += ["", f"Targets met: {met_n} of {known} measured ({len(verdicts)} in all)."]
    lines += [f"- {'met' if v else 'NOT met' if v is False else 'n/a'}: {t}" for t, v in verdicts]
    if messages is not None:
        lines += ["", render_messages(results, messages[0], titles, messages[1])]
    return "\n".join(lines)
