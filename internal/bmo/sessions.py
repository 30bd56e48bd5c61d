"""Server-side sessions (layer 4): bridging stateless OpenAI clients and agents with memory.

Which session a request belongs to (first match): header `X-BMO-Session`; header
`X-OpenWebUI-Chat-Id` when `sessions.from_openwebui_chat_id`; the OpenAI `user` field when
`sessions.from_user` (an agent's `session:` block overrides both flags). Sessions are scoped to
the API key that made them.

What is new in a request (`merge`), against the stored transcript T and the request's turns R
(its system/developer messages apart — those apply to the request, they are not turns):
  1. R begins with T: only the rest of R is new (clients that resend the whole history);
  2. R starts where T starts and carries assistant turns, but differs later: the client edited
     or regenerated; T is replaced from the first turn where they differ (a clean fork);
  3. otherwise (R is only the new turn, or a window of recent history): the turns after R's last
     assistant message are new, and go after T.
The transcript keeps what the client sees: its turns and the answers (text and client tool
calls). Server-side tool turns stay inside each run, so that a client resending its own history
still matches rule 1.

Requests on one session run one at a time, whichever worker process they reach (SPEC §11); the
next waits up to `LOCK_WAIT_S`, then gets 429 `session_busy`. Two stages: an asyncio lock per
session queues this process's requests (cheaply, in order), and its holder takes the session's
lease in the store (store.leases), which is what keeps another worker out. A lease lives
`LEASE_S` and is renewed while its run lives, so a worker killed mid-run frees the session within
that. Only requests that name a session pay for it: a store write to take the lease and one,
after the answer, to give it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bmo.agents import AgentSpec
from bmo.chat import ChatRequest, Message, ToolCall, same_turn
from bmo.config import Config
from bmo.errors import BmoError, InvalidRequest, RateLimited
from bmo.store.leases import LeaseStore
from bmo.store.sessions import Session, SessionStore

log = logging.getLogger("bmo.sessions")

LOCK_WAIT_S = 60  # a second request on a busy session waits this long, then gets 429
# How long a session stays busy after its worker died mid-run (SIGKILL): short, yet many renewals
# long, so a slow store write or a busy event loop never loses a live run its lease.
LEASE_S = 10.0
RENEW_S = LEASE_S / 4
POLL_S = (0.01, 0.25)  # another worker holds it: ask again after 10 ms, backing off to 250 ms
MAX_NAME = 200
TASK_MARKERS = ("### Task:", "### Task:\n")


@dataclass(slots=True)
class Merge:
    keep: int  # turns of the stored transcript that stay
    new: list[Message]  # what follows them


def merge(stored: list[Message], turns: list[Message]) -> Merge:
    n = len(stored)
    if len(turns) >= n and all(same_turn(stored[i], turns[i]) for i in range(n)):
        return Merge(n, turns[n:])
    if stored and turns and same_turn(stored[0], turns[0]) and any(m.role == "assistant" for m in turns):
        p = 0
        while p < min(n, len(turns)) and same_turn(stored[p], turns[p]):
            p += 1
        return Merge(p, turns[p:])
    last = max((i for i, m in enumerate(turns) if m.role == "assistant"), default=-1)
    return Merge(n, turns[last + 1 :])


def session_name(headers: Mapping[str, str], req: ChatRequest, cfg: Config, agent: AgentSpec) -> tuple[str, str] | None:
    """(name, source) of the session this request names, or None for a stateless request."""
    name = headers.get("X-BMO-Session")
    if name and name.strip():
        return _checked(name.strip(), "X-BMO-Session"), "header"
    chat_id = headers.get("X-OpenWebUI-Chat-Id")
    if not chat_id and not req.user:
        return None  # the common case: nothing here could name a session
    policy = {"from_openwebui_chat_id": cfg.sessions.from_openwebui_chat_id, "from_user": cfg.sessions.from_user}
    policy.update({k: bool(v) for k, v in agent.session.items() if k in policy})
    if policy["from_openwebui_chat_id"] and chat_id and chat_id.strip():
        return _checked("owui:" + chat_id.strip(), "X-OpenWebUI-Chat-Id"), "openwebui"
    if policy["from_user"] and req.user:
        return _checked("user:" + req.user, "user"), "user"
    return None


def _checked(name: str, param: str) -> str:
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise InvalidRequest(f"The session name must be at most {MAX_NAME} printable characters.", param=param)
    return name


def is_background_task(req: ChatRequest) -> bool:
    """Open WebUI's title/tags/follow-up/query generation: stateless, never in a transcript."""
    if req.metadata and req.metadata.get("task"):
        return True
    for m in reversed(req.messages):
        if m.role == "user":
            return m.text().lstrip().startswith("### Task:")
    return False


