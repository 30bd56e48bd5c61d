"""The one error tree of bmo (layer 0, stdlib only).

Every failure a client can see is a `BmoError`: an HTTP status, an OpenAI error `type` and
`code`, a message that is safe to show the client, and a `detail` that is only logged. Edges
(the HTTP server, the CLI) render these once; nothing else builds error bodies.
"""

from __future__ import annotations

from typing import Any


class BmoError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"
    outcome: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})
        if should_retry is not None:
            self.headers["x-should-retry"] = "true" if should_retry else "false"

    def body(self) -> dict[str, Any]:
        """The OpenAI error envelope; the one place its shape is defined."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class InvalidRequest(BmoError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_value"
    outcome = "client_error"


class AuthenticationError(BmoError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"
    outcome = "client_error"


# What a 401 says, by class of failure (never the key, its name or its prefix).
KEY_MISSING = "No API key was given. Send `Authorization: Bearer <key>` or `X-Api-Key: <key>`."
KEY_UNKNOWN = "The API key is not known to this server."


class PermissionDenied(BmoError):
    status = 403
    type = "permission_error"
    code = "insufficient_scope"
    outcome = "client_error"


class NotFound(BmoError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"
    outcome = "client_error"


class MethodNotAllowed(BmoError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"
    outcome = "client_error"


class RequestTooLarge(BmoError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"
    outcome = "client_error"


class RequestTimeout(BmoError):
    """The request's body stopped arriving (`server.header_timeout_s` without a byte)."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"
    outcome = "client_error"


class RateLimited(BmoError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limited"
    outcome = "client_error"


class UpstreamRateLimited(RateLimited):
    """The upstream's own 429: the client sees a 429 it can retry, but the ledger blames the
    upstream, not the client (SPEC §6)."""

    outcome = "upstream_error"


class UpstreamError(BmoError):
    """The upstream LLM failed; `upstream_status` is what it answered (None: no answer), and
    `upstream_type` the error type it named, for a client of the same wire (Claude Code's
    recovery matches on Anthropic's own error types and wording)."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    outcome = "upstream_error"

    def __init__(
        self, message: str, *, upstream_status: int | None = None, upstream_type: str | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.upstream_status = upstream_status
        self.upstream_type = upstream_type


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
    outcome = "timeout"


class Unavailable(BmoError):
    """bmo cannot serve this now (its store is unusable, it is shutting down): 503."""

    status = 503
    type = "server_error"
    code = "store_unavailable"
    outcome = "internal_error"


class ShuttingDown(Unavailable):
    """bmo is draining on SIGTERM: a new request is refused, a run still going at the end of the
    grace is cut (SPEC §11)."""

    code = "shutting_down"
    outcome = "shutting_down"


class InternalError(BmoError):
    status = 500
    type = "server_error"
    code = "internal_error"
    outcome = "internal_error"


class ConfigError(Exception):
    """A bad configuration or agent file: names the file, the key (or line) and the problem."""

    def __init__(self, file: str, key: str | None, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")
