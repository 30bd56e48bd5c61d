"""The layer table of STYLE.md, enforced by reading every module's imports with `ast`.

A module may import bmo modules of its own layer or below, never above; third-party packages
only where the table allows them. A new module must be given a layer here, on purpose.

Some edges must not exist whatever the layer numbers say (STYLE.md, "Edges that must not exist";
like tailscale's `BadDeps`): they are named in FORBIDDEN and DIALECT_SHARED below. Relative
imports (`from .x import y`, `from ..x import y`) are resolved against the module's package, and
`from bmo.pkg import mod` counts as importing `bmo.pkg.mod`, so neither hides an edge.
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
    "bmo.clients": 0,  # which client sent a request, from its headers: pure, stdlib only
    "bmo.redact": 0,
    "bmo.tls": 0,  # the CA trust of every outgoing HTTPS client (providers, MCP over HTTP)
    "bmo.config": 1,
    "bmo.protocol": 1,
    "bmo.protocol.dialect": 1,  # what every dialect shares: pure, like the rest of bmo.protocol
    "bmo.posture": 1,
    "bmo.metrics": 1,
    "bmo.defaults": 1,
    "bmo.ui": 1,  # the web console's files: pure data, like bmo.defaults
    "bmo.agents": 2,
    "bmo.tools": 2,
    "bmo.providers": 2,
    "bmo.store": 2,
    "bmo.loop": 3,
    "bmo.service": 4,
    "bmo.recorder": 4,
    "bmo.sessions": 4,
    "bmo.workers": 4,  # one worker of `bmo serve --workers N`: its share, its published counters
    "bmo.runtime": 5,
    "bmo.server": 6,
    "bmo.cli": 6,
    "bmo.__main__": 7,
}

# third-party package -> the bmo packages that may import it (None: anyone)
THIRD_PARTY: dict[str, set[str] | None] = {
    "orjson": None,
    "uvloop": {"bmo.server", "bmo.cli"},  # the CLI's `bmo serve` runs the loop the server serves on
    "yaml": {"bmo.config"},
    "aiohttp": {"bmo.providers", "bmo.tools", "bmo.server"},  # tools: the MCP streamable-HTTP client
    "aiohttp.web": {"bmo.server"},
    "aiosqlite": {"bmo.store"},
    "asyncpg": {"bmo.store"},  # PostgreSQL (store.url), imported lazily: SQLite users never load it
    "typer": {"bmo.cli"},
    "rich": {"bmo.cli"},
    # nobody: bmo speaks MCP with its own client (bmo.tools.mcp*); the official SDK, with its
    # server stack and compiled dependencies, may only serve the tests
    "mcp": set(),
}

# (importer, imported, why): no module within `importer` may import anything within `imported`.
FORBIDDEN: list[tuple[str, str, str]] = [
    ("bmo.server", "bmo.store", "the server never queries the store directly: ask the runtime"),
    ("bmo.store", "bmo.posture", "the store never imports posture"),
    ("bmo.loop", "bmo.store", "the loop never imports the store"),
]
STORE_MAX_LAYER = 2  # the store imports nothing above its own layer (errors, chat, runs, itself)

# Dialects: `bmo.protocol.<family>[_<part>]` (openai, openai_upstream -> "openai"; anthropic,
# anthropic_upstream -> "anthropic"; responses, completions…). A family's modules may import
# each other, never another family's; every family may import the package itself and these
# shared modules (bmo.protocol.sse, bmo.protocol.dialect).
DIALECT_SHARED = {"sse", "dialect"}

# Edges that exist today although the rules above forbid them: each must be removed (and its
# entry with it; `test_known_violations_still_exist` insists) — never added to.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _group(module: str) -> str:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        cand = ".".join(parts[:n])
        if cand in LAYERS:
            return cand
    raise KeyError(module)


def _safe_group(m: str) -> str | None:
    try:
        return _group(m)
    except KeyError:
        return None


def _dialect(module: str) -> str | None:
    """The dialect family of a protocol module; None for shared ones and everything else."""
    parts = module.split(".")
    if len(parts) < 3 or parts[:2] != ["bmo", "protocol"] or parts[2] in DIALECT_SHARED:
        return None
    return parts[2].split("_")[0]


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted((ROOT / "bmo").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _imports(path: Path, module: str) -> list[str]:
    """Every module `path` (the source of `module`) imports, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level - 1 > len(base) - 1:
                    raise AssertionError(f"{module}: relative import beyond the top package")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names.append(target)
            if target.split(".")[0] == "bmo":
                # `from bmo.pkg import mod` imports bmo.pkg.mod (harmless when `mod` is a name)
                names += [f"{target}.{a.name}" for a in node.names if a.name != "*"]
            elif target == "aiohttp":
                names += [f"aiohttp.{a.name}" for a in node.names]
    return names


