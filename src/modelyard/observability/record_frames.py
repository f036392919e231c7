"""The wire between the gateway and its record writer process: length-prefixed msgpack frames.

Gateway → writer (the writer's stdin): ``[seq, [record, ...]]``, one frame per batch of finished requests.
Writer → gateway (the writer's stdout): ``[seq, ok, message, refused]``: ``ok`` once the batch is written (lines
out, rows committed, ``refused`` of them rejected by the database and dropped), or ``not ok`` with the reason each
time an attempt to store it fails (the writer keeps it and retries). A 4-byte little-endian length in front of
each frame lets either side read whole frames from a pipe.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

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
    refused: int = 0  # rows of this batch the database refused (bad data, not an outage): dropped, not retried


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


class FrameBuffer:
    """Frames out of a byte stream read in large pieces (one ``read`` for many frames, not two per frame)."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Append what was read; return every frame now complete, in order."""
        self._data += data
        frames, offset, end = [], 0, len(self._data)
        while end - offset >= LENGTH.size:
            length = frame_length(bytes(self._data[offset : offset + LENGTH.size]))
            if end - offset - LENGTH.size < length:
                break
            start = offset + LENGTH.size
            frames.append(bytes(self._data[start : start + length]))
            offset = start + length
        del self._data[:offset]
        return frames

    @property
    def partial(self) -> bool:
        """Bytes of an unfinished frame are waiting (at the end of the stream this means it was cut)."""
        return bool(self._data)


def _framed(payload: bytes) -> bytes:
    return LENGTH.pack(len(payload)) + payload
