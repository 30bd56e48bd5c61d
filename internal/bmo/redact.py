"""Secrets out of text (layer 0, stdlib only): the one redactor of bmo (SPEC §5).

Every message relayed from an upstream (providers/http.py builds them all), every log line (a
`logging.Filter` on the server's log handlers) and the access log's client-supplied fields pass
a `Redactor` before they reach a client, a log or the ledger. It removes what looks like an API
key whoever's it is (`sk-…`, the value after `Bearer`) and the exact values it was given: the
configured provider keys (the environment variables `api_key_env` names) and `BMO_API_KEY`.

It runs on error paths and log lines only, never per request or per token.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

MASK = "[redacted]"
MIN_SECRET = 8  # shorter "secrets" would mask ordinary words; no real key is that short
# `sk-…` (OpenAI, Anthropic `sk-ant-…`, bmo's own `sk-bmo-…`, and OpenAI's own masked echo of a
# key, `sk-proj-****abcd`), and whatever follows `Bearer`.
_SHAPES = r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-*]{4,}|(?i:\bbearer)[ \t]+[^\s\"',;]+"


class Redactor:
    """`redact(text)` → the text with every key-shaped token and every known secret masked."""

    __slots__ = ("_re",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        known = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)
        alternatives = [re.escape(s) for s in known] + [_SHAPES]
        self._re = re.compile("|".join(alternatives))

    def __call__(self, text: str) -> str:
        return self._re.sub(_mask, text)


def _mask(m: re.Match[str]) -> str:
    found = m.group(0)
    if found.startswith("sk-"):
        return "sk-" + MASK
    if found[:6].lower() == "bearer":
        return "Bearer " + MASK
    return MASK


def env_secrets(names: Iterable[str | None], env: Mapping[str, str] | None = None) -> list[str]:
    """The values of the environment variables `names` (those set)."""
    env = os.environ if env is None else env
    return [env[n] for n in names if n and env.get(n)]


class RedactingFilter(logging.Filter):
    """Redacts a log record's message and traceback before any handler formats it. Installed on
    handlers (a filter on a logger does not see its children's records)."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself
            return True
        record.msg, record.args = self.redact(msg), None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            clean = self.redact(text)
            record.exc_text = clean
            if clean != text:  # a formatter that re-formats the exception would bring it back
                record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True
