"""The wire between the gateway and its record writer process: length-prefixed msgpack frames.

Gateway → writer (the writer's stdin): ``[seq, [record, ...]]``, one frame per batch of finished requests.
Writer → gateway (the writer's stdout): ``[seq, ok, message]``: ``ok`` once the batch is written (lines out, rows
committed), or ``not ok`` with the reason each time an attempt to store it fails (the writer keeps it and
retries). A 4-byte little-endian length in front of each frame lets either side read whole frames from a pipe.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import BinaryIO

import msgspec

from modelyard.observability.request_record import RequestRecord

LENGTH = struct.Struct("<I")
MAX_FRAME_BYTES = 256 * 1024 * 1024  # a corrupt length must not make the reader allocate without bound


class FrameError(RuntimeError):
    """The other side wrote something that is not a frame (a bug or a crash mid-write)."""


class Ack(msgspec.Struct, array_like=True, frozen=True):
    seq: int
    ok: bool
    message: str = ""


class BatchCodec:
    """Encoders are reused: msgspec keeps an internal buffer per encoder and type information per decoder."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._batch = msgspec.msgpack.Decoder(tuple[int, list[RequestRecord]])
        self._ack = msgspec.msgpack.Decoder(Ack)

    def batch(self, seq: int, records: Sequence[RequestRecord]) -> bytes:
        return _framed(self._encoder.encode((seq, records)))

    def ack(self, ack: Ack) -> bytes:
        return _framed(self._encoder.encode(ack))

    def read_batch(self, payload: bytes) -> tuple[int, list[RequestRecord]]:
        try:
            return self._batch.decode(payload)
        except msgspec.DecodeError as exc:
            raise FrameError(f"not a batch of request records: {exc}") from exc

    def read_ack(self, payload: bytes) -> Ack:
        try:
            return self._ack.decode(payload)
        except msgspec.DecodeError as exc:
            raise FrameError(f"not an acknowledgement: {exc}") from exc


def frame_length(header: bytes) -> int:
    (length,) = LENGTH.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {length} bytes announced (at most {MAX_FRAME_BYTES})")
    return length


def read_frame(stream: BinaryIO) -> bytes | None:
    """One whole frame from a blocking stream; None at a clean end of stream."""
    header = _read_exactly(stream, LENGTH.size)
    if header is None:
        return None
    payload = _read_exactly(stream, frame_length(header))
    if payload is None:
        raise FrameError("stream ended inside a frame")
    return payload


def _framed(payload: bytes) -> bytes:
    return LENGTH.pack(len(payload)) + payload


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    chunks, missing = [], size
    while missing:
        chunk = stream.read(missing)
        if not chunk:
            if missing == size:
                return None
            raise FrameError("stream ended inside a frame")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)
