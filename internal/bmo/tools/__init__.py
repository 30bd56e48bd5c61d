"""Server-side tools (layer 2): an explicit registry of built-ins, by name."""

from __future__ import annotations

from bmo.tools.base import Tool, ToolFailed, ToolOutput
from bmo.tools.builtin import Calculator, Clock

__all__ = ["BUILTINS", "Tool", "ToolFailed", "ToolOutput"]

BUILTINS: dict[str, type[Tool]] = {"clock": Clock, "calculator": Calculator}
