"""Server-sent events framing and parsing (layer 1, pure, no I/O).

Framing follows what every client parser accepts (CLIENTS.md §2.2): one `data: <one-line JSON>`
line per event, a blank line after it, no event-only blocks, and exactly `data: [DONE]` to end a
Chat Completions stream. orjson never emits a raw newline inside a JSON document, so one dump is
always one line.
"""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keepalive\n\n"


def frame(payload: bytes) -> bytes:
    """One `data:` event around an already-encoded one-line JSON document."""
    return b"data: " + payload + b"\n\n"


def frame_obj(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def named_frame(event: str, obj: Any) -> bytes:
    """A typed event (Responses, Anthropic Messages): `event:` then `data:` with no blank between."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


class SSEDecoder:
    """Incremental decoder for an upstream's SSE byte stream.

    Feed it raw chunks as they arrive; it returns the complete events' (event, data) pairs.
    Comment lines (`:`), `id:` and `retry:` are ignored; multi-line `data:` is joined with '\\n'
    as the SSE spec says; both '\\n' and '\\r\\n' line ends are accepted.
    """

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        if (
            chunk.startswith(b"data: ")
            and chunk.find(b"\n") == len(chunk) - 2
            and chunk[-1] == 10  # "\n"
            and chunk[-3] != 13  # "\r"
            and not self._buf
            and not self._data
        ):
            return [(None, chunk[6:-2])]  # the commonest case: one whole event (a token) in one read
        if not self._buf and not self._data and chunk.endswith(b"\n\n") and b"\r" not in chunk:
            # several whole `data:` events in one read: split them at once
            blocks = chunk[:-2].split(b"\n\n")
            if chunk.count(b"\n") == 2 * len(blocks) and all([b.startswith(b"data: ") for b in blocks]):
                return [(None, b[6:]) for b in blocks]
        out: list[tuple[str | None, bytes]] = []
        buf = self._buf + chunk if self._buf else chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    out.append((self._event, b"\n".join(self._data)))
                self._data = []
                self._event = None
                continue
            if line.startswith(b"data:"):
                v = line[5:]
                self._data.append(v[1:] if v.startswith(b" ") else v)
            elif line.startswith(b"event:"):
                self._event = line[6:].strip().decode("utf-8", "replace")
            # comments, id:, retry: and unknown fields are ignored
        self._buf = buf[start:]
        return out

    def close(self) -> list[tuple[str | None, bytes]]:
        """Flush an event left without its blank line when the stream ended."""
        out = self.feed(b"\n\n") if (self._buf or self._data) else []
        return out
