"""``/v1/files`` and ``/v1/batches``: the Batch API's endpoints over the batches concept's store.

Uploads are ``multipart/form-data`` (what the SDKs send) with ``purpose=batch``; the file is validated line by
line before it is stored, so a bad line is a 400 naming its number. Batches run in the background
(``gateway/batch_runner.py``); their output and error files are read with ``GET /v1/files/{id}/content``.
"""

from __future__ import annotations

import asyncio
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from modelyard.asgi import Request, send_bytes
from modelyard.batches.lines import ENDPOINTS, BatchRequestError
from modelyard.batches.store import BatchStore
from modelyard.errors import body_too_large
from modelyard.gateway.responses import key_of
from modelyard.jsonbody import decode_object


class BatchesAPI:
    def __init__(self, store: BatchStore, max_file_bytes: int) -> None:
        self._store = store
        self._max_file_bytes = max_file_bytes

    async def create_file(self, request: Request) -> tuple[int, Any]:
        content_type = request.header(b"content-type") or b""
        body = await request.body(self._max_file_bytes + 64 * 1024)
        fields = parse_form(content_type, body)
        upload = fields.get("file")
        if upload is None:
            raise BatchRequestError("Missing required parameter: 'file'.", "file")
        content, filename = upload
        if len(content) > self._max_file_bytes:
            raise body_too_large(self._max_file_bytes)
        purpose = fields.get("purpose", (b"", ""))[0].decode(errors="replace")
        created = await asyncio.to_thread(
            self._store.create_file, key_of(request), purpose, filename or "upload.jsonl", content
        )
        return 200, created

    async def get_file(self, request: Request) -> tuple[int, Any]:
        return 200, await asyncio.to_thread(self._store.file, key_of(request), request.params["id"])

    async def file_content(self, request: Request) -> None:
        content = await asyncio.to_thread(self._store.file_content, key_of(request), request.params["id"])
        await send_bytes(request.send, 200, content, content_type=b"application/jsonl")

    async def create_batch(self, request: Request) -> tuple[int, Any]:
        body = decode_object(await request.body(64 * 1024))
        file_id, endpoint = body.get("input_file_id"), body.get("endpoint")
        if not isinstance(file_id, str):
            raise BatchRequestError("Missing required parameter: 'input_file_id'.", "input_file_id")
        if endpoint not in ENDPOINTS:
            raise BatchRequestError(f"endpoint must be one of {', '.join(ENDPOINTS)}.", "endpoint")
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else None
        window = str(body.get("completion_window", "24h"))
        created = await asyncio.to_thread(self._store.create, key_of(request), file_id, endpoint, window, metadata)
        return 200, created

    async def get_batch(self, request: Request) -> tuple[int, Any]:
        return 200, await asyncio.to_thread(self._store.get, key_of(request), request.params["id"])

    async def cancel_batch(self, request: Request) -> tuple[int, Any]:
        return 200, await asyncio.to_thread(self._store.cancel, key_of(request), request.params["id"])


def parse_form(content_type: bytes, body: bytes) -> dict[str, tuple[bytes, str | None]]:
    """``multipart/form-data`` fields: name → (value, filename)."""
    if not content_type.lower().startswith(b"multipart/form-data"):
        raise BatchRequestError("Upload the file as multipart/form-data (fields 'file' and 'purpose').", "file")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type + b"\r\n\r\n" + body)
    fields: dict[str, tuple[bytes, str | None]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (payload if isinstance(payload, bytes) else b"", part.get_filename())
    return fields