@dataclass(slots=True)
class Bound:
    """A request bound to its session: holds the session's lock and lease until `release()`."""

    session: Session
    keep: int
    new: list[Message]
    lock: asyncio.Lock
    manager: SessionManager
    answer_text: list[str] = field(default_factory=list)
    answer_calls: list[ToolCall] = field(default_factory=list)
    released: bool = False

    async def commit(self) -> None:
        """The run finished: store the new turns and the answer."""
        answer = Message(
            role="assistant",
            content="".join(self.answer_text) or None,
            tool_calls=list(self.answer_calls) or None,
        )
        await self.manager.store.save(self.session.id, self.keep, [*self.new, answer])

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.manager._release(self.session.id, self.lock)


class SessionManager:
    def __init__(self, store: SessionStore, leases: LeaseStore | None = None) -> None:
        self.store = store
        self.leases = leases if leases is not None else LeaseStore(store.db)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._releasing: set[asyncio.Task[None]] = set()

    async def bind(self, owner: str, name: str, source: str, agent: str, req: ChatRequest) -> Bound:
        """Load (or create) the session, wait for its lock, and rewrite `req.messages` to the
        whole conversation. `agent` is the agent's id, or `team:NAME` (a session started on a team
        stays on it). Raises 400 `session_agent_mismatch`, 429 when the wait is too long."""
        found = await self.store.find(owner, name)
        if found is not None and found.agent != agent:
            raise _mismatch(name, found.agent, agent)
        session = found or await self.store.create(owner, name, source, agent)
        if session.agent != agent:  # a concurrent creator bound it to another agent
            raise _mismatch(name, session.agent, agent)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_S
        lock = self._acquire_ref(session.id)
        try:
            await asyncio.wait_for(lock.acquire(), LOCK_WAIT_S)
        except TimeoutError:
            self._unref(session.id)
            raise _busy(name) from None
        try:
            await self._take_lease(session.id, name, deadline)
        except BaseException:
            lock.release()
            self._unref(session.id)
            self._release_lease(session.id)  # a cancelled take may have won it: give it back
            raise
        try:
            session = await self.store.find(owner, name) or session  # what the previous holder stored
            system = [m for m in req.messages if m.role in ("system", "developer")]
            turns = [m for m in req.messages if m.role not in ("system", "developer")]
            m = merge(session.messages, turns)
            req.messages = [*system, *session.messages[: m.keep], *m.new]
        except BaseException:
            self._release(session.id, lock)
            raise
        return Bound(session=session, keep=m.keep, new=m.new, lock=lock, manager=self)

    def _acquire_ref(self, sid: str) -> asyncio.Lock:
        lock, refs = self._locks.get(sid, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[sid] = (lock, refs + 1)
        return lock

    def _unref(self, sid: str) -> None:
        lock, refs = self._locks[sid]
        if refs <= 1:
            del self._locks[sid]  # bounded: only sessions with requests waiting or running
        else:
            self._locks[sid] = (lock, refs - 1)

    def _release(self, sid: str, lock: asyncio.Lock) -> None:
        lock.release()
        self._unref(sid)
        if sid not in self._locks:  # nobody here waits for it: give the lease back
            self._release_lease(sid)

    async def _take_lease(self, sid: str, name: str, deadline: float) -> None:
        """The session's lease, waiting for another worker's run on it to end; 429 at `deadline`.
        A request queued behind this process's own holder takes it over (same owner)."""
        loop = asyncio.get_running_loop()
        delay = POLL_S[0]
        while not await self.leases.acquire("session:" + sid, LEASE_S):
            if loop.time() + delay > deadline:
                raise _busy(name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_S[1])
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name="bmo-session-leases")

    async def _renew(self) -> None:
        """While this process holds any session, every `RENEW_S`: push its leases' expiry
        (one write for all of them)."""
        while self._locks:
            await asyncio.sleep(RENEW_S)
            try:
                await self.leases.renew_all(LEASE_S)
            except BmoError as e:  # the store is down: the runs go on; posture says why
                log.warning("could not renew session leases: %s", e.message)

    def _release_lease(self, sid: str) -> None:
        """Give the lease back, in the background (release() is called where nothing may wait).
        Skipped if a request here has queued for the session meanwhile: it holds it now."""
        task = asyncio.get_running_loop().create_task(
            self.leases.release("session:" + sid, unless=lambda: sid in self._locks)
        )
        self._releasing.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not release a session lease (it expires in %gs): %s", LEASE_S, task.exception())

    async def close(self) -> None:
        """Before the store closes: every lease given back, the renewals stopped."""
        if self._releasing:
            await asyncio.wait(list(self._releasing), timeout=2)
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None


def _busy(name: str) -> RateLimited:
    return RateLimited(
        f"Session {name!r} is busy with another request; retry when it has finished.",
        code="session_busy",
        headers={"retry-after": "1"},
    )


def _mismatch(name: str, bound: str, asked: str) -> InvalidRequest:
    return InvalidRequest(
        f"Session {name!r} belongs to agent {bound!r}; this request asked for {asked!r}. "
        "Use another session name, or the same agent.",
        code="session_agent_mismatch",
        param="model",
    )


def owner_of(principal: Any) -> str:
    """Sessions are scoped per API key: its prefix, or "anonymous" without auth."""
    prefix = getattr(principal, "prefix", None)
    return str(prefix) if prefix else "anonymous"
