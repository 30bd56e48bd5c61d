"""The benchmark's orchestrator (run it through `scripts/bench.sh`): start, load, measure, report.

One fake upstream serves every target. Targets: `direct` (the upstream itself), `proxy` (the raw
aiohttp passthrough), `floor` (bmo's own work on this path written by hand in one function,
floor.py: the least bmo could cost), `bmo` (auth on, ledger as configured by default), and
`litellm` when BENCH_LITELLM=1. Scenarios run one at a time, and within each scenario every
target in turn, so drift on a shared machine hits all targets alike; only same-run ratios are
meant to hold.

`bmo_messages` is the same bmo process loaded through `POST /v1/messages` (the Anthropic
dialect; its agent's upstream is still the fake OpenAI one) in the scenarios of MESSAGES only,
right after bmo's own turn in every round; the report sets it beside bmo's chat figures
("messages / chat"). The raw proxy and the floor have no Anthropic route, so they have no such turn.
`bmo_responses` (`/v1/responses`, `store` false), `bmo_responses_store` (the same with `store`
left out: true, streams only, to show what storing costs) and `bmo_completions` (legacy
`/v1/completions`) take turns the same way, each after the one before (SIDE). The scenario
TTFB_SCENARIO is theirs alone: one completions stream at a time through the upstream's own
`/v1/completions` (`direct_completions`), the raw proxy (`proxy_completions`: what one hop
costs) and bmo, for the first byte bmo adds.

With two or more cores and `taskset`, the gateway under test runs on core 0 and the upstream,
the load driver and this orchestrator on core 1. Every process is stopped at the end, on error,
on Ctrl-C and on SIGTERM (scripts/bench.sh adds a pidfile trap for the case this one dies).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import driver
import ledger
import orjson
import procstat
import pyspy
import report
import targets
from targets import HERE, PY, REPO, Proc, Procs, pin_prefix


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    stream: bool
    concurrency: int
    requests: int  # at most this many
    duration: float  # no request starts after this many seconds
    tokens: int
    delay_ms: float = 0.0
    latency_ms: float = 0.0
    timeout: float = 30.0  # per request
    sample_rss: bool = False
    rounds: int = 1  # > 1: the targets take turns this many times, each round 1/rounds of the load


def plan(quick: bool) -> list[Scenario]:
    if quick:
        return [
            Scenario("ns1", "non-stream c=1", False, 1, 100_000, 1, 32),
            Scenario("ns16", "non-stream c=16", False, 16, 100_000, 1, 32),
            Scenario("ns64", "non-stream c=64", False, 64, 100_000, 1, 32),
            Scenario("st1", "stream, 1 at a time, 10 tok @5 ms", True, 1, 15, 5, 10, 5),
            Scenario(TTFB_SCENARIO, TTFB_TITLE, True, 1, 15, 5, 10, 5),
            Scenario("st64", "stream 64 × 200 tok @5 ms", True, 64, 64, 10, 200, 5),
            Scenario("idle1000", "200 idle-ish streams (quick)", True, 200, 200, 10, 3, 200, sample_rss=True),
        ]
    return [
        Scenario("ns1", "non-stream c=1", False, 1, 1_000_000, 8, 32),
        Scenario("ns16", "non-stream c=16", False, 16, 1_000_000, 10, 32),
        Scenario("ns64", "non-stream c=64", False, 64, 1_000_000, 12, 32, rounds=3),
        # rounds: one slow spell of the shared machine moved this p50 by a millisecond between runs
        Scenario("st1", "stream, 1 at a time, 10 tok @5 ms", True, 1, 240, 24, 10, 5, rounds=3),
        Scenario(TTFB_SCENARIO, TTFB_TITLE, True, 1, 240, 24, 10, 5, rounds=3),
        # 256 streams a round, as in one round before: 64 at a time for four turns, so the ramp up
        # and down at either end stays a small share of what is measured
        Scenario("st64", "stream 64 × 200 tok @5 ms", True, 64, 768, 60, 200, 5, rounds=3),
        Scenario("idle1000", "1,000 idle-ish streams", True, 1000, 1000, 20, 8, 750, timeout=60, sample_rss=True),
    ]


# the scenarios that bmo also serves through /v1/messages (bmo only: nothing else has that route)
MESSAGES = ("ns64", "st64")
MESSAGES_TARGET = "bmo_messages"
RESPONSES_TARGET, RESPONSES_STORE_TARGET = "bmo_responses", "bmo_responses_store"
COMPLETIONS_TARGET, DIRECT_COMPLETIONS = "bmo_completions", "direct_completions"
PROXY_COMPLETIONS = "proxy_completions"
# one completions stream at a time: bmo's first byte against the upstream's own (theirs alone)
TTFB_SCENARIO, TTFB_TITLE = "cst1", "completions stream, 1 at a time, 10 tok @5 ms"
# bmo's other routes (and the upstream's /v1/completions), each a target of its own in these
# scenarios only, its turn after bmo's chat turn in every round; not columns of the main table
SIDE: dict[str, tuple[str, ...]] = {
    MESSAGES_TARGET: MESSAGES,
    RESPONSES_TARGET: ("ns64", "st64"),
    RESPONSES_STORE_TARGET: ("st64",),
    DIRECT_COMPLETIONS: (TTFB_SCENARIO,),
    PROXY_COMPLETIONS: (TTFB_SCENARIO,),
    COMPLETIONS_TARGET: ("ns64", "st64", TTFB_SCENARIO),
}
SIDE_ONLY = (TTFB_SCENARIO,)  # scenarios no main target runs
# (target, title, driver API) of bmo's routes after /v1/messages, in turn order
SIDE_ROUTES = (
    (RESPONSES_TARGET, "bmo /v1/responses", "responses"),
    (RESPONSES_STORE_TARGET, "bmo /v1/responses, store true", "responses_store"),
    (COMPLETIONS_TARGET, "bmo /v1/completions", "completions"),
)


@dataclass
class Target:
    key: str
    title: str
    url: str  # the chat completions URL (or, with another api, that route's: driver.PATHS)
    proc: Proc | None  # the gateway process (None: direct to upstream)
    api_key: str | None = None
    sent_min: int = 0  # requests sent to it, for the ledger check
    sent_max: int = 0
    api: str = "chat"  # driver.APIS


class Bench:
    def __init__(self, a: argparse.Namespace, procs: Procs) -> None:
        self.a = a
        self.procs = procs
        ncores = os.cpu_count() or 1
        self.pinned = not a.no_pin and ncores >= 2 and shutil.which("taskset") is not None
        self.gw_core = 0 if self.pinned else None
        self.load_core = 1 if self.pinned else None
        self.use_wrk = driver.wrk_available() and not a.python_driver
        self.key = "sk-bench-" + secrets.token_urlsafe(18)
        self.targets: list[Target] = []
        self.upstream: Proc | None = None
        self.src_label = a.bmo_src or "this checkout at " + _git_head()

    def log(self, msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    # ---- start-up --------------------------------------------------------------------------

    def start(self) -> None:
        if self.pinned:
            os.sched_setaffinity(0, {1})  # the orchestrator samples /proc from the load core
        up = self.upstream = targets.start_upstream(self.procs, self.load_core)
        self.targets.append(Target("direct", "direct", up.url + "/v1/chat/completions", None))
        px = targets.start_proxy(self.procs, up, self.gw_core)
        self.targets.append(Target("proxy", "raw proxy", px.url + "/v1/chat/completions", px))
        fl = targets.start_floor(self.procs, up, self.key, self.gw_core)
        self.targets.append(Target("floor", "floor", fl.url + "/v1/chat/completions", fl, self.key))
        src = Path(self.a.bmo_src) if self.a.bmo_src else None
        if self.a.bmo_rev:
            src, self.src_label = export_rev(self.a.bmo_rev, self.procs.workdir / "bmo-src")
        b = targets.start_bmo(self.procs, up, self.key, self.gw_core, src)
        self.targets.append(Target("bmo", "bmo", b.url + "/v1/chat/completions", b, self.key))
        if driver.serves_messages(b.url + "/v1/messages", self.key):  # not a revision from before the route
            url = b.url + "/v1/messages"
            # the same process, loaded through the Anthropic dialect; the probe was its first request
            self.targets.append(Target(MESSAGES_TARGET, "bmo /v1/messages", url, b, self.key, 1, 1, "messages"))
        else:
            self.log("this bmo has no /v1/messages route: its scenarios are left out")
        for key, title, api in SIDE_ROUTES:
            url = b.url + driver.PATHS[api]
            if not driver.serves(url, self.key, api):
                self.log(f"this bmo has no {driver.PATHS[api]} route ({api}): its scenarios are left out")
                continue
            if api == "completions":  # the upstream's own and one raw hop, for the first byte bmo adds
                direct = up.url + driver.PATHS[api]
                self.targets.append(Target(DIRECT_COMPLETIONS, "direct /v1/completions", direct, None, api=api))
                hop = px.url + driver.PATHS[api]
                self.targets.append(Target(PROXY_COMPLETIONS, "raw proxy /v1/completions", hop, px, api=api))
            self.targets.append(Target(key, title, url, b, self.key, 1, 1, api))  # the probe: one request
        if os.environ.get("BENCH_LITELLM") == "1":
            exe = targets.setup_litellm()
            lt = targets.start_litellm(self.procs, exe, up, self.key, self.gw_core)
            self.targets.append(Target("litellm", "LiteLLM", lt.url + "/v1/chat/completions", lt, self.key))
        self.log("started: " + ", ".join(f"{t.key} {t.url}" for t in self.targets))

    def configure_upstream(self, s: Scenario) -> None:
        assert self.upstream is not None
        body = orjson.dumps({"tokens": s.tokens, "delay_ms": s.delay_ms, "latency_ms": s.latency_ms})
        req = urllib.request.Request(self.upstream.url + "/_bench/config", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()

    # ---- load ------------------------------------------------------------------------------

    def load(self, s: Scenario, t: Target, name: str, python: bool = False) -> tuple[dict[str, Any], int]:
        """Run one load against one target; returns the result and the peak RSS sampled (KiB)."""
        script = self.procs.workdir / f"{name}.lua"
        wrk = self.use_wrk and not s.stream and not python
        if wrk:
            cmd = driver.wrk_command(t.url, t.api_key, "bench", s.concurrency, s.duration, script, t.api)
        else:
            cmd = [PY, str(HERE / "driver.py"), "--url", t.url, "--model", "bench", "--api", t.api]
            cmd += ["--concurrency", str(s.concurrency), "--requests", str(s.requests)]
            cmd += ["--duration", str(s.duration), "--timeout", str(s.timeout)]
            if t.api_key:
                cmd += ["--key", t.api_key]
            if s.stream:
                cmd += ["--stream", "--expect-tokens", str(s.tokens)]
        p = self.procs.start(name, [*pin_prefix(self.load_core), *cmd])
        deadline = time.monotonic() + s.duration + s.timeout + 30
        peak = 0
        while p.popen.poll() is None:
            if s.sample_rss and t.proc is not None:
                peak = max(peak, procstat.rss_kib(t.proc.pid))
            if time.monotonic() > deadline:
                self.log(f"{name}: still running at its deadline; stopped")
                self.procs.stop(p)
                break
            time.sleep(0.1 if s.sample_rss else 0.05)
        out = p.log.read_text(errors="replace")
        if wrk:
            res = driver.parse_wrk(out, s.concurrency)
        else:
            try:
                res = orjson.loads(out.strip().splitlines()[-1])
            except (orjson.JSONDecodeError, IndexError):
                raise RuntimeError(f"load driver failed for {name}:\n{p.tail()}") from None
        t.sent_min += res["sent"]
        t.sent_max += res["sent"] + (res.get("in_flight_at_stop") or 0)
        return res, peak

    def measure(self, s: Scenario, t: Target) -> dict[str, Any]:
        pid = t.proc.pid if t.proc else None
        c0 = procstat.cpu_seconds(pid) if pid else None
        ours0 = self.our_cpu()
        j0 = procstat.core_jiffies()
        res, peak = self.load(s, t, f"load-{s.id}-{t.key}")
        j1 = procstat.core_jiffies()
        ours1 = self.our_cpu()
        # CPU the machine spent on processes that are not this benchmark's (other users' work)
        others = procstat.machine_busy_seconds(j1) - procstat.machine_busy_seconds(j0) - (ours1 - ours0)
        res["others_pct"] = max(0.0, 100 * others / res["elapsed_s"]) if res["elapsed_s"] else None
        time.sleep(0.3)  # what the gateway does right after the last response (ledger writes) counts
        if pid and c0 is not None:
            res["cpu_s"] = procstat.cpu_seconds(pid) - c0
            res["cpu_pct"] = 100 * res["cpu_s"] / res["elapsed_s"] if res["elapsed_s"] else None
            res["rss_peak_kib"] = peak or None
            res["hwm_kib"] = procstat.hwm_kib(pid)
        if self.load_core is not None:
            res["load_busy_pct"] = procstat.busy_pct(j0, j1, self.load_core)
        return res

    def our_cpu(self) -> float:
        """CPU seconds of everything this benchmark runs: servers, orchestrator, finished loads."""
        servers = {t.proc.pid for t in self.targets if t.proc} | ({self.upstream.pid} if self.upstream else set())
        return procstat.self_and_children_seconds() + sum(procstat.cpu_seconds(p) for p in servers)

    def targets_for(self, s: Scenario) -> list[Target]:
        """The targets a scenario loads, in turn: bmo's /v1/messages only in the MESSAGES ones,
        each other SIDE target in its own; SIDE_ONLY scenarios load SIDE targets only."""
        if s.id in SIDE_ONLY:
            return [t for t in self.targets if s.id in SIDE.get(t.key, ())]
        return [t for t in self.targets if t.key not in SIDE or s.id in SIDE[t.key]]

    def warm_up(self) -> dict[str, dict[str, Any]]:
        """A few requests through every target; then each gateway's idle RSS."""
        n = 100 if self.a.quick else 300
        warm = [
            Scenario("warm", "warm-up", False, 4, n, 10, 32),
            Scenario("warmst", "warm-up", True, 4, n // 20, 10, 32),
        ]
        for s in warm:
            self.configure_upstream(s)
            for t in self.targets:  # /v1/messages too: the Python driver checks its answers
                res, _ = self.load(s, t, f"{s.id}-{t.key}", python=True)  # a count, not wrk's fixed duration
                if res["errors"]:
                    self.log(f"warm-up {s.id} {t.key}: errors {res['errors']} ({res['ok']} ok of {res['sent']})")
        time.sleep(1.0)
        return {t.key: {"rss_kib": procstat.rss_kib(t.proc.pid)} for t in self.targets if t.proc and t.key not in SIDE}

    def scenario_for(self, s: Scenario, t: Target) -> Scenario:
        if t.key == "litellm" and s.stream and s.requests > max(s.concurrency, 30):
            return replace(s, requests=max(s.concurrency, 30))  # LiteLLM is ~20× slower per token
        return s

    # ---- the run ---------------------------------------------------------------------------

    def run(self) -> str:
        t_start = time.monotonic()
        self.start()
        results: report.Results = {"idle": self.warm_up()}
        for s in plan(self.a.quick):
            self.configure_upstream(s)
            # The scenarios behind a target take turns in rounds: a slow spell of the shared
            # machine then falls on every target's share alike instead of on one target's run.
            part = replace(s, requests=max(1, s.requests // s.rounds), duration=s.duration / s.rounds)
            turns = self.targets_for(s)
            runs: dict[str, list[dict[str, Any]]] = {t.key: [] for t in turns}
            for n in range(s.rounds):
                for t in turns:
                    r = self.measure(self.scenario_for(part, t), t)
                    runs[t.key].append(r)
                    self.log(f"{s.id:8} {t.key:8} " + (f"round {n + 1}: " if s.rounds > 1 else "") + _brief(r))
            results[s.id] = {k: pool(v) for k, v in runs.items()}
        bmo = next(t for t in self.targets if t.key == "bmo")
        msg = next((t for t in self.targets if t.key == MESSAGES_TARGET), None)
        by_key = {t.key: t for t in self.targets}
        assert bmo.proc is not None
        home = self.procs.workdir / "bmo-home"
        ledger_line, ledger_ok = ledger.check(
            bmo.proc.url, self.key, targets.bmo_binary(), home, bmo.proc.env, bmo.sent_min, bmo.sent_max
        )
        self.log(ledger_line)
        msg_ledger = None
        if msg is not None:
            msg_ledger = ledger.check(
                bmo.proc.url, self.key, targets.bmo_binary(), home, bmo.proc.env, msg.sent_min, msg.sent_max, "messages"
            )
            self.log(msg_ledger[0] + " (/v1/messages)")
        side_ledgers: dict[str, tuple[str, bool | None] | None] = {}
        for route, keys in (
            ("responses", (RESPONSES_TARGET, RESPONSES_STORE_TARGET)),
            ("completions", (COMPLETIONS_TARGET,)),
        ):
            sent = [by_key[k] for k in keys if k in by_key]
            if not sent:
                side_ledgers[route] = None
                continue
            lo, hi = sum(t.sent_min for t in sent), sum(t.sent_max for t in sent)
            checked = ledger.check(bmo.proc.url, self.key, targets.bmo_binary(), home, bmo.proc.env, lo, hi, route)
            side_ledgers[route] = checked
            self.log(checked[0] + f" (/v1/{route})")
        titles = {s.id: s.title for s in plan(self.a.quick)} | {"idle": "idle"}
        limits = {"idle_mib": 80 * report.MB_IN_MIB, "streams_mib": 200 * report.MB_IN_MIB}
        columns = [(t.key, t.title) for t in self.targets if t.key not in SIDE]
        table = report.render(
            results, columns, titles, ledger_line, ledger_ok, limits, messages=(MESSAGES_TARGET, msg_ledger)
        )
        table += "\n" + report.render_responses(
            results, RESPONSES_TARGET, RESPONSES_STORE_TARGET, titles, side_ledgers["responses"]
        )
        table += "\n" + report.render_completions(
            results,
            COMPLETIONS_TARGET,
            (DIRECT_COMPLETIONS, PROXY_COMPLETIONS),
            TTFB_SCENARIO,
            titles,
            side_ledgers["completions"],
        )
        return self.header(time.monotonic() - t_start) + table + "\n" + _notes(results)

    def header(self, took: float) -> str:
        pin = (
            "gateway under test pinned to core 0; upstream, load driver and orchestrator on core 1 (taskset)"
            if self.pinned
            else "not pinned (" + ("--no-pin" if self.a.no_pin else "fewer than 2 cores or no taskset") + ")"
        )
        load = "wrk (non-stream) + Python aiohttp driver (streams)" if self.use_wrk else "Python aiohttp driver"
        env = next((t.proc.env for t in self.targets if t.key == "bmo" and t.proc), None)
        keys = {t.key for t in self.targets}
        bmo_v = subprocess.run([str(targets.bmo_binary()), "version"], capture_output=True, text=True, env=env)
        src = self.src_label
        return "\n".join(
            [
                f"## bmo benchmark, {'quick' if self.a.quick else 'full'} run",
                "",
                f"- date: {datetime.datetime.now().astimezone().strftime('%a %d %b %Y %H:%M:%S %Z')}",
                f"- machine: {machine_line()}",
                f"- command: `{os.environ.get('BENCH_CMD') or 'scripts/bench/run.py ' + ' '.join(sys.argv[1:])}`",
                f"- bmo: {bmo_v.stdout.strip() or '?'} from {src}; load: {load}; took {took:.0f} s",
                f"- pinning: {pin}",
                "- rounds: the targets take turns within a scenario; " + _rounds_line(self.a.quick),
                "- bmo: auth on (BMO_API_KEY sent as Bearer), agent `bench` on provider `up` (kind openai), "
                "openai_compat.concurrency 1100 so 1,000 streams run instead of queueing",
                "- floor: scripts/bench/floor.py, what bmo must do on this path (auth lookup, parse, "
                "upstream body, render, a row in bmo's `runs` schema, two access lines) by hand in one "
                "function; `bmo / floor` is what bmo's structure costs on top of its job",
                "- bmo /v1/messages: "
                + (
                    "the same bmo process, agent and fake OpenAI upstream, loaded through the Anthropic "
                    f"dialect (x-api-key, anthropic-version; the same body) in {', '.join(MESSAGES)}, its turn "
                    "right after bmo's chat turn in every round; the raw proxy and the floor have no Anthropic route"
                    if any(t.key == MESSAGES_TARGET for t in self.targets)
                    else "not measured (this bmo has no such route)"
                ),
                "- bmo /v1/responses (`store` false; and, streams only, `store` left out: true) and "
                "/v1/completions: "
                + (
                    "the same process, each route a turn of its own after the one before, every round: "
                    + ", ".join(f"{k} in {', '.join(v)}" for k, v in SIDE.items() if k != MESSAGES_TARGET and k in keys)
                    + "; direct_completions is the upstream's own /v1/completions and proxy_completions the raw "
                    "proxy's, for the first byte bmo adds"
                    if any(k in keys for k, _, _ in SIDE_ROUTES)
                    else "not measured (this bmo has no such routes)"
                ),
                "",
                "",
            ]
        )

    # ---- profiling -------------------------------------------------------------------------

    def profile(self, outdir: Path) -> str:
        exe = pyspy.py_spy()
        if exe is None:
            raise RuntimeError("py-spy not found: run `scripts/bench.sh --setup` first")
        outdir.mkdir(parents=True, exist_ok=True)
        self.start()
        self.warm_up()
        parts = []
        for s in plan(self.a.quick):
            if s.id not in ("ns64", "st64"):
                continue
            self.configure_upstream(s)
            for t in self.targets_for(s):
                if t.proc is None:
                    continue
                raw = outdir / f"{s.id}-{t.key}.txt"
                secs = s.duration if not s.stream else 5  # the stream scenario lasts about 5 s
                spy = pyspy.start(self.procs, exe, t.proc.pid, secs, raw)
                time.sleep(0.5)  # py-spy attaches before the load starts
                r = self.measure(s, t)
                spy.popen.wait(secs + 30)
                self.log(f"profiled {s.id} {t.key}: {_brief(r)}")
                if raw.exists():
                    parts.append(pyspy.summarise(raw, f"{s.title}: {t.title} (under py-spy: {_brief(r)})"))
                else:
                    parts.append(f"### {s.title}: {t.title}\n\npy-spy wrote nothing:\n```\n{spy.tail()}\n```\n")
        text = "\n".join(parts)
        (outdir / "summary.md").write_text(text)
        return text


BUSY = ("load_busy_pct", "others_pct")
ADDITIVE = ("sent", "completed", "ok", "tokens", "cpu_s", "elapsed_s", "in_flight_at_stop")


def pool(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from a scenario's rounds: counts and CPU summed (so CPU per request is over all
    of them), rates recomputed from the sums, percentiles the median of the rounds', peaks the max."""
    if len(parts) == 1:
        return parts[0]
    out = dict(parts[0])
    for k in ADDITIVE:
        vals = [p[k] for p in parts if isinstance(p.get(k), (int, float))]
        out[k] = sum(vals) if len(vals) == len(parts) else None
    errors: dict[str, int] = {}
    for p in parts:
        for k, v in (p.get("errors") or {}).items():
            errors[k] = errors.get(k, 0) + v
    out["errors"] = errors
    elapsed = out.get("elapsed_s") or 0.0
    out["rps"] = out["ok"] / elapsed if elapsed else 0.0
    if out.get("tokens") is not None:
        out["tok_s"] = out["tokens"] / elapsed if elapsed else 0.0
    if out.get("cpu_s") is not None:
        out["cpu_pct"] = 100 * out["cpu_s"] / elapsed if elapsed else None
    for k in ("lat_p50_ms", "lat_p99_ms", "ttft_p50_ms", "ttft_p99_ms", "ttfb_p50_ms", "ttfb_p99_ms", *BUSY):
        vals = [p[k] for p in parts if isinstance(p.get(k), (int, float))]
        out[k] = statistics.median(vals) if vals else None
    for k in ("rss_peak_kib", "hwm_kib", "max_open"):
        vals = [p[k] for p in parts if isinstance(p.get(k), (int, float))]
        out[k] = max(vals) if vals else None
    return out


def _brief(r: dict[str, Any]) -> str:
    bits = [f"ok {r['ok']}/{r['sent']}", f"{r['rps']:.0f} req/s", f"p50 {r['lat_p50_ms']:.2f} ms"]
    if r.get("ttfb_p50_ms") is not None:
        bits.append(f"ttfb p50 {r['ttfb_p50_ms']:.2f} ms")
    if r.get("ttft_p50_ms") is not None:
        bits.append(f"ttft p50 {r['ttft_p50_ms']:.2f} ms")
    if r.get("tok_s"):
        bits.append(f"{r['tok_s']:.0f} tok/s")
    if r.get("cpu_s") is not None:
        bits.append(f"cpu {r['cpu_s']:.2f} s")
    if r["errors"]:
        bits.append(f"errors {r['errors']}")
    return ", ".join(bits)


def _rounds_line(quick: bool) -> str:
    multi = [f"{s.title} ({s.rounds} rounds)" for s in plan(quick) if s.rounds > 1]
    if not multi:
        return "one round each in this run"
    return ", ".join(multi) + ": each target's counts and CPU summed over its rounds, percentiles the median"


def _notes(results: report.Results) -> str:
    errs = [
        f"- {scn} / {tgt}: {r['errors']} ({r['ok']} ok of {r['sent']} sent)"
        for scn, by in results.items()
        for tgt, r in by.items()
        if r.get("errors")
    ]
    return ("\nErrors seen:\n" + "\n".join(errs) + "\n") if errs else ""


def export_rev(rev: str, dest: Path) -> tuple[Path, str]:
    """bmo's source at commit `rev`, copied out with `git archive` (the checkout is not touched)."""
    full = subprocess.run(["git", "rev-parse", "--verify", rev + "^{commit}"], cwd=REPO, capture_output=True, text=True)
    if full.returncode != 0:
        raise RuntimeError(f"--bmo-rev {rev}: not a commit here")
    dest.mkdir(parents=True, exist_ok=True)
    sha = full.stdout.strip()
    archive = subprocess.run(["git", "archive", sha, "internal"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest, f"commit {sha[:12]} (git archive of `{rev}`)"


def _git_head() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    return head + (" + uncommitted changes" if git("status", "--porcelain", "--", "internal") else "")


def machine_line() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    osname = f"{platform.system()} {platform.release()}"
    return f"nproc {os.cpu_count()}, {model}, Python {platform.python_version()}, {osname}"


def main() -> int:
    ap = argparse.ArgumentParser(description="bmo benchmark (issue 7); run it as scripts/bench.sh")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run of about a minute")
    ap.add_argument("--out", default=str(HERE / "last-run.md"), help="write the table here too")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to cores with taskset")
    ap.add_argument("--python-driver", action="store_true", help="use the Python driver even where wrk exists")
    ap.add_argument(
        "--bmo-src",
        metavar="DIR",
        default=os.environ.get("BENCH_BMO_SRC"),
        help="run bmo from this tree (holding internal/bmo) instead of the checkout, e.g. for before/after",
    )
    ap.add_argument("--bmo-rev", metavar="REV", help="run bmo as of this commit (git archive; for before/after)")
    ap.add_argument("--profile", metavar="DIR", help="instead: profile the gateways with py-spy under c=64 loads")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    own_dir = not os.environ.get("BENCH_WORKDIR")
    workdir = Path(os.environ.get("BENCH_WORKDIR") or tempfile.mkdtemp(prefix="bmo-bench-"))
    pidfile = Path(os.environ["BENCH_PIDFILE"]) if os.environ.get("BENCH_PIDFILE") else None
    procs = Procs(workdir, pidfile)
    bench = Bench(a, procs)
    try:
        if a.profile:
            print(bench.profile(Path(a.profile)))
            return 0
        text = bench.run()
    except KeyboardInterrupt:
        bench.log("interrupted; stopping everything")
        return 130
    except Exception:
        for p in procs.started:
            if p.popen.poll() is not None and p.popen.returncode not in (0, None) and not p.name.startswith("load"):
                bench.log(f"{p.name} exited with {p.popen.returncode}:\n{p.tail()}")
        raise
    finally:
        procs.stop_all()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    bench.log(f"table written to {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