def violations(module: str, names: list[str]) -> list[tuple[str, str]]:
    """(imported name, why) for every import of `module` that breaks a rule."""
    group = _group(module)
    layer = LAYERS[group]
    out: list[tuple[str, str]] = []
    for name in names:
        top = name.split(".")[0]
        if top == "bmo":
            target = _group(name)
            if LAYERS[target] > layer:
                out.append((name, f"{module} (layer {layer}) imports {name} (layer {LAYERS[target]})"))
            for importer, imported, why in FORBIDDEN:
                if _within(module, importer) and _within(name, imported):
                    out.append((name, f"{module} imports {name}: {why}"))
            if _within(module, "bmo.store") and LAYERS[target] > STORE_MAX_LAYER:
                out.append((name, f"{module} imports {name}: the store imports nothing above layer 2"))
            mine, theirs = _dialect(module), _dialect(name)
            if mine and theirs and mine != theirs:
                shared = ", ".join(f"bmo.protocol.{m}" for m in sorted(DIALECT_SHARED))
                why = f"one dialect ({mine}) never imports another's ({theirs}); shared code goes in {shared}"
                out.append((name, f"{module} imports {name}: {why}"))
            continue
        key = name if name in THIRD_PARTY else top
        if key == "aiohttp" and name.startswith("aiohttp.web"):
            key = "aiohttp.web"
        allowed = THIRD_PARTY.get(key)
        if key in THIRD_PARTY and allowed is not None and group not in allowed:
            out.append((name, f"{module} imports {name}; only {sorted(allowed)} may"))
    return out


MODULES = _modules()


def test_every_module_has_a_layer() -> None:
    missing = [m for m, _ in MODULES if _safe_group(m) is None]
    assert not missing, f"give these modules a layer in tests/test_layers.py: {missing}"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_respect_layers_and_forbidden_edges(module: str, path: Path) -> None:
    found = [
        why
        for name, why in violations(module, _imports(path, module))
        if not any(_within(module, m) and _within(name, t) for m, t in KNOWN_VIOLATIONS)
    ]
    assert not found, "\n".join(found)


def test_known_violations_still_exist() -> None:
    """An entry of KNOWN_VIOLATIONS whose edge is gone must go too (it would hide a new one)."""
    paths = dict(MODULES)
    for (module, target), _why in KNOWN_VIOLATIONS.items():
        names = _imports(paths[module], module)
        assert any(_within(n, target) for n, _ in violations(module, names)), (
            f"{module} no longer imports {target}: remove it from KNOWN_VIOLATIONS"
        )


