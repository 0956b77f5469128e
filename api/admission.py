"""Admission control: under overload, submissions are refused at once instead of queueing.

Every submission in progress holds a slot from the moment its headers arrive until it is
answered. When all slots are taken, or the records waiting for a Kafka commit already hold
`admission_max_pending_bytes`, the next one is answered `503 overloaded` with `Retry-After`
before its body is read: nothing of it is recorded, and a client that retries later with the
same Idempotency-Key gets exactly one task.

A submission that finds every slot taken is refused at once, unless `admission_max_wait_ms` is
set: then it waits for a slot, first come first served, at most that long and behind at most as
many others as there are slots. Waiting costs the API CPU per accepted submission (a future, a
timer, a callback) and, with a Retry-After that grows under overload, gained no throughput.

The number of slots adapts to the latency of accepted submissions (additive increase,
multiplicative decrease, like TCP): each window, when the 90th percentile of their time in the
API is over `admission_target_ms`, the limit shrinks by a fifth; when it is under half the target
while the limit was reached, the limit grows. More slots than the committer can serve would only
lengthen the queue in front of it, which is what the target measures. The floor
(`admission_min_inflight`) keeps enough submissions in progress to fill the group commits: a
request's latency is at least one commit, so throughput is at most the limit divided by the
commit time, and a machine that is slow for other reasons must not be throttled below that.

A refusal is written straight to the server (no Response object, no body model), and its
Retry-After grows while refusals outnumber a tenth of the accepted submissions (`RetryAfter`):
under a lasting overload, refused clients come back less often instead of costing the API a
refusal each second.

`POST /v1/infer` holds its connection until the model has answered, so its time in the API says
nothing about the committer: it has a fixed bound of its own (`admission_max_infer`), counted
apart from submissions, and the same pending-bytes check.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import status_of
from api.limits import content_length
from api.metrics import ADMISSION_LIMIT, REFUSED
from mcp.errors import Overloaded
from mcp.settings import ServerSettings

R = TypeVar("R")
WINDOW_S = 0.25
GUARDED = frozenset({"/v1/tasks", "/v1/tasks:batch"})
INFER = "/v1/infer"


class AdaptiveLimit:
    """How many submissions may be in progress at once."""

    def __init__(self, minimum: int, maximum: int, target_s: float) -> None:
        self.minimum = max(1, minimum)
        self.maximum = max(self.minimum, maximum)
        self.target_s = target_s
        self.limit = float(self.minimum)
        self.in_flight = 0
        self._samples: list[float] = []
        self._reached = False
        self._window_end = time.monotonic() + WINDOW_S
        # Submissions waiting for a slot, oldest first; a slot passes to them on release.
        self._waiters: deque[asyncio.Future[bool]] = deque()

    def acquire(self) -> bool:
        if self._waiters or self.in_flight >= int(self.limit):
            self._reached = True
            return False
        self.in_flight += 1
        if self.in_flight >= int(self.limit):
            self._reached = True
        return True

    def enqueue(self, timeout_s: float) -> asyncio.Future[bool] | None:
        """After a failed `acquire`: a place in the queue for a slot, a future that turns True
        when one passes to it, False after `timeout_s`; None when no waiting is allowed (or as
        many wait already as there are slots)."""
        if timeout_s <= 0 or len(self._waiters) >= int(self.limit):
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(timeout_s, self._give_up, waiter)
        waiter.add_done_callback(lambda _: timer.cancel())
        return waiter

    async def wait(self, timeout_s: float) -> bool:
        """After a failed `acquire`: wait up to `timeout_s` for a slot; False when none came."""
        waiter = self.enqueue(timeout_s)
        return waiter is not None and await self.wait_for(waiter)

    async def wait_for(self, waiter: asyncio.Future[bool]) -> bool:
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                self._forget(waiter)
            elif waiter.result():
                self.hand_over()  # the slot came with the cancellation: pass it on
            raise

    def _give_up(self, waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():
            waiter.set_result(False)
            self._forget(waiter)

    def _forget(self, waiter: asyncio.Future[bool]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def hand_over(self) -> None:
        """A slot is free: to the oldest waiter, else back to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self.in_flight -= 1

    def release(self, seconds: float) -> None:
        self.hand_over()
        self._samples.append(seconds)
        now = time.monotonic()
        if now >= self._window_end:
            self._adapt()
            self._window_end = now + WINDOW_S

    def _adapt(self) -> None:
        samples = sorted(self._samples)
        p90 = samples[int(0.9 * (len(samples) - 1))]
        if p90 > self.target_s:
            self.limit = max(self.minimum, self.limit * 0.8)
        elif p90 < self.target_s / 2 and self._reached:
            self.limit = min(self.maximum, self.limit + max(1.0, math.sqrt(self.limit)))
            while self._waiters and self.in_flight < int(self.limit):
                self.in_flight += 1  # a new slot, taken by the oldest waiter
                self.hand_over()
        self._samples = []
        self._reached = False
        ADMISSION_LIMIT.set(int(self.limit))


