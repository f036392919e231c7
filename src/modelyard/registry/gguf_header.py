"""Read what the registry records about a GGUF file from its header, without loading the model.

The ``gguf`` package defines the format (value types, file types, key names) and we use its definitions, but its
``GGUFReader`` materialises every array in the file as numpy views: for a model with a 262k-entry vocabulary that
takes about ten seconds. The registry needs only scalar metadata and tensor shapes, so this reader walks the
header once over an ``mmap`` and skips large arrays by their length prefixes (well under a second).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

from gguf import GGUF_MAGIC, GGUFValueType, Keys, LlamaFileType

_SCALARS: dict[GGUFValueType, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_KEPT_ARRAY_LENGTH = 64  # arrays longer than this (vocabularies, merges) are skipped, not stored


class GGUFHeaderError(ValueError):
    """The file is not a readable GGUF; the message says what was found instead."""


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    tensor_count: int
    parameter_count: int
    metadata: dict[str, Any] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)  # skipped arrays, by key

    @property
    def architecture(self) -> str:
        return str(self.metadata.get(Keys.General.ARCHITECTURE, ""))

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get(Keys.General.FILE_TYPE)
        if file_type is None:
            return ""
        try:
            return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
        except ValueError:
            return f"file_type_{file_type}"

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if value is not None else None

    @property
    def has_chat_template(self) -> bool:
        return Keys.Tokenizer.CHAT_TEMPLATE in self.metadata

    @property
    def license(self) -> str:
        return str(self.metadata.get(Keys.General.LICENSE, ""))

    def base_models(self) -> list[str]:
        count = int(self.metadata.get(Keys.General.BASE_MODEL_COUNT, 0) or 0)
        names = []
        for index in range(count):
            name = self.metadata.get(f"general.base_model.{index}.name") or self.metadata.get(
                f"general.base_model.{index}.repo_url"
            )
            if name:
                names.append(str(name))
        return names

    def summary(self) -> dict[str, Any]:
        """The facts worth keeping on a version record (JSON-safe, small)."""
        kept = {
            key: value
            for key, value in self.metadata.items()
            if key.startswith("general.") or key.startswith(f"{self.architecture}.")
        }
        return {
            "gguf_version": self.version,
            "tensor_count": self.tensor_count,
            "has_chat_template": self.has_chat_template,
            # a template that mentions tools renders them and has a call format llama.cpp's --jinja parses
            "template_knows_tools": "tool_calls" in str(self.metadata.get(Keys.Tokenizer.CHAT_TEMPLATE, "")),
            "metadata": kept,
        }


def read_gguf_header(path: Path) -> GGUFHeader:
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return _Parser(view).header()
    except FileNotFoundError:
        raise GGUFHeaderError(f"{path}: no such file") from None
    except ValueError as exc:
        if isinstance(exc, GGUFHeaderError):
            raise
        raise GGUFHeaderError(f"{path}: empty file, not a GGUF model") from None  # mmap of a 0-byte file
    except (struct.error, IndexError) as exc:
        raise GGUFHeaderError(f"{path}: truncated or corrupt GGUF header ({exc})") from None


class _Parser:
    def __init__(self, view: mmap.mmap) -> None:
        self._view = view
        self._pos = 0

    def header(self) -> GGUFHeader:
        magic = self._u32()
        if magic != GGUF_MAGIC:
            found = bytes(self._view[:4])
            raise GGUFHeaderError(f"not a GGUF file: it starts with {found!r}, a GGUF starts with b'GGUF'")
        version = self._u32()
        if version not in (2, 3):
            raise GGUFHeaderError(f"unsupported GGUF version {version} (supported: 2, 3)")
        tensor_count = self._u64()
        kv_count = self._u64()
        metadata: dict[str, Any] = {}
        array_lengths: dict[str, int] = {}
        for _ in range(kv_count):
            key = self._string()
            value_type = GGUFValueType(self._u32())
            if value_type == GGUFValueType.ARRAY:
                value, length = self._array()
                if value is None:
                    array_lengths[key] = length
                    continue
                metadata[key] = value
            else:
                metadata[key] = self._scalar(value_type)
        parameters = 0
        for _ in range(tensor_count):
            self._string()  # tensor name
            n_dims = self._u32()
            dims = [self._u64() for _ in range(n_dims)]
            self._u32()  # ggml type
            self._u64()  # data offset
            parameters += prod(dims)
        return GGUFHeader(version, tensor_count, parameters, metadata, array_lengths)

    def _u32(self) -> int:
        (value,) = _U32.unpack_from(self._view, self._pos)
        self._pos += 4
        return value

    def _u64(self) -> int:
        (value,) = _U64.unpack_from(self._view, self._pos)
        self._pos += 8
        return value

    def _string(self) -> str:
        length = self._u64()
        raw = self._view[self._pos : self._pos + length]
        if len(raw) != length:
            raise IndexError("string runs past the end of the file")
        self._pos += length
        return raw.decode("utf-8", errors="replace")

    def _scalar(self, value_type: GGUFValueType) -> Any:
        if value_type == GGUFValueType.STRING:
            return self._string()
        codec = _SCALARS[value_type]
        (value,) = codec.unpack_from(self._view, self._pos)
        self._pos += codec.size
        return value

    def _array(self) -> tuple[list[Any] | None, int]:
        item_type = GGUFValueType(self._u32())
        length = self._u64()
        if length <= _KEPT_ARRAY_LENGTH and item_type != GGUFValueType.ARRAY:
            return [self._scalar(item_type) for _ in range(length)], length
        self._skip_array(item_type, length)
        return None, length

    def _skip_array(self, item_type: GGUFValueType, length: int) -> None:
        if item_type == GGUFValueType.STRING:
            for _ in range(length):
                (size,) = _U64.unpack_from(self._view, self._pos)
                self._pos += 8 + size
        elif item_type == GGUFValueType.ARRAY:
            for _ in range(length):
                self._skip_array(GGUFValueType(self._u32()), self._u64())
        else:
            self._pos += _SCALARS[item_type].size * length