# The checker on synthetic files: each forbidden edge, written the ways an import can be written.
BAD: list[tuple[str, str, str, str]] = [
    # (module, file name, source, what the message must say)
    ("bmo.server.fake", "fake.py", "from bmo.store.ledger import get_run\n", "never queries the store"),
    ("bmo.server.fake", "fake.py", "from ..store.ledger import get_run\n", "never queries the store"),
    ("bmo.server.fake", "fake.py", "from ..store import db\n", "never queries the store"),
    ("bmo.server.fake", "fake.py", "from bmo import store\n", "never queries the store"),
    ("bmo.server.fake", "fake.py", "def f():\n    import bmo.store.db\n", "never queries the store"),
    ("bmo.server", "__init__.py", "from ..store import ledger\n", "never queries the store"),
    ("bmo.store.fake", "fake.py", "from bmo.posture import Persistence\n", "never imports posture"),
    ("bmo.store.fake", "fake.py", "from ..posture import Persistence\n", "never imports posture"),
    ("bmo.store", "__init__.py", "from ..posture import Persistence\n", "never imports posture"),
    ("bmo.store.fake", "fake.py", "from ..loop import run\n", "nothing above layer 2"),
    ("bmo.store.fake", "fake.py", "from ..service import ChatService\n", "nothing above layer 2"),
    ("bmo.loop", "loop.py", "from bmo.store.db import Database\n", "the loop never imports the store"),
    ("bmo.loop", "loop.py", "from .store.db import Database\n", "the loop never imports the store"),
    ("bmo.protocol.anthropic", "anthropic.py", "from bmo.protocol.openai import tool_call_obj\n", "(openai)"),
    ("bmo.protocol.anthropic", "anthropic.py", "from .openai import tool_call_obj\n", "(openai)"),
    ("bmo.protocol.anthropic_upstream", "anthropic_upstream.py", "from . import openai_upstream\n", "(openai)"),
    ("bmo.protocol.openai", "openai.py", "from bmo.protocol import anthropic\n", "(anthropic)"),
    ("bmo.protocol.openai_upstream", "openai_upstream.py", "from .anthropic_upstream import x\n", "(anthropic)"),
    ("bmo.protocol.responses", "responses.py", "from .openai import parse_chat_request\n", "(openai)"),
    ("bmo.protocol.completions", "completions.py", "import bmo.protocol.responses\n", "(responses)"),
    ("bmo.chat", "chat.py", "from .config import Config\n", "(layer 0) imports bmo.config (layer 1)"),
    ("bmo.agents", "agents.py", "from aiohttp import web\n", "only ['bmo.server'] may"),
    ("bmo.tools.mcp", "mcp.py", "from mcp import ClientSession\n", "only [] may"),
    ("bmo.tools.mcp_http", "mcp_http.py", "from aiohttp import web\n", "only ['bmo.server'] may"),
]

GOOD: list[tuple[str, str, str]] = [
    ("bmo.server.fake", "fake.py", "from ..runtime import Runtime\nfrom .http import json_response\n"),
    ("bmo.cli.fake", "fake.py", "from bmo.store.db import open_database\n"),  # the CLI reads the database
    ("bmo.store.fake", "fake.py", "from ..runs import RunRecord\nfrom .db import Database\nfrom bmo.chat import Msg\n"),
    ("bmo.protocol.anthropic_upstream", "anthropic_upstream.py", "from .anthropic import x\nfrom .sse import frame\n"),
    ("bmo.protocol.openai_upstream", "openai_upstream.py", "from bmo.protocol.openai import tool_call_obj\n"),
    ("bmo.protocol.anthropic", "anthropic.py", "from .dialect import Reply\nfrom bmo.protocol import sse\n"),
    ("bmo.agents", "agents.py", "from bmo.protocol.openai import SAMPLING_FIELDS\n"),  # outside protocol: any
]


@pytest.mark.parametrize(("module", "filename", "source", "message"), BAD, ids=[f"{b[0]}:{b[2]}" for b in BAD])
def test_the_checker_catches_each_forbidden_edge(
    tmp_path: Path, module: str, filename: str, source: str, message: str
) -> None:
    path = tmp_path / filename
    path.write_text(source)
    found = violations(module, _imports(path, module))
    assert any(message in why for _, why in found), found


@pytest.mark.parametrize(("module", "filename", "source"), GOOD, ids=[f"{g[0]}:{g[2]}" for g in GOOD])
def test_the_checker_allows_the_edges_that_may_exist(tmp_path: Path, module: str, filename: str, source: str) -> None:
    path = tmp_path / filename
    path.write_text(source)
    assert violations(module, _imports(path, module)) == []


def test_relative_imports_resolve_against_the_package(tmp_path: Path) -> None:
    mod = tmp_path / "fake.py"
    mod.write_text("from . import ledger\nfrom .http import json_response\nfrom ..store.db import Database\n")
    assert _imports(mod, "bmo.server.fake") == [
        "bmo.server",
        "bmo.server.ledger",
        "bmo.server.http",
        "bmo.server.http.json_response",
        "bmo.store.db",
        "bmo.store.db.Database",
    ]
    init = tmp_path / "__init__.py"
    init.write_text("from .db import Database\nfrom .. import errors\n")
    assert _imports(init, "bmo.store") == ["bmo.store.db", "bmo.store.db.Database", "bmo", "bmo.errors"]
    with pytest.raises(AssertionError, match="beyond the top package"):
        init.write_text("from ... import x\n")
        _imports(init, "bmo.store")
