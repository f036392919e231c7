"""``POST /v1/feedback``: a client rates an answer it received, by the answer's ``x-request-id``.

The request log is written by the record writer process within about a second of the answer, so a rating that
arrives before its row is waited for briefly instead of being refused as unknown.
"""

from __future__ import annotations

import asyncio

from modelyard.api.replies import Reply
from modelyard.asgi import Request
from modelyard.errors import not_available_here
from modelyard.jsonbody import decode_object
from modelyard.rollouts.feedback import FeedbackScale, FeedbackStore, UnknownRequest, parse_feedback
from modelyard.security.keys import ADMIN, KeyGrant

_BODY_LIMIT = 64 * 1024
_ROW_WAIT_S = 2.0  # how long a rating waits for its request's row (the writer stores rows within ~0.7 s)
_ROW_POLL_S = 0.2


class FeedbackAPI:
    def __init__(self, store: FeedbackStore | None, scale: FeedbackScale) -> None:
        self._store = store
        self._scale = scale

    async def submit(self, request: Request) -> Reply:
        if self._store is None:
            raise not_available_here("Feedback (it needs the request log's database)")
        given = parse_feedback(decode_object(await request.body(_BODY_LIMIT)), self._scale)
        grant: KeyGrant | None = request.caller
        key_id = grant.id if grant is not None else ""
        admin = grant is not None and ADMIN in grant.scopes
        waited = 0.0
        while True:
            try:
                feedback = await asyncio.to_thread(self._store.submit, given, key_id, admin)
            except UnknownRequest:
                if waited >= _ROW_WAIT_S:
                    raise
                await asyncio.sleep(_ROW_POLL_S)
                waited += _ROW_POLL_S
                continue
            return 200, feedback.to_json()
