"""Built-in server-side tools: `clock` and `calculator` (layer 2)."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bmo.chat import ToolSpec
from bmo.tools.base import ToolFailed


class Clock:
    server: str | None = None
    timeout_s: float = 30.0
    spec = ToolSpec(
        name="clock",
        description="The current date and time, in UTC or a given IANA time zone.",
        schema={
            "type": "object",
            "properties": {"timezone": {"type": "string", "description": "IANA zone, e.g. Europe/Paris"}},
        },
    )

    async def run(self, args: dict[str, Any]) -> str:
        tz = args.get("timezone") or "UTC"
        try:
            zone = UTC if tz == "UTC" else ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolFailed(f"unknown time zone {tz!r}") from None
        return datetime.now(zone).isoformat(timespec="seconds")


_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "min": min,
    "max": max,
}
_CONSTS = {"pi": math.pi, "e": math.e}
# Limits keep one request from burning the CPU: `9**9**9` would take minutes and gigabytes.
MAX_EXPRESSION = 500
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300


def evaluate(expression: str) -> float | int:
    """Arithmetic only, by walking the parsed tree. Never `eval`."""
    if len(expression) > MAX_EXPRESSION:
        raise ToolFailed(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolFailed(f"not an arithmetic expression: {expression!r}") from None
    return _eval(tree.body)


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolFailed(f"exponent larger than {MAX_EXPONENT}")
        try:
            value = _BIN[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ToolFailed("division by zero") from None
        except OverflowError:
            raise ToolFailed("result too large") from None
        if isinstance(value, complex):
            raise ToolFailed("result is not a real number")
        if abs(value) > MAX_MAGNITUDE:
            raise ToolFailed("result too large")
        return value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        try:
            return _FUNCS[node.func.id](*[_eval(a) for a in node.args])
        except (ValueError, TypeError, OverflowError) as e:
            raise ToolFailed(f"{node.func.id}: {e}") from None
    raise ToolFailed(f"unsupported element in expression: {ast.dump(node)[:60]}")


class Calculator:
    server: str | None = None
    timeout_s: float = 30.0
    spec = ToolSpec(
        name="calculator",
        description="Evaluates an arithmetic expression: + - * / // % ** ( ), sqrt, log, sin, pi...",
        schema={
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "e.g. (2 + 3) * 4"}},
            "required": ["expression"],
        },
    )

    async def run(self, args: dict[str, Any]) -> str:
        expr = args.get("expression")
        if not isinstance(expr, str) or not expr.strip():
            raise ToolFailed("`expression` must be a non-empty string")
        value = evaluate(expr)
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            value = int(value)
        return str(value)
