"""scripts/install.sh and what the binary carries (issue 17, problems 5 and 6), without building it.

The real binary is built and installed under `env -i` by `.ci/run` (scripts/build.sh, then
scripts/smoke.sh on the tarball). Here install.sh runs on a stand-in release — a tarball shaped
like build.sh's, whose `bmo` is a shell script — so every refusal is checked in a second.
And what makes the binary slow or big stays out of the imports that every start pays for.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "scripts" / "install.sh"
OS = sys.platform  # linux, darwin: what install.sh reads from uname -s
ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), platform.machine().lower()
)


def release(tmp: Path, version: str = "9.9.9", arch: str = ARCH, sha: str | None = None) -> Path:
    name = f"bmo-{version}-{OS}-{arch}"
    src = tmp / "src" / name
    (src / "_internal").mkdir(parents=True)
    (src / "bmo").write_text(f'#!/bin/sh\necho "bmo {version} (stand-in)"\n')
    (src / "bmo").chmod(0o755)
    tarball = tmp / f"{name}.tar.gz"
    with tarfile.open(tarball, "w:gz") as t:
        t.add(src, arcname=name)
    digest = sha or hashlib.sha256(tarball.read_bytes()).hexdigest()
    (tmp / f"{name}.tar.gz.sha256").write_text(f"{digest}  {name}.tar.gz\n")
    return tarball


def install(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}  # env -i: nothing else, no python needed
    return subprocess.run(["bash", str(INSTALL), *args], env=env, capture_output=True, text=True, timeout=60)


def test_install_verifies_and_links_into_local_bin(tmp_path: Path) -> None:
    tarball = release(tmp_path)
    r = install(tmp_path / "home", str(tarball))
    assert r.returncode == 0, r.stderr
    assert "checksum ok" in r.stdout
    link = tmp_path / "home" / ".local" / "bin" / "bmo"
    assert link.is_symlink() and os.readlink(link) == f"../lib/bmo/bmo-9.9.9-{OS}-{ARCH}/bmo"
    assert subprocess.run([str(link)], capture_output=True, text=True).stdout == "bmo 9.9.9 (stand-in)\n"
    assert "not on your PATH" in r.stdout
    newer = release(tmp_path / "v2", version="9.9.10")  # an upgrade moves the link, keeps the old folder
    assert install(tmp_path / "home", str(newer)).returncode == 0
    assert subprocess.run([str(link)], capture_output=True, text=True).stdout == "bmo 9.9.10 (stand-in)\n"
    assert (tmp_path / "home" / ".local" / "lib" / "bmo" / f"bmo-9.9.9-{OS}-{ARCH}").is_dir()
    r = install(tmp_path / "home", "--prefix", str(tmp_path / "opt"), str(tarball))
    assert r.returncode == 0 and (tmp_path / "opt" / "bin" / "bmo").is_symlink()


def test_install_refuses_a_bad_checksum_and_changes_nothing(tmp_path: Path) -> None:
    tarball = release(tmp_path, sha="0" * 64)
    r = install(tmp_path / "home", str(tarball))
    assert r.returncode == 1 and "checksum mismatch" in r.stderr
    assert not (tmp_path / "home" / ".local").exists()
    (tmp_path / f"{tarball.name}.sha256").unlink()
    r = install(tmp_path / "home", str(tarball))
    assert r.returncode == 1 and ".sha256" in r.stderr
    good = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert install(tmp_path / "home", "--sha256", good, str(tarball)).returncode == 0


def test_install_refuses_another_machines_release_and_non_releases(tmp_path: Path) -> None:
    other = "riscv64" if ARCH != "riscv64" else "x86_64"
    r = install(tmp_path / "home", str(release(tmp_path, arch=other)))
    assert r.returncode == 1 and "not for this machine" in r.stderr
    (tmp_path / "something.tar.gz").write_bytes(b"x")
    r = install(tmp_path / "home", str(tmp_path / "something.tar.gz"))
    assert r.returncode == 1 and "not a bmo release" in r.stderr
    assert install(tmp_path / "home").returncode == 2


def _imports(*args: str) -> set[str]:
    """The modules `python -m bmo ARGS` imports (python -X importtime)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BMO_", "PYTHON"))}
    env.update(PYTHONPATH=str(ROOT / "internal"), BMO_URL="http://127.0.0.1:9", COLUMNS="100")
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "bmo", *args], env=env, capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    return {ln.rsplit("|", 1)[1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}


@pytest.mark.parametrize("args", [["runs", "list", "--help"], ["status"], ["serve", "--help"]])
def test_no_command_imports_pydantic_or_the_rich_help(args: list[str], tmp_path: Path) -> None:
    """typer >= 0.29 built a pydantic TypeAdapter for every option (+~70 ms a start, ~6 MB of
    binary); Typer's Rich help imports markdown-it and pygments (~2 MB). bmo uses neither."""
    mods = _imports(*args, "--home", str(tmp_path))
    assert mods, "nothing was imported?"
    bad = {m for m in mods if m.split(".")[0] in ("pydantic", "pydantic_core", "pygments", "markdown_it")}
    assert not bad and "typer.rich_utils" not in mods, sorted(bad)


def test_serve_and_version_do_not_import_rich(tmp_path: Path) -> None:
    """`bmo serve`'s start is what a user waits for before the first request; `bmo version` is the
    first thing anyone runs. Neither pays for Rich (~25 ms) or the other command groups."""
    assert not {m for m in _imports("version") if m.startswith(("rich", "typer"))}
    mods = _imports("serve", "--home", str(tmp_path), "--port", "notaport")  # stops at the usage error
    assert "typer" in mods and not {m for m in mods if m.startswith("rich")}
    assert "bmo.cli.ledger_cmd" not in mods and "bmo.cli.commands" not in mods
