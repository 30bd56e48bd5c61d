"""README's client snippets, taken from README.md itself and run against a real bmo.

Each snippet is extracted from its fenced block, pointed at the test server (its URL and key
replace `http://127.0.0.1:9000` and `sk-bmo-…`) and run by the real client: the openai and
anthropic Python SDKs, the `openai` npm package under Node, curl, and Continue's own CLI (`cn -p`,
`@continuedev/cli`) reading the Continue config block. The default agent echoes the prompt, so each
must print it. A README edit that breaks a snippet breaks this test (issue 17, problem 2: the
Continue config used to be rejected by Continue with "name: Required, version: Required").

The Node and Continue runs need `bash scripts/clients.sh` (it installs them into .cache/clients);
without them they skip, except in CI, where a client that cannot run is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes import BmoServer

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CLIENTS = ROOT / ".cache" / "clients" / "node_modules"
KEY = "sk-bmo-readme-snippets-0123456789"
PLACEHOLDER_URL = "http://127.0.0.1:9000"
PLACEHOLDER_KEY = "sk-bmo-…"


def block(lang: str, needle: str) -> str:
    """The one fenced block in README.md of language `lang` that contains `needle`."""
    found = [b for b in re.findall(rf"```{lang}\n(.*?)```", README, re.S) if needle in b]
    assert len(found) == 1, f"README should have one ```{lang} block with {needle!r}, found {len(found)}"
    return found[0]


def pointed(snippet: str, s: BmoServer) -> str:
    assert PLACEHOLDER_URL in snippet and PLACEHOLDER_KEY in snippet, snippet
    return snippet.replace(PLACEHOLDER_URL, s.url).replace(PLACEHOLDER_KEY, KEY)


def need(path: Path, what: str) -> None:
    if not path.exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"{what} is not installed in .cache/clients: run scripts/clients.sh")
        pytest.skip(f"{what} is not installed (bash scripts/clients.sh)")


@pytest.fixture
def server(make_bmo: Any) -> BmoServer:
    s: BmoServer = make_bmo(config="auth: {mode: keys}\n", env_api_key=KEY)
    return s


def last_run(s: BmoServer) -> dict[str, Any]:
    runs = httpx.get(s.url + "/v1/openai-compat/runs", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
    assert runs, "the snippet reached bmo"
    run: dict[str, Any] = runs[0]
    assert run["status"] == 200, run
    return run


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in ("PATH", "LANG", "TZ") if k in os.environ}
    env.update(HOME=str(home), NO_COLOR="1", TERM="dumb", **extra)
    return env


def test_python_openai_snippet(server: BmoServer, tmp_path: Path) -> None:
    code = pointed(block("python", "from openai import OpenAI"), server)
    (tmp_path / "hello.py").write_text(code)
    r = subprocess.run([sys.executable, "hello.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=clean_env(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello"
    run = last_run(server)
    assert run["stream"] is True and run["client"] == "openai-python"


def test_python_anthropic_snippet(server: BmoServer, tmp_path: Path) -> None:
    code = block("python", "from anthropic import Anthropic")
    code = code.replace('"http://127.0.0.1:9000"', f'"{server.url}"').replace(PLACEHOLDER_KEY, KEY)
    (tmp_path / "hello.py").write_text(code)
    r = subprocess.run([sys.executable, "hello.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=clean_env(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello"
    assert last_run(server)["client"] == "anthropic-python"


def test_curl_snippet(server: BmoServer, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("no curl")
    r = subprocess.run(["bash", "-c", pointed(block("sh", "curl -s "), server)], capture_output=True, text=True,
                       timeout=60, env=clean_env(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert '"content":"hello"' in r.stdout.replace(" ", "")
    assert last_run(server)["client"] == "curl"


def test_node_snippet_saved_as_mjs(server: BmoServer, tmp_path: Path) -> None:
    need(CLIENTS / "openai" / "package.json", "the openai npm package")
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node")
    (tmp_path / "node_modules").symlink_to(CLIENTS)  # where `import OpenAI from "openai"` looks
    (tmp_path / "hello.mjs").write_text(pointed(block("js", 'import OpenAI from "openai"'), server))
    r = subprocess.run([node, "hello.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=clean_env(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello"
    assert last_run(server)["client"] == "openai-node"


def test_continue_cli_reads_the_readme_config(server: BmoServer, tmp_path: Path) -> None:
    """Continue's own CLI, print mode, offline and non-interactive (tests/clients/README.md)."""
    cn = CLIENTS / ".bin" / "cn"
    need(cn, "Continue's CLI (@continuedev/cli)")
    config = tmp_path / "home" / ".continue" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(pointed(block("yaml", "provider: openai"), server))
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run(
        [str(cn), "-p", "hello there", "--config", str(config)],
        cwd=work, env=clean_env(tmp_path / "home"), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "hello there", r.stdout + r.stderr
    run = last_run(server)
    assert run["model_requested"] == "default" and run["stream"] is True
    assert run["client_ua"].endswith("/JS 5.23.2") and run["client"] == "openai-node"  # cn bundles openai-node


def test_continue_cli_refuses_a_config_without_name_and_version(server: BmoServer, tmp_path: Path) -> None:
    """What the README used to say: Continue refuses it (so the test above is what keeps it right)."""
    cn = CLIENTS / ".bin" / "cn"
    need(cn, "Continue's CLI (@continuedev/cli)")
    old = pointed(block("yaml", "provider: openai"), server)
    old = re.sub(r"^(name|version|schema):.*\n", "", old, flags=re.M)
    (tmp_path / "old.yaml").write_text(old)
    r = subprocess.run([str(cn), "-p", "hello", "--config", str(tmp_path / "old.yaml")], cwd=tmp_path,
                       env=clean_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode != 0 and "name: Required" in r.stdout + r.stderr