class RetryAfter:
    """How long a refused submission's client is asked to stay away, in whole seconds (the
    header's unit).

    A refusal costs the API a good part of what reading a submission costs, and a client told to
    come back in a second comes back to be refused again for as long as the overload lasts: a
    thousand clients against an API that holds two hundred send it hundreds of refusals a second.
    So, each second: while refusals outnumber `budget` times the accepted submissions, the
    Retry-After given grows by a second (up to `maximum`); when they fall under half of that, it
    shrinks by one (down to `minimum`). Refused clients then come back about `budget` times as
    often as the API accepts work, and once the overload is over, within a few seconds, they are
    told `minimum` again.
    """

    WINDOW_S = 1.0

    def __init__(self, minimum: int, maximum: int, budget: float) -> None:
        self.minimum = max(1, minimum)
        self.maximum = max(self.minimum, maximum)
        self.budget = budget
        self.seconds = self.minimum
        self.accepted = 0
        self.refused = 0
        self._window_end = 0.0

    def accept(self, now: float) -> None:
        self._tick(now)
        self.accepted += 1

    def refuse(self, now: float) -> int:
        """Count a refusal; the Retry-After to give it."""
        self._tick(now)
        self.refused += 1
        return self.seconds

    def _tick(self, now: float) -> None:
        if now < self._window_end:
            return
        if now >= self._window_end + self.WINDOW_S:
            # No request for a whole window: no overload to speak of, and stale counts.
            self.seconds = max(self.minimum, self.seconds - 1)
        else:
            allowed = self.budget * self.accepted
            if self.refused > allowed:
                self.seconds = min(self.maximum, self.seconds + 1)
            elif self.refused < allowed / 2:
                self.seconds = max(self.minimum, self.seconds - 1)
        self.accepted = self.refused = 0
        self._window_end = now + self.WINDOW_S


class Admission:
    """The decisions of admission control, shared by the ASGI middleware and the HTTP protocol
    (`api.protocol`), which makes them before an ASGI task exists."""

    def __init__(
        self, settings: ServerSettings, limit: AdaptiveLimit, app_state: Any = None
    ) -> None:
        self.limit = limit
        # The app's state, whose services hold the producer's pending bytes; None: the
        # state of the app in each request's scope (a scope that has passed Starlette).
        self.app_state = app_state
        self.retry = RetryAfter(
            settings.admission_retry_after_s,
            settings.admission_retry_after_max_s,
            settings.admission_refusal_budget,
        )
        self.max_pending_bytes = settings.admission_max_pending_bytes
        self.retry_after_s = max(1, settings.admission_retry_after_s)
        self.max_wait_s = settings.admission_max_wait_ms / 1000
        self.max_infer = settings.admission_max_infer
        self.infer_in_flight = 0
        # Whether a refusal outside the ASGI app (api.protocol) is observed as a request.
        self.request_metrics = False

    def enter(self, scope: Scope) -> Overloaded | asyncio.Future[bool] | None:
        """A submission's headers have arrived: None when it holds a slot now; a future that
        says whether a slot came to it within `admission_max_wait_ms` (then `full` refuses it);
        or its refusal."""
        refusal = self._bytes_refusal(scope)
        if refusal is not None:
            self.retry.refuse(time.monotonic())
            return refusal
        if self.limit.acquire():
            return None
        waiter = self.limit.enqueue(self.max_wait_s)
        return waiter if waiter is not None else self.full()

    def full(self) -> Overloaded:
        """The refusal of a submission that found no slot (counted as one)."""
        retry_after_s = self.retry.refuse(time.monotonic())
        return Overloaded(
            f"the API holds {self.limit.in_flight} submissions, its limit now; "
            f"retry in {retry_after_s} s with the same Idempotency-Key",
            {"in_flight": self.limit.in_flight, "limit": int(self.limit.limit)},
            retry_after_s,
        )

    def leave(self, seconds: float) -> None:
        """An admitted submission was answered after `seconds` in the app."""
        self.limit.release(seconds)
        self.retry.accept(time.monotonic())

    def infer_refusal(self, scope: Scope) -> Overloaded | None:
        refusal = self._bytes_refusal(scope)
        if refusal is None and self.infer_in_flight >= self.max_infer:
            refusal = Overloaded(
                f"the API holds {self.infer_in_flight} inferences, its limit; "
                f"retry in {self.retry_after_s} s",
                {"in_flight": self.infer_in_flight, "limit": self.max_infer},
                self.retry_after_s,
            )
        return refusal

    def _bytes_refusal(self, scope: Scope) -> Overloaded | None:
        state = self.app_state
        pending = _pending_bytes(state if state is not None else _state_of(scope))
        if pending + (content_length(scope) or 0) > self.max_pending_bytes > 0:
            return Overloaded(
                f"{pending} bytes of submissions are waiting for Kafka; "
                f"retry in {self.retry_after_s} s with the same Idempotency-Key",
                {"pending_bytes": pending, "max_pending_bytes": self.max_pending_bytes},
                self.retry_after_s,
            )
        return None


