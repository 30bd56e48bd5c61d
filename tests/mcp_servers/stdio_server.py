"""A scriptable MCP server over stdio, for bmo's MCP client tests. Standard library only.

One JSON-RPC message per line on stdin/stdout. The main thread reads stdin; each `tools/call`
runs in its own thread, so the server keeps reading (and records `notifications/cancelled`)
while a tool sleeps. Every message received is appended, one JSON per line, to the file named
by $MCP_FIXTURE_LOG (when set), so a test can check what bmo sent; its pid (and its grandchild's)
to the file named by $MCP_FIXTURE_PIDS, so a test can check that none survives.

    python stdio_server.py [--mode MODE] [--pages N] [--version V] [--tools a,b] [--banner]

Modes (several combine: --mode no-init,stubborn):
  normal        the tools below
  flood-stderr  writes megabytes to stderr before and while answering
  no-init       reads everything, answers nothing
  bad-version   answers initialize with protocol version 1999-01-01
  grandchild    starts a grandchild process (`sleep`) that ignores SIGTERM
  stubborn      grandchild, and the server itself ignores SIGTERM and the end of stdin

Tools: echo {text}, add {a, b}, structured {a, b} (structuredContent only), image, fail (isError),
sleep {seconds}, crash (exits mid-call), leak (prints $API_KEY on stderr, exits), huge {size}
(one line of `size` bytes), notify_change (sends tools/list_changed; a tool `late` appears),
ask_roots (asks bmo for roots/list, waits for the answer and reports it), env {names} (those
variables of its environment), pids (its own pid and its grandchild's), and any names given with
--tools (each answers "LABEL:name", LABEL from $MCP_FIXTURE_LABEL).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

ARGS = argparse.ArgumentParser()
ARGS.add_argument("--mode", default="normal")
ARGS.add_argument("--pages", type=int, default=1)
ARGS.add_argument("--version", default="")
ARGS.add_argument("--tools", default="")
ARGS.add_argument("--banner", action="store_true")
OPTS = ARGS.parse_args()

MODES = set(OPTS.mode.split(","))  # modes combine: --mode no-init,stubborn
LOG = os.environ.get("MCP_FIXTURE_LOG")
LABEL = os.environ.get("MCP_FIXTURE_LABEL", "fixture")
out_lock = threading.Lock()
answers: dict[Any, Any] = {}
answered = threading.Condition()
state: dict[str, Any] = {"late": False, "grandchild": None}


def obj(props: dict[str, Any] | None = None, required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}
    if props is not None:
        schema["properties"] = props
    if required:
        schema["required"] = required
    return schema


NUM = {"type": "number"}
TOOLS: list[dict[str, Any]] = [
    {"name": "echo", "description": "Echoes text", "inputSchema": obj({"text": {"type": "string"}}, ["text"])},
    {"name": "add", "description": "Adds", "inputSchema": obj({"a": NUM, "b": NUM})},
    {"name": "structured", "title": "Structured sum", "inputSchema": obj({"a": NUM, "b": NUM})},
    {"name": "image", "description": "A tiny image", "inputSchema": obj()},
    {"name": "fail", "description": "Always fails", "inputSchema": {}},
    {"name": "sleep", "description": "Sleeps", "inputSchema": obj({"seconds": NUM})},
    {"name": "crash", "description": "Exits mid-call", "inputSchema": obj()},
    {"name": "leak", "description": "Prints $API_KEY to stderr and exits", "inputSchema": obj()},
    {"name": "huge", "description": "A very long answer", "inputSchema": obj({"size": NUM})},
    {"name": "notify_change", "description": "Changes the tool list", "inputSchema": obj()},
    {"name": "ask_roots", "description": "Asks the client for roots", "inputSchema": obj()},
    {"name": "env", "description": "Environment variables", "inputSchema": obj({"names": {"type": "array"}})},
    {"name": "pids", "description": "Process ids", "inputSchema": obj()},
]
TOOLS += [{"name": n, "description": f"extra {n}", "inputSchema": obj()} for n in OPTS.tools.split(",") if n]
LATE = {"name": "late", "description": "Appeared after list_changed", "inputSchema": obj()}


def write(msg: dict[str, Any]) -> None:
    data = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    with out_lock:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def record(msg: Any) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(msg) + "\n")


def text(t: str, **extra: Any) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": t}], **extra}


def call_tool(name: str, args: dict[str, Any]) -> dict[str, Any]:
    if name == "echo":
        return text(str(args.get("text", "")))
    if name == "add":
        return text(str(args["a"] + args["b"]))
    if name == "structured":
        return {"content": [], "structuredContent": {"sum": args["a"] + args["b"]}}
    if name == "image":
        return {
            "content": [
                {"type": "text", "text": "a red dot"},
                {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
            ]
        }
    if name == "fail":
        return {"content": [{"type": "text", "text": "it broke"}], "isError": True}
    if name == "sleep":
        time.sleep(float(args.get("seconds", 1)))
        return text("slept")
    if name == "crash":
        time.sleep(0.1)
        os._exit(3)
    if name == "leak":
        sys.stderr.write(f"fatal: token {os.environ.get('API_KEY')} was refused\n")
        sys.stderr.flush()
        time.sleep(0.2)
        os._exit(4)
    if name == "huge":
        return text("x" * int(args.get("size", 2_000_000)))
    if name == "notify_change":
        state["late"] = True
        write({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        return text("changed")
    if name == "ask_roots":
        rid = f"srv-{time.monotonic_ns()}"
        write({"jsonrpc": "2.0", "id": rid, "method": "roots/list"})
        with answered:
            if not answered.wait_for(lambda: rid in answers, timeout=10):
                return text("no answer to roots/list", isError=True)
            return text("roots/list answered: " + json.dumps(answers.pop(rid)))
    if name == "env":
        return text(json.dumps({n: os.environ.get(n) for n in args.get("names", [])}))
    if name == "pids":
        return text(json.dumps({"pid": os.getpid(), "grandchild": state["grandchild"]}))
    if name == "late" or name in OPTS.tools.split(","):
        return text(f"{LABEL}:{name}")
    raise LookupError(name)


def run_call(rid: Any, params: dict[str, Any]) -> None:
    try:
        result = call_tool(params.get("name", ""), params.get("arguments") or {})
        write({"jsonrpc": "2.0", "id": rid, "result": result})
    except LookupError as e:
        write({"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": f"Unknown tool: {e}"}})


def tools_page(cursor: str | None) -> dict[str, Any]:
    tools = TOOLS + ([LATE] if state["late"] else [])
    pages = max(1, OPTS.pages)
    size = -(-len(tools) // pages)
    n = int(cursor[1:]) if cursor else 0
    result: dict[str, Any] = {"tools": tools[n * size : (n + 1) * size]}
    if n + 1 < pages:
        result["nextCursor"] = f"p{n + 1}"
    return result


def flood(stop_after: float) -> None:
    line = ("stderr flood " + "#" * 1000 + "\n").encode()
    end = time.monotonic() + stop_after
    while time.monotonic() < end:  # about 2 MB/s: a flood, without eating the test machine's CPU
        sys.stderr.buffer.write(line * 64)
        sys.stderr.buffer.flush()
        time.sleep(0.03)


def note_pid(pid: int) -> None:
    if os.environ.get("MCP_FIXTURE_PIDS"):
        with open(os.environ["MCP_FIXTURE_PIDS"], "a") as f:
            f.write(f"{pid}\n")


def spawn_grandchild() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    state["grandchild"] = subprocess.Popen([sys.executable, "-c", code]).pid
    note_pid(state["grandchild"])


def main() -> None:
    note_pid(os.getpid())
    if MODES & {"grandchild", "stubborn"}:
        spawn_grandchild()
    if "stubborn" in MODES:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "flood-stderr" in MODES:
        early = ("early flood " + "#" * 1000 + "\n").encode() * 64
        for _ in range(64):  # 4 MB before the first answer: far more than a pipe holds
            sys.stderr.buffer.write(early)
        sys.stderr.buffer.flush()
        threading.Thread(target=flood, args=(20.0,), daemon=True).start()
    if OPTS.banner:
        sys.stdout.write("fixture server starting (not JSON)\n")
        sys.stdout.flush()
    for raw in sys.stdin.buffer:
        msg = json.loads(raw)
        record(msg)
        if "no-init" in MODES:
            continue
        method, rid = msg.get("method"), msg.get("id")
        if method is None:  # an answer to one of our requests
            with answered:
                answers[rid] = msg.get("error") or msg.get("result")
                answered.notify_all()
        elif method == "initialize":
            version = OPTS.version or msg["params"]["protocolVersion"]
            if "bad-version" in MODES:
                version = "1999-01-01"
            info = {"name": "bmo-fixture", "version": "1.2.3"}
            caps = {"tools": {"listChanged": True}}
            write(
                {
                    "jsonrpc": "2.0",
                    "id": rid,
                    "result": {"protocolVersion": version, "capabilities": caps, "serverInfo": info},
                }
            )
        elif method == "tools/list":
            write({"jsonrpc": "2.0", "id": rid, "result": tools_page((msg.get("params") or {}).get("cursor"))})
        elif method == "tools/call":
            threading.Thread(target=run_call, args=(rid, msg.get("params") or {}), daemon=True).start()
        elif method == "ping":
            write({"jsonrpc": "2.0", "id": rid, "result": {}})
        elif rid is not None:
            write({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no method {method}"}})
    if "stubborn" in MODES:
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()
