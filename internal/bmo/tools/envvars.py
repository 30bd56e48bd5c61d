"""`${VAR}` in an MCP server's `env` and `headers` values (layer 2; used by the MCP transports).

Expanded from bmo's own environment each time the server is started, never when the config is
loaded: the secret then lives only in the environment and in the child (or the HTTP request), not
in the parsed config that `bmo config` commands print. An unset variable becomes "" and is logged
by name (never by value), so a missing token shows up as a clear 401 from the server rather than
as the literal text `${DOCS_TOKEN}` sent over the wire.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

log = logging.getLogger("bmo.mcp")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(value: str, environ: Mapping[str, str], where: str = "") -> str:
    """`value` with every `${NAME}` replaced by `environ[NAME]` ("" when unset)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in environ:
            log.warning("mcp %s: ${%s} is not set in bmo's environment; using an empty value", where, name)
            return ""
        return environ[name]

    return _VAR.sub(sub, value)


def expand_all(values: Mapping[str, str], environ: Mapping[str, str], where: str = "") -> dict[str, str]:
    return {k: expand(v, environ, where) for k, v in values.items()}
