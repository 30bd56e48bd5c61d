"""Where a gateway spends CPU: py-spy samples during one scenario, summarised as markdown.

`py-spy record -f raw` writes collapsed stacks ("frame;frame;… count", each frame
"function (file:line)", paths relative to sys.path). Two tables come out of them:

- self time: the function that was running (the stack's leaf), with its hottest lines;
- responsibility: each sample charged to the innermost frame of the gateway's own code (bmo,
  or proxy.py), so time spent inside aiohttp on bmo's behalf lands on the bmo function that
  called it. Samples with no own frame (the event loop, aiohttp's server and client protocol
  callbacks) are grouped by library. Async stacks are often cut at the task boundary, which is
  why "inclusive" time is not shown: it would undercount every caller.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter, defaultdict
from pathlib import Path

from targets import Proc, Procs

FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
OWN = ("bmo/", "proxy.py")
LOOP_FRAMES = {"Runner.run", "run_app", "run_until_complete", "run_forever", "run"}


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"  # installed into the venv bmo runs from
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(procs: Procs, exe: str, pid: int, seconds: float, out: Path, rate: int = 250) -> Proc:
    cmd = [exe, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", str(rate)]
    cmd += ["--nonblocking", "-f", "raw", "-o", str(out)]
    return procs.start(f"py-spy-{out.stem}", cmd)


def library(path: str) -> str:
    if path.startswith(OWN):
        return "bmo" if path.startswith("bmo/") else "gateway (proxy.py)"
    head = path.split("/", 1)[0]
    if "/" in path and not head.startswith("<"):
        return head  # aiohttp, asyncio, yarl, multidict, aiosqlite...
    return "stdlib/other"


Frame = tuple[str, str, int]  # function, file, line


def parse(raw: Path) -> list[tuple[list[Frame], int]]:
    stacks = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = []
        for f in stack.split(";"):
            m = FRAME.match(f.strip())
            if m:
                frames.append((m["fn"], m["file"], int(m["line"] or 0)))
        if frames:
            stacks.append((frames, int(n)))
    return stacks


def _label(fn: str, file: str) -> str:
    if fn in LOOP_FRAMES and not file.startswith(OWN):
        return f"{fn} (event loop: uvloop C code, socket I/O)"
    return fn


def summarise(raw: Path, title: str, top: int = 20) -> str:
    stacks = parse(raw)
    total = sum(n for _, n in stacks) or 1
    self_fn: Counter[tuple[str, str]] = Counter()
    lines: defaultdict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    libs: Counter[str] = Counter()
    owner: Counter[str] = Counter()
    for frames, n in stacks:
        fn, file, line = frames[-1]
        self_fn[(fn, file)] += n
        lines[(fn, file)][line] += n
        libs[library(file)] += n
        own = next((f for f in reversed(frames) if f[1].startswith(OWN)), None)
        if own is not None and (own[1].startswith(("bmo/server/serve.py", "bmo/cli/")) or own[0] == "main"):
            own = None  # the serve()/main() frame at the root of a whole stack is not a hot spot
        owner[f"`{own[0]}` {own[1]}" if own else f"(no own frame) {library(file)}"] += n

    def pct(n: int) -> str:
        return f"{100 * n / total:.1f}"

    out = [f"### {title}", "", f"{total} samples."]
    out += ["", "Self time by library: " + ", ".join(f"{k} {pct(v)}%" for k, v in libs.most_common())]
    out += ["", "| self % | function | file: hottest lines (samples) |", "|---|---|---|"]
    for (fn, file), n in self_fn.most_common(top):
        hot = ", ".join(f"{ln} ({c})" for ln, c in lines[(fn, file)].most_common(3))
        out.append(f"| {pct(n)} | `{_label(fn, file)}` | {file}: {hot} |")
    out += ["", "| charged % | innermost own function (or library, when none is on the stack) |", "|---|---|"]
    out += [f"| {pct(n)} | {k} |" for k, n in owner.most_common(top)]
    return "\n".join(out) + "\n"