# Set in a submission's scope by a server that admitted it already (`api.protocol`): the
# middleware then only times it and frees its slot.
ADMITTED = "autoglm.admitted"


class AdmissionControl:
    """ASGI middleware in front of the submission routes."""

    def __init__(
        self,
        app: ASGIApp,
        settings: ServerSettings,
        limit: AdaptiveLimit,
        admission: Admission | None = None,
    ) -> None:
        self.app = app
        self.admission = admission or Admission(settings, limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
        elif scope["path"] in GUARDED:
            await self._submission(scope, receive, send)
        elif scope["path"] == INFER:
            await self._infer(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _infer(self, scope: Scope, receive: Receive, send: Send) -> None:
        admission = self.admission
        refusal = admission.infer_refusal(scope)
        if refusal is not None:
            await _refuse(refusal, send)
            return
        admission.infer_in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            admission.infer_in_flight -= 1

    async def _submission(self, scope: Scope, receive: Receive, send: Send) -> None:
        await admit(self.admission, scope, send, lambda: self.app(scope, receive, send))


async def admit(
    admission: Admission, scope: Scope, send: Send, call: Callable[[], Awaitable[R]]
) -> R | None:
    """`call()` holding a slot, timed; None when the submission was refused (its 503 sent). A
    submission the HTTP protocol admitted already (`ADMITTED`) holds its slot and is only timed."""
    if ADMITTED not in scope:
        verdict = admission.enter(scope)
        if isinstance(verdict, asyncio.Future):
            verdict = None if await admission.limit.wait_for(verdict) else admission.full()
        if verdict is not None:
            await _refuse(verdict, send)
            return None
    started = time.perf_counter()
    try:
        return await call()
    finally:
        admission.leave(time.perf_counter() - started)


_REFUSED = REFUSED.labels(Overloaded.code)
STATUS = status_of(Overloaded("", {}))
_CONTENT_TYPE = (b"content-type", b"application/json")


def refusal_body(refusal: Overloaded) -> tuple[bytes, int]:
    """The 503's body (the API.md error body) and its Retry-After; the refusal is counted."""
    _REFUSED.inc()
    error = {"code": refusal.code, "message": refusal.message, "details": refusal.details}
    return orjson.dumps({"error": error}), refusal.retry_after_s or 1


async def _refuse(refusal: Overloaded, send: Send) -> None:
    """The 503 written straight to the server: a refusal is the cheapest answer the API gives
    (under overload it is a fifth of them), so no Response object, no body model."""
    body, retry_after_s = refusal_body(refusal)
    headers = [
        _CONTENT_TYPE,
        (b"content-length", b"%d" % len(body)),
        (b"retry-after", b"%d" % retry_after_s),
    ]
    await send({"type": "http.response.start", "status": STATUS, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _state_of(scope: Scope) -> Any:
    return getattr(scope.get("app"), "state", None)


def _pending_bytes(state: Any) -> int:
    services = getattr(state, "services", None)
    return int(services.producer.pending_bytes) if services is not None else 0
