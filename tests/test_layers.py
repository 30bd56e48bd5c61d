"""The layer table of STYLE.md, enforced by reading every module's imports with `ast`.

A module may import bmo modules of its own layer or below, never above; third-party packages
only where the table allows them. A new module must be given a layer here, on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "internal"

LAYERS: dict[str, int] = {
    "bmo": 0,
    "bmo.errors": 0,
    "bmo.chat": 0,
    "bmo.runs": 0,
    "bmo.ids": 0,
    "bmo.config": 1,
    "bmo.protocol": 1,
    "bmo.posture": 1,
    "bmo.metrics": 1,
    "bmo.defaults": 1,
    "bmo.agents": 2,
    "bmo.tools": 2,
    "bmo.providers": 2,
    "bmo.store": 2,
    "bmo.loop": 3,
    "bmo.service": 4,
    "bmo.recorder": 4,
    "bmo.sessions": 4,
    "bmo.runtime": 5,
    "bmo.server": 6,
    "bmo.cli": 6,
    "bmo.__main__": 7,
}

# third-party package -> the bmo packages that may import it (None: anyone)
THIRD_PARTY: dict[str, set[str] | None] = {
    "orjson": None,
    "uvloop": {"bmo.server"},
    "yaml": {"bmo.config"},
    "aiohttp": {"bmo.providers", "bmo.server"},
    "aiohttp.web": {"bmo.server"},
    "aiosqlite": {"bmo.store"},
    "typer": {"bmo.cli"},
    "rich": {"bmo.cli"},
    "mcp": {"bmo.tools"},
}


def _group(module: str) -> str:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        cand = ".".join(parts[:n])
        if cand in LAYERS:
            return cand
    raise KeyError(module)


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted((ROOT / "bmo").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names if node.module == "aiohttp"]
    return names


MODULES = _modules()


def test_every_module_has_a_layer() -> None:
    missing = [m for m, _ in MODULES if _safe_group(m) is None]
    assert not missing, f"give these modules a layer in tests/test_layers.py: {missing}"


def _safe_group(m: str) -> str | None:
    try:
        return _group(m)
    except KeyError:
        return None


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_respect_layers(module: str, path: Path) -> None:
    group = _group(module)
    layer = LAYERS[group]
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "bmo":
            target = _group(name)
            assert LAYERS[target] <= layer, f"{module} (layer {layer}) imports {name} (layer {LAYERS[target]})"
            if group == "bmo.loop":
                assert target != "bmo.store", "the loop never imports the store"
            continue
        key = name if name in THIRD_PARTY else top
        if key == "aiohttp" and name.startswith("aiohttp.web"):
            key = "aiohttp.web"
        allowed = THIRD_PARTY.get(key, None) if key in THIRD_PARTY else None
        if key in THIRD_PARTY and allowed is not None:
            assert group in allowed, f"{module} imports {name}; only {sorted(allowed)} may"


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from aiohttp import web\nimport bmo.server.app\n")
    assert _imports(bad) == ["aiohttp", "aiohttp.web", "bmo.server.app"]
    assert LAYERS[_group("bmo.server.app")] > LAYERS[_group("bmo.loop")]
