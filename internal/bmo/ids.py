"""Request and completion ids (layer 0): a random per-process prefix and a counter.

Unique across restarts and processes (48 random bits a process), in order within one, and
cheap: `secrets` on every request showed up in the benchmark's profile. Nothing relies on these
being unguessable; API keys are what is secret.
"""

from __future__ import annotations

import itertools
import os


class Ids:
    __slots__ = ("_prefix", "_next")

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._next = itertools.count(1).__next__

    def request_id(self) -> str:
        return f"req_{self._prefix}{self._next():012x}"

    def reply_id(self) -> str:
        """The id of an answer, after its dialect's prefix (`chatcmpl-`, `msg_`)."""
        return f"{self._prefix}{self._next():012x}"
