"""Starting and stopping what the benchmark runs: the fake upstream, the raw proxy, bmo, LiteLLM.

Every process is started in its own session (so a Ctrl-C reaches the orchestrator, which stops
them in order) and its id is appended to `pidfile` at once, so `scripts/bench.sh` can still stop
each one, by id, if the orchestrator itself dies. All of them bind 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin_prefix(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []


def python(profile: Path | None) -> list[str]:
    """How a Python gateway is started: plainly, or under calls.py's profiler (`--calls`)."""
    return [PY] if profile is None else [PY, str(HERE / "calls.py"), "--profiled", str(profile), "--"]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""  # base URL, no /v1
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Procs:
    """The processes this run started; `stop_all` ends each of them, by id, newest first."""

    def __init__(self, workdir: Path, pidfile: Path | None) -> None:
        self.workdir = workdir
        self.pidfile = pidfile
        self.started: list[Proc] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        full_env = {**os.environ, **(env or {})}
        with open(log, "wb") as out:
            p = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                start_new_session=True,
            )
        if self.pidfile is not None:
            with open(self.pidfile, "a") as f:
                f.write(f"{p.pid}\n")
        proc = Proc(name, p, log, env=full_env)
        self.started.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 5.0) -> None:
        if proc.popen.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.popen.wait(5)
        _signal_group(proc.pid, signal.SIGKILL)  # leftovers of its own session (workers), if any

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            try:
                self.stop(proc)
            except Exception as e:  # keep stopping the others
                print(f"[bench] could not stop {proc.name} ({proc.pid}): {e}", file=sys.stderr)
        self.started.clear()


def _signal_group(pid: int, sig: int) -> None:
    """Signal the session this harness started for `pid` (its id is the group id)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_ready(proc: Proc, path: str = "/health", timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(proc.url + path, timeout=2) as r:
                if r.status < 500:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready after {timeout:g}s:\n{proc.tail()}")


def start_upstream(procs: Procs, core: int | None) -> Proc:
    port = free_port()
    p = procs.start("upstream", [*pin_prefix(core), PY, str(HERE / "upstream.py"), "--port", str(port)])
    p.url = f"http://127.0.0.1:{port}"
    wait_ready(p, "/_bench/stats")
    return p


def start_proxy(
    procs: Procs, upstream: Proc, core: int | None, name: str = "raw-proxy", profile: Path | None = None
) -> Proc:
    port = free_port()
    cmd = [*pin_prefix(core), *python(profile), str(HERE / "proxy.py"), "--port", str(port), "--upstream", upstream.url]
    p = procs.start(name, cmd)
    p.url = f"http://127.0.0.1:{port}"
    wait_ready(p)
    return p


def start_floor(
    procs: Procs, upstream: Proc, key: str, core: int | None, name: str = "floor", profile: Path | None = None
) -> Proc:
    """floor.py: bmo's own work on the benchmark's path, by hand (the least bmo could cost)."""
    port = free_port()
    db = procs.workdir / f"{name}.db"
    cmd = [*pin_prefix(core), *python(profile), str(HERE / "floor.py"), "--port", str(port), "--upstream", upstream.url]
    p = procs.start(name, [*cmd, "--db", str(db), "--key", key])
    p.url = f"http://127.0.0.1:{port}"
    wait_ready(p)
    return p


BMO_CONFIG = """\
# written by scripts/bench: bmo in front of the fake upstream, auth on
server: {{host: 127.0.0.1, shutdown_grace_s: 2}}
auth: {{mode: keys}}
providers:
  up: {{kind: openai, base_url: "{upstream}/v1"}}
default_agent: bench
# 1,000 streams must all run, not queue for the default 64 slots
openai_compat: {{concurrency: 1100}}
"""
BMO_AGENT = "id: bench\ndescription: benchmark agent, no system prompt, no tools\nmodel: up/bench-model\n"


def bmo_binary() -> Path:
    return Path(PY).parent / "bmo"


def start_bmo(
    procs: Procs,
    upstream: Proc,
    key: str,
    core: int | None,
    src: Path | None = None,
    name: str = "bmo",
    profile: Path | None = None,
    args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> Proc:
    """bmo from this checkout, or from `src` (a tree holding internal/bmo, e.g. an older commit);
    `args`: more `bmo serve` options (`--workers 2`); `extra_env`: more BMO_* (BMO_STORE_URL)."""
    home = procs.workdir / f"{name}-home"
    (home / "agents").mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(BMO_CONFIG.format(upstream=upstream.url))
    (home / "agents" / "bench.yaml").write_text(BMO_AGENT)
    port = free_port()
    env = {"BMO_HOME": str(home), "BMO_API_KEY": key, "COLUMNS": "200", "NO_COLOR": "1", **(extra_env or {})}
    if src is not None:
        env["PYTHONPATH"] = str(src.resolve() / "internal")  # ahead of the editable install
    exe = [str(bmo_binary())] if profile is None else [*python(profile), "-m", "bmo"]
    p = procs.start(name, [*pin_prefix(core), *exe, "serve", "--port", str(port), *args], env)
    p.url = f"http://127.0.0.1:{port}"
    wait_ready(p)
    return p


LITELLM_CONFIG = """\
model_list:
  - model_name: bench
    litellm_params: {{model: openai/bench-model, api_base: "{upstream}/v1", api_key: sk-fake}}
general_settings: {{master_key: "{key}"}}
litellm_settings: {{drop_params: true}}
"""


def litellm_venv() -> Path:
    base = os.environ.get("BENCH_LITELLM_VENV") or os.path.join(os.environ.get("TMPDIR", "/tmp"), "bmo-bench-litellm")
    return Path(base)


def setup_litellm() -> Path:
    """BENCH_LITELLM=1 only: LiteLLM's proxy in its own virtualenv (kept for the next run)."""
    venv = litellm_venv()
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"[bench] setup: creating {venv} and installing litellm[proxy] (BENCH_LITELLM=1)", file=sys.stderr)
    subprocess.run([PY, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True, timeout=900)
    return exe


def start_litellm(procs: Procs, exe: Path, upstream: Proc, key: str, core: int | None) -> Proc:
    cfg = procs.workdir / "litellm.yaml"
    cfg.write_text(LITELLM_CONFIG.format(upstream=upstream.url, key=key))
    port = free_port()
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "DISABLE_ADMIN_UI": "True"}
    cmd = [*pin_prefix(core), str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)]
    p = procs.start("litellm", [*cmd, "--num_workers", "1"], env)
    p.url = f"http://127.0.0.1:{port}"
    wait_ready(p, "/health/liveliness", timeout=180)
    return p
