"""One inference request on its way through the pipeline: the facts recorded about it and the headers it will be
answered with, owned by one object that the stages tell what happened.

Stages never slice shared lists or write the record's fields by hand: they call ``name_target`` when a target
starts answering (which also replaces the target headers of a failed attempt), ``add_header``, ``token_seen``,
``count_usage`` and so on. Observers read the finished :attr:`record` once, at the end.

Header order on the answer: ``x-request-id``, ``x-modelyard-trace-id``, ``x-modelyard-route``, what routing and
admission add (``x-modelyard-router``, ``x-ratelimit-*``), then — once the request was forwarded — the answering
target's ``x-modelyard-target`` / ``x-modelyard-model-version`` and ``x-modelyard-attempts``.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from modelyard.asgi import CLIENT_CLOSED, Headers, Request, client_request_id
from modelyard.observability.body_policy import MAX_BODY_BYTES
from modelyard.observability.request_record import RequestRecord
from modelyard.observability.tracing import parse_traceparent

if TYPE_CHECKING:
    from modelyard.routing.model import RouteTarget, ServedModel
    from modelyard.security.keys import KeyGrant


class Exchange:
    __slots__ = (
        "_forwarded",
        "_headers",
        "_log_bodies",
        "_target_headers",
        "grant",
        "priority_asked",
        "record",
        "request_id",
    )

    def __init__(self, record: RequestRecord, request_id: bytes, grant: KeyGrant | None) -> None:
        self.record = record
        self.request_id = record.request_id
        self.grant = grant  # the caller's key, as the door authenticated it (None: no key needed)
        self._headers: Headers = [(b"x-request-id", request_id), (b"x-modelyard-trace-id", record.trace_id.encode())]
        self._target_headers: tuple[tuple[bytes, bytes], ...] = ()
        self._forwarded = False
        self._log_bodies = False
        self.priority_asked: bytes | None = None  # the client's x-modelyard-priority (gateway/slots.py)

    @classmethod
    def begin(cls, request: Request, endpoint: str) -> Exchange:
        """A new exchange for a request that just arrived: its id (the client's ``x-request-id`` or a fresh one)
        and its trace (the caller's ``traceparent`` or a fresh one)."""
        given_id = traceparent = priority = None
        for name, value in request.scope["headers"]:  # one pass for all three headers
            if name == b"x-request-id":
                given_id = value
            elif name == b"traceparent":
                traceparent = value
            elif name == b"x-modelyard-priority":
                priority = value
        request_id = client_request_id(given_id) or b"%024x" % random.getrandbits(96)
        trace_id, parent_span_id = parse_traceparent(traceparent)
        record = RequestRecord(
            request_id=request_id.decode(errors="replace"),
            trace_id=trace_id,
            parent_span_id=parent_span_id,
            endpoint=endpoint,
            received=time.perf_counter(),
            received_at=time.time(),
            key_id=request.caller.id if request.caller is not None else "",
        )
        exchange = cls(record, request_id, request.caller)
        exchange.priority_asked = priority
        return exchange

    def child(self) -> Exchange:
        """A scratch exchange for one part of a fan-out (its own attempts and usage); see :meth:`absorb`."""
        record = self.record
        part = RequestRecord(
            request_id=record.request_id,
            trace_id=record.trace_id,
            endpoint=record.endpoint,
            received=record.received,
            received_at=record.received_at,
        )
        child = Exchange(part, self.request_id.encode(), self.grant)
        child.priority_asked = self.priority_asked
        return child

    def absorb(self, parts: list[Exchange]) -> None:
        """The parts of a fan-out, as this request's facts: attempts and completion tokens summed, the prompt
        counted once, the first part's target named, the earliest first token."""
        record = self.record
        self.forwarding(record.stream)
        for part in parts:
            facts = part.record
            record.attempts += facts.attempts
            record.completion_tokens += facts.completion_tokens
            record.cost_usd += facts.cost_usd
            if facts.first_token is not None and (record.first_token is None or facts.first_token < record.first_token):
                record.first_token = facts.first_token
            record.last_token = max(filter(None, (record.last_token, facts.last_token)), default=None)
        first = parts[0]
        record.dispatched = first.record.dispatched
        record.prompt_tokens = first.record.prompt_tokens
        record.model, record.target, record.version = first.record.model, first.record.target, first.record.version
        self._target_headers = first._target_headers

    # -- headers --------------------------------------------------------------------------------------------------

    def add_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def add_headers(self, headers: Headers) -> None:
        self._headers.extend(headers)

    def headers(self) -> Headers:
        """The answer's headers as of now (the attempts count is read at the moment they are sent)."""
        if not self._forwarded:
            return self._headers
        attempts = (b"x-modelyard-attempts", b"%d" % self.record.attempts)
        return [*self._headers, *self._target_headers, attempts]

    # -- what happened ---------------------------------------------------------------------------------------------

    def resolved(self, route: str) -> None:
        """The client's model name resolved to a route."""
        record = self.record
        record.route = route
        record.routed = time.perf_counter()
        self._headers.append((b"x-modelyard-route", route.encode()))

    def name_target(self, target: RouteTarget) -> None:
        """``target`` is (now) the one answering: the record and the target headers name it."""
        record, served = self.record, target.served
        record.model, record.target = served.name, target.name
        record.version = "" if served.version is None else str(served.version)
        self._target_headers = target.headers

    def forwarding(self, stream: bool) -> None:
        """The first upstream call is about to start."""
        self.record.stream = stream
        self.record.dispatched = time.perf_counter()
        self._forwarded = True

    def attempt(self, target: RouteTarget) -> None:
        """One more upstream call, to ``target``, which is then the one named as answering."""
        self.record.attempts += 1
        self.name_target(target)

    def token_seen(self) -> None:
        record = self.record
        record.last_token = time.perf_counter()
        if record.first_token is None:
            record.first_token = record.last_token

    def count_usage(self, served: ServedModel, prompt_tokens: int, completion_tokens: int) -> None:
        record = self.record
        record.prompt_tokens, record.completion_tokens = prompt_tokens, completion_tokens
        cost_per_1k = prompt_tokens * served.price_input_per_1k + completion_tokens * served.price_output_per_1k
        record.cost_usd = cost_per_1k / 1000

    def failed(self, kind: str) -> None:
        """What went wrong, in the request log's and the metrics' words (an error code)."""
        self.record.error_type = kind

    def finish(self, status: int, mirrored: bool = False) -> None:
        """The answer is complete: its status; bodies the request log did not ask for are dropped, unless a shadow
        comparison still has to read the answer (then :meth:`release_bodies` drops them after it)."""
        record = self.record
        record.status = status
        if status == CLIENT_CLOSED and not record.error_type:
            record.error_type = "client_closed"
        record.finished = time.perf_counter()
        if not mirrored and not self._log_bodies and record.request_body is not None:
            record.request_body = record.response_body = None

    # -- bodies (only when the request log or a shadow comparison needs them) ---------------------------------------

    def keep_bodies(self, request_body: bytes, for_request_log: bool) -> None:
        """Keep the request's body and collect the answer's; the request log stores them only when it sampled this
        request (a shadow comparison needs the answer either way)."""
        self.record.request_body, self.record.response_body = request_body, b""
        self._log_bodies = for_request_log

    def keep_response(self, body: bytes) -> None:
        if self.record.response_body is not None:
            self.record.response_body = body

    def keep_response_piece(self, chunk: bytes) -> None:
        kept = self.record.response_body
        if kept is not None and len(kept) <= MAX_BODY_BYTES:
            self.record.response_body = kept + chunk

    def release_bodies(self) -> None:
        """Bodies the request log did not ask for are dropped (after a shadow comparison read the answer)."""
        if not self._log_bodies:
            self.record.request_body = self.record.response_body = None
