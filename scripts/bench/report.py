"""The benchmark's one markdown table: absolute figures, ratios, and the issue's targets.

`results[scenario][target]` holds one driver result plus what the orchestrator read from /proc
(`cpu_s` of the gateway during the scenario, `rss_peak_kib`...). Ratios are bmo / raw proxy
measured in the same run (the issue's targets are set on these), and, when the run has the
floor (floor.py: bmo's work by hand), floor / raw proxy and bmo / floor. "bmo − direct" is the
latency bmo adds over calling the upstream directly. Only ratios hold on a shared, noisy
machine; the absolute figures are context.
"""

from __future__ import annotations

from collections.abc import Callable
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


def render(
    results: Results,
    targets: list[tuple[str, str]],
    titles: dict[str, str],
    ledger_line: str,
    ledger_ok: bool | None,
    limits: dict[str, float],
) -> str:
    """`targets` is [(key, column title)] in column order; keys include direct, proxy, bmo."""
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
    return "\n".join(lines)
