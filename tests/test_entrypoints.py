"""The two ways to start bmo from a checkout reach the CLI: `python cmd/bmo/main.py` (the script
PyInstaller freezes into the binary) and `python -m bmo`. Offline, no server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bmo import __version__

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BMO_", "OPENAI_", "PYTHON"))}
    env.update(PYTHONPATH=str(ROOT / "internal"), BMO_HOME=str(tmp_path / "home"), HOME=str(tmp_path))
    return env


@pytest.mark.parametrize(
    "args",
    [[str(ROOT / "cmd" / "bmo" / "main.py"), "version"], ["-m", "bmo", "version"]],
    ids=["cmd/bmo/main.py", "python -m bmo"],
)
def test_entrypoint_prints_version(args: list[str], tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, *args], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"bmo {__version__} "), out.stdout
    assert not (tmp_path / "home").exists(), "`bmo version` must not touch BMO_HOME"
